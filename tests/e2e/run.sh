#!/usr/bin/env bash
# Runs the dashboard's end-to-end tests (tests/e2e/*.test.mjs) in Debian's
# chromium against a real daemon.
#
# usage: tests/e2e/run.sh [CORRAL_BINARY | BUILD_DIR]
#   default: $CORRAL_BINARY, else build/corral
# env:   CORRAL_E2E_SCREENSHOTS  where the PNGs of each view go
#                                (default: <build dir>/e2e-screenshots)
#        CORRAL_E2E_CHROMIUM     the browser (default /usr/bin/chromium)
#        CORRAL_E2E_TIMEOUT_SCALE  multiplies every wait (default 1)
#        CORRAL_E2E_KEEP=1       keep the temp dir (state dir, daemon log)
#        CORRAL_E2E_DAEMON_ARGS  more `corral serve` flags (e.g. --cgroup off)
#
# Installs playwright-core (pinned in package-lock.json) with `npm ci` when
# node_modules is missing or does not match the lock file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/../.." && pwd)"

target="${1:-${CORRAL_BINARY:-$src/build/corral}}"
if [ -d "$target" ]; then target="$target/corral"; fi
if [ ! -x "$target" ]; then
  echo "e2e: no corral binary at '$target' (build it, or pass its path)" >&2
  exit 2
fi
CORRAL_BINARY="$(cd "$(dirname "$target")" && pwd)/$(basename "$target")"
export CORRAL_BINARY

if ! command -v node >/dev/null; then
  echo "e2e: needs Node.js >= 20 ('node' is not on PATH; see deploy/install-deps.sh)" >&2
  exit 2
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "e2e: needs Node.js >= 20 for playwright-core, found $(node --version) at $(command -v node)" >&2
  echo "e2e: (Debian 12's own nodejs is 18: install Node 20+, e.g. from nodejs.org or NodeSource)" >&2
  exit 2
fi
chromium="${CORRAL_E2E_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "e2e: no chromium at $chromium (apt-get install chromium, or deploy/install-deps.sh)" >&2
  exit 2
fi

# npm ci when node_modules is missing or was installed from another lock
# file; a lock keeps two suites (ASan and optimized builds) from racing.
stamp="$here/node_modules/.corral-e2e-lock.sha256"
want="$(sha256sum "$here/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  exec 9>"${TMPDIR:-/tmp}/corral-e2e-npm.lock"
  flock 9
  if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "e2e: npm ci (node_modules missing or stale)"
    (cd "$here" && npm ci --no-audit --no-fund) || {
      echo "e2e: 'npm ci' failed: it needs the npm registry once to install playwright-core" >&2
      exit 2
    }
    echo "$want" >"$stamp"
  fi
  exec 9>&-
fi

cd "$here"
exec node --test --test-reporter=spec ./*.test.mjs
