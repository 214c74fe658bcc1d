#!/usr/bin/env bash
# Regenerates docs/screenshots/*.png (1280x800: runs list, a run's Progress,
# Logs and Resources tabs, the Submit page, the token dialog, a
# confirmation) by running the
# end-to-end suite with CORRAL_E2E_SCREENSHOTS pointing there.
#
# usage: tests/e2e/screenshots.sh [CORRAL_BINARY | BUILD_DIR]   (default: build/corral)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"
out="$src/docs/screenshots"
mkdir -p "$out"
CORRAL_E2E_SCREENSHOTS="$out" "$here/run.sh" "$@"
ls -l "$out"/*.png
