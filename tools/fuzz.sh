#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz/ (tests/fuzz/README.md lists them: one per decoder that
# meets outside input). The build is CMake's: a tree of its own configured with clang++-14 and
# -DPADDOCK_FUZZ=ON (tests/fuzz/CMakeLists.txt: the targets, their flags, and the `fuzz_seeds`
# step that writes seeds and dictionaries from tests/fuzz/seeds.py).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]      (default 30 s; every target)
#
# For each target: replay the regression inputs of tests/fuzz/regressions/<target>/ (crashes found
# and fixed; each must pass), then fuzz it for SECONDS_PER_TARGET from its working corpus (kept in
# the build directory, so it grows from run to run and never lands in the repository) and its
# seeds. tools/test.sh (the CI suite) runs every target for 10 s: 10 targets, 100 s of fuzzing in
# all, to keep the suite inside its 15-minute budget. Adding a target means lowering that default
# so the total stays at about 100 s. Longer campaigns are run by hand (tests/fuzz/README.md).
#
# Build directory: $PADDOCK_FUZZ_BUILD_DIR (default <repo>/build-fuzz); compiler: $PADDOCK_FUZZ_CXX
# (default clang++-14). Exits non-zero if any target crashes (the reproducer is in
# <build dir>/artifacts/), and prints each target's executions and coverage.
set -euo pipefail

SECONDS_PER_TARGET="${1:-30}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [[ "$SECONDS_PER_TARGET" -lt 1 ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET [TARGET...]]" >&2
  exit 2
fi
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PADDOCK_FUZZ_BUILD_DIR:-$SRC/build-fuzz}"
CXX="${PADDOCK_FUZZ_CXX:-clang++-14}"
# The same list as PADDOCK_FUZZ_TARGETS in tests/fuzz/CMakeLists.txt.
TARGETS=(fuzz_client_frames fuzz_worker_frames fuzz_job_dispatch fuzz_outcome_view
         fuzz_agent_frames fuzz_snapshot_meta fuzz_qmp_replies fuzz_curve_files fuzz_batch_jobs
         fuzz_egress_rules)
if [[ $# -gt 1 ]]; then
  shift
  for t in "$@"; do
    [[ " ${TARGETS[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target $t (${TARGETS[*]})" >&2; exit 2; }
  done
  TARGETS=("$@")
fi
command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found (tools/install-deps.sh)" >&2; exit 2; }

# ---- build (CMake) ----------------------------------------------------------------------------
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
generator=()
if command -v ninja >/dev/null && [[ ! -f "$OUT/CMakeCache.txt" ]]; then generator=(-G Ninja); fi
echo "== configure $OUT"
mkdir -p "$OUT"
cmake -S "$SRC" -B "$OUT" "${generator[@]}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER="$CXX" \
  -DPADDOCK_FUZZ=ON -DPADDOCK_TESTS=OFF -DPADDOCK_SANITIZE=OFF "${launcher[@]}" >"$OUT/configure.log" 2>&1 ||
  { cat "$OUT/configure.log" >&2; echo "fuzz.sh: configure failed" >&2; exit 2; }
echo "== build ${TARGETS[*]}"
cmake --build "$OUT" --parallel 2 --target "${TARGETS[@]}" fuzz_seeds
FUZZ="$OUT/tests/fuzz"
mkdir -p "$OUT"/{corpus,artifacts,logs}

# ---- regressions, then fuzzing ---------------------------------------------------------------
status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$t"
  log="$OUT/logs/$t.log"
  regressions=("$SRC/tests/fuzz/regressions/$t"/*)
  if [[ -e "${regressions[0]}" ]]; then
    echo "== replay $t: ${#regressions[@]} regression inputs"
    if ! "$FUZZ/$t" -timeout=10 -rss_limit_mb=2048 "${regressions[@]}" >"$log.regressions" 2>&1; then
      status=1
      echo "!! $t FAILED on a regression input; log: $log.regressions"
      grep -E 'ERROR|SUMMARY|runtime error|Running:' "$log.regressions" | tail -20 || true
      summary+=("$t: FAILED (regression inputs)")
      continue
    fi
  fi
  echo "== run $t for ${SECONDS_PER_TARGET}s (log: $log)"
  set +e
  "$FUZZ/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$FUZZ/dicts/$t.dict" -artifact_prefix="$OUT/artifacts/$t-" \
    "$OUT/corpus/$t" "$FUZZ/seeds/$t" >"$log" 2>&1
  rc=$?
  set -e
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
  last="$(grep -E '#[0-9]+.*cov: [0-9]+' "$log" | tail -1 || true)"
  cov="$(grep -oE 'cov: [0-9]+ ft: [0-9]+' <<<"$last" || true)"
  corp="$(grep -oE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' <<<"$last" || true)"
  if [[ $rc -ne 0 ]]; then
    status=1
    echo "!! $t FAILED (exit $rc); crash report:"
    grep -E 'ERROR|SUMMARY|runtime error|Test unit written|==[0-9]+==' "$log" | head -20 || true
    summary+=("$t: FAILED (exit $rc) execs=${execs:-?} ${cov:-}")
  else
    summary+=("$t: ok execs=${execs:-?} ${cov:-cov: ?} ${corp:-}")
  fi
done

echo "== summary (${SECONDS_PER_TARGET}s per target)"
printf '  %s\n' "${summary[@]}"
exit $status
