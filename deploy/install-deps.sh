#!/usr/bin/env bash
# Installs the Debian 12 packages Corral builds, tests and runs with.
# Skips apt entirely when everything is there already.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libcaf-dev libboost-dev libspdlog-dev libfmt-dev libyaml-cpp-dev
  nlohmann-json3-dev libcli11-dev catch2
  python3 clang-format curl
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
$sudo apt-get update
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
