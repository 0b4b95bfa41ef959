#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing, build with AddressSanitizer and
# UndefinedBehaviorSanitizer, run every fuzz target briefly, then every test through ctest.
# Environment: PADDOCK_TEST_BUILD_DIR (default build-test), PADDOCK_FUZZ_SECONDS (default 11 per
# target; 0 skips fuzzing, and says so).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
tools/install-deps.sh
build=${PADDOCK_TEST_BUILD_DIR:-build-test}
case "$build" in /*) ;; *) build="$root/$build" ;; esac

echo "== build ($build, Debug, ASan+UBSan)"
# Debug (-O0): a sanitizer build compiles about 8x faster than at -O2, and the tests do not need speed.
# ccache (Debian's) keeps compiled objects between runs on one machine (~/.cache/ccache): a clean
# clone rebuilds in about a minute instead of several; the first run on a machine pays in full.
# BASEDIR and NOHASHDIR let clones at different paths share the cache (paths under the clone are
# hashed as relative ones).
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPADDOCK_SANITIZE=ON -DPADDOCK_TESTS=ON \
  "${launcher[@]}" >/dev/null
ninja -C "$build" | tail -n 1

fuzz_seconds=${PADDOCK_FUZZ_SECONDS:-10}  # 10 targets: 100 s of fuzzing (tools/fuzz.sh)
if [ "$fuzz_seconds" -gt 0 ]; then
  echo "== fuzz (${fuzz_seconds} s per target)"
  PADDOCK_FUZZ_BUILD_DIR="$build/fuzz" tools/fuzz.sh "$fuzz_seconds"
else
  echo "== fuzz: SKIPPED (PADDOCK_FUZZ_SECONDS=0)"
fi

echo "== tests"
cd "$build"
ctest --output-on-failure -j2 --timeout 600
