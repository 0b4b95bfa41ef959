#!/usr/bin/env bash
# CPU time per job of each process of the queue fabric: a broker (journal off, or on with
# --journal), one paddock-worker on the in-memory TEST DOUBLE (--slots 64) and paddock-load, in a
# closed loop of N jobs with C outstanding. Prints the jobs/s and, per process, the user + system
# CPU microseconds per job (from /proc/<pid>/stat around the load). On a busy shared machine the
# CPU per job moves far less than the jobs/s: it is the figure to compare between builds.
#
#   tools/bench/cpu_per_job.sh [--journal] [--jobs N] [--concurrency C] [--build DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build="$root/build-rel"
journal=0
jobs=200000
concurrency=2000
while [[ $# -gt 0 ]]; do
  case $1 in
    --journal) journal=1 ;;
    --jobs) jobs=$2; shift ;;
    --concurrency) concurrency=$2; shift ;;
    --build) build=$2; shift ;;
    *) echo "usage: $0 [--journal] [--jobs N] [--concurrency C] [--build DIR]" >&2; exit 2 ;;
  esac
  shift
done
die() { echo "cpu_per_job: $*" >&2; exit 1; }
tmp=$(mktemp -d /tmp/paddock-cpu.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
# cpu_us PID: user + system CPU time of a process so far, in microseconds.
cpu_us() {
  local ticks
  ticks=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
  echo $((ticks * 1000000 / $(getconf CLK_TCK)))
}
args=(--no-journal)
[[ $journal -eq 1 ]] && args=(--journal "$tmp/journal.db")
"$build/broker/paddock-broker" --client-endpoint 'tcp://127.0.0.1:*' --worker-endpoint 'tcp://127.0.0.1:*' \
  --ready-file "$tmp/ready" --log-level warn "${args[@]}" >"$tmp/broker.log" 2>&1 &
broker=$!
pids+=("$broker")
for _ in $(seq 100); do [[ -s "$tmp/ready" ]] && break; sleep 0.1; done
[[ -s "$tmp/ready" ]] || die "broker did not start"
endpoint() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$tmp/ready" "$1"; }
"$build/worker/paddock-worker" --broker "$(endpoint worker)" --slots 64 --backend memory \
  --worker-id cpu --log-level warn >"$tmp/worker.log" 2>&1 &
worker=$!
pids+=("$worker")
sleep 0.5
b0=$(cpu_us "$broker"); w0=$(cpu_us "$worker")
"$build/tools/paddock-load" -b "$(endpoint client)" -n "$jobs" -c "$concurrency" \
  --json-out "$tmp/load.json" -- true >/dev/null &
load=$!
# The load tool's CPU is read just before it exits: poll until it is a zombie-to-be.
l_cpu=0
while kill -0 "$load" 2>/dev/null; do
  l_cpu=$(cpu_us "$load" 2>/dev/null || echo "$l_cpu")
  sleep 0.05
done
wait "$load" || die "paddock-load failed"
b1=$(cpu_us "$broker"); w1=$(cpu_us "$worker")
python3 - "$tmp/load.json" "$jobs" "$((b1 - b0))" "$((w1 - w0))" "$l_cpu" "$journal" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
jobs, b, w, l, journal = int(sys.argv[2]), *map(int, sys.argv[3:6]), sys.argv[6] == "1"
print(f"journal {'on' if journal else 'off'}: {jobs} jobs, {j['throughput_jobs_per_s']:.0f} jobs/s; "
      f"CPU per job: broker {b / jobs:.1f} us, worker {w / jobs:.1f} us, load {l / jobs:.1f} us "
      f"(load's sampled up to 50 ms before its exit)")
PY
