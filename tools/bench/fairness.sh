#!/usr/bin/env bash
# Issue 24's fairness benchmark: while tenant alice keeps 100,000 jobs queued, how long do tenant
# bob's jobs take, submit to result, against bob running alone? One broker with CURVE (alice and
# bob are the names of their keys on its allowlist: two tenants), one worker, paddock-load as
# each tenant (closed loop). Three cases, each solo then contended, in one run:
#   memory-20ms  the in-memory TEST DOUBLE worker (8 slots), jobs `sleep 20` (20 ms each): the
#                slots are what is scarce, as with real jobs;
#   memory-true  the same worker, jobs `true` (nothing to run): the fabric itself is what is
#                scarce (alice's loop keeps the broker and worker busy on this machine's cores);
#   vm           (with --vm, root) a QEMU worker (2 slots, warm pools, jailed, networks on), jobs
#                `true` in real VMs.
# Prints a table and writes JSON (bob's submit->result percentiles, solo and contended, and their
# ratio; alice's queued jobs when bob's run started).
#
# Usage: tools/bench/fairness.sh [--vm] [--vm-only] [--tenants FILE] [--bob-jobs N]
#                                 [--alice-queued N] [--out FILE]
#   --vm-only: the VM case alone. --tenants: the broker's tenants file (e.g. alice's max_running,
#   to measure what holding a slot back for other tenants buys).
# Needs a release build: PADDOCK_BUILD_DIR (default build-rel) with paddock-broker,
# paddock-worker, paddock-load and the paddock CLI (for keys); --vm also paddock-agent and
# paddock-jailer, and root.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
build=${PADDOCK_BUILD_DIR:-$root/build-rel}
vm=0
memory=1
tenants=
bob_jobs=200
alice_queued=100000
out=$root/benchmarks/results/results-fairness-$(date -u +%Y-%m-%d).json
while [ $# -gt 0 ]; do
  case "$1" in
    --vm) vm=1; shift ;;
    --vm-only) vm=1; memory=0; shift ;;
    --tenants) tenants=$(realpath "$2"); shift 2 ;;
    --bob-jobs) bob_jobs=$2; shift 2 ;;
    --alice-queued) alice_queued=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--vm] [--vm-only] [--tenants FILE] [--bob-jobs N] [--alice-queued N] [--out FILE]" >&2; exit 64 ;;
  esac
done
for b in broker/paddock-broker worker/paddock-worker tools/paddock-load tools/paddock; do
  [ -x "$build/$b" ] || { echo "$0: $build/$b missing: build a release first" >&2; exit 66; }
done
if [ $vm -eq 1 ]; then
  [ "$(id -u)" = 0 ] || { echo "$0: --vm needs root (jails, network namespaces)" >&2; exit 77; }
fi
load=$build/tools/paddock-load

tmp=$(mktemp -d /tmp/paddock-bench-fair-XXXXXX)
pids=()
host_netns=""
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$host_netns" ]; then ip netns delete "$host_netns" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "fairness: $*" >&2; exit 1; }

# Keys: the broker, the worker, and one key per tenant; the allowlists name them.
for name in broker w1 alice bob; do
  "$build/tools/paddock" keys generate --out "$tmp" --name "$name" >/dev/null 2>&1
done
cat "$tmp/alice.pub" "$tmp/bob.pub" >"$tmp/clients.allow"
cp "$tmp/w1.pub" "$tmp/workers.allow"
as_tenant() { echo --broker-public-key "$tmp/broker.pub" --curve-key "$tmp/$1.key"; }

json_get() {
  python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}
# A tenant's queued jobs, from the broker's /metrics (a broker older than tenants: all of its
# queued jobs, which are alice's there).
queued_of() {
  python3 - "$metrics" "$1" <<'EOF'
import sys, urllib.request
body = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5).read().decode()
lines = body.splitlines()
want = 'paddock_broker_tenant_jobs{tenant="%s",state="queued"} ' % sys.argv[2]
if not any(l.startswith("paddock_broker_tenant_jobs{") for l in lines):
    want = 'paddock_broker_queue_depth{priority="0"} '
print(next((int(float(l[len(want):])) for l in lines if l.startswith(want)), 0))
EOF
}

# start NAME WORKER_ARGS...: a broker (CURVE, journal) and one worker.
start() {
  local name=$1
  shift
  rm -f "$tmp/$name.ready"
  local policy=()
  [ -n "$tenants" ] && policy=(--tenants "$tenants")
  "$build/broker/paddock-broker" "${policy[@]}" --client-endpoint 'tcp://127.0.0.1:*' \
    --worker-endpoint 'tcp://127.0.0.1:*' --ready-file "$tmp/$name.ready" --log-level warn \
    --curve-secret-key "$tmp/broker.key" --client-allow "$tmp/clients.allow" \
    --worker-allow "$tmp/workers.allow" --journal "$tmp/$name-journal.db" \
    --metrics-address 127.0.0.1:0 >"$tmp/$name-broker.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [[ -s "$tmp/$name.ready" ]] && break; sleep 0.1; done
  [[ -s "$tmp/$name.ready" ]] || die "broker $name did not start"
  client_ep=$(json_get "$tmp/$name.ready" client)
  local worker_ep
  worker_ep=$(json_get "$tmp/$name.ready" worker)
  metrics=$(json_get "$tmp/$name.ready" metrics)
  "$build/worker/paddock-worker" --broker "$worker_ep" --broker-public-key "$tmp/broker.pub" \
    --curve-key "$tmp/w1.key" --worker-id "fair-$name" --log-level warn "$@" \
    >"$tmp/$name-worker.log" 2>&1 &
  pids+=($!)
}
stop() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}

