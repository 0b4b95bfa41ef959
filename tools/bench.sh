#!/usr/bin/env bash
# Paddock's benchmark suite (issue 8): one command, figures printed and written as one JSON file.
#
#   tools/bench.sh [--quick] [--fabric-only] [--out FILE]
#
# (a) queue fabric: a broker and a worker on the in-memory TEST DOUBLE (it executes nothing), with
#     the journal off and on: throughput at saturation (closed loop, median of 3 runs) and latency
#     at half that rate (open loop, latencies from each job's scheduled send time), the CPU per job
#     of broker, worker and load tool; and the messaging floor under it: the same ZeroMQ messages
#     between three processes that do nothing else (paddock-bench-zmq-floor);
# (b) VM start: cold boot and snapshot restore of a jailed QEMU microVM, median and p99, ratio
#     (paddock-bench-vm);
# (c) end-to-end VM jobs through broker and worker with warm pools: `true` and a short computation,
#     latency percentiles and sustained jobs/s at 1, 2 and 4 outstanding (paddock-load against a
#     qemu worker with 2 slots), and the CPU each job cost: the broker's, the worker's own, and
#     that of the worker's descendants (jailers, QEMUs, iptables helpers), from /proc; a fresh
#     worker's first 4 jobs, sent while its template is being built; the python image's warm
#     `python3 -c 'print(1)'` one at a time, when $build/images/by-name/python exists
#     (tools/build-image.sh python --cache-dir $build/images);
# (d) memory per idle VM: PSS of the VMM of a cold VM and of live clones (paddock-bench-vm).
# The JSON's "targets" holds one stable key per figure issue 23 set a target for (null when this
# run did not measure it).
#
# Builds a release build in build-bench/. Runs as root (jails, network namespaces). Takes about
# 10 minutes (--quick: fewer runs, about 4). --fabric-only runs (a) alone: no guest image, no VMs,
# no root needed, about 2 minutes. Nothing here asserts: BENCHMARKS.md explains figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
quick=0
fabric_only=0
out="$root/bench-results.json"
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) quick=1; shift ;;
    --fabric-only) fabric_only=1; shift ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 64 ;;
  esac
done
# PADDOCK_BENCH_BUILD: an existing release build directory to use instead of build-bench/.
build="${PADDOCK_BENCH_BUILD:-$root/build-bench}"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/paddock-bench.XXXXXX")
pids=()
host_netns=""

