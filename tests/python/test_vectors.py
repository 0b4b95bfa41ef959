"""The shared wire vectors (schemas/vectors/) read by Python's msgpack: an independent reader of
the bytes the C++ decoders are tested against (tests/unit/codec_test.cc).

Valid vectors: every field listed in the manifest's "expect" has that value once the protocol's
defaults (PROTOCOL.md, "Bodies") are applied. Invalid vectors: those the C++ decoder refuses at
the msgpack level (error_field "body") are structurally broken for Python too; the others are
well-formed maps whose fault is semantic, on a field PROTOCOL.md defines. OUTPUT bodies
(OutputChunk) are read by the Python client's own decoder (paddock_client.decode_output), which
must accept the valid ones and refuse the invalid ones naming the same field as the C++ decoder.
"""

import json
import os
import re
import unittest

import msgpack

import paddock_client

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PADDOCK_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
VECTORS = os.path.join(SOURCE_DIR, "schemas", "vectors")

MAX_DEPTH = 6

REQUEST_DEFAULTS = {
    "image": "default", "env": {}, "stdin": b"", "files": [], "files_out": [], "vcpus": 1,
    "mem_mib": 128, "timeout_ms": 30000, "output_cap": 1048576, "egress": [], "priority": 0,
    "deadline_ms": 0, "tags": {}, "steps": [], "stop_on_failure": True, "stream": False,
}
STEP_DEFAULTS = {"env": {}, "stdin": b"", "files_out": []}
RESULT_DEFAULTS = {
    "exit_code": 0, "signal": 0, "stdout": b"", "stderr": b"", "stdout_truncated": False,
    "stderr_truncated": False, "timed_out": False, "oom_killed": False, "files": [],
    "worker_id": "", "attempt": 1, "warm": False, "backend": "", "template": "", "tenant": "",
    "steps": [],
}
TIMINGS = ("queued_us", "start_us", "exec_us", "teardown_us", "total_us")
USAGE = ("cpu_us", "peak_memory_kib", "bytes_in", "bytes_out", "packets_in", "packets_out",
         "egress_blocked")
ERROR_DEFAULTS = {
    "job_id": "", "message": "", "vm_id": None, "snapshot_id": None, "from": None, "to": None,
    "worker_id": "", "attempt": 0, "retryable": False, "tenant": "",
}

# Field names of each body (PROTOCOL.md): the root of an invalid vector's error_field.
FIELDS = {
    "JobRequest": {"job_id", "argv"} | set(REQUEST_DEFAULTS),
    "JobResult": {"job_id", "timings", "usage"} | set(RESULT_DEFAULTS),
    "JobError": {"code", "variant"} | set(ERROR_DEFAULTS),
    "JobDispatch": {"tenant", "attempt", "queued_us", "request"},
    "Ready": {"protocol", "worker_id", "slots", "capabilities"},
    "Credit": {"credits"},
    "Accepted": {"job_ids"},
    "JobRef": {"job_id", "tenant"},
    "OutputChunk": {"job_id", "tenant", "attempt", "step", "stream", "offset", "data"},
}
BYTES_KEYS = ("stdin", "stdout", "stderr", "data")


def as_bytes(value):
    """A byte field as read (bin -> bytes, str -> its UTF-8) or as written in the manifest."""
    if isinstance(value, dict) and set(value) == {"hex"}:
        return bytes.fromhex(value["hex"])
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def with_defaults(body, defaults):
    """body with absent or nil keys replaced by the defaults."""
    out = dict(defaults)
    out.update({k: v for k, v in body.items() if v is not None or k not in defaults})
    return out


