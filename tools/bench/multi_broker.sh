#!/usr/bin/env bash
# Issue 11's benchmark: jobs/s of the queue fabric with the embedded store (one broker, its SQLite
# journal) and with the shared PostgreSQL queue (1, 2 and 3 brokers), for 1, 2, 4 and 8 worker
# hosts, in one run. Hosts are network namespaces joined to the brokers' namespace over veth (as
# tests/integration/netns_hosts.cc makes them); workers run the in-memory TEST DOUBLE (it executes
# nothing), so this measures brokers, store, workers and wire. A PostgreSQL server of the
# script's own (initdb in a temporary directory, as the postgres user, Unix socket), removed at the
# end. Every process shares this machine's cores: more brokers or hosts add no CPU here.
#
# Usage (root): tools/bench/multi_broker.sh [--jobs N] [--out FILE] [--only LIST] [--tenants FILE]
#   --only: the configurations to run, as STORE:BROKERS:HOSTS[,…] (e.g. postgresql:2:2); all by
#   default. --tenants: a tenants file for every broker (without CURVE every job is tenant
#   'local's: a [tenants.local] table with max_queued or max_running measures the global limits'
#   cost on the shared queue).
# Needs a release build: PADDOCK_BUILD_DIR (default build-rel) with paddock-broker,
# paddock-worker and paddock-load.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
build=${PADDOCK_BUILD_DIR:-$root/build-rel}
jobs=20000
only=
tenants=
out=$root/benchmarks/results/results-multi-broker-$(date -u +%Y-%m-%d).json
while [ $# -gt 0 ]; do
  case "$1" in
    --jobs) jobs=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --tenants) tenants=$2; shift 2 ;;
    *) echo "usage: $0 [--jobs N] [--out FILE] [--only LIST] [--tenants FILE]" >&2; exit 64 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "$0: needs root (network namespaces)" >&2; exit 77; }
for b in broker/paddock-broker worker/paddock-worker tools/paddock-load; do
  [ -x "$build/$b" ] || { echo "$0: $build/$b missing: build a release first" >&2; exit 66; }
done
pgbin=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "$0: no PostgreSQL server: apt install postgresql" >&2; exit 69; }

tmp=$(mktemp -d /tmp/paddock-bench-mb-XXXXXX)
chown postgres: "$tmp"
prefix=pdkb$$
hub=$prefix-hub
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$tmp/data" -m immediate -w stop >/dev/null 2>&1 || true
  for n in 1 2 3 4 5 6 7 8; do ip netns delete "$prefix-h$n" 2>/dev/null || true; done
  ip netns delete "$hub" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

# PostgreSQL: defaults but for a small shared_buffers; fsync stays on (a durable queue).
port=$(( 20000 + $$ % 20000 ))
runuser -u postgres -- "$pgbin/initdb" -D "$tmp/data" -U paddock -A trust -E UTF8 --no-sync \
  --no-instructions >"$tmp/initdb.log" 2>&1
runuser -u postgres -- "$pgbin/pg_ctl" -D "$tmp/data" -l "$tmp/pg.log" -w \
  -o "-c listen_addresses='' -p $port -k $tmp -c max_connections=50" start >/dev/null
store="postgresql://paddock@/postgres?host=$tmp&port=$port"
psql_() { psql -X -q -A -t "$store" -c "$1"; }

ip netns add "$hub"
ip -n "$hub" link set lo up
for n in 1 2 3 4 5 6 7 8; do
  ns=$prefix-h$n
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$hub" link add "${prefix}n$n" type veth peer name "${prefix}h$n" netns "$ns"
  ip -n "$hub" addr add "10.77.$n.1/30" dev "${prefix}n$n"
  ip -n "$hub" link set "${prefix}n$n" up
  ip -n "$ns" link set "${prefix}h$n" name eth0
  ip -n "$ns" addr add "10.77.$n.2/30" dev eth0
  ip -n "$ns" link set eth0 up
done

wait_for() {  # file text timeout_s
  local deadline=$(( $(date +%s) + $3 ))
  until grep -q "$2" "$1" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timeout waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1; }
    sleep 0.05
  done
}

