"""Python client for Paddock submitters (wire protocol version 1, schemas/PROTOCOL.md).

A :class:`Client` is a ZeroMQ DEALER connected to a broker's client endpoint. It sends SUBMIT,
CANCEL, FETCH and PING messages and reads the broker's answers as :class:`Event` objects::

    from paddock_client import Client

    with Client("tcp://127.0.0.1:5555") as client:
        finals = client.run_jobs([{"job_id": "hello-1", "argv": ["echo", "hi"]}], timeout_s=30)
        event = finals["hello-1"]
        if event.kind == "result":
            print(event.body["exit_code"], event.body["stdout"])
        else:
            print(event.code, event.variant, event.message)

Requests are plain dicts with the JobRequest fields of PROTOCOL.md (``job_id`` and ``argv``
required; ``stdin`` and file ``data`` may be ``bytes`` or ``str`` and are sent as msgpack bin).
:func:`job` builds one; ``image`` chooses the image it runs in (``"default"`` unless given; a
worker must have it, else the job ends with ERROR 106 UnknownImage)::

    finals = client.run_jobs([job("py-1", ["python3", "-c", "print(1)"], image="python")])

The client does not validate requests: the broker answers an invalid one with ERROR 100
InvalidRequest, whose message names the field.

Live output (PROTOCOL.md, "Live output"): a request with ``stream: true`` (``job(...,
stream=True)``, ``steps_job(..., stream=True)``) makes the broker send this connection OUTPUT
messages, chunks of the job's stdout and stderr as it writes them, before its RESULT. Each is an
Event of kind ``"output"`` with ``job_id``, ``attempt``, ``step`` (the 0-based step of a job with
steps, None otherwise), ``stream`` ("stdout" or "stderr"), ``offset`` (of the chunk's first byte
in that stream of that attempt and step) and ``data`` (bytes, 1..65536 of them).
:meth:`Client.run_streaming` submits one job with ``stream`` set and yields its OUTPUT events as
they arrive, then its final RESULT, ERROR or REJECTED event::

    for event in client.run_streaming(job("build-1", ["make"]), timeout_s=600):
        if event.kind == "output":
            out = sys.stdout if event.stream == "stdout" else sys.stderr
            out.buffer.write(event.data)
        else:
            final = event

Chunks of one stream come in order, but one may be dropped on the way: a gap shows as an offset
past the bytes seen so far. A retry (a new attempt) starts its streams again at offset 0. The
RESULT stays authoritative: it carries the whole (capped) output.

CURVE (README.md, "Operating Paddock"): give the broker's public key and this submitter's secret
key file, as written by ``paddock keys generate``::

    Client("tcp://broker:5555", broker_public_key="keys/broker.pub", curve_key="keys/ci.key")

A broker that refuses the key never answers (the handshake fails inside ZeroMQ): next_event
returns None and run_jobs raises TimeoutError.

Dependencies: Debian's python3-zmq and python3-msgpack only. A Client is not thread-safe (it owns
a ZeroMQ socket); use one per thread.
"""

import os
import stat
import time

import msgpack
import zmq

__all__ = ["Client", "Event", "ProtocolError", "CODES", "RETRYABLE_CODES", "code_name", "job",
           "decode_output", "DecodeError", "PROTOCOL_TAG",
           "MAX_BODIES_PER_MESSAGE", "MAX_OUTPUT_CHUNK", "MAX_OUTPUT_CAP", "KeyFileError",
           "read_secret_key", "read_public_key"]

PROTOCOL_TAG = b"PDK1"
MAX_BODIES_PER_MESSAGE = 1024
MAX_FRAME_BYTES = 16 << 20
MAX_MSG_SIZE = MAX_FRAME_BYTES + (64 << 10)  # ZMQ_MAXMSGSIZE, as every Paddock socket sets it