def read_request(body):
    r = with_defaults(body, REQUEST_DEFAULTS)
    r["stdin"] = as_bytes(r["stdin"])
    r["files"] = [{"path": f["path"], "mode": f.get("mode", 0o644),
                   "data": as_bytes(f.get("data") or b"")} for f in r["files"] or []]
    r["egress"] = [{"cidr": e["cidr"], "protocol": e.get("protocol") or "tcp",
                    "ports": [{"first": p["first"], "last": p.get("last", p["first"])}
                              for p in e.get("ports") or []]}
                   for e in r["egress"] or []]
    if not body.get("argv"):
        r["argv"] = []
    # A step's absent timeout_ms and output_cap are the job's (PROTOCOL.md, "Steps").
    r["steps"] = [dict(with_defaults(st, dict(STEP_DEFAULTS, timeout_ms=r["timeout_ms"],
                                              output_cap=r["output_cap"])),
                       stdin=as_bytes(st.get("stdin") or b""))
                  for st in r["steps"] or []]
    return r


def read_outcome(body, defaults):
    r = with_defaults(body, defaults)
    r["stdout"] = as_bytes(r["stdout"])
    r["stderr"] = as_bytes(r["stderr"])
    r["files"] = [{"path": f["path"], "data": as_bytes(f.get("data") or b""),
                   "truncated": f.get("truncated", False)} for f in r["files"]]
    r["usage"] = {k: (body.get("usage") or {}).get(k, 0) for k in USAGE}
    return r


def read_result(body):
    r = read_outcome(body, RESULT_DEFAULTS)
    r["timings"] = {k: (body.get("timings") or {}).get(k, 0) for k in TIMINGS}
    step_defaults = {k: RESULT_DEFAULTS[k] for k in (
        "exit_code", "signal", "stdout", "stderr", "stdout_truncated", "stderr_truncated",
        "timed_out", "oom_killed", "files")}
    step_defaults["exec_us"] = 0
    r["steps"] = [read_outcome(st, step_defaults) for st in r["steps"] or []]
    return r


READERS = {
    "JobRequest": read_request,
    "JobResult": read_result,
    "JobError": lambda b: with_defaults(b, ERROR_DEFAULTS),
    "JobDispatch": lambda b: dict(with_defaults(b, {"queued_us": 0, "tenant": ""}),
                                  request=read_request(b["request"])),
    "Ready": lambda b: with_defaults(b, {"capabilities": []}),
    "Credit": dict,
    "Accepted": dict,
    "JobRef": lambda b: with_defaults(b, {"tenant": ""}),
    "OutputChunk": lambda b: dict({"tenant": ""}, **paddock_client._output_fields(b)),
}


