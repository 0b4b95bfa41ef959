#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of tests/fuzz/, one per decoder that meets outside input:
# the wire codec (schemas/src: client frames, worker frames, job dispatches, and the broker's
# in-place views of RESULT and ERROR bodies checked against the decoders), the guest agent
# protocol codec and the host's check of a guest's result (agent/src/protocol.cc,
# runtime/src/agent/result_check.cc), both on the bounded msgpack core (schemas/src/msgpack), the snapshot store's meta.json parser
# (runtime/src/qemu/snapshot_store.cc), QEMU's QMP replies (runtime/src/qemu/qmp_client.cc), the
# CURVE key files and allowlists (client/src/curve.cc), batch files of JSON jobs
# (tools/cli/batch_reader.cc, job_json.cc) and a job's egress rules as the runtime turns them into
# iptables-restore text (runtime/src/net/network.cc, rules.cc).
#
#   tools/fuzz.sh [SECONDS_PER_TARGET [TARGET...]]      (default 30 s; every target)
#
# tools/test.sh (the CI suite) runs every target for 10 s: 10 targets, 100 s of fuzzing in all, to
# keep the suite inside its 15-minute budget. Adding a target means lowering that default so the
# total stays at about 100 s. Longer campaigns are run by hand (tests/fuzz/README.md).
#
# Targets are compiled with clang++-14 -fsanitize=fuzzer,address,undefined straight from the
# sources above into $PADDOCK_FUZZ_BUILD_DIR (default: <repo>/build-fuzz), seeded from
# schemas/vectors/*.msgpack (wrapped in frames as each target expects), for the agent from requests
# and replies written here, for the snapshot metadata from a valid meta.json and broken variants
# of it written here, for QMP, key files and batch files from lines written here, and for every
# target from the regression inputs committed in tests/fuzz/regressions/<target>/ (crashes found
# and fixed). The working corpus stays in the build directory, so it grows from run to run and
# never lands in the repository.
# Exits non-zero if any target crashes (the reproducer is in <build dir>/artifacts/), and prints
# each target's executions and coverage.
set -euo pipefail

SECONDS_PER_TARGET="${1:-30}"
if ! [[ "$SECONDS_PER_TARGET" =~ ^[0-9]+$ ]] || [[ "$SECONDS_PER_TARGET" -lt 1 ]]; then
  echo "usage: $0 [SECONDS_PER_TARGET [TARGET...]]" >&2
  exit 2
fi
SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${PADDOCK_FUZZ_BUILD_DIR:-$SRC/build-fuzz}"
CXX="${PADDOCK_FUZZ_CXX:-clang++-14}"
PYTHON=/usr/bin/python3
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

command -v "$CXX" >/dev/null || { echo "fuzz.sh: $CXX not found" >&2; exit 2; }
mkdir -p "$OUT"/{obj,seeds,corpus,artifacts,logs}

# ---- build ----------------------------------------------------------------------------------
CXXFLAGS=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
          -fno-sanitize-recover=all -DMSGPACK_NO_BOOST
          -I"$SRC/schemas/include" -I"$SRC/schemas/src" -I"$SRC/runtime/include"
          -I"$SRC/runtime/src" -I"$SRC/agent/include" -I"$SRC/base/include"
          -I"$SRC/client/include" -I"$SRC/wire/include" -I"$SRC/tools/cli" -I"$SRC/tests/fuzz")
# The snapshot store logs with spdlog (Debian's, built against an external fmt) and hashes with
# xxhash, as runtime/CMakeLists.txt links them.
pkg-config --exists spdlog libxxhash libzmq ||
  { echo "fuzz.sh: pkg-config finds no spdlog, libxxhash or libzmq (tools/install-deps.sh)" >&2; exit 2; }
