#!/usr/bin/env bash
# Installs the Debian 12 packages Corral builds, tests and runs with.
# Skips apt entirely when everything is there already.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libcaf-dev libboost-dev libspdlog-dev libfmt-dev libyaml-cpp-dev
  nlohmann-json3-dev libcli11-dev libsqlite3-dev catch2
  python3 clang-format curl
  chromium
)
# The dashboard's end-to-end tests (tests/e2e) need Node.js >= 20 and npm.
# Debian 12's own nodejs is 18, which playwright-core does not support:
# take it only when there is no node at all, and say so below.
if ! command -v node >/dev/null; then
  packages+=(nodejs npm)
fi

node_check() {
  if ! command -v node >/dev/null; then
    echo "warning: no 'node' on PATH: the e2e:dashboard test is not registered" >&2
  elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    echo "warning: $(command -v node) is Node.js $(node --version); tests/e2e needs >= 20" \
      "(Debian 12's nodejs is 18): install Node.js 20+ (nodejs.org, NodeSource) first on PATH," \
      "or e2e:dashboard fails" >&2
  fi
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  node_check
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
node_check
