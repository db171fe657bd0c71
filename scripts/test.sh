#!/usr/bin/env bash
# The whole test suite: dependencies, format check, release + ASan/UBSan unit tests, bounded
# fuzzing, end-to-end tests under real TPROXY. Run as root on Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
bash scripts/install-deps.sh

step "clang-format"
bash scripts/check-format.sh

step "release build + unit tests"
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)"
./build/release/unit_tests

step "ASan+UBSan build + unit tests"
cmake --preset asan >/dev/null
cmake --build --preset asan -j "$(nproc)"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ./build/asan/unit_tests

if [ -d tests/fuzz ] && ls tests/fuzz/fuzz_*.cpp >/dev/null 2>&1; then
  step "fuzzing (${FUZZ_SECONDS}s per target, on top of the seed corpora)"
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz -j "$(nproc)"
  bash tests/fuzz/run.sh build/fuzz "$FUZZ_SECONDS"
fi

step "deploy kit (systemd-analyze, promtool, manifests, dashboard, .deb)"
# The package is built from the release build (installed under /usr; nothing recompiles).
cmake -S . -B build/release -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
(cd build/release && rm -f egressd_*.deb && cpack -G DEB >/dev/null)
python3 tests/deploy/check.py build/release

if [ -x tests/e2e/run.sh ]; then
  step "end-to-end (network namespaces + TPROXY)"
  tests/e2e/run.sh build/release
  step "end-to-end again with the ASan+UBSan build of egressd"
  ASAN_OPTIONS=detect_leaks=0 tests/e2e/run.sh build/asan
fi
step "all tests passed"