def expected(value, key=""):
    """The manifest's expectation with byte fields turned into bytes."""
    if key in BYTES_KEYS:
        return as_bytes(value)
    if isinstance(value, dict):
        return {k: expected(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [expected(v, key) for v in value]
    return value


def depth(obj):
    """Nesting depth of containers (a flat map is 1)."""
    if isinstance(obj, dict):
        return 1 + max([0] + [max(depth(k), depth(v)) for k, v in obj.items()])
    if isinstance(obj, (list, tuple)):
        return 1 + max([0] + [depth(v) for v in obj])
    return 0


def strict_unpack(data, max_depth=MAX_DEPTH):
    """Unpacks one body as the protocol requires: one map with str keys, each key once, no ext
    types, no trailing bytes, str valid UTF-8, depth at most 6 (7 for a JOB body, whose request is
    one level down). Raises ValueError otherwise."""
    def pairs(items):
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("duplicate key")
        return dict(items)

    def no_ext(code, payload):
        raise ValueError(f"ext type {code}")

    try:
        body = msgpack.unpackb(data, raw=False, strict_map_key=True, object_pairs_hook=pairs,
                               ext_hook=no_ext)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise ValueError(str(e)) from e
    if not isinstance(body, dict):
        raise ValueError("body is not a map")
    if depth(body) > max_depth:
        raise ValueError(f"nesting deeper than {max_depth}")
    return body


def load_manifest():
    with open(os.path.join(VECTORS, "manifest.json")) as f:
        return json.load(f)


def read_vector(entry):
    with open(os.path.join(VECTORS, entry["file"]), "rb") as f:
        return f.read()


class VectorTest(unittest.TestCase):
    def test_manifest_covers_every_type(self):
        manifest = load_manifest()
        self.assertEqual({e["type"] for e in manifest}, set(FIELDS))
        self.assertGreaterEqual(sum(e["valid"] for e in manifest), 15)
        self.assertGreaterEqual(sum(not e["valid"] for e in manifest), 20)
        for entry in manifest:
            self.assertTrue(os.path.exists(os.path.join(VECTORS, entry["file"])), entry["file"])

    def test_valid_vectors_have_the_expected_values(self):
        for entry in load_manifest():
            if not entry["valid"]:
                continue
            with self.subTest(file=entry["file"]):
                max_depth = MAX_DEPTH + 1 if entry["type"] == "JobDispatch" else MAX_DEPTH
                body = strict_unpack(read_vector(entry), max_depth)
                got = READERS[entry["type"]](body)
                self.assertTrue(entry["expect"])
                for field, want in expected(entry["expect"]).items():
                    self.assertIn(field, got, f"{entry['file']}: no {field}")
                    value = got[field]
                    if field in BYTES_KEYS:
                        value = as_bytes(value)
                    self.assertEqual(value, want, f"{entry['file']}: field {field}")

    def test_msgpack_level_faults_are_structural(self):
        for entry in load_manifest():
            if entry["valid"] or entry["error_field"] != "body":
                continue
            with self.subTest(file=entry["file"]):
                with self.assertRaises(ValueError):
                    strict_unpack(read_vector(entry))

    def test_semantic_faults_name_a_protocol_field(self):
        for entry in load_manifest():
            if entry["valid"] or entry["error_field"] == "body":
                continue
            with self.subTest(file=entry["file"]):
                data = read_vector(entry)
                if entry["file"] == "job_request_duplicate_key.msgpack":
                    with self.assertRaisesRegex(ValueError, "duplicate key"):
                        strict_unpack(data)
                    continue
                if "invalid_utf8" in entry["file"]:
                    # A str that is not UTF-8: Python's strict reader refuses it as well.
                    with self.assertRaises(ValueError):
                        strict_unpack(data)
                    continue
                body = strict_unpack(data)  # well-formed: the fault is in a value
                self.assertIsInstance(body, dict)
                root = re.split(r"[.\[]", entry["error_field"])[0]
                self.assertIn(root, FIELDS[entry["type"]])

    def test_output_vectors_with_the_python_client_decoder(self):
        entries = [e for e in load_manifest() if e["type"] == "OutputChunk"]
        self.assertGreaterEqual(sum(e["valid"] for e in entries), 2)
        self.assertGreaterEqual(sum(not e["valid"] for e in entries), 4)
        for entry in entries:
            with self.subTest(file=entry["file"]):
                data = read_vector(entry)
                if entry["valid"]:
                    got = dict({"tenant": ""}, **paddock_client.decode_output(data))
                    self.assertEqual({k: got[k] for k in entry["expect"]},
                                     expected(entry["expect"]))
                else:
                    with self.assertRaises(paddock_client.DecodeError) as caught:
                        paddock_client.decode_output(data)
                    self.assertEqual(caught.exception.field, entry["error_field"])

    def test_unknown_error_code_is_kept_as_a_number(self):
        entry = next(e for e in load_manifest() if e["file"] == "job_error_unknown_code.msgpack")
        body = strict_unpack(read_vector(entry))
        self.assertEqual(body["code"], 4242)
        self.assertEqual(entry["expect"]["code"], 4242)

    def test_stdin_is_bin_or_str_on_the_wire(self):
        manifest = {e["file"]: e for e in load_manifest()}
        raw_bin = msgpack.unpackb(read_vector(manifest["job_request_full_bin_stdin.msgpack"]),
                                  raw=False)
        raw_str = msgpack.unpackb(read_vector(manifest["job_request_full_str_stdin.msgpack"]),
                                  raw=False)
        self.assertIsInstance(raw_bin["stdin"], bytes)
        self.assertIsInstance(raw_str["stdin"], str)


if __name__ == "__main__":
    unittest.main()
