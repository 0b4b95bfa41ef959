#!/usr/bin/env bash
# tools/check_layering.py finds what it exists to find: in a scratch tree, a tool that includes a
# broker's private header, a CMake file naming runtime/src, and a production target linking a
# *_internal target are each reported (exit 1); the same tree without them passes (exit 0).
set -euo pipefail
check=${1:?usage: check_layering_selftest.sh tools/check_layering.py}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-layering.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

mkdir -p "$tmp"/{broker/src,broker/include/paddock/broker,runtime/src,tools/cli,tests}
echo '#pragma once' >"$tmp/broker/src/journal.h"
echo '#pragma once' >"$tmp/broker/include/paddock/broker/dead_letters.h"
echo 'add_library(paddock_broker_lib src/x.cc)' >"$tmp/broker/CMakeLists.txt"
echo 'add_executable(paddock cli/main.cc)' >"$tmp/tools/CMakeLists.txt"
echo '#include "paddock/broker/dead_letters.h"' >"$tmp/tools/cli/main.cc"
echo '' >"$tmp/CMakeLists.txt"
out=$(python3 "$check" "$tmp") || fail "a clean tree was refused: $out"

echo '#include "journal.h"' >>"$tmp/tools/cli/main.cc"
# shellcheck disable=SC2016 # a literal CMake variable, as a CMake file writes it
echo 'target_include_directories(paddock PRIVATE ${PROJECT_SOURCE_DIR}/runtime/src)' >>"$tmp/tools/CMakeLists.txt"
echo 'target_link_libraries(paddock PRIVATE paddock_broker_internal)' >>"$tmp/tools/CMakeLists.txt"
status=0
out=$(python3 "$check" "$tmp") || status=$?
[[ $status -eq 1 ]] || fail "violations passed (exit $status): $out"
for want in 'private to broker/src/journal.h' 'names runtime/src' 'links paddock_broker_internal'; do
  grep -qF -- "$want" <<<"$out" || fail "not reported: $want; got: $out"
done
echo "ok: clean tree passes, three kinds of reach-in are reported"
