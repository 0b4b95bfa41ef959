#!/usr/bin/python3
"""Writes Paddock's shared wire test vectors: *.msgpack bodies and manifest.json.

The bytes are produced by Python's msgpack package (or assembled by hand for the cases msgpack
cannot produce, such as duplicate keys), an encoder independent of the C++ codec in schemas/src.
The C++ unit tests (tests/unit/codec_test.cc) and the Python tests (tests/python/test_vectors.py)
both decode every vector and check it against the manifest.

Manifest entries:
  {"file", "type", "valid": true,  "expect": {field: value, ...}}
  {"file", "type", "valid": false, "error_field": "argv[1]"}   # DecodeError.field of the C++ decoder

In "expect", byte fields (stdin, stdout, stderr, file data, OUTPUT data) are plain strings when
the bytes are UTF-8 and {"hex": "..."} otherwise; for JobError and OutputChunk's step, null means
"absent" (std::nullopt).
Only the listed fields are checked; defaults are listed explicitly where a vector tests them.

Usage: /usr/bin/python3 schemas/vectors/generate.py [OUTPUT_DIR]   (default: this directory)
The output is deterministic: running it twice gives the same files.
"""

import json
import os
import struct
import sys

import msgpack

OUT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__))

vectors = []


def pack(obj):
    """msgpack bytes of obj; bytes become bin, str become str (use_bin_type)."""
    return msgpack.packb(obj, use_bin_type=True)


