#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks the
# formatting, builds with warnings as errors, runs every test under
# ASan/UBSan (the daemon and its shim included), then every test against
# the optimized build, then the benchmarks in their smoke mode. The Slurm
# tests run against a private single-node Slurm that ctest starts and
# stops (tests/slurm/cluster.sh, as root).
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
./tests/slurm/install-deps.sh

echo "== clang-format"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

echo "== web/dist is what web/src builds to"
if command -v node >/dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ]; then
  ./web/build.sh --check
else
  echo "skipped: needs Node.js >= 20 (the committed web/dist is used as it is)"
fi

echo "== build (warnings are errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORRAL_WERROR=ON
cmake --build build -j"$(nproc)"

echo "== every test under ASan/UBSan (the daemon included)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCORRAL_SANITIZE=ON \
  -DCORRAL_WERROR=ON
cmake --build build-asan -j"$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)"

echo "== every test, real processes and sockets"
ctest --test-dir build --output-on-failure -j"$(nproc)"

echo "== the benchmark suite still runs (tiny sizes; figures not checked)"
./bench/install-deps.sh
./bench/run.py --quick --build build --out build/benchmarks-smoke.md