# Command bytes (PROTOCOL.md, "Commands").
SUBMIT = 0x01
CANCEL = 0x02
FETCH = 0x03
PING = 0x04
ACCEPTED = 0x05
REJECTED = 0x06
RESULT = 0x07
ERROR = 0x08
PONG = 0x09
OUTPUT = 0x11

# Broker -> client commands: event kind and allowed body counts.
_BROKER_TO_CLIENT = {
    ACCEPTED: ("accepted", 1, 1),
    REJECTED: ("rejected", 1, 1),
    RESULT: ("result", 1, 1),
    ERROR: ("error", 1, 1),
    PONG: ("pong", 0, 1),
    OUTPUT: ("output", 1, 1),
}

# Outcome codes (PROTOCOL.md, "Codes"). Codes are forever; an unknown code is kept as a number.
CODES = {
    1: "VmAlreadyExists",
    2: "VmNotFound",
    3: "InvalidTransition",
    4: "SnapshotAlreadyExists",
    5: "SnapshotNotFound",
    6: "StatePoisoned",
    7: "Unsupported",
    8: "Metrics",
    9: "Shutdown",
    10: "Firewall",
    11: "Jailer",
    12: "NetworkConfig",
    13: "NetworkSetup",
    14: "GuestAgent",
    100: "InvalidRequest",
    101: "Cancelled",
    102: "WorkerLost",
    103: "QueueFull",
    104: "DeadlineExceeded",
    105: "UnknownJob",
    106: "UnknownImage",
    107: "JournalDamaged",
    108: "QuotaExceeded",
    109: "TooLarge",
}

# Codes that are retryable as a rule (PROTOCOL.md, "retryable"). Only a rule: the runtime decides by
# an error's cause, so an ERROR's own `retryable` field is the answer (10 Firewall for an invalid
# rule is not retryable; 7 Unsupported for a full disk, not listed here, is).
RETRYABLE_CODES = frozenset({8, 9, 10, 11, 13, 102, 103})

# OUTPUT limits (PROTOCOL.md, "Limits"): the data of one chunk, and the end (offset + size) of any
# chunk of a stream, which is never past the largest output_cap.
MAX_OUTPUT_CHUNK = 64 << 10
MAX_OUTPUT_CAP = 8 << 20
MAX_JOB_ID = 128
MAX_TENANT = 64
MAX_STEPS = 16
_TENANT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")

# Limits applied when unpacking the broker's bodies (PROTOCOL.md, "Limits").
_UNPACK_LIMITS = dict(max_str_len=1 << 20, max_bin_len=MAX_FRAME_BYTES, max_array_len=4096,
                      max_map_len=256, max_ext_len=0)


def code_name(code):
    """The variant name of an outcome code, or "Unknown" for a number this client does not know."""
    return CODES.get(code, "Unknown")


def job(job_id, argv, image=None, stream=False, **fields):
    """A JobRequest dict: `job_id`, `argv` (a list of str), `image` when given (the broker's
    default is "default"), ``stream: True`` when `stream` (live output: OUTPUT events before the
    RESULT), and any other JobRequest field by name (timeout_ms=..., env=...)."""
    request = {"job_id": job_id, "argv": list(argv)}
    if image is not None:
        request["image"] = image
    if stream:
        request["stream"] = True
    request.update(fields)
    return request


def step(argv, **fields):
    """One entry of a request's ``steps`` (PROTOCOL.md, "Steps"): `argv` (a list of str) and any
    step field by name (env=..., stdin=..., timeout_ms=..., output_cap=..., files_out=...)."""
    entry = {"argv": list(argv)}
    entry.update(fields)
    return entry


def steps_job(job_id, steps, image=None, stop_on_failure=True, stream=False, **fields):
    """A JobRequest dict of a job with steps, run in order in one VM (files and the working
    directory persist between them): `steps` a list of :func:`step` dicts; after one that fails
    the rest run only with ``stop_on_failure=False``. ``stream=True`` asks for live output (each
    OUTPUT event names its step). Other JobRequest fields by name (files=..., timeout_ms=...
    bounds all steps together)."""
    request = {"job_id": job_id, "steps": [dict(s) for s in steps]}
    if image is not None:
        request["image"] = image
    if not stop_on_failure:
        request["stop_on_failure"] = False
    if stream:
        request["stream"] = True
    request.update(fields)
    return request


