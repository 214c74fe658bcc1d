#!/usr/bin/env bash
# From a fresh Debian 12 machine to a running Corral with the bundled
# example sweep: installs what is missing, builds, starts the daemon in the
# background, submits config/examples/quickstart.yaml and prints the URL.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j"$(nproc)"

state_dir="${XDG_STATE_HOME:-$HOME/.local/state}/corral"
mkdir -p "$state_dir"
if ! ./build/corral ps >/dev/null 2>&1; then
  nohup ./build/corral serve --state-dir "$state_dir" \
    >"$state_dir/daemon.log" 2>&1 &
  for _ in $(seq 100); do
    [ -s "$state_dir/endpoint" ] && ./build/corral ps >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
./build/corral submit config/examples/quickstart.yaml
./build/corral ps
echo
grep -m1 '^dashboard:' "$state_dir/daemon.log" || true
echo "daemon log: $state_dir/daemon.log"
echo "stop the runs: ./build/corral stop ID...; the daemon: kill \$(cat $state_dir/lock)"
echo "(a daemon stopped while runs go on leaves them running; the next 'corral serve' takes them back)"