results=()
# measure NAME ARGV...: bob alone, then bob while alice keeps $alice_queued jobs outstanding.
measure() {
  local name=$1
  shift
  local timeout=120
  # shellcheck disable=SC2046  # as_tenant's words are flags
  "$load" -b "$client_ep" $(as_tenant bob) -n "$bob_jobs" -c 1 --timeout-s "$timeout" \
    --json-out "$tmp/$name-solo.json" -- "$@" >/dev/null || die "$name: bob's solo run failed"
  # shellcheck disable=SC2046
  "$load" -b "$client_ep" $(as_tenant alice) -n 1000000000 -c "$alice_queued" --timeout-s 600 \
    -- "$@" >"$tmp/$name-alice.log" 2>&1 &
  local alice=$!
  local queued=0
  for _ in $(seq 600); do
    queued=$(queued_of alice)
    [[ $queued -ge $(( alice_queued * 99 / 100 )) ]] && break
    sleep 0.2
  done
  [[ $queued -ge $(( alice_queued * 99 / 100 )) ]] || die "$name: alice's jobs did not reach $alice_queued queued ($queued)"
  # shellcheck disable=SC2046
  "$load" -b "$client_ep" $(as_tenant bob) -n "$bob_jobs" -c 1 --timeout-s "$timeout" \
    --json-out "$tmp/$name-contended.json" -- "$@" >/dev/null || die "$name: bob's contended run failed"
  local after
  after=$(queued_of alice)
  kill -TERM "$alice" 2>/dev/null || true
  wait "$alice" 2>/dev/null || true
  results+=("$(python3 - "$name" "$tmp/$name-solo.json" "$tmp/$name-contended.json" "$queued" "$after" <<'EOF'
import json, sys
name, solo, cont, q0, q1 = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), int(sys.argv[4]), int(sys.argv[5])
def pct(j): return {k: j["latency_us"]["submit_to_result"][k] / 1000 for k in ("p50", "p90", "p99")}
s, c = pct(solo), pct(cont)
print(json.dumps({"case": name, "bob_jobs": solo["answered"], "bob_solo_ms": s, "bob_contended_ms": c,
                  "p50_ratio": c["p50"] / s["p50"] if s["p50"] else None,
                  "alice_queued_at_start": q0, "alice_queued_at_end": q1}))
EOF
)")
}

# Each case on a broker and worker of its own: alice's jobs still queued when her load tool
# stops are not bob's next "solo".
if [ $memory -eq 1 ]; then
  echo "== memory TEST DOUBLE worker, 8 slots"
  start mem-20ms --backend memory --slots 8
  measure memory-20ms sleep 20
  stop
  start mem-true --backend memory --slots 8
  measure memory-true true
  stop
fi

if [ $vm -eq 1 ]; then
  echo "== QEMU worker, 2 slots, warm pools"
  image=$(tools/build-guest-image.sh --agent "$build/agent/guest/paddock-agent" \
    --cache-dir "$build/images" 2>"$tmp/image.log" | tail -n 1) || die "guest image build failed"
  host_netns="paddock-bench-fair-$$"
  ip netns add "$host_netns"
  start vm --backend qemu --slots 2 --image-dir "$image" --run-dir "$tmp/vms" \
    --snapshot-dir "$tmp/snapshots" --net-host-netns "$host_netns" --warm on --warm-min 2 --warm-max 4
  # The template is built and the pool filled before anything is timed.
  for _ in $(seq 60); do
    # shellcheck disable=SC2046
    "$load" -b "$client_ep" $(as_tenant bob) -n 1 -c 1 --timeout-s 300 \
      --json-out "$tmp/vm-probe.json" -- true >/dev/null || die "probe job failed"
    [[ $(json_get "$tmp/vm-probe.json" warm) -eq 1 ]] && break
    sleep 1
  done
  sleep 2
  bob_jobs_all=$bob_jobs
  bob_jobs=$(( bob_jobs < 20 ? bob_jobs : 20 ))
  measure vm true
  bob_jobs=$bob_jobs_all
  stop
fi

mkdir -p "$(dirname "$out")"
TENANTS_FILE=$tenants python3 - "$out" "$(git -C "$build" rev-parse --short HEAD 2>/dev/null || git rev-parse --short HEAD)" "${results[@]}" <<'EOF'
import json, os, sys, datetime
out, commit, rows = sys.argv[1], sys.argv[2], [json.loads(r) for r in sys.argv[3:]]
policy = os.environ.get("TENANTS_FILE")
json.dump({"benchmark": "fairness", "commit": commit,
           "tenants_file": open(policy).read() if policy else None,
           "date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
           "cases": rows}, open(out, "w"), indent=1)
print("%-12s %6s  %-26s %-26s %7s %9s" % ("case", "jobs", "bob solo p50/p90/p99 ms", "bob contended p50/p90/p99", "ratio", "alice q"))
for r in rows:
    s, c = r["bob_solo_ms"], r["bob_contended_ms"]
    print("%-12s %6d  %-26s %-26s %7.2f %9d" % (r["case"], r["bob_jobs"],
          "%.1f / %.1f / %.1f" % (s["p50"], s["p90"], s["p99"]),
          "%.1f / %.1f / %.1f" % (c["p50"], c["p90"], c["p99"]), r["p50_ratio"] or 0,
          r["alice_queued_at_start"]))
print("written:", out)
EOF
