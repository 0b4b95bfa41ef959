#!/usr/bin/env bash
# The broker's CPU cost per job, in instructions, under callgrind: a release broker (journal off,
# or on with --journal), one paddock-worker on the in-memory TEST DOUBLE (--slots 64) and
# paddock-load driving a fixed closed-loop load. Instruction counts repeat from run to run within
# about a percent, where wall-clock figures on this shared machine do not.
#
#   tools/bench/callgrind_broker.sh [--journal] [--jobs N] [--concurrency C] [--build DIR]
#                                   [--no-build] [--out DIR] [--top N]
#
# Prints the broker's instructions in all, per job, and the top functions by inclusive share. The
# broker's start and stop are in the count too (a few million instructions, <1% of 20,000 jobs).
# The callgrind file stays in --out (default: a temporary directory, printed) for
# callgrind_annotate. --no-build takes the binaries in --build as they are (say, a broker of an
# older commit beside the current worker and load tool, to compare brokers).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-rel"
journal=0
jobs=20000
concurrency=200
out=""
top=25
build_it=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --journal) journal=1 ;;
    --jobs) jobs=$2; shift ;;
    --concurrency) concurrency=$2; shift ;;
    --build) build=$2; shift ;;
    --no-build) build_it=0 ;;
    --out) out=$2; shift ;;
    --top) top=$2; shift ;;
    *) echo "usage: $0 [--journal] [--jobs N] [--concurrency C] [--build DIR] [--no-build] [--out DIR] [--top N]" >&2
       exit 2 ;;
  esac
  shift
done

die() { echo "callgrind_broker: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install valgrind)"
if [[ $build_it -eq 1 ]]; then
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null || die "configure failed"
  fi
  grep -q "CMAKE_BUILD_TYPE:STRING=Release" "$build/CMakeCache.txt" || die "$build is not a release build"
  ninja -C "$build" -j2 paddock-broker paddock-worker paddock-load >/dev/null || die "build failed"
fi

[[ -n $out ]] || out=$(mktemp -d /tmp/callgrind-broker.XXXXXX)
mkdir -p "$out"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

mode=off
args=(--no-journal)
if [[ $journal -eq 1 ]]; then
  mode=on
  rm -f "$out/journal.db" "$out/journal.db-wal" "$out/journal.db-shm" "$out/journal.db.lock"
  args=(--journal "$out/journal.db")
fi
cg="$out/callgrind.broker-journal-$mode.out"
rm -f "$out/broker.ready" "$cg"
valgrind --tool=callgrind --callgrind-out-file="$cg" \
  "$build/broker/paddock-broker" --client-endpoint 'tcp://127.0.0.1:*' \
  --worker-endpoint 'tcp://127.0.0.1:*' --ready-file "$out/broker.ready" --log-level warn \
  "${args[@]}" >"$out/broker-$mode.log" 2>&1 &
broker_pid=$!
pids+=("$broker_pid")
for _ in $(seq 300); do [[ -s "$out/broker.ready" ]] && break; sleep 0.1; done
[[ -s "$out/broker.ready" ]] || die "broker did not start (log: $out/broker-$mode.log)"
endpoint() {
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$out/broker.ready" "$1"
}
"$build/worker/paddock-worker" --broker "$(endpoint worker)" --slots 64 --backend memory \
  --worker-id callgrind --log-level warn >"$out/worker-$mode.log" 2>&1 &
pids+=($!)
"$build/tools/paddock-load" -b "$(endpoint client)" -n "$jobs" -c "$concurrency" \
  --json-out "$out/load-$mode.json" -- true >/dev/null || die "paddock-load failed"
kill -TERM "$broker_pid"
wait "$broker_pid" || true
[[ -s $cg ]] || die "no callgrind output (log: $out/broker-$mode.log)"

# The readers below read to the end: one that stopped early would end callgrind_annotate with
# SIGPIPE, which pipefail turns into a silent exit.
total=$(callgrind_annotate "$cg" 2>/dev/null | awk '/PROGRAM TOTALS/ && !done { gsub(",", "", $1); print $1; done = 1 }')
[[ -n $total ]] || die "could not read the program total from $cg"
echo "journal $mode: $jobs jobs, $concurrency outstanding"
echo "broker instructions: $total"
echo "instructions per job: $((total / jobs))"
echo "top $top by inclusive share (start-up frames and unnamed addresses left out):"
callgrind_annotate --inclusive=yes "$cg" 2>/dev/null |
  perl -ne 'next unless /^\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(.*)$/;
    my ($pct, $fn) = ($2, $3);
    next if $fn =~ /PROGRAM TOTALS|\(below main\)|__libc_start|start_thread|\?\?\?:0x|\?\?\?:main |Broker::run\(\)|Loop::run\(/;
    $fn =~ s/^\?\?\?://; $fn =~ s/^\.\/\S*?:(?=\w)//; $fn =~ s/ \[\/.*\]$//;
    printf "  %5.1f%%  %s\n", $pct, substr($fn, 0, 140);' | head -n "$top" || true
echo "callgrind file: $cg"
