#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of tests/fuzz/ against the wire codec (schemas/src) and the
# guest agent protocol codec (runtime/src/agent/protocol.cc).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET]      (default 30)
#
# Targets are compiled with clang++-14 -fsanitize=fuzzer,address,undefined straight from
# schemas/src/*.cc and runtime/src/agent/protocol.cc into $PADDOCK_FUZZ_BUILD_DIR (default:
# <repo>/build-fuzz), seeded from schemas/vectors/*.msgpack (wrapped in frames as each target
# expects) and, for the agent, from requests and replies written here. The working corpus stays
# in the build directory, so it grows from run to run and never lands in the repository.
# Exits non-zero if any target crashes (the reproducer is in <build dir>/artifacts/), and prints
# each target's executions and coverage.
set -euo pipefail

SECONDS_PER_TARGET="${1:-30}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [[ "$SECONDS_PER_TARGET" -lt 1 ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET]" >&2
  exit 2
fi
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PADDOCK_FUZZ_BUILD_DIR:-$SRC/build-fuzz}"
CXX="${PADDOCK_FUZZ_CXX:-clang++-14}"
PYTHON=/usr/bin/python3
TARGETS=(fuzz_client_frames fuzz_worker_frames fuzz_job_dispatch fuzz_agent_frames)

command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found" >&2; exit 2; }
mkdir -p "$OUT"/{obj,seeds,corpus,artifacts,logs}

# ---- build ----------------------------------------------------------------------------------
CXXFLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
          -fno-sanitize-recover=all -DMSGPACK_NO_BOOST
          -I"$SRC/schemas/include" -I"$SRC/schemas/src" -I"$SRC/runtime/src" -I"$SRC/tests/fuzz")
