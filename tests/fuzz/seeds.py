#!/usr/bin/python3
"""Writes the fuzz targets' seed corpora and dictionaries (tests/fuzz/README.md).

    seeds.py SOURCE_DIR OUT_DIR

OUT_DIR/seeds/<target>/ gets the seeds: schemas/vectors/*.msgpack (wrapped in frames as each
target expects), for the agent requests and replies written here, for the snapshot metadata a
valid meta.json and broken variants of it, for QMP, key files and batch files lines written here,
and for every target the regression inputs committed in tests/fuzz/regressions/<target>/.
OUT_DIR/dicts/<target>.dict is the dictionary tools/fuzz.sh gives each target. Run by the
`fuzz_seeds` target of tests/fuzz/CMakeLists.txt (-DPADDOCK_FUZZ=ON).
"""
import base64, glob, json, os, struct, sys

import msgpack

src, out_dir = sys.argv[1:3]
seeds = os.path.join(out_dir, "seeds")
dicts = os.path.join(out_dir, "dicts")
os.makedirs(dicts, exist_ok=True)
dict_path = os.path.join(dicts, "msgpack.dict")
meta_dict_path = os.path.join(dicts, "meta.dict")
json_dict_path = os.path.join(dicts, "json.dict")
curve_dict_path = os.path.join(dicts, "curve.dict")
vectors = os.path.join(src, "schemas", "vectors")
manifest = json.load(open(os.path.join(vectors, "manifest.json")))

def frames(*parts):
    return b"".join(struct.pack("<H", min(len(p), 0xFFFF)) + p for p in parts)

client = {"JobRequest": [0x01], "JobRef": [0x02, 0x03]}
worker = {"Ready": [0x0A], "Credit": [0x0B], "JobResult": [0x07], "JobError": [0x08],
          "OutputChunk": [0x11]}
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
    agent(dict(exec_req, stream=True),
          {"v": 1, "id": 2, "ok": True, "op": "output", "stream": "stdout", "offset": 0,
           "data": b"hi\n"},
          {"v": 1, "id": 2, "ok": True, "op": "output", "stream": "stderr", "offset": 0,
           "data": b"warn\n"},
          result),
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
    # An image's image.json (tools/build-image.sh), which the same target also reads for its
    # "warmup" (runtime/src/qemu/guest_image.h, parse_image_warmup).
    json.dumps({"format": 1, "name": "python", "kind": "rootfs",
                "warmup": ["python3", "-c", "import json, os"]}).encode(),
    json.dumps({"name": "x", "warmup": ["", "1"]}).encode(),
    json.dumps({"name": "x", "warmup": "python3"}).encode(),
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

# CURVE key files (broker/include/paddock/client/curve.h).
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
        "steps", "stop_on_failure", "timings", "usage", "queued_us", "start_us", "exec_us", "teardown_us", "total_us", "cpu_us",
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

# Each target's dictionary under its own name, so the runner needs no table of them.
DICT_OF = {"fuzz_snapshot_meta": "meta.dict", "fuzz_qmp_replies": "json.dict",
           "fuzz_batch_jobs": "json.dict", "fuzz_curve_files": "curve.dict",
           "fuzz_egress_rules": "egress.dict"}
for target in out:
    with open(os.path.join(dicts, DICT_OF.get(target, "msgpack.dict")), "rb") as f:
        data = f.read()
    with open(os.path.join(dicts, target + ".dict"), "wb") as f:
        f.write(data)