class ProtocolError(Exception):
    """Raised for a local misuse of the protocol (e.g. more than 1024 requests in one SUBMIT)."""


class DecodeError(ValueError):
    """A body that breaks the protocol: `field` names the faulty field as the C++ DecodeError
    does ("body" for a msgpack-level problem), `reason` says what is wrong."""

    def __init__(self, field, reason):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Event:
    """One answer from the broker.

    Attributes:
      kind: 'accepted', 'rejected', 'result', 'error', 'pong', 'output' or 'invalid'.
      body: the decoded msgpack body (a dict; bin fields are bytes, str fields are str). For
        'accepted' it is {"job_ids": [...]}; for 'pong' the PING's body ({} when none); for
        'invalid' {"detail": "<what was wrong>", "frames": [...raw frames...]}. A 'result'
        body has PROTOCOL.md's JobResult fields, among them "warm" (bool) and "template" (the
        template VM a warm job's clone came from; absent from older workers, "" when cold).
        An 'output' body is :func:`decode_output`'s dict (job_id, attempt, step, stream,
        offset, data; the properties of the same names read it).
    """

    __slots__ = ("kind", "body")

    def __init__(self, kind, body):
        self.kind = kind
        self.body = body if body is not None else {}

    @property
    def job_id(self):
        """The job this event answers ('' for ACCEPTED, PONG, invalid or unnamed errors)."""
        value = self.body.get("job_id", "") if isinstance(self.body, dict) else ""
        return value if isinstance(value, str) else ""

    @property
    def job_ids(self):
        """ACCEPTED: the accepted job ids; otherwise [job_id] or []."""
        if self.kind == "accepted":
            return list(self.body.get("job_ids") or [])
        return [self.job_id] if self.job_id else []

    @property
    def steps(self):
        """RESULT of a job with steps: one dict per step run, in order (exit_code, signal, stdout,
        stderr, the truncated flags, timed_out, oom_killed, files, exec_us, usage); [] otherwise.
        Steps after one that failed (with stop_on_failure) were not run and have none."""
        if self.kind != "result":
            return []
        return list(self.body.get("steps") or [])

    @property
    def code(self):
        """ERROR/REJECTED: the numeric code; None for other kinds."""
        return self.body.get("code") if self.kind in ("error", "rejected") else None

    @property
    def variant(self):
        """ERROR/REJECTED: the variant name sent by the broker (falls back to CODES)."""
        if self.kind not in ("error", "rejected"):
            return None
        return self.body.get("variant") or code_name(self.body.get("code"))

    @property
    def message(self):
        """ERROR/REJECTED: the error message; 'invalid': the detail."""
        if self.kind == "invalid":
            return self.body.get("detail", "")
        return self.body.get("message", "") if self.kind in ("error", "rejected") else None

    @property
    def retryable(self):
        """ERROR/REJECTED: whether submitting the same job again may succeed; None otherwise."""
        if self.kind not in ("error", "rejected"):
            return None
        return bool(self.body.get("retryable", False))

    @property
    def quota_exceeded(self):
        """True for a REJECTED 108 QuotaExceeded: the submitter's tenant is at a limit of its own
        (its queued jobs or its submit rate; the message names which and its value). Waiting and
        submitting the job again may succeed."""
        return self.kind == "rejected" and self.code == 108

    @property
    def attempt(self):
        """OUTPUT: the attempt (1 for the first run, higher after a retry); None otherwise."""
        return self.body.get("attempt") if self.kind == "output" else None

    @property
    def step(self):
        """OUTPUT of a job with steps: the step (0-based); None otherwise."""
        return self.body.get("step") if self.kind == "output" else None

    @property
    def stream(self):
        """OUTPUT: "stdout" or "stderr"; None otherwise."""
        return self.body.get("stream") if self.kind == "output" else None

    @property
    def offset(self):
        """OUTPUT: the offset of data's first byte in its stream (of that attempt and step);
        None otherwise."""
        return self.body.get("offset") if self.kind == "output" else None

    @property
    def data(self):
        """OUTPUT: the chunk's bytes (1..65536); None otherwise."""
        return self.body.get("data") if self.kind == "output" else None

    @property
    def is_final(self):
        """True when the event ends its job: RESULT, ERROR (naming a job) or REJECTED."""
        return self.kind in ("result", "error", "rejected") and bool(self.job_id)

    def __repr__(self):
        if self.kind in ("error", "rejected"):
            return (f"Event({self.kind}, job_id={self.job_id!r}, code={self.code}, "
                    f"variant={self.variant!r}, message={self.message!r})")
        if self.kind == "result":
            start = (f"warm from {self.body.get('template')!r}" if self.body.get("warm")
                     else "cold")
            return (f"Event(result, job_id={self.job_id!r}, "
                    f"exit_code={self.body.get('exit_code')}, {start})")
        if self.kind == "output":
            return (f"Event(output, job_id={self.job_id!r}, attempt={self.attempt}, "
                    f"step={self.step}, {self.stream}, offset={self.offset}, "
                    f"{len(self.data)} bytes)")
        return f"Event({self.kind}, {self.body!r})"