objs=()
for src in "$SRC"/schemas/src/*.cc "$SRC"/runtime/src/agent/protocol.cc; do
  obj="$OUT/obj/$(basename "${src%.cc}").o"
  # The library objects must not bring a main(): -fsanitize=fuzzer-no-link for them.
  if [[ ! -f "$obj" || "$src" -nt "$obj" || "$0" -nt "$obj" ]] ||
     [[ -n "$(find "$SRC/schemas/include" "$SRC/schemas/src" "$SRC/runtime/src/agent" -newer "$obj" -name '*.h' | head -1)" ]]; then
    "$CXX" "${CXXFLAGS[@]/-fsanitize=fuzzer,address,undefined/-fsanitize=fuzzer-no-link,address,undefined}" \
      -c "$src" -o "$obj"
  fi
  objs+=("$obj")
done
for t in "${TARGETS[@]}"; do
  echo "== build $t"
  "$CXX" "${CXXFLAGS[@]}" "$SRC/tests/fuzz/$t.cc" "${objs[@]}" -o "$OUT/$t"
done

# ---- seeds and dictionary -------------------------------------------------------------------
"$PYTHON" - "$SRC/schemas/vectors" "$OUT/seeds" "$OUT/msgpack.dict" <<'PY'
import json, os, struct, sys

import msgpack

vectors, seeds, dict_path = sys.argv[1:4]
manifest = json.load(open(os.path.join(vectors, "manifest.json")))

def frames(*parts):
    return b"".join(struct.pack("<H", min(len(p), 0xFFFF)) + p for p in parts)

client = {"JobRequest": [0x01], "JobRef": [0x02, 0x03]}
worker = {"Ready": [0x0A], "Credit": [0x0B], "JobResult": [0x07], "JobError": [0x08]}
out = {"fuzz_client_frames": [frames(b"PDK1", b"\x04"), frames(b"PDK1", b"\x04", b"\x80")],
       "fuzz_worker_frames": [frames(b"PDK1", b"\x0c"), frames(b"PDK1", b"\x0f")],
       "fuzz_job_dispatch": []}
for e in manifest:
    body = open(os.path.join(vectors, e["file"]), "rb").read()
    for cmd in client.get(e["type"], []):
        out["fuzz_client_frames"].append(frames(b"PDK1", bytes([cmd]), body))
    for cmd in worker.get(e["type"], []):
        out["fuzz_worker_frames"].append(frames(b"PDK1", bytes([cmd]), body))
    if e["type"] in ("JobDispatch", "JobRequest"):
        out["fuzz_job_dispatch"].append(body)
# A SUBMIT of several bodies.
reqs = [open(os.path.join(vectors, e["file"]), "rb").read() for e in manifest
        if e["type"] == "JobRequest" and e["valid"]]
out["fuzz_client_frames"].append(frames(b"PDK1", b"\x01", *reqs))

# The guest agent channel: 4-byte big-endian length, then one msgpack map.
def agent(*maps):
    return b"".join(struct.pack(">I", len(b)) + b for b in (msgpack.packb(m) for m in maps))

exec_req = {"v": 1, "id": 2, "op": "exec", "argv": ["sh", "-c", "echo hi"], "env": {"A": "1"},
            "cwd": "/work", "stdin": b"in", "files": [{"path": "a/b", "mode": 0o644, "data": b"x"}],
            "files_out": ["out.txt"], "timeout_ms": 1000, "output_cap": 64, "files_out_cap": 64}
result = {"v": 1, "id": 2, "ok": True, "op": "result", "exit_code": 0, "signal": 0,
          "stdout": b"hi\n", "stderr": b"", "stdout_truncated": False, "stderr_truncated": False,
          "timed_out": False, "files": [{"path": "out.txt", "data": b"o", "truncated": False}],
          "cpu_us": 10, "peak_memory_kib": 1000, "exec_us": 20}
out["fuzz_agent_frames"] = [
    agent({"v": 1, "id": 1, "op": "ping"}),
    agent(exec_req),
    agent({"v": 1, "id": 3, "op": "exec", "script": "exit 3"}, {"v": 1, "id": 4, "op": "shutdown"}),
    agent({"v": 1, "id": 1, "ok": True, "op": "pong", "agent_version": "0.1.0"}),
    agent(result),
    agent({"v": 1, "id": 0, "ok": False, "error": "body: truncated msgpack"},
          {"v": 1, "id": 4, "ok": True, "op": "shutdown"}),
    b"\x00\x00\x00\x00" + agent({"v": 1, "id": 1, "op": "ping"}),
    agent({"v": 1, "id": 5, "op": "refresh", "entropy": bytes(range(64)),
           "unix_time_ns": 1700000000123456789, "hostname": "clone-0042"},
          {"v": 1, "id": 5, "ok": True, "op": "refreshed",
           "boot_id": "0a1b2c3d-0000-4000-8000-0123456789ab", "hostname": "clone-0042",
           "applied": True}),
]
for target, items in out.items():
    d = os.path.join(seeds, target)
    os.makedirs(d, exist_ok=True)
    for name in os.listdir(d):
        os.remove(os.path.join(d, name))
    for i, data in enumerate(items):
        with open(os.path.join(d, f"seed-{i:03d}"), "wb") as f:
            f.write(data)

keys = ["job_id", "image", "argv", "env", "stdin", "files", "files_out", "vcpus", "mem_mib",
        "timeout_ms", "output_cap", "egress", "priority", "deadline_ms", "tags", "path", "mode",
        "data", "cidr", "protocol", "ports", "first", "last", "exit_code", "signal", "stdout",
        "stderr", "stdout_truncated", "stderr_truncated", "timed_out", "truncated", "timings",
        "usage", "queued_us", "start_us", "exec_us", "teardown_us", "total_us", "cpu_us",
        "peak_memory_kib", "bytes_in", "bytes_out", "packets_in", "packets_out",
        "egress_blocked", "worker_id", "attempt", "warm", "backend", "code", "variant",
        "message", "vm_id", "snapshot_id", "from", "to", "retryable", "request", "slots",
        "capabilities", "credits", "job_ids", "tcp", "udp", "icmp", "any", "PDK1", "..",
        "10.0.0.0/8", "1.2.3.4", "v", "id", "op", "ping", "exec", "shutdown", "script", "cwd",
        "files_out_cap", "ok", "error", "pong", "result", "agent_version", "refresh", "refreshed",
        "entropy", "unix_time_ns", "hostname", "boot_id", "applied"]
with open(dict_path, "w") as f:
    for k in keys:
        b = bytes([0xA0 | len(k)]) + k.encode()
        f.write('"' + "".join(f"\\x{c:02x}" for c in b) + '"\n')
PY

# ---- run ------------------------------------------------------------------------------------
status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$t"
  log="$OUT/logs/$t.log"
  echo "== run $t for ${SECONDS_PER_TARGET}s (log: $log)"
  set +e
  "$OUT/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$OUT/msgpack.dict" -artifact_prefix="$OUT/artifacts/$t-" \
    "$OUT/corpus/$t" "$OUT/seeds/$t" >"$log" 2>&1
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