# One configuration: store (embedded|postgresql), brokers, hosts. Prints jobs/s.
run_config() {
  local kind=$1 nb=$2 nh=$3 run=$tmp/run-$1-$2-$3
  mkdir -p "$run"
  pids=()
  if [ "$kind" = postgresql ]; then psql_ "TRUNCATE paddock_jobs; DELETE FROM paddock_brokers" 2>/dev/null || true; fi
  local clients=() workers_ep=()
  for b in $(seq 1 "$nb"); do
    local store_args=(--journal "$run/journal-$b.db")
    [ "$kind" = postgresql ] && store_args=(--store "$store" --broker-name "b$b")
    [ -n "$tenants" ] && store_args+=(--tenants "$tenants")
    ip netns exec "$hub" "$build/broker/paddock-broker" --client-endpoint 'tcp://127.0.0.1:*' \
      --worker-endpoint 'tcp://0.0.0.0:*' --allow-plaintext --ready-file "$run/b$b.json" \
      --log-level warn "${store_args[@]}" 2>"$run/b$b.log" &
    pids+=($!)
    wait_for "$run/b$b.json" worker 20
    clients+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client"])' "$run/b$b.json")")
    workers_ep+=("$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["worker"].rsplit(":",1)[1])' "$run/b$b.json")")
  done
  for h in $(seq 1 "$nh"); do
    local args=()
    for p in "${workers_ep[@]}"; do args+=(--broker "tcp://10.77.$h.1:$p"); done
    ip netns exec "$prefix-h$h" "$build/worker/paddock-worker" "${args[@]}" --worker-id "host$h" \
      --slots $(( 32 * nb )) --backend memory --log-level warn 2>"$run/w$h.log" &
    pids+=($!)
  done
  sleep 1.5  # workers connect and say READY
  local per=$(( jobs / nb )) lpids=() t0 t1
  t0=$(date +%s.%N)
  for b in $(seq 1 "$nb"); do
    ip netns exec "$hub" "$build/tools/paddock-load" -b "${clients[$((b-1))]}" -n "$per" -c 500 \
      --json --json-out "$run/load-$b.json" -- true >/dev/null 2>"$run/load-$b.err" &
    lpids+=($!)
  done
  for p in "${lpids[@]}"; do wait "$p"; done
  t1=$(date +%s.%N)
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  python3 - "$run" "$nb" "$per" "$t0" "$t1" <<'EOF'
import json, sys
run, nb, per, t0, t1 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
answered = ok = dup = 0
p50 = []
for b in range(1, nb + 1):
    j = json.load(open(f"{run}/load-{b}.json"))
    answered += j["answered"]; ok += j["ok"]; dup += j["duplicate_answers"]
    p50.append(j["latency_us"]["submit_to_result"]["p50"] / 1000)
print(json.dumps({"jobs": per * nb, "answered": answered, "ok": ok, "duplicates": dup,
                  "wall_s": round(t1 - t0, 3), "jobs_per_s": round(answered / (t1 - t0), 1),
                  "p50_ms_per_load": [round(x, 2) for x in p50]}))
EOF
}

echo "== multi-broker fabric: $jobs jobs per configuration, 'true' on the in-memory test double"
results=()
for kind in embedded postgresql; do
  for nb in 1 2 3; do
    [ "$kind" = embedded ] && [ "$nb" -gt 1 ] && continue  # one broker per journal
    for nh in 1 2 4 8; do
      if [ -n "$only" ] && [[ ",$only," != *",$kind:$nb:$nh,"* ]]; then continue; fi
      r=$(run_config "$kind" "$nb" "$nh")
      echo "$kind brokers=$nb hosts=$nh: $r"
      results+=("{\"store\":\"$kind\",\"brokers\":$nb,\"hosts\":$nh,\"result\":$r}")
    done
  done
done
{
  echo "{\"date\":\"$(date -u +%FT%TZ)\",\"machine\":\"$(nproc) cores, $(uname -r)\",\"jobs_per_config\":$jobs,"
  echo "\"postgresql\":\"$("$pgbin/postgres" --version)\",\"runs\":["
  (IFS=,; echo "${results[*]}")
  echo "]}"
} >"$out"
echo "written: $out"