def _wire_request(request):
    """A copy of a request dict ready for msgpack: str stdin / file data become bytes (bin)."""
    if not isinstance(request, dict):
        raise TypeError(f"a request is a dict, got {type(request).__name__}")
    out = dict(request)
    stdin = out.get("stdin")
    if isinstance(stdin, str):
        out["stdin"] = stdin.encode("utf-8")
    elif isinstance(stdin, (bytearray, memoryview)):
        out["stdin"] = bytes(stdin)
    steps = out.get("steps")
    if isinstance(steps, list):
        out["steps"] = [dict(st, stdin=st["stdin"].encode("utf-8"))
                        if isinstance(st, dict) and isinstance(st.get("stdin"), str) else st
                        for st in steps]
    files = out.get("files")
    if isinstance(files, list):
        wired = []
        for f in files:
            if isinstance(f, dict) and isinstance(f.get("data"), str):
                f = dict(f, data=f["data"].encode("utf-8"))
            wired.append(f)
        out["files"] = wired
    return out


def _pack(body):
    return msgpack.packb(body, use_bin_type=True)


def _unpack_body(frame):
    """Decodes one msgpack body (a map with str keys) under the protocol's limits."""
    body = msgpack.unpackb(frame, raw=False, strict_map_key=True, **_UNPACK_LIMITS)
    if not isinstance(body, dict):
        raise ValueError(f"body: expected map, got {type(body).__name__}")
    return body


def _uint(body, key, low, high, required):
    """body[key] as an int in low..high (None when absent or nil and not required)."""
    value = body.get(key)
    if value is None:
        if required:
            raise DecodeError(key, "required")
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(key, f"expected integer, got {type(value).__name__}")
    if not low <= value <= high:
        raise DecodeError(key, f"must be between {low} and {high}, got {value}")
    return value


