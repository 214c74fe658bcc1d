#!/usr/bin/env bash
# Rebuilds dist/ from src/ with the npm packages pinned in package-lock.json
# (Preact, htm, uPlot; esbuild bundles them). dist/ is committed, so building
# Corral needs neither Node.js nor the network; run this after editing src/.
# --check: build into a temp dir and fail if dist/ differs (CI-friendly).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

out=dist
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi

rm -rf "$out/assets"
mkdir -p "$out/assets"
./node_modules/.bin/esbuild src/main.js --bundle --minify --format=esm \
  --target=es2020 --legal-comments=none --log-level=warning \
  --outfile="$out/assets/app.js"
cp src/index.html "$out/index.html"

if [ "${1:-}" = "--check" ]; then
  if ! diff -r dist "$out" > /dev/null; then
    echo "web/dist is not what web/src builds to: run ./web/build.sh and commit dist/" >&2
    exit 1
  fi
  echo "web/dist matches web/src"
fi