def jbytes(b):
    """A byte field as it appears in the manifest."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"hex": b.hex()}


def valid(name, type_, data, expect):
    vectors.append((name, data, {"type": type_, "valid": True, "expect": expect}))


def invalid(name, type_, data, error_field, why):
    vectors.append((name, data, {"type": type_, "valid": False, "error_field": error_field,
                                 "why": why}))


# Hand-made msgpack pieces, for what msgpack.packb will not write.
def h_str(s):
    b = s.encode()
    assert len(b) < 32
    return bytes([0xA0 | len(b)]) + b


def h_map(n):
    assert n < 16
    return bytes([0x80 | n])


def h_u64(v):
    return b"\xcf" + struct.pack(">Q", v)


def h_u32(v):
    return b"\xce" + struct.pack(">I", v)


def h_i64(v):
    return b"\xd3" + struct.pack(">q", v)


REQUEST_DEFAULTS = {
    "image": "default", "env": {}, "stdin": "", "files": [], "files_out": [], "vcpus": 1,
    "mem_mib": 128, "timeout_ms": 30000, "output_cap": 1048576, "egress": [], "priority": 0,
    "deadline_ms": 0, "tags": {}, "steps": [], "stop_on_failure": True, "stream": False,
}

# ---- JobRequest, valid -----------------------------------------------------------------------

valid("job_request_minimal", "JobRequest",
      pack({"job_id": "min-1", "argv": ["echo", "hi"]}),
      dict({"job_id": "min-1", "argv": ["echo", "hi"]}, **REQUEST_DEFAULTS))

STDIN_BIN = bytes(range(256)) + b"\x00\xff"
FULL = {
    "job_id": "full.job_1:A-z",
    "image": "python3.11-slim_x",
    "argv": ["python3", "-c", "print('h\u00e9llo')", ""],
    "env": {"PATH": "/usr/bin:/bin", "_X1": "", "LANG": "C.UTF-8"},
    "stdin": STDIN_BIN,
    "files": [
        {"path": "main.py", "mode": 0o755, "data": b"print(1)\n"},
        {"path": "data/blob.bin", "mode": 0o600, "data": b"\x00\x01\xfe\xff"},
        {"path": "empty", "mode": 0, "data": b""},
    ],
    "files_out": ["out/result.json", "log.txt"],
    "vcpus": 16,
    "mem_mib": 65536,
    "timeout_ms": 86400000,
    "output_cap": 8388608,
    "egress": [
        {"cidr": "10.0.0.0/8", "protocol": "tcp", "ports": [{"first": 80, "last": 80},
                                                            {"first": 8000, "last": 8999}]},
        {"cidr": "192.168.1.7", "protocol": "udp", "ports": [{"first": 53}]},
        {"cidr": "0.0.0.0/0", "protocol": "icmp", "ports": []},
        {"cidr": "1.2.3.4/32", "protocol": "any"},
    ],
    "priority": -100,
    "deadline_ms": 1893456000000,
    "tags": {"team": "infra", "k": "v" * 256},
}


def expect_request(req):
    e = dict(REQUEST_DEFAULTS)
    for k, v in req.items():
        if k == "stdin":
            e[k] = jbytes(v) if isinstance(v, bytes) else v
        elif k == "files":
            e[k] = [{"path": f["path"], "mode": f.get("mode", 0o644), "data": jbytes(f["data"])}
                    for f in v]
        elif k == "egress":
            e[k] = [{"cidr": r["cidr"], "protocol": r.get("protocol", "tcp"),
                     "ports": [{"first": p["first"], "last": p.get("last", p["first"])}
                               for p in r.get("ports", [])]}
                    for r in v]
        else:
            e[k] = v
    return e


valid("job_request_full_bin_stdin", "JobRequest", pack(FULL), expect_request(FULL))

FULL_STR = dict(FULL, job_id="full-str", stdin="line one\nl\u00efne two\n", priority=100,
                vcpus=1, mem_mib=64, timeout_ms=1, output_cap=0)
valid("job_request_full_str_stdin", "JobRequest", pack(FULL_STR), expect_request(FULL_STR))

# Every optional field nil: the defaults apply (PROTOCOL.md: "opt fields may be absent or nil").
NILS = {"job_id": "nils", "argv": ["true"]}
NILS.update({k: None for k in REQUEST_DEFAULTS})
valid("job_request_nil_optionals", "JobRequest", pack(NILS),
      dict({"job_id": "nils", "argv": ["true"]}, **REQUEST_DEFAULTS))

# Unknown keys are ignored (a newer peer may add optional fields within version 1).
valid("job_request_unknown_keys", "JobRequest",
      pack({"job_id": "unk", "argv": ["x"], "future_field": {"a": [1, 2]}, "zz": None}),
      {"job_id": "unk", "argv": ["x"], "image": "default"})

# Integers in the widest encodings: uint64 for small unsigned values, int64 for priority.
valid("job_request_wide_ints", "JobRequest",
      h_map(6) + h_str("job_id") + h_str("wide") + h_str("argv") + b"\x91" + h_str("x")
      + h_str("vcpus") + h_u64(2) + h_str("mem_mib") + h_u32(256)
      + h_str("priority") + h_i64(-7) + h_str("deadline_ms") + h_u64(2**64 - 1),
      {"job_id": "wide", "argv": ["x"], "vcpus": 2, "mem_mib": 256, "priority": -7,
       "deadline_ms": 2**64 - 1})

# The nesting limit (6): a request at it is accepted, and so is the JOB that carries it one level
# down (issue 20: the JOB used to be refused at 7 and the job was lost).
DEEP_REQ = {"job_id": "deep5", "argv": ["true"], "x": [[[[[None]]]]]}
valid("job_request_at_nesting_limit", "JobRequest", pack(DEEP_REQ),
      {"job_id": "deep5", "argv": ["true"]})

# Steps (PROTOCOL.md, "Steps"): a step's absent timeout_ms and output_cap are the job's.
STEPS = {
    "job_id": "steps-1", "timeout_ms": 5000, "output_cap": 100,
    "files": [{"path": "p.sh", "mode": 0o755, "data": b"read x; echo $((x * 2))\n"}],
    "steps": [{"argv": ["sh", "-n", "p.sh"]},
              {"argv": ["sh", "p.sh"], "env": {"X": "1"}, "stdin": b"21\n", "timeout_ms": 1000,
               "output_cap": 50, "files_out": ["o.txt"]}],
    "stop_on_failure": False,
}
valid("job_request_steps", "JobRequest", pack(STEPS),
      {"job_id": "steps-1", "argv": [], "stdin": "", "files_out": [], "stop_on_failure": False,
       "steps": [{"argv": ["sh", "-n", "p.sh"], "env": {}, "stdin": "", "timeout_ms": 5000,
                  "output_cap": 100, "files_out": []},
                 {"argv": ["sh", "p.sh"], "env": {"X": "1"}, "stdin": "21\n", "timeout_ms": 1000,
                  "output_cap": 50, "files_out": ["o.txt"]}]})

# Live output (PROTOCOL.md, "Live output"): stream is encoded only when true.
valid("job_request_stream", "JobRequest",
      pack({"job_id": "live-1", "argv": ["make"], "stream": True}),
      {"job_id": "live-1", "argv": ["make"], "stream": True, "stop_on_failure": True})

# ---- JobRequest, invalid ---------------------------------------------------------------------

invalid("job_request_missing_job_id", "JobRequest", pack({"argv": ["echo"]}), "job_id",
        "job_id is required")
invalid("job_request_argv_wrong_type", "JobRequest",
        pack({"job_id": "a", "argv": ["echo", 5]}), "argv[1]", "argv entries must be strings")
invalid("job_request_argv_not_array", "JobRequest",
        pack({"job_id": "a", "argv": "echo hi"}), "argv", "argv must be an array")
invalid("job_request_bad_job_id_chars", "JobRequest",
        pack({"job_id": "bad id/../x", "argv": ["echo"]}), "job_id", "space and / not allowed")
invalid("job_request_job_id_too_long", "JobRequest",
        pack({"job_id": "a" * 129, "argv": ["echo"]}), "job_id", "longer than 128")
invalid("job_request_vcpus_out_of_range", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"], "vcpus": 17}), "vcpus", "vcpus is 1..16")
invalid("job_request_vcpus_zero", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"], "vcpus": 0}), "vcpus", "vcpus is 1..16")
invalid("job_request_mem_negative", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"], "mem_mib": -1}), "mem_mib", "uint field negative")
invalid("job_request_priority_out_of_range", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"], "priority": 101}), "priority", "-100..100")
invalid("job_request_egress_bad_cidr", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"],
              "egress": [{"cidr": "10.0.0.0/33", "protocol": "tcp"}]}),
        "egress[0].cidr", "prefix length above 32")
invalid("job_request_egress_cidr_not_ipv4", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"],
              "egress": [{"cidr": "1.1.1.1"}, {"cidr": "example.com"}]}),
        "egress[1].cidr", "not an IPv4 address")
invalid("job_request_egress_cidr_nul", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"], "egress": [{"cidr": "1.2.3.4\x00garbage"}]}),
        "egress[0].cidr", "a NUL byte hides the rest of the string from inet_pton")
invalid("job_request_egress_host_bits", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"],
              "egress": [{"cidr": "10.0.0.1/8", "protocol": "tcp"}]}),
        "egress[0].cidr", "bits set past the prefix: the worker's runtime refuses it, so SUBMIT does")
invalid("job_request_invalid_utf8", "JobRequest",
        h_map(2) + h_str("job_id") + h_str("u") + h_str("argv") + b"\x92" + h_str("echo")
        + b"\xa2\xc3\x28", "argv[1]", "a str that is not UTF-8 (c3 28)")
invalid("job_request_egress_icmp_ports", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"],
              "egress": [{"cidr": "1.1.1.1", "protocol": "icmp", "ports": [{"first": 1}]}]}),
        "egress[0].ports", "ports are for tcp/udp only")
invalid("job_request_egress_port_zero", "JobRequest",
        pack({"job_id": "a", "argv": ["echo"],
              "egress": [{"cidr": "1.1.1.1", "ports": [{"first": 0}]}]}),
        "egress[0].ports[0].first", "ports are 1..65535")
invalid("job_request_file_path_dotdot", "JobRequest",
        pack({"job_id": "a", "argv": ["cat"],
              "files": [{"path": "ok.txt", "data": b""}, {"path": "a/../../etc/passwd",
                                                          "data": b"x"}]}),
        "files[1].path", "'..' component")
invalid("job_request_file_path_absolute", "JobRequest",
        pack({"job_id": "a", "argv": ["cat"], "files": [{"path": "/etc/passwd", "data": b""}]}),
        "files[0].path", "absolute path")
invalid("job_request_files_out_dotdot", "JobRequest",
        pack({"job_id": "a", "argv": ["cat"], "files_out": [".."]}),
        "files_out[0]", "'..' component")
invalid("job_request_env_bad_name", "JobRequest",
        pack({"job_id": "a", "argv": ["env"], "env": {"1BAD": "x"}}), "env.1BAD",
        "env names start with a letter or _")
invalid("job_request_empty_argv", "JobRequest", pack({"job_id": "a", "argv": []}), "argv",
        "argv needs at least one entry")
invalid("job_request_empty_argv0", "JobRequest", pack({"job_id": "a", "argv": ["", "x"]}),
        "argv[0]", "argv[0] must not be empty")
invalid("job_request_duplicate_key", "JobRequest",
        h_map(3) + h_str("job_id") + h_str("a") + h_str("argv") + b"\x91" + h_str("x")
        + h_str("job_id") + h_str("b"), "job_id", "a key given twice is an error")
invalid("job_request_nesting_too_deep", "JobRequest",
        pack({"job_id": "a", "argv": ["x"], "future": [[[[[[1]]]]]]}), "body",
        "7 nested containers; the limit is 6")
invalid("job_request_steps_and_argv", "JobRequest",
        pack({"job_id": "a", "argv": ["x"], "steps": [{"argv": ["y"]}]}), "argv",
        "a job with steps has no argv of its own")
invalid("job_request_step_timeout_zero", "JobRequest",
        pack({"job_id": "a", "steps": [{"argv": ["y"], "timeout_ms": 0}]}), "steps[0].timeout_ms",
        "a step's timeout_ms is 1..86400000")
invalid("job_request_too_many_steps", "JobRequest",
        pack({"job_id": "a", "steps": [{"argv": ["y"]}] * 17}), "steps", "at most 16 steps")
invalid("job_request_step_without_argv", "JobRequest",
        pack({"job_id": "a", "steps": [{"argv": ["y"]}, {"env": {"A": "b"}}]}), "steps[1].argv",
        "every step has an argv")
invalid("job_request_trailing_bytes", "JobRequest",
        pack({"job_id": "a", "argv": ["x"]}) + b"\xc0", "body", "a nil after the map")
invalid("job_request_ext_type", "JobRequest",
        pack({"job_id": "a", "argv": ["x"], "stdin": msgpack.ExtType(1, b"abc")}), "body",
        "ext types are refused")
invalid("job_request_non_map_body", "JobRequest", pack(["a", ["x"]]), "body",
        "the body must be a map")
invalid("job_request_non_string_key", "JobRequest",
        pack({"job_id": "a", "argv": ["x"], 1: 2}), "body", "map keys must be strings")
invalid("job_request_truncated", "JobRequest", pack({"job_id": "a", "argv": ["x"]})[:-1], "body",
        "last byte missing")
invalid("job_request_empty_body", "JobRequest", b"", "body", "zero bytes")

# ---- JobResult -------------------------------------------------------------------------------

RESULT = {
    "job_id": "res-1", "exit_code": -2, "signal": 9, "stdout": b"hello\n",
    "stderr": b"\xff\xfe warn", "stdout_truncated": True, "stderr_truncated": False,
    "timed_out": True, "oom_killed": True,
    "files": [{"path": "out/a.txt", "data": b"A", "truncated": False},
              {"path": "b.bin", "data": b"\x80\x81", "truncated": True}],
    "timings": {"queued_us": 1, "start_us": 2000, "exec_us": 3000000, "teardown_us": 4,
                "total_us": 2**40},
    "usage": {"cpu_us": 5, "peak_memory_kib": 65536, "bytes_in": 6, "bytes_out": 7,
              "packets_in": 8, "packets_out": 9, "egress_blocked": 10},
    "worker_id": "w-1", "attempt": 2, "warm": True, "backend": "memory",
    "template": "tpl-default-1x128-1700000000000",
}
valid("job_result_full", "JobResult", pack(RESULT), dict(RESULT, stdout="hello\n",
      stderr={"hex": RESULT["stderr"].hex()},
      files=[{"path": "out/a.txt", "data": "A", "truncated": False},
             {"path": "b.bin", "data": {"hex": "8081"}, "truncated": True}]))
valid("job_result_minimal", "JobResult", pack({"job_id": "res-2"}),
      {"job_id": "res-2", "exit_code": 0, "signal": 0, "stdout": "", "stderr": "",
       "stdout_truncated": False, "stderr_truncated": False, "timed_out": False,
       "oom_killed": False, "files": [],
       "timings": {"queued_us": 0, "start_us": 0, "exec_us": 0, "teardown_us": 0, "total_us": 0},
       "worker_id": "", "attempt": 1, "warm": False, "backend": "", "template": ""})
valid("job_result_steps", "JobResult",
      pack({"job_id": "res-steps", "exit_code": 1,
            "steps": [{"exit_code": 0, "stdout": b"built\n", "exec_us": 1200,
                       "usage": {"cpu_us": 900}},
                      {"exit_code": 1, "stderr": b"no", "files": [{"path": "o.txt", "data": b"2"}],
                       "exec_us": 30}]}),
      {"job_id": "res-steps", "exit_code": 1, "stdout": "",
       "steps": [{"exit_code": 0, "signal": 0, "stdout": "built\n", "stderr": "",
                  "stdout_truncated": False, "stderr_truncated": False, "timed_out": False,
                  "oom_killed": False, "files": [], "exec_us": 1200,
                  "usage": {"cpu_us": 900, "peak_memory_kib": 0, "bytes_in": 0, "bytes_out": 0,
                            "packets_in": 0, "packets_out": 0, "egress_blocked": 0}},
                 {"exit_code": 1, "signal": 0, "stdout": "", "stderr": "no",
                  "stdout_truncated": False, "stderr_truncated": False, "timed_out": False,
                  "oom_killed": False,
                  "files": [{"path": "o.txt", "data": "2", "truncated": False}], "exec_us": 30,
                  "usage": {"cpu_us": 0, "peak_memory_kib": 0, "bytes_in": 0, "bytes_out": 0,
                            "packets_in": 0, "packets_out": 0, "egress_blocked": 0}}]})
invalid("job_result_step_signal_out_of_range", "JobResult",
        pack({"job_id": "r", "steps": [{"signal": 200}]}), "steps[0].signal", "signal is 0..128")
invalid("job_result_duplicate_empty_key", "JobResult",
        h_map(3) + h_str("job_id") + h_str("r") + h_str("") + b"\x01" + h_str("") + b"\x02",
        "body", "an empty key given twice: the error names the map (found by fuzzing)")
invalid("job_result_signal_out_of_range", "JobResult",
        pack({"job_id": "r", "signal": 200}), "signal", "signal is 0..128")
invalid("job_result_template_too_long", "JobResult",
        pack({"job_id": "r", "warm": True, "template": "t" * 129}), "template",
        "template is at most 128 bytes")
valid("job_result_oom_killed", "JobResult",
      pack({"job_id": "res-3", "exit_code": 137, "signal": 9, "oom_killed": True}),
      {"job_id": "res-3", "exit_code": 137, "signal": 9, "timed_out": False, "oom_killed": True})
valid("job_result_oom_killed_nil", "JobResult", pack({"job_id": "res-4", "oom_killed": None}),
      {"job_id": "res-4", "oom_killed": False})
invalid("job_result_oom_killed_wrong_type", "JobResult",
        pack({"job_id": "r", "oom_killed": 1}), "oom_killed", "oom_killed is a bool")
invalid("job_result_timings_wrong_type", "JobResult",
        pack({"job_id": "r", "timings": {"exec_us": "fast"}}), "timings.exec_us",
        "timings are integers")

# ---- JobError --------------------------------------------------------------------------------

valid("job_error_with_vm", "JobError",
      pack({"job_id": "e-1", "code": 3, "variant": "InvalidTransition",
            "message": "invalid vm transition for 'vm-7': Running -> Creating",
            "vm_id": "vm-7", "from": "Running", "to": "Creating", "worker_id": "w-2",
            "attempt": 1, "retryable": False}),
      {"job_id": "e-1", "code": 3, "variant": "InvalidTransition",
       "message": "invalid vm transition for 'vm-7': Running -> Creating",
       "vm_id": "vm-7", "snapshot_id": None, "from": "Running", "to": "Creating",
       "worker_id": "w-2", "attempt": 1, "retryable": False})
valid("job_error_plain", "JobError",
      pack({"job_id": "e-2", "code": 11, "variant": "Jailer", "message": "jailer error: boom",
            "retryable": True}),
      {"job_id": "e-2", "code": 11, "variant": "Jailer", "message": "jailer error: boom",
       "vm_id": None, "snapshot_id": None, "from": None, "to": None, "worker_id": "",
       "attempt": 0, "retryable": True})
valid("job_error_unknown_code", "JobError",
      pack({"job_id": "", "code": 4242, "variant": "FromTheFuture", "message": "?"}),
      {"job_id": "", "code": 4242, "variant": "FromTheFuture", "message": "?", "vm_id": None})
valid("job_error_invalid_request", "JobError",
      pack({"code": 100, "variant": "InvalidRequest", "message": "argv[2]: expected string",
            "snapshot_id": None}),
      {"job_id": "", "code": 100, "variant": "InvalidRequest",
       "message": "argv[2]: expected string", "snapshot_id": None})
valid("job_error_unknown_image", "JobError",
      pack({"job_id": "py-1", "code": 106, "variant": "UnknownImage",
            "message": "no connected worker has image 'python' (the 1 connected worker(s) have: "
                       "default)", "attempt": 1, "retryable": False}),
      {"job_id": "py-1", "code": 106, "variant": "UnknownImage",
       "message": "no connected worker has image 'python' (the 1 connected worker(s) have: default)",
       "vm_id": None, "attempt": 1, "retryable": False})
invalid("job_error_code_zero", "JobError",
        pack({"job_id": "e", "code": 0, "variant": "X"}), "code", "codes are 1..65535")
invalid("job_error_missing_variant", "JobError", pack({"job_id": "e", "code": 1}), "variant",
        "variant is required")
invalid("job_error_message_too_long", "JobError",
        pack({"job_id": "e", "code": 1, "variant": "X", "message": "m" * 4097}), "message",
        "message is at most 4096 bytes")

# ---- JobDispatch, Ready, Credit, Accepted, JobRef --------------------------------------------

DISPATCH_REQ = {"job_id": "d-1", "argv": ["cat"], "stdin": b"in",
                "egress": [{"cidr": "10.1.0.0/16", "protocol": "tcp",
                            "ports": [{"first": 443, "last": 443}]}]}
valid("job_dispatch", "JobDispatch",
      pack({"attempt": 3, "queued_us": 12345, "request": DISPATCH_REQ}),
      {"attempt": 3, "queued_us": 12345, "request": expect_request(DISPATCH_REQ)})
valid("job_dispatch_request_at_nesting_limit", "JobDispatch",
      pack({"attempt": 1, "queued_us": 0, "request": DEEP_REQ}),
      {"attempt": 1, "queued_us": 0})
valid("job_dispatch_tenant", "JobDispatch",
      pack({"tenant": "team-a.ci_1", "attempt": 1, "queued_us": 0,
            "request": {"job_id": "d", "argv": ["x"]}}),
      {"tenant": "team-a.ci_1", "attempt": 1})
invalid("job_dispatch_bad_tenant", "JobDispatch",
        pack({"tenant": ".hidden", "attempt": 1, "request": {"job_id": "d", "argv": ["x"]}}),
        "tenant", "a tenant is 1-64 of [A-Za-z0-9._-], not starting with '.'")
invalid("job_dispatch_attempt_zero", "JobDispatch",
        pack({"attempt": 0, "request": {"job_id": "d", "argv": ["x"]}}), "attempt",
        "attempt is at least 1")
invalid("job_dispatch_missing_request", "JobDispatch", pack({"attempt": 1}), "request",
        "request is required")
invalid("job_dispatch_bad_request_argv", "JobDispatch",
        pack({"attempt": 1, "request": {"job_id": "d", "argv": ["x", None]}}),
        "request.argv[1]", "the nested request's field path starts with request.")
invalid("job_dispatch_bad_request_job_id", "JobDispatch",
        pack({"attempt": 1, "request": {"job_id": "d d", "argv": ["x"]}}),
        "request.job_id", "validation errors of the nested request also start with request.")

valid("ready", "Ready",
      pack({"protocol": 1, "worker_id": "worker-a", "slots": 4,
            "capabilities": ["backend:memory", "image:default"]}),
      {"worker_id": "worker-a", "slots": 4, "capabilities": ["backend:memory", "image:default"]})
valid("ready_images", "Ready",
      pack({"protocol": 1, "worker_id": "worker-b", "slots": 2,
            "capabilities": ["backend:qemu", "image:default", "image:python", "image:Bad!"]}),
      {"worker_id": "worker-b", "slots": 2,
       "capabilities": ["backend:qemu", "image:default", "image:python", "image:Bad!"]})
invalid("ready_protocol_2", "Ready",
        pack({"protocol": 2, "worker_id": "w", "slots": 1}), "protocol", "version 1 only")
invalid("ready_slots_too_many", "Ready",
        pack({"protocol": 1, "worker_id": "w", "slots": 4097}), "slots", "slots is 0..4096")
invalid("ready_empty_worker_id", "Ready",
        pack({"protocol": 1, "worker_id": "", "slots": 1}), "worker_id", "1..128 bytes")

valid("credit", "Credit", pack({"credits": 4096}), {"credits": 4096})
invalid("credit_zero", "Credit", pack({"credits": 0}), "credits", "credits is 1..4096")
invalid("credit_missing", "Credit", pack({}), "credits", "credits is required")

valid("accepted", "Accepted", pack({"job_ids": ["a", "b", "c-3"]}),
      {"job_ids": ["a", "b", "c-3"]})
invalid("accepted_non_string_id", "Accepted", pack({"job_ids": ["a", 2]}), "job_ids[1]",
        "job ids are strings")

valid("job_ref", "JobRef", pack({"job_id": "ref-1"}), {"job_id": "ref-1"})
valid("job_ref_tenant", "JobRef", pack({"job_id": "ref-1", "tenant": "bob"}),
      {"job_id": "ref-1", "tenant": "bob"})
invalid("job_ref_bad_tenant", "JobRef", pack({"job_id": "ref-1", "tenant": "a/b"}), "tenant",
        "a tenant name has no '/'")
invalid("job_ref_empty", "JobRef", pack({"job_id": ""}), "job_id", "job_id must not be empty")
invalid("job_ref_wrong_type", "JobRef", pack({"job_id": b"bin-id"}), "job_id",
        "job_id is a str, not bin")
invalid("job_ref_invalid_utf8", "JobRef", h_map(1) + h_str("job_id") + b"\xa2\xc3\x28", "job_id",
        "a job_id that is not UTF-8 is refused, never echoed back")
invalid("job_ref_bad_chars", "JobRef", pack({"job_id": "a b"}), "job_id",
        "a JobRef's job_id follows the JobRequest's rule")

# ---- OutputChunk (OUTPUT, PROTOCOL.md "Live output") -----------------------------------------

valid("output", "OutputChunk",
      pack({"job_id": "live-1", "attempt": 1, "stream": "stdout", "offset": 0,
            "data": b"building...\n"}),
      {"job_id": "live-1", "tenant": "", "attempt": 1, "step": None, "stream": "stdout",
       "offset": 0, "data": "building...\n"})
valid("output_step", "OutputChunk",
      pack({"job_id": "live-2", "attempt": 2, "step": 15, "stream": "stderr", "offset": 4096,
            "data": b"\xff\x00warn"}),
      {"job_id": "live-2", "tenant": "", "attempt": 2, "step": 15, "stream": "stderr",
       "offset": 4096, "data": {"hex": "ff007761726e"}})
# A worker's OUTPUT names the tenant (the broker strips it); this chunk ends at the 8 MiB cap.
valid("output_tenant", "OutputChunk",
      pack({"job_id": "live-3", "tenant": "team-a.ci_1", "attempt": 3, "stream": "stdout",
            "offset": 8388608 - 3, "data": b"end"}),
      {"job_id": "live-3", "tenant": "team-a.ci_1", "attempt": 3, "step": None,
       "stream": "stdout", "offset": 8388605, "data": "end"})
invalid("output_empty_data", "OutputChunk",
        pack({"job_id": "o", "attempt": 1, "stream": "stdout", "offset": 0, "data": b""}),
        "data", "a chunk has 1..65536 bytes")
invalid("output_data_too_long", "OutputChunk",
        pack({"job_id": "o", "attempt": 1, "stream": "stdout", "offset": 0,
              "data": b"x" * 65537}), "data", "a chunk has at most 65536 bytes")
invalid("output_bad_stream", "OutputChunk",
        pack({"job_id": "o", "attempt": 1, "stream": "x", "offset": 0, "data": b"a"}),
        "stream", "stream is \"stdout\" or \"stderr\"")
invalid("output_past_cap", "OutputChunk",
        pack({"job_id": "o", "attempt": 1, "stream": "stdout", "offset": 8388600,
              "data": b"123456789"}), "data", "offset + size is at most 8388608")
invalid("output_offset_past_cap", "OutputChunk",
        pack({"job_id": "o", "attempt": 1, "stream": "stdout", "offset": 8388609, "data": b"a"}),
        "offset", "offset is 0..8388608")
invalid("output_attempt_zero", "OutputChunk",
        pack({"job_id": "o", "attempt": 0, "stream": "stdout", "offset": 0, "data": b"a"}),
        "attempt", "attempt is at least 1")
invalid("output_step_out_of_range", "OutputChunk",
        pack({"job_id": "o", "attempt": 1, "step": 16, "stream": "stdout", "offset": 0,
              "data": b"a"}), "step", "step is 0..15")
invalid("output_empty_job_id", "OutputChunk",
        pack({"job_id": "", "attempt": 1, "stream": "stdout", "offset": 0, "data": b"a"}),
        "job_id", "job_id must not be empty")


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    names = set()
    for name, data, entry in vectors:
        assert name not in names, name
        names.add(name)
        path = os.path.join(OUT, name + ".msgpack")
        with open(path, "wb") as f:
            f.write(data)
        manifest.append(dict({"file": name + ".msgpack"}, **entry))
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False, ensure_ascii=True)
        f.write("\n")
    print(f"wrote {len(manifest)} vectors to {OUT}")


if __name__ == "__main__":
    main()