def _output_fields(body):
    """The OUTPUT fields of an unpacked body, checked in the C++ decoder's order."""
    job_id = body.get("job_id")
    if job_id is None:
        raise DecodeError("job_id", "required")
    if not isinstance(job_id, str):
        raise DecodeError("job_id", f"expected string, got {type(job_id).__name__}")
    if len(job_id.encode("utf-8")) > MAX_JOB_ID:
        raise DecodeError("job_id", f"longer than {MAX_JOB_ID} bytes")
    if not job_id:
        raise DecodeError("job_id", "must not be empty")
    tenant = body.get("tenant")
    if tenant is not None:
        if not isinstance(tenant, str):
            raise DecodeError("tenant", f"expected string, got {type(tenant).__name__}")
        if len(tenant.encode("utf-8")) > MAX_TENANT:
            raise DecodeError("tenant", f"longer than {MAX_TENANT} bytes")
        if tenant and (tenant.startswith(".") or not set(tenant) <= _TENANT_CHARS):
            raise DecodeError("tenant", "must be 1-64 characters of [A-Za-z0-9._-], not "
                                        "starting with '.'")
    out = {"job_id": job_id,
           "attempt": _uint(body, "attempt", 1, 2**32 - 1, True),
           "step": _uint(body, "step", 0, MAX_STEPS - 1, False)}
    stream = body.get("stream")
    if stream is None:
        raise DecodeError("stream", "required")
    if not isinstance(stream, str):
        raise DecodeError("stream", f"expected string, got {type(stream).__name__}")
    if stream not in ("stdout", "stderr"):
        raise DecodeError("stream", 'must be "stdout" or "stderr"')
    out["stream"] = stream
    out["offset"] = _uint(body, "offset", 0, MAX_OUTPUT_CAP, True)
    data = body.get("data")
    if data is None:
        data = b""
    elif isinstance(data, str):  # bytes sent as str: bytes all the same
        data = data.encode("utf-8")
    elif not isinstance(data, bytes):
        raise DecodeError("data", f"expected bytes, got {type(data).__name__}")
    if len(data) > MAX_OUTPUT_CHUNK:
        raise DecodeError("data", f"longer than {MAX_OUTPUT_CHUNK} bytes")
    if not data:
        raise DecodeError("data", "must not be empty")
    if out["offset"] + len(data) > MAX_OUTPUT_CAP:
        raise DecodeError("data", f"ends past {MAX_OUTPUT_CAP} bytes of the stream (offset + "
                                  f"size), more than any output cap")
    out["data"] = data
    if tenant:
        out["tenant"] = tenant
    return out


def decode_output(frame):
    """An OUTPUT body (msgpack bytes) as a dict: job_id (str), attempt (int >= 1), step (int
    0..15, None when absent: a job without steps), stream ("stdout" or "stderr"), offset (int),
    data (bytes, 1..65536, offset + size <= 8 MiB), and tenant (str) when the body has one (a
    worker's OUTPUT; the broker strips it). Raises DecodeError naming the faulty field."""
    try:
        body = _unpack_body(frame)
    except Exception as e:  # msgpack raises several types: all mean a bad body
        raise DecodeError("body", str(e)) from None
    return _output_fields(body)


def _decode_message(frames):
    """Frames of one broker -> client message as an Event ('invalid' when they break the
    protocol)."""
    def invalid(detail):
        return Event("invalid", {"detail": detail, "frames": list(frames)})

    if not frames:
        return invalid("frame: empty message")
    if frames[0] != PROTOCOL_TAG:
        return invalid("tag: expected protocol tag PDK1 (protocol version 1)")
    if len(frames) < 2 or len(frames[1]) != 1:
        return invalid("command: missing or malformed command frame")
    command = frames[1][0]
    if command not in _BROKER_TO_CLIENT:
        return invalid(f"command: command 0x{command:02x} is not valid here")
    kind, low, high = _BROKER_TO_CLIENT[command]
    bodies = frames[2:]
    if not low <= len(bodies) <= high:
        return invalid(f"frame: {kind.upper()} takes {low}..{high} bodies, got {len(bodies)}")
    try:
        body = _unpack_body(bodies[0]) if bodies else {}
    except Exception as e:  # msgpack raises several types: all mean a bad body
        return invalid(f"body: {e}")
    if kind == "accepted" and not isinstance(body.get("job_ids"), list):
        return invalid("job_ids: required")
    if kind in ("error", "rejected") and not isinstance(body.get("code"), int):
        return invalid("code: required")
    if kind == "result" and not isinstance(body.get("job_id"), str):
        return invalid("job_id: required")
    if kind == "output":
        try:
            body = _output_fields(body)
        except DecodeError as e:
            return invalid(str(e))
    return Event(kind, body)