cleanup() {
  local status=$?
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  [[ -n "$host_netns" ]] && ip netns delete "$host_netns" 2>/dev/null
  if [[ $status -ne 0 ]]; then
    for log in "$tmp"/*.log; do
      [[ -s "$log" ]] && { echo "--- last lines of $(basename "$log"):" >&2; tail -n 15 "$log" >&2; }
    done
  fi
  rm -rf "$tmp"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "bench: $*" >&2; exit 1; }
[[ $fabric_only -eq 1 || $(id -u) -eq 0 ]] || die "run as root (jails and network namespaces)"

[[ $fabric_only -eq 1 ]] || tools/install-deps.sh
echo "== building $build (release)"
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPADDOCK_TESTS=OFF \
    -DPADDOCK_SANITIZE=OFF >"$tmp/build.log" 2>&1 || die "cmake configure failed"
fi
grep -q "CMAKE_BUILD_TYPE:STRING=Release" "$build/CMakeCache.txt" || die "$build is not a release build"
targets=(paddock-broker paddock-worker paddock-load paddock-bench-zmq-floor)
[[ $fabric_only -eq 1 ]] || targets+=(paddock-bench-vm paddock-agent paddock-jailer)
ninja -C "$build" "${targets[@]}" >>"$tmp/build.log" 2>&1 || die "build failed"
[[ $fabric_only -eq 1 ]] || image=$(tools/build-guest-image.sh --agent "$build/agent/guest/paddock-agent" \
  --cache-dir "$build/images" 2>"$tmp/image.log" | tail -n 1) || die "guest image build failed"
load="$build/tools/paddock-load"

# start_broker NAME ARGS...: a broker on free loopback ports; sets client_ep and worker_ep.
start_broker() {
  local name=$1
  shift
  rm -f "$tmp/$name.ready"
  "$build/broker/paddock-broker" --client-endpoint 'tcp://127.0.0.1:*' \
    --worker-endpoint 'tcp://127.0.0.1:*' --ready-file "$tmp/$name.ready" --log-level warn "$@" \
    >"$tmp/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [[ -s "$tmp/$name.ready" ]] && break; sleep 0.1; done
  [[ -s "$tmp/$name.ready" ]] || die "broker $name did not start"
  client_ep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client"])' "$tmp/$name.ready")
  worker_ep=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["worker"])' "$tmp/$name.ready")
}

# stop_all: SIGTERM to every process started so far, and wait for them.
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# jq-free JSON field: json_get FILE a.b.c
json_get() {
  python3 -c 'import json,sys
v=json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v=v[k]
print(v)' "$1" "$2"
}

# ---- (a) queue fabric --------------------------------------------------------------------------
fabric_jobs=200000; fabric_runs=3; half_s=10
[[ $quick -eq 1 ]] && { fabric_jobs=50000; fabric_runs=1; half_s=5; }
for journal in off on; do
  echo "== (a) queue fabric, journal $journal: memory TEST DOUBLE worker, 64 slots"
  args=()
  if [[ $journal == on ]]; then args=(--journal "$tmp/fabric-journal.db"); else args=(--no-journal); fi
  start_broker "fabric-$journal" "${args[@]}"
  "$build/worker/paddock-worker" --broker "$worker_ep" --slots 64 --backend memory \
    --worker-id fabric --log-level warn >"$tmp/fabric-worker-$journal.log" 2>&1 &
  pids+=($!)
  fabric_broker=${pids[-2]} fabric_worker=${pids[-1]}
  for run in $(seq "$fabric_runs"); do
    c0="$(awk '{print $14+$15}' "/proc/$fabric_broker/stat") $(awk '{print $14+$15}' "/proc/$fabric_worker/stat")"
    "$load" -b "$client_ep" -n "$fabric_jobs" -c 2000 --json-out "$tmp/fabric-$journal-sat-$run.json" \
      -- true >/dev/null || die "fabric run failed"
    c1="$(awk '{print $14+$15}' "/proc/$fabric_broker/stat") $(awk '{print $14+$15}' "/proc/$fabric_worker/stat")"
    # CPU ticks of the broker and the worker over the run (the load tool's own is in its JSON).
    echo "$(getconf CLK_TCK) $c0 $c1" >"$tmp/fabric-$journal-cpu-$run.txt"
    printf '   saturation run %d: %.0f jobs/s\n' "$run" \
      "$(json_get "$tmp/fabric-$journal-sat-$run.json" throughput_jobs_per_s)"
  done
  sat=$(python3 -c 'import json,sys,statistics
print(statistics.median(json.load(open(f))["throughput_jobs_per_s"] for f in sys.argv[1:]))' \
    "$tmp"/fabric-$journal-sat-*.json)
  half=$(python3 -c "print(max(1.0, $sat / 2))")
  "$load" -b "$client_ep" --rate "$half" --duration "$half_s" \
    --json-out "$tmp/fabric-$journal-half.json" -- true >/dev/null || die "fabric half-rate run failed"
  printf '   at half rate (%.0f/s): p50 %.2f ms, p99 %.2f ms submit to result\n' "$half" \
    "$(python3 -c "print($(json_get "$tmp/fabric-$journal-half.json" latency_us.submit_to_result.p50)/1000)")" \
    "$(python3 -c "print($(json_get "$tmp/fabric-$journal-half.json" latency_us.submit_to_result.p99)/1000)")"
  stop_all
done

# The messaging floor: the same messages between three processes doing nothing else (ZeroMQ
# alone), one job per JOB and RESULT as Paddock sends them, and 64 per message.
echo "== (a) the fabric's messaging floor: paddock-bench-zmq-floor"
for batch in 1 64; do
  "$build/tools/paddock-bench-zmq-floor" -n "$fabric_jobs" -c 2000 --batch "$batch" \
    --json "$tmp/zmq-floor-$batch.json" | sed 's/^/   /' || die "messaging floor run failed"
done

if [[ $fabric_only -eq 0 ]]; then
  # ---- (b) VM start and (d) memory per idle VM ----------------------------------------------------
  echo "== (b) VM start and (d) memory of idle VMs: paddock-bench-vm (jailed QEMU)"
  vm_args=(--runs 5 --restore-runs 30 --warm-runs 20 --cold-e2e-runs 0 --network-runs 20 --idle-clones 8)
  [[ $quick -eq 1 ]] && vm_args=(--runs 2 --restore-runs 10 --warm-runs 10 --cold-e2e-runs 0 --network-runs 5 --idle-clones 4)
  "$build/tools/paddock-bench-vm" --image-dir "$image" --jail on "${vm_args[@]}" \
    --json "$tmp/vm.json" 2>"$tmp/bench-vm.log" | sed 's/^/   /'

  # ---- (c) end-to-end VM jobs with warm pools ---------------------------------------------------
  echo "== (c) end-to-end VM jobs: broker + qemu worker (2 slots, warm pools, jailed, networks on)"
  start_broker e2e
  host_netns="paddock-bench-$$"
  ip netns add "$host_netns"
  # The python image (tools/build-image.sh python --cache-dir $build/images) when it was built:
  # its warm job is measured too.
  python_image=""
  [[ -d "$build/images/by-name/python" ]] && python_image=$(readlink -f "$build/images/by-name/python")
  python_args=()
  [[ -n "$python_image" ]] && python_args=(--image "python=$python_image")
  "$build/worker/paddock-worker" --broker "$worker_ep" --slots 2 --worker-id bench-vm --backend qemu \
    --image-dir "$image" "${python_args[@]}" --run-dir "$tmp/vms" --snapshot-dir "$tmp/snapshots" \
    --net-host-netns "$host_netns" --warm on --warm-min 2 --warm-max 4 --log-level warn \
    >"$tmp/e2e-worker.log" 2>&1 &
  pids+=($!)
  # A fresh worker's first jobs: 4 at once while its template is being cold-booted and snapshotted
  # (the quick start's situation); then wait until a job runs warm.
  "$load" -b "$client_ep" -n 4 -c 4 --timeout-s 300 --json-out "$tmp/e2e-fresh.json" -- true >/dev/null ||
    die "the fresh worker's first jobs failed"
  for _ in $(seq 60); do
    "$load" -b "$client_ep" -n 1 -c 1 --timeout-s 120 --json-out "$tmp/e2e-probe.json" -- true >/dev/null ||
      die "probe job failed"
    [[ $(json_get "$tmp/e2e-probe.json" warm) -eq 1 ]] && break
    sleep 1
  done
  [[ $(json_get "$tmp/e2e-probe.json" warm) -eq 1 ]] || die "no job ran warm within a minute"
  sleep 2  # the pool refills
  e2e_jobs=100
  [[ $quick -eq 1 ]] && e2e_jobs=30
  # shellcheck disable=SC2016  # expanded by the guest's shell, not this one
  compute='i=0; s=0; while [ $i -lt 5000 ]; do s=$((s+i)); i=$((i+1)); done; echo $s'
  broker_pid=${pids[-2]} worker_pid=${pids[-1]}
  # CPU ticks of a process: its own (utime+stime) and its waited-for descendants' (cutime+cstime).
  cpu_of() { awk '{print $14+$15, $16+$17}' "/proc/$1/stat"; }
  # e2e NAME CONCURRENCY ARGV...: one paddock-load run, and the CPU it cost by process, as JSON.
  e2e() {
    local name=$1 c=$2
    shift 2
    local b0 w0 b1 w1 settled
    b0=$(cpu_of "$broker_pid"); w0=$(cpu_of "$worker_pid")
    "$load" -b "$client_ep" -n "$e2e_jobs" -c "$c" --timeout-s 120 --json-out "$tmp/e2e-$name-c$c.json" \
      -- "$@" >/dev/null
    # Teardowns end after the answers: wait until the worker's CPU settles (at most 10 s).
    for _ in $(seq 100); do
      settled=$(cpu_of "$worker_pid"); sleep 0.1
      [[ "$(cpu_of "$worker_pid")" == "$settled" ]] && break
    done
    b1=$(cpu_of "$broker_pid"); w1=$(cpu_of "$worker_pid")
    # shellcheck disable=SC2086  # each pair is two numbers
    printf '{"hz": %d, "broker": [%d, %d], "broker_end": [%d, %d], "worker": [%d, %d], "worker_end": [%d, %d]}\n' \
      "$(getconf CLK_TCK)" $b0 $b1 $w0 $w1 >"$tmp/e2e-$name-c$c.cpu.json"
  }
  # One at a time (latency), then 2 and 4 outstanding on 2 slots (sustained throughput).
  for c in 1 2 4; do e2e true "$c" true; done
  for c in 1 4; do e2e compute "$c" /bin/sh -c "$compute"; done
  if [[ -n "$python_image" ]]; then
    # The first python job builds the python pool's template (waited for); then one at a time.
    "$load" -b "$client_ep" -n 1 -c 1 --image python --timeout-s 300 -- python3 -c 'print(1)' >/dev/null ||
      die "python probe job failed"
    sleep 2  # the pool refills
    "$load" -b "$client_ep" -n "$((e2e_jobs / 5))" -c 1 --image python --timeout-s 120 \
      --json-out "$tmp/e2e-python-c1.json" -- python3 -c 'print(1)' >/dev/null
  fi
  stop_all
  ip netns delete "$host_netns"
  host_netns=""
fi

# ---- one JSON file, and a summary -----------------------------------------------------------------
python3 - "$tmp" "$out" "$quick" <<'PY'
import json, os, platform, statistics, sys, time
tmp, out, quick = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
def load(name): return json.load(open(os.path.join(tmp, name)))
def lat(j, which="submit_to_result"):
    l = j["latency_us"][which]
    return {k: l[k] / 1000 for k in ("p50", "p90", "p99", "p999", "max")}
res = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "quick": quick,
       "host": {"cores": os.cpu_count(), "kernel": platform.release()}, "fabric": {}, "vm_jobs": {}}
for journal in ("off", "on"):
    sat = sorted((load(f) for f in os.listdir(tmp) if f.startswith(f"fabric-{journal}-sat-")),
                 key=lambda j: j["throughput_jobs_per_s"])
    half = load(f"fabric-{journal}-half.json")
    res["fabric"][f"journal_{journal}"] = {
        "saturation_jobs_per_s_runs": [j["throughput_jobs_per_s"] for j in sat],
        "saturation_jobs_per_s_median": statistics.median(j["throughput_jobs_per_s"] for j in sat),
        "saturation_latency_ms": lat(sat[len(sat) // 2]),
        "half_rate_jobs_per_s": half["rate"],
        "half_rate_latency_ms": lat(half),
        "half_rate_accepted_ms": lat(half, "submit_to_accepted"),
        "half_rate_errors": half["errors"], "half_rate_jobs": half["jobs"]}
    # CPU microseconds per job by process, median over the saturation runs.
    per = {"broker": [], "worker": [], "load": []}
    for f in os.listdir(tmp):
        if not f.startswith(f"fabric-{journal}-cpu-"): continue
        hz, b0, w0, b1, w1 = (float(x) for x in open(os.path.join(tmp, f)).read().split())
        j = load(f.replace("-cpu-", "-sat-").replace(".txt", ".json"))
        per["broker"].append((b1 - b0) / hz * 1e6 / j["jobs"])
        per["worker"].append((w1 - w0) / hz * 1e6 / j["jobs"])
        if "cpu_s" in j: per["load"].append(j["cpu_s"] * 1e6 / j["jobs"])
    res["fabric"][f"journal_{journal}"]["cpu_us_per_job"] = {
        k: statistics.median(v) for k, v in per.items() if v}
for batch in (1, 64):
    if os.path.exists(os.path.join(tmp, f"zmq-floor-{batch}.json")):
        res["fabric"][f"messaging_floor_batch_{batch}"] = load(f"zmq-floor-{batch}.json")
if os.path.exists(os.path.join(tmp, "vm.json")):  # not with --fabric-only
    res["vm"] = load("vm.json")
for name in ("true-c1", "true-c2", "true-c4", "compute-c1", "compute-c4", "python-c1", "fresh"):
    if not os.path.exists(os.path.join(tmp, f"e2e-{name}.json")):
        continue
    j = load(f"e2e-{name}.json")
    res["vm_jobs"][name] = {"jobs": j["jobs"], "ok": j["ok"], "errors": j["errors"],
                            "warm": j["warm"], "cold": j["cold"],
                            "jobs_per_s": j["throughput_jobs_per_s"], "latency_ms": lat(j)}
    cpu_file = os.path.join(tmp, f"e2e-{name}.cpu.json")
    if os.path.exists(cpu_file):
        c = json.load(open(cpu_file))
        per_job = lambda a, b: (b - a) * 1000 / c["hz"] / max(1, j["jobs"])
        # ms of CPU per job: the broker; the worker itself; its descendants (jailers and the QEMUs
        # they run, ip/iptables helpers: waited-for children's time, counted when they exit).
        res["vm_jobs"][name]["cpu_ms_per_job"] = {
            "broker": per_job(c["broker"][0], c["broker_end"][0]),
            "worker": per_job(c["worker"][0], c["worker_end"][0]),
            "vmm_and_helpers": per_job(c["worker"][1], c["worker_end"][1])}
# Issue 23's targets, one stable key each (null: not measured in this run, e.g. no python image).
def get(*path):
    x = res
    for k in path:
        if not isinstance(x, dict) or k not in x: return None
        x = x[k]
    return x
res["targets"] = {
    "vm_jobs_per_s_true_c4": get("vm_jobs", "true-c4", "jobs_per_s"),
    "warm_true_c1_ms": get("vm_jobs", "true-c1", "latency_ms"),
    "restore_spawn_to_agent_ms": get("vm", "restore", "median_ms"),
    "python_warm_c1_ms": get("vm_jobs", "python-c1", "latency_ms"),
    "idle_clone_pss_mib": get("vm", "idle_memory", "clone_pss_median_mib"),
    "fabric_journal_on_jobs_per_s": get("fabric", "journal_on", "saturation_jobs_per_s_median"),
    "fabric_journal_off_jobs_per_s": get("fabric", "journal_off", "saturation_jobs_per_s_median"),
    "fabric_messaging_floor_jobs_per_s": get("fabric", "messaging_floor_batch_1", "jobs_per_s"),
    "fresh_worker_first_jobs": {"ms": get("vm_jobs", "fresh", "latency_ms"),
                                "warm": get("vm_jobs", "fresh", "warm"),
                                "jobs": get("vm_jobs", "fresh", "jobs")},
    "cpu_ms_per_job_true_c4": get("vm_jobs", "true-c4", "cpu_ms_per_job"),
}
json.dump(res, open(out, "w"), indent=2)
f, v, e = res["fabric"], res.get("vm"), res["vm_jobs"]
print("\n== summary (one run; figures in %s)" % out)
for journal in ("off", "on"):
    x = f[f"journal_{journal}"]
    print(f"fabric, journal {journal:3}: {x['saturation_jobs_per_s_median']:9.0f} jobs/s at saturation; "
          f"at {x['half_rate_jobs_per_s']:.0f}/s p50 {x['half_rate_latency_ms']['p50']:.2f} ms, "
          f"p99 {x['half_rate_latency_ms']['p99']:.2f} ms")
    if x.get("cpu_us_per_job"):
        print("  CPU us/job: " + ", ".join(f"{k} {v:.1f}" for k, v in x["cpu_us_per_job"].items()))
for batch in (1, 64):
    m = f.get(f"messaging_floor_batch_{batch}")
    if m: print(f"messaging floor, {batch} job(s) per JOB/RESULT: {m['jobs_per_s']:9.0f} jobs/s; CPU us/job: "
                + ", ".join(f"{k} {v:.1f}" for k, v in m["cpu_us_per_job"].items()))
if v: print(f"VM start: cold boot median {v['cold_boot']['median_ms']:.0f} ms (p99 {v['cold_boot']['p99_ms']:.0f}), "
      f"restore median {v['restore']['median_ms']:.1f} ms (p99 {v['restore']['p99_ms']:.1f}), "
      f"ratio {v['cold_restore_ratio']:.0f}x")
if v and "idle_memory" in v:
    m = v["idle_memory"]
    print(f"idle VM PSS: cold {m['cold_vm_pss_mib']:.1f} MiB, clone median {m['clone_pss_median_mib']:.1f} MiB "
          f"({m['clones']} clones), template files {m['template_files_mib']:.1f} MiB")
    if m.get("clone_pss_by_mapping_mib"):
        print("  a clone's PSS by mapping: " + ", ".join(
            f"{k} {mib:.1f}" for k, mib in m["clone_pss_by_mapping_mib"]) + " MiB")
for name, x in e.items():
    cpu = x.get("cpu_ms_per_job")
    print(f"VM jobs {name:10}: {x['jobs_per_s']:6.2f} jobs/s, p50 {x['latency_ms']['p50']:7.1f} ms, "
          f"p90 {x['latency_ms']['p90']:7.1f} ms, p99 {x['latency_ms']['p99']:7.1f} ms "
          f"({x['warm']} warm, {x['cold']} cold, {x['errors']} errors)" +
          (f"; CPU ms/job: broker {cpu['broker']:.1f}, worker {cpu['worker']:.1f}, "
           f"QEMU+jailer+helpers {cpu['vmm_and_helpers']:.1f}" if cpu else ""))
PY