read -r -a SNAPSHOT_CFLAGS <<<"$(pkg-config --cflags spdlog libxxhash)"
read -r -a SNAPSHOT_LIBS <<<"$(pkg-config --libs spdlog libxxhash)"
# The CURVE parsers live beside libzmq calls (key generation): link it.
read -r -a ZMQ_LIBS <<<"$(pkg-config --libs libzmq)"
# Objects are rebuilt when the compiler or its flags change (a stamp in obj/; a missing stamp is
# written as is) or when their source or a header they may include is newer.
stamp="$OUT/obj/flags"
flags="$CXX ${CXXFLAGS[*]} ${SNAPSHOT_CFLAGS[*]}"
if [[ -f $stamp && "$(cat "$stamp")" != "$flags" ]]; then
  rm -f "$OUT"/obj/*.o
fi
echo "$flags" >"$stamp"
# Compiles one library source (relative to the repository) into $OUT/obj/<name>.o when needed, and
# sets OBJ to the object's path. Library objects must not bring a main(): fuzzer-no-link.
compile() {
  local src="$SRC/$1" name
  name="$(basename "${1%.cc}")"
  case $1 in
    tools/cli/*) name="cli_$name" ;;
    runtime/src/error.cc) name=runtime_error ;;
  esac
  local obj="$OUT/obj/$name.o"
  if [[ ! -f "$obj" || "$src" -nt "$obj" ]] ||
     [[ -n "$(find "$SRC/schemas/include" "$SRC/schemas/src" "$SRC/runtime/include" \
                   "$SRC/runtime/src/agent" "$SRC/runtime/src/qemu" "$SRC/runtime/src/os" \
                   "$SRC/agent/include" "$SRC/agent/src" "$SRC/base/include" "$SRC/client/include" \
                   "$SRC/runtime/src/net" "$SRC/tools/cli" \
                   -newer "$obj" -name '*.h' | head -1)" ]]; then
    "$CXX" "${CXXFLAGS[@]/-fsanitize=fuzzer,address,undefined/-fsanitize=fuzzer-no-link,address,undefined}" \
      "${SNAPSHOT_CFLAGS[@]}" -c "$src" -o "$obj"
  fi
  OBJ="$obj"
}
# The library sources each target links (only those of the targets asked for are built).
CODEC_SOURCES=(schemas/src/msgpack/reader.cc schemas/src/msgpack/utf8.cc
               schemas/src/codec.cc schemas/src/frames.cc
               schemas/src/validate.cc schemas/src/scanner.cc schemas/src/outcome_view.cc
               agent/src/protocol.cc
               runtime/src/agent/result_check.cc)
sources_of() {
  case $1 in
    fuzz_snapshot_meta) echo runtime/src/qemu/snapshot_store.cc runtime/src/error.cc ;;
    fuzz_qmp_replies) echo runtime/src/qemu/qmp_client.cc ;;
    fuzz_curve_files) echo client/src/curve.cc ;;
    fuzz_egress_rules) echo runtime/src/net/network.cc runtime/src/net/rules.cc \
                            runtime/src/error.cc ;;
    fuzz_batch_jobs) echo "${CODEC_SOURCES[@]}" tools/cli/batch_reader.cc tools/cli/job_json.cc \
                          tools/cli/outcome.cc tools/cli/text.cc ;;
    *) echo "${CODEC_SOURCES[@]}" ;;
  esac
}
for t in "${TARGETS[@]}"; do
  echo "== build $t"
  objs=()
  for src in $(sources_of "$t"); do
    compile "$src"
    objs+=("$OBJ")
  done
  case $t in
    fuzz_snapshot_meta) objs+=("${SNAPSHOT_LIBS[@]}") ;;
    fuzz_curve_files) objs+=("${ZMQ_LIBS[@]}") ;;
  esac
  "$CXX" "${CXXFLAGS[@]}" "${SNAPSHOT_CFLAGS[@]}" "$SRC/tests/fuzz/$t.cc" "${objs[@]}" -o "$OUT/$t"
done

# ---- seeds and dictionary -------------------------------------------------------------------
"$PYTHON" - "$SRC" "$OUT/seeds" "$OUT/msgpack.dict" "$OUT/meta.dict" "$OUT/json.dict" \
  "$OUT/curve.dict" <<'PY'
import base64, glob, json, os, struct, sys

import msgpack

src, seeds, dict_path, meta_dict_path, json_dict_path, curve_dict_path = sys.argv[1:7]
vectors = os.path.join(src, "schemas", "vectors")
manifest = json.load(open(os.path.join(vectors, "manifest.json")))

def frames(*parts):
    return b"".join(struct.pack("<H", min(len(p), 0xFFFF)) + p for p in parts)

client = {"JobRequest": [0x01], "JobRef": [0x02, 0x03]}
worker = {"Ready": [0x0A], "Credit": [0x0B], "JobResult": [0x07], "JobError": [0x08]}
out = {"fuzz_client_frames": [frames(b"PDK1", b"\x04"), frames(b"PDK1", b"\x04", b"\x80")],
       "fuzz_worker_frames": [frames(b"PDK1", b"\x0c"), frames(b"PDK1", b"\x0f")],
       "fuzz_job_dispatch": [], "fuzz_outcome_view": []}
for e in manifest:
    body = open(os.path.join(vectors, e["file"]), "rb").read()
    for cmd in client.get(e["type"], []):
        out["fuzz_client_frames"].append(frames(b"PDK1", bytes([cmd]), body))
    for cmd in worker.get(e["type"], []):
        out["fuzz_worker_frames"].append(frames(b"PDK1", bytes([cmd]), body))
    if e["type"] in ("JobDispatch", "JobRequest"):
        out["fuzz_job_dispatch"].append(body)
    if e["type"] in ("JobResult", "JobError"):
        out["fuzz_outcome_view"].append(body)
# A SUBMIT of several bodies.
reqs = [open(os.path.join(vectors, e["file"]), "rb").read() for e in manifest
        if e["type"] == "JobRequest" and e["valid"]]
out["fuzz_client_frames"].append(frames(b"PDK1", b"\x01", *reqs))
# A HEARTBEAT with a WorkerStatus.
status = msgpack.packb({"host": "node-1", "warm_pools": [{"template": "tpl-default-1x128",
                                                          "ready": 2, "target": 2}]})
out["fuzz_worker_frames"].append(frames(b"PDK1", b"\x0c", status))

# The guest agent channel: 4-byte big-endian length, then one msgpack map.
def agent(*maps):
    return b"".join(struct.pack(">I", len(b)) + b for b in (msgpack.packb(m) for m in maps))

exec_req = {"v": 1, "id": 2, "op": "exec", "argv": ["sh", "-c", "echo hi"], "env": {"A": "1"},
            "cwd": "/work", "stdin": b"in", "files": [{"path": "a/b", "mode": 0o644, "data": b"x"}],
            "files_out": ["out.txt"], "timeout_ms": 1000, "output_cap": 64, "files_out_cap": 64}
result = {"v": 1, "id": 2, "ok": True, "op": "result", "exit_code": 0, "signal": 0,
          "stdout": b"hi\n", "stderr": b"", "stdout_truncated": False, "stderr_truncated": False,
          "timed_out": False, "oom_killed": False,
          "files": [{"path": "out.txt", "data": b"o", "truncated": False}],
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
    agent(dict(result, exit_code=137, signal=9, stdout=b"", files=[], oom_killed=True)),
    agent({"v": 1, "id": 5, "op": "refresh", "entropy": bytes(range(64)),
           "unix_time_ns": 1700000000123456789, "hostname": "clone-0042"},
          {"v": 1, "id": 5, "ok": True, "op": "refreshed",
           "boot_id": "0a1b2c3d-0000-4000-8000-0123456789ab", "hostname": "clone-0042",
           "applied": True}),
]

# A snapshot's meta.json (runtime/src/qemu/snapshot_store.h) as encode_meta writes it: keys
# sorted, two-space indent, a final newline. memory.size must be mem_mib MiB.
meta = {"format": 1, "vm_id": "vm-1", "snapshot_id": "warm.0", "created_unix_ms": 1700000000123,
        "image": "default", "vcpus": 2, "mem_mib": 128,
        "qemu_version": "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1~bpo12+1)",
        "accel": "tcg", "machine": "microvm,x-option-roms=off,pit=off,pic=off,rtc=on",
        "cpu": "max", "image_id": "0123456789abcdef0123456789abcdef",
        "kernel_args": "console=ttyS0 reboot=t panic=-1 quiet",
        "files": {"memory": {"size": 128 << 20, "xxh3_128": "00112233445566778899aabbccddeeff"},
                  "state": {"size": 40960, "xxh3_128": "ffeeddccbbaa99887766554433221100"}}}

def meta_json(m, indent=2):
    return (json.dumps(m, indent=indent, sort_keys=True) + "\n").encode()

def meta_with(path, value):
    m = json.loads(json.dumps(meta))
    *parents, last = path
    node = m
    for k in parents:
        node = node[k]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return meta_json(m)

valid = meta_json(meta)
out["fuzz_snapshot_meta"] = [
    valid,
    json.dumps(meta, separators=(",", ":")).encode(),
    meta_with(["files", "memory", "size"], 64 << 20),         # not mem_mib MiB
    meta_with(["files", "state", "xxh3_128"], "FFEEDDCCBBAA99887766554433221100"),
    meta_with(["vm_id"], "../vm-1"),
    meta_with(["cpu"], KeyError),
    meta_with(["format"], 2),
    meta_with(["vcpus"], "2"),
    meta_with(["mem_mib"], 128.0),
    meta_with(["files", "state", "sha256"], "00"),            # unknown field
    meta_with(["kernel_args"], "x" * 1025),                   # over kMaxText
    valid[: len(valid) // 2],
    b"[]",
    valid.replace(b'"vm_id": "vm-1"', b'"vm_id": "vm-1", "vm_id": "vm-2"'),
]
# QMP (runtime/src/qemu/qmp_client.h): what QEMU 10 says, one JSON object per line, "\r\n" ends.
def qmp(*msgs):
    return b"".join((m if isinstance(m, bytes) else json.dumps(m).encode()) + b"\r\n" for m in msgs)

greeting = {"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""},
                    "capabilities": ["oob"]}}
event = {"timestamp": {"seconds": 1700000000, "microseconds": 1}, "event": "STOP"}
out["fuzz_qmp_replies"] = [
    qmp(greeting, {"return": {}, "id": 1}),
    qmp(event, {"return": {"status": "running", "singlestep": False, "running": True}, "id": 7}),
    qmp({"return": {"status": "completed", "total-time": 120, "ram": {"total": 134217728}},
         "id": 3}),
    qmp({"return": {"status": "failed", "error-desc": "Unable to write to file"}, "id": 4}),
    qmp({"error": {"class": "GenericError", "desc": "Migration is disabled \u001b[31m"}, "id": 5}),
    qmp({"return": [], "id": 6}, {"return": "x", "id": "6"}, {"id": 6}),
    qmp(b'{"return": {"status": 5}, "id": 2}', b"[1, 2]", b"{\"return\": {}", b"nul\x00l"),
    b"[" * 40 + b"]" * 40 + b"\n" + qmp({"return": {"status": "x" * 600}, "id": 1}),
    qmp({"error": {"desc": ["not", "a", "string"]}, "id": 9}, {"error": "flat", "id": 10}),
]

# CURVE key files (client/include/paddock/client/curve.h).
key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
key2 = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"
out["fuzz_curve_files"] = [
    f"# Paddock CURVE secret key 'w1' (Z85). Keep it private: mode 0600.\n{key}\n".encode(),
    f"{key} w1\n".encode(),
    f"{key} alice\n# a comment\n\n  {key2}\tbob smith \r\n{key}\n".encode(),
    f"#{key[1:]} starts with '#' and is a key\n".encode(),
    f"{key[:39]}\n{key}x\n".encode(),
    b"\n\n# only comments\n   \t\n",
    f"{key}\x00{key2}\n".encode(),
]

# Batch files of JSON jobs (tools/cli/job_json.h): the examples, plus lines that break the rules.
out["fuzz_batch_jobs"] = [open(f, "rb").read() for f in sorted(glob.glob(os.path.join(src, "examples", "*.jsonl")))]
out["fuzz_batch_jobs"] += [
    b'{"job_id": "a", "argv": ["true"]}\n{"job_id": "a", "argv": ["true"]}\n',
    b'{"argv": ["cat"], "stdin": {"base64": "AAEC/w=="}, "files": [{"path": "in/x", "mode": 420, '
    b'"data": "hi"}], "files_out": ["out"], "egress": [{"cidr": "10.0.0.0/8", "protocol": "tcp", '
    b'"ports": [{"first": 80, "last": 443}]}], "tags": {"k": "v"}, "priority": -3}\r\n',
    b'{"argv": "true"}\n{"argv": ["true"], "timeout": 5}\n{"argv": [1]}\n[]\n{\n\n \t\n',
    b'{"argv": ["true"], "vcpus": 1e3, "mem_mib": -1, "stdin": {"base64": "!!"}, "image": "\xff"}\n',
]

# A job's egress rules, one "CIDR PROTOCOL [FIRST-LAST ...]" a line (tests/fuzz/fuzz_egress_rules.cc).
out["fuzz_egress_rules"] = [
    b"10.0.0.0/8 tcp 80-80 443-443\n0.0.0.0/0 udp 53-53\n1.2.3.4 icmp",
    b"0.0.0.0/0 any",
    b"192.168.1.0/24 udp 1-65535",
    b"10.0.0.1/8 tcp",                      # bits past the prefix
    b"10.0.0.0/33 tcp\n256.1.1.1 any\n1.2.3 udp",
    b"1.2.3.4/32 icmp 1-2",                 # ports with icmp
    b"1.2.3.4 tcp 90-80 0-5",               # first > last, port 0
    b"1.2.3.4 sctp\n\n-A FORWARD -j ACCEPT", # unknown protocol, an injection attempt
    b"\n".join(b"10.%d.0.0/16 tcp 1-1" % i for i in range(70)),  # over kMaxEgressRules
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
        "stderr", "stdout_truncated", "stderr_truncated", "timed_out", "oom_killed", "truncated",
        "timings", "usage", "queued_us", "start_us", "exec_us", "teardown_us", "total_us", "cpu_us",
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

meta_tokens = ['"' + k + '"' for k in
               ["format", "vm_id", "snapshot_id", "created_unix_ms", "image", "vcpus", "mem_mib",
                "qemu_version", "accel", "machine", "cpu", "image_id", "kernel_args", "files",
                "memory", "state", "size", "xxh3_128", "tcg", "kvm", "default"]]
meta_tokens += ["{", "}", "[", "]", ":", ",", "true", "false", "null", "134217728", "-1", "1e3",
                "18446744073709551616", "\\u0000", "\\ud800", "0123456789abcdef"]
with open(meta_dict_path, "w") as f:
    for k in meta_tokens:
        f.write('"' + "".join(f"\\x{c:02x}" for c in k.encode()) + '"\n')

json_tokens = ['"' + k + '"' for k in
               ["QMP", "return", "error", "event", "id", "desc", "class", "status", "error-desc",
                "completed", "failed", "running", "job_id", "image", "argv", "env", "stdin",
                "files", "files_out", "vcpus", "mem_mib", "timeout_ms", "output_cap", "egress",
                "priority", "deadline_ms", "tags", "path", "mode", "data", "base64", "cidr",
                "protocol", "ports", "first", "last", "tcp", "udp", "icmp"]]
json_tokens += ["{", "}", "[", "]", ":", ",", "true", "false", "null", "\\u0000", "\\ud800",
                "\r\n", "-1", "1e999", "18446744073709551616", "0.5"]
with open(json_dict_path, "w") as f:
    for k in json_tokens:
        f.write('"' + "".join(f"\\x{c:02x}" for c in k.encode()) + '"\n')
with open(os.path.join(os.path.dirname(curve_dict_path), "egress.dict"), "w") as f:
    for k in ["tcp", "udp", "icmp", "any", "0.0.0.0/0", "10.0.0.0/8", "/32", "/0", ".", "-", " ",
              "\n", "65535", "255.255.255.255", "169.254.169.254"]:
        f.write('"' + "".join(f"\\x{c:02x}" for c in k.encode()) + '"\n')
with open(curve_dict_path, "w") as f:
    for k in [key, key2, "#", "\n", " ", "\t", "\r\n", ".pub", ".key"]:
        f.write('"' + "".join(f"\\x{c:02x}" for c in k.encode()) + '"\n')

# Inputs that once crashed a target, kept so that the fix stays (tests/fuzz/regressions/).
for target in out:
    for i, path in enumerate(sorted(glob.glob(os.path.join(src, "tests", "fuzz", "regressions",
                                                           target, "*")))):
        with open(os.path.join(seeds, target, f"regression-{i:03d}"), "wb") as f:
            f.write(open(path, "rb").read())
PY

# ---- run ------------------------------------------------------------------------------------
status=0
summary=()
for t in "${TARGETS[@]}"; do
  mkdir -p "$OUT/corpus/$t"
  log="$OUT/logs/$t.log"
  case $t in
    fuzz_snapshot_meta) dict="$OUT/meta.dict" ;;
    fuzz_qmp_replies | fuzz_batch_jobs) dict="$OUT/json.dict" ;;
    fuzz_curve_files) dict="$OUT/curve.dict" ;;
    fuzz_egress_rules) dict="$OUT/egress.dict" ;;
    *) dict="$OUT/msgpack.dict" ;;
  esac
  echo "== run $t for ${SECONDS_PER_TARGET}s (log: $log)"
  set +e
  "$OUT/$t" -max_total_time="$SECONDS_PER_TARGET" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -dict="$dict" -artifact_prefix="$OUT/artifacts/$t-" \
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