KEY_CHARS = 40  # a 32-byte CURVE key in Z85
MAX_KEY_FILE_BYTES = 64 << 10
_Z85 = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")


class KeyFileError(Exception):
    """A CURVE key file that cannot be used; the message names the file and what is wrong."""


def _valid_key(text):
    return len(text) == KEY_CHARS and all(c in _Z85 for c in text)


def _key_lines(path, secret):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise KeyFileError(f"open {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"{path}: not a regular file")
        if secret and st.st_mode & 0o077:
            raise KeyFileError(f"secret key file {path} has mode {stat.S_IMODE(st.st_mode):04o}: it "
                            f"may be read by others; refusing it (chmod 600 {path})")
        if st.st_size > MAX_KEY_FILE_BYTES:
            raise KeyFileError(f"{path}: larger than {MAX_KEY_FILE_BYTES} bytes: not a key file")
        text = f.read(MAX_KEY_FILE_BYTES + 1).decode("ascii", "replace")
    # '#' is a Z85 character too: a line is a comment only if it does not start with a key.
    return [line.strip() for line in text.splitlines()
            if line.strip() and not (line.strip().startswith("#")
                                     and not _valid_key(line.split()[0]))]


def read_secret_key(path):
    """(public, secret) Z85 bytes of a NAME.key file; refuses one its group or others can read."""
    lines = _key_lines(path, secret=True)
    if len(lines) != 1 or not _valid_key(lines[0]):
        raise KeyFileError(f"{path}: expected one 40-character Z85 secret key (a NAME.key file from "
                        f"'paddock keys generate')")
    secret = lines[0].encode()
    return zmq.curve_public(secret), secret


def read_public_key(path_or_key):
    """Z85 bytes of a public key given as the text itself, a NAME.pub or a NAME.key file."""
    if _valid_key(path_or_key) and not os.path.exists(path_or_key):
        return path_or_key.encode()
    if path_or_key.endswith(".key"):
        return read_secret_key(path_or_key)[0]
    lines = _key_lines(path_or_key, secret=False)
    if len(lines) != 1 or not _valid_key(lines[0].split()[0]):
        raise KeyFileError(f"{path_or_key}: expected one 40-character Z85 public key (a NAME.pub "
                        f"file from 'paddock keys generate')")
    return lines[0].split()[0].encode()


class Client:
    """A submitter's connection to a Paddock broker (a ZeroMQ DEALER).

    Args:
      endpoint: the broker's client endpoint, e.g. "tcp://127.0.0.1:5555"; or a list of the
        endpoints of brokers that share one queue (broker --store): the client talks to the first
        and, when it has jobs without an answer and has heard nothing for failover_silence_ms (it
        PINGs after half of that), moves to the next one and submits every unanswered job again
        with the same job_id (submit is idempotent: a finished job is answered from the store).
      send_timeout_ms: how long a send may block before raising zmq.Again (broker gone).
      broker_public_key, curve_key: CURVE (both or neither): the broker's public key (a NAME.pub
        file or the Z85 text) and this submitter's secret key file (NAME.key, mode 0600), whose
        public key must be in the broker's --client-allow list. KeyFileError if one is unusable.
    """

    def __init__(self, endpoint, send_timeout_ms=30000, broker_public_key=None, curve_key=None,
                 failover_silence_ms=3000):
        if (broker_public_key is None) != (curve_key is None):
            raise KeyFileError("CURVE needs both broker_public_key and curve_key")
        self._keys = None
        if curve_key is not None:
            self._keys = (read_public_key(broker_public_key),) + read_secret_key(curve_key)
        self._endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
        if not self._endpoints:
            raise ProtocolError("no broker endpoint given")
        self._current = 0
        self._send_timeout_ms = send_timeout_ms
        self._silence = failover_silence_ms / 1000.0
        self.failovers = 0
        self._open = {}  # with several brokers: job_id -> packed request, until its final answer
        self._context = zmq.Context()
        self._socket = None
        self._open_socket()

    @property
    def endpoint(self):
        """The broker this client talks to now."""
        return self._endpoints[self._current]

    def _open_socket(self):
        if self._socket is not None:
            self._socket.close(linger=0)
        self._socket = self._context.socket(zmq.DEALER)
        if self._keys is not None:
            self._socket.curve_serverkey, self._socket.curve_publickey, \
                self._socket.curve_secretkey = self._keys
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MSG_SIZE)
        self._socket.setsockopt(zmq.SNDTIMEO, self._send_timeout_ms)
        self._socket.setsockopt(zmq.RCVHWM, 0)
        self._socket.setsockopt(zmq.SNDHWM, 100000)
        self._socket.connect(self.endpoint)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._last_heard = self._last_ping = time.monotonic()

    def _fail_over(self):
        self._current = (self._current + 1) % len(self._endpoints)
        self.failovers += 1
        self._open_socket()
        bodies = list(self._open.values())
        for start in range(0, len(bodies), MAX_BODIES_PER_MESSAGE):
            self._send(SUBMIT, bodies[start:start + MAX_BODIES_PER_MESSAGE])

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Closes the socket and its context. Unanswered jobs keep running on the broker."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
        if self._context is not None:
            self._context.term()
            self._context = None

    # -- sending -------------------------------------------------------------------------------

    def _send(self, command, bodies=()):
        if self._socket is None:
            raise ProtocolError("client is closed")
        self._socket.send_multipart([PROTOCOL_TAG, bytes([command])] + list(bodies))

    def submit(self, requests):
        """Sends one SUBMIT message carrying every request (1..1024 dicts).

        The broker answers each, in order, with ACCEPTED, REJECTED (queue full) or ERROR 100
        (invalid; the message names the field); an accepted job later gets one RESULT or ERROR.
        Returns the job ids as given (None for a request without a str job_id).
        """
        requests = list(requests)
        if not 1 <= len(requests) <= MAX_BODIES_PER_MESSAGE:
            raise ProtocolError(
                f"a SUBMIT carries 1..{MAX_BODIES_PER_MESSAGE} requests, got {len(requests)}")
        bodies = [_pack(_wire_request(r)) for r in requests]
        self._send(SUBMIT, bodies)
        if len(self._endpoints) > 1:
            for r, body in zip(requests, bodies):
                if isinstance(r.get("job_id"), str):
                    self._open[r["job_id"]] = body
        return [r.get("job_id") if isinstance(r.get("job_id"), str) else None for r in requests]

    def cancel(self, job_id):
        """Sends CANCEL {job_id}. The job ends with ERROR 101 Cancelled or its RESULT; a job the
        broker does not hold is answered ERROR 105 UnknownJob."""
        self._send(CANCEL, [_pack({"job_id": job_id})])

    def fetch(self, job_id):
        """Sends FETCH {job_id}. For a job still queued or running the broker says nothing now:
        its answer comes to this connection too. For a finished job a broker with a journal (the
        default) answers the stored RESULT or ERROR (kept --result-ttl-s); a broker without one,
        or one that never accepted the job, answers ERROR 105 UnknownJob (schemas/PROTOCOL.md,
        FETCH)."""
        self._send(FETCH, [_pack({"job_id": job_id})])

    def ping(self, body=None):
        """Sends PING (with `body`, a dict, when given); the broker answers PONG with the same
        body."""
        self._send(PING, [_pack(body)] if body is not None else [])

    # -- receiving -----------------------------------------------------------------------------

    def next_event(self, timeout_ms):
        """The next answer from the broker as an Event, or None if none arrives within
        timeout_ms (0: do not wait; None or negative: wait forever)."""
        if self._socket is None:
            raise ProtocolError("client is closed")
        if timeout_ms is not None and timeout_ms < 0:
            timeout_ms = None
        if len(self._endpoints) == 1:
            if not dict(self._poller.poll(timeout_ms)).get(self._socket):
                return None
            return _decode_message(self._socket.recv_multipart())
        deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000.0
        while True:
            now = time.monotonic()
            if self._open:
                if now - self._last_heard >= self._silence:
                    self._fail_over()
                    continue
                if (now - self._last_heard >= self._silence / 2
                        and now - self._last_ping >= self._silence / 4):
                    try:
                        self._socket.send_multipart([PROTOCOL_TAG, bytes([PING])], zmq.NOBLOCK)
                    except zmq.Again:
                        pass
                    self._last_ping = now
            wait = None if deadline is None else max(0.0, deadline - now)
            if self._open:
                wait = self._silence / 8 if wait is None else min(wait, self._silence / 8)
            if dict(self._poller.poll(None if wait is None else int(wait * 1000))).get(self._socket):
                event = _decode_message(self._socket.recv_multipart())
                self._last_heard = time.monotonic()
                if event.is_final:
                    self._open.pop(event.job_id, None)
                return event
            if deadline is not None and time.monotonic() >= deadline:
                return None

    def run_jobs(self, requests, timeout_s=60.0):
        """Submits `requests` (any number: split into SUBMITs of at most 1024) and waits for
        each job's final answer.

        Returns {job_id: Event}, the event being RESULT, ERROR or REJECTED. Raises TimeoutError
        if some jobs are still unanswered after timeout_s; the exception's `results` attribute
        holds the answers received so far and `missing` the unanswered job ids. Every request
        must have a distinct str job_id (the broker's answers are matched by it).
        """
        requests = list(requests)
        ids = [r.get("job_id") if isinstance(r, dict) else None for r in requests]
        if any(not isinstance(i, str) or not i for i in ids):
            raise ProtocolError("run_jobs needs a non-empty str job_id in every request")
        if len(set(ids)) != len(ids):
            raise ProtocolError("run_jobs needs distinct job ids")
        pending = set(ids)
        results = {}
        for start in range(0, len(requests), MAX_BODIES_PER_MESSAGE):
            self.submit(requests[start:start + MAX_BODIES_PER_MESSAGE])
        deadline = time.monotonic() + timeout_s
        while pending:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            event = self.next_event(left_ms)
            if event is None or not event.is_final:
                continue
            if event.job_id in pending:
                pending.discard(event.job_id)
                results[event.job_id] = event
        if pending:
            err = TimeoutError(f"{len(pending)} job(s) unanswered after {timeout_s}s: "
                               f"{sorted(pending)[:10]}")
            err.results = results
            err.missing = sorted(pending)
            raise err
        return results

    def run_streaming(self, request, timeout_s=60.0):
        """Submits one request with ``stream: True`` (set on a copy when not already) and yields
        its job's events as they arrive: its OUTPUT events ('output', in the order received),
        then its final RESULT, ERROR or REJECTED event, after which the iteration stops.

        Events of other jobs received meanwhile are dropped, as run_jobs drops them. Raises
        TimeoutError if no final answer arrives within timeout_s of the submit (its `outputs`
        attribute counts the OUTPUT events yielded). The request must have a non-empty str
        job_id. A generator: the SUBMIT is sent when the iteration starts. Stopping the iteration
        early leaves the job running (see cancel).
        """
        if not isinstance(request, dict):
            raise TypeError(f"a request is a dict, got {type(request).__name__}")
        job_id = request.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise ProtocolError("run_streaming needs a non-empty str job_id")
        if request.get("stream") is not True:
            request = dict(request, stream=True)
        self.submit([request])
        deadline = time.monotonic() + timeout_s
        outputs = 0
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                err = TimeoutError(f"job {job_id!r} unanswered after {timeout_s}s "
                                   f"({outputs} output chunk(s) received)")
                err.outputs = outputs
                raise err
            event = self.next_event(left_ms)
            if event is None or event.job_id != job_id:
                continue
            if event.kind == "output":
                outputs += 1
                yield event
            elif event.is_final:
                yield event
                return
