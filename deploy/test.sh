#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what is missing, checks the
# formatting, builds with warnings as errors, runs the services' and the
# gateway's tests under ASan/UBSan, then every test against the real build.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh

echo "== clang-format"
git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror

echo "== build (warnings are errors)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCORRAL_WERROR=ON
cmake --build build -j"$(nproc)"

echo "== services and gateway under ASan/UBSan"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DCORRAL_SANITIZE=ON \
  -DCORRAL_WERROR=ON
cmake --build build-asan -j"$(nproc)" --target corral-shim services_tests gateway_tests
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j"$(nproc)" -R '^(services|gateway):'

echo "== every test, real processes and sockets"
ctest --test-dir build --output-on-failure -j"$(nproc)"
