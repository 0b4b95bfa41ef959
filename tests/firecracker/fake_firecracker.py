#!/usr/bin/python3
"""FAKE Firecracker: a TEST DOUBLE of Firecracker's API server, for conformance tests only.

It runs no VM. It serves HTTP/1.1 on a unix socket (--api-sock, as Firecracker does) and answers
like Firecracker's API: 204 on success, 400 with {"fault_message": ...} on a bad request,
connections kept open. Every request is checked against the real specification
(tests/firecracker/reference/firecracker-api.yaml): its method and path must exist, and its JSON body must
validate against the definition the spec names (a small validator for the subset the spec uses:
type, required, properties, enum, minimum, maximum, items, $ref into definitions; unknown
properties are refused too, as Firecracker's deny_unknown_fields does). A state machine refuses
what Firecracker refuses: InstanceStart before boot-source and a root drive or initrd, pre-boot
configuration after the start, pause unless running, resume unless paused, snapshot create
unless paused, snapshot load unless nothing was configured.

Every request is logged, one JSON object a line, to $FAKE_FIRECRACKER_LOG (if set): method, path,
body, status, whether the body conformed, and the number of the connection it came on. Faults for error-path tests come from the
environment (a test double's knobs, not Firecracker's):
  FAKE_FIRECRACKER_FAIL="PUT /boot-source 400 message"  answer that request with that error
  FAKE_FIRECRACKER_STALL="PUT /actions"                 never answer that request
  FAKE_FIRECRACKER_GARBLE="PUT /actions"                answer it with bytes that are not HTTP
  FAKE_FIRECRACKER_OVERSIZE="PUT /actions"              answer it with a 1 MiB body
  FAKE_FIRECRACKER_LISTEN_DELAY_MS=N                    bind the socket only after N ms
  FAKE_FIRECRACKER_IGNORE_CTRL_ALT_DEL=1                the "guest" does not power off on it
  FAKE_FIRECRACKER_IGNORE_SIGTERM=1                     only SIGKILL ends the process
  FAKE_FIRECRACKER_AGENT=/path/to/paddock-agent         on a vsock CONNECT, serve the guest
                                                        agent's protocol with the real agent in
                                                        its host test mode (--channel-fd)
Like Firecracker, and as the user and in the network namespace it runs in, it opens the metrics
file for writing without blocking at PUT /metrics (a FIFO needs its reader first), and opens each
network interface's TAP by name at PUT /network-interfaces (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR on
/dev/net/tun): a missing FIFO, or a TAP its user may not open, is a 400.
Snapshot create writes small stand-in files at snapshot_path and mem_file_path; snapshot load
requires them to exist.
"""
import http.server
import json
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

import yaml

SPEC_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference",
                         "firecracker-api.yaml")


def load_spec(path):
    with open(path) as f:
        return yaml.safe_load(f)


class SchemaError(Exception):
    pass


def validate(value, schema, definitions, where="body"):
    """Raises SchemaError naming the first place `value` breaks `schema`."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if not ref.startswith("#/definitions/"):
            raise SchemaError(f"{where}: unsupported $ref {ref}")
        return validate(value, definitions[ref[len("#/definitions/"):]], definitions, where)
    t = schema.get("type")
    if t == "object":
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: not an object")
        for name in schema.get("required", []):
            if name not in value:
                raise SchemaError(f"{where}: missing required '{name}'")
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties", False)
        for name, v in value.items():
            if name in props:
                validate(v, props[name], definitions, f"{where}.{name}")
            elif extra is False:
                raise SchemaError(f"{where}: unknown property '{name}'")
            elif isinstance(extra, dict):
                validate(v, extra, definitions, f"{where}.{name}")
    elif t == "array":
        if not isinstance(value, list):
            raise SchemaError(f"{where}: not an array")
        for i, item in enumerate(value):
            validate(item, schema.get("items", {}), definitions, f"{where}[{i}]")
    elif t == "string":
        if not isinstance(value, str):
            raise SchemaError(f"{where}: not a string")
    elif t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            raise SchemaError(f"{where}: not an integer")
    elif t == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise SchemaError(f"{where}: not a number")
    elif t == "boolean":
        if not isinstance(value, bool):
            raise SchemaError(f"{where}: not a boolean")
    elif t is not None:
        raise SchemaError(f"{where}: unsupported type {t}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(f"{where}: {value!r} not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        raise SchemaError(f"{where}: {value} below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        raise SchemaError(f"{where}: {value} above the maximum {schema['maximum']}")


class Spec:
    def __init__(self, spec):
        self.definitions = spec["definitions"]
        self.routes = []  # (regex, method, operation)
        for path, ops in spec["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
            for method, op in ops.items():
                if method != "parameters":
                    self.routes.append((re.compile(pattern), method.upper(), op, path))

    def operation(self, method, path):
        """(operation, template path) or None if the spec has no such method and path."""
        for regex, m, op, template in self.routes:
            if m == method and regex.match(path):
                return op, template
        return None

    def check_body(self, op, body):
        for p in op.get("parameters", []):
            if p.get("in") == "body":
                if body is None:
                    if p.get("required"):
                        raise SchemaError("body: required but absent")
                    return
                validate(body, p["schema"], self.definitions)
                return
        if body is not None:
            raise SchemaError("body: this request takes none")


class Vm:
    """The state machine of one Firecracker process."""

    def open_tap(self, name):
        """Opens the TAP by name, as Firecracker does (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), in
        the network namespace and as the user it runs in: a TAP owned by another user fails."""
        import fcntl
        import struct
        TUNSETIFF = 0x400454CA
        flags = 0x0002 | 0x1000 | 0x4000
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
        except OSError as e:
            return f"Open tap device failed: /dev/net/tun: {e.strerror}"
        try:
            fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
        except OSError as e:
            os.close(fd)
            return f"Open tap device failed: TUNSETIFF {name}: {e.strerror}"
        self.taps.append(fd)
        return None

    def __init__(self):
        self.lock = threading.Lock()
        self.state = "NotStarted"  # NotStarted | Running | Paused
        self.configured = set()  # what was configured before the start
        self.drives = {}
        self.vsock_path = None
        self.loaded_snapshot = False
        self.initrd = False
        self.metrics_fd = None
        self.taps = []  # open TAP fds, as Firecracker keeps them

    def apply(self, method, template, path, body):
        """None on success, else the fault message (a 400)."""
        pre_boot = {"/machine-config", "/boot-source", "/drives/{drive_id}",
                    "/network-interfaces/{iface_id}", "/vsock", "/entropy", "/balloon",
                    "/mmds/config", "/cpu-config", "/serial"}
        if method == "PUT" and template in pre_boot:
            if self.state != "NotStarted":
                return f"The requested operation is not supported after starting the microVM."
            if self.loaded_snapshot:
                return "The requested operation is not supported after loading a snapshot."
            self.configured.add(template)
            if template == "/drives/{drive_id}":
                if body["drive_id"] != path.rsplit("/", 1)[1]:
                    return "The id from the path does not match the id from the body!"
                self.drives[body["drive_id"]] = body
            if template == "/boot-source":
                self.initrd = bool(body.get("initrd_path"))
            if template == "/vsock":
                self.vsock_path = body["uds_path"]
            if template == "/network-interfaces/{iface_id}":
                return self.open_tap(body["host_dev_name"])
            return None
        if template == "/metrics":
            # Firecracker opens the metrics file for writing, without blocking (a FIFO needs a
            # reader by then), as the user it runs as.
            try:
                self.metrics_fd = os.open(body["metrics_path"], os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                return f"Cannot open the metrics file {body['metrics_path']}: {e.strerror}"
            return None
        if template == "/actions":
            action = body["action_type"]
            if action == "InstanceStart":
                if self.state != "NotStarted" or self.loaded_snapshot:
                    return "The requested operation is not supported after starting the microVM."
                if "/boot-source" not in self.configured:
                    return "Cannot start microvm without kernel configuration."
                has_root = any(d.get("is_root_device") for d in self.drives.values())
                if not has_root and not self.initrd:
                    return "Cannot start microvm without a root drive or an initrd (this fake " \
                           "requires something to boot from)."
                self.state = "Running"
                return None
            if action == "SendCtrlAltDel":
                if self.state != "Running":
                    return "The requested operation is not supported before starting the microVM."
                return None
            return None  # FlushMetrics
        if template == "/vm":
            want = body["state"]
            if want == "Paused" and self.state != "Running":
                return f"Cannot pause: the microVM is {self.state}."
            if want == "Resumed" and self.state != "Paused":
                return f"Cannot resume: the microVM is {self.state}."
            self.state = "Running" if want == "Resumed" else "Paused"
            return None
        if template == "/snapshot/create":
            if self.state != "Paused":
                return "Cannot save microVM state: the microVM is not paused."
            for key in ("snapshot_path", "mem_file_path"):
                try:
                    with open(body[key], "wb") as f:
                        f.write(b"FAKE FIRECRACKER " + key.encode() + b"\n")
                except OSError as e:
                    return f"Cannot create snapshot file {body[key]}: {e.strerror}"
            return None
        if template == "/snapshot/load":
            if self.state != "NotStarted" or self.configured or self.loaded_snapshot:
                return "Loading a microVM snapshot not allowed after configuring boot-specific " \
                       "resources."
            if not os.path.exists(body["snapshot_path"]):
                return f"Cannot open snapshot file {body['snapshot_path']}: No such file"
            backend = body.get("mem_backend") or {}
            if backend.get("backend_type") == "File" and not os.path.exists(backend["backend_path"]):
                return f"Cannot open memory file {backend['backend_path']}: No such file"
            self.loaded_snapshot = True
            override = body.get("vsock_override")
            if override:
                self.vsock_path = override["uds_path"]
            self.state = "Running" if body.get("resume_vm") else "Paused"
            return None
        return None


def fault(env, method, path):
    value = os.environ.get(env, "")
    parts = value.split(" ", 2)
    return len(parts) >= 2 and parts[0] == method and parts[1] == path


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keeps connections open, as Firecracker does

    def setup(self):
        super().setup()
        with self.server.log_lock:
            self.server.connections += 1
            self.connection_number = self.server.connections

    def log_message(self, fmt, *args):  # no stderr noise
        pass

    def address_string(self):
        return "unix"

    def answer(self, status, payload=None):
        body = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Server", "Firecracker API (FAKE: test double)")
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        return status

    def handle_any(self):
        server = self.server
        method, path = self.command, self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        entry = {"method": method, "path": path, "body": None, "conforms": True,
                 "connection": self.connection_number}
        try:
            body = json.loads(raw) if raw else None
            entry["body"] = body
        except ValueError as e:
            body = None
            entry.update(conforms=False, error=f"body: not JSON: {e}")
        if fault("FAKE_FIRECRACKER_STALL", method, path):
            server.log(entry | {"status": "stalled"})
            time.sleep(3600)
            return
        if fault("FAKE_FIRECRACKER_GARBLE", method, path):
            server.log(entry | {"status": "garbled"})
            self.wfile.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
            self.wfile.flush()
            time.sleep(3600)
            return
        if fault("FAKE_FIRECRACKER_OVERSIZE", method, path):
            server.log(entry | {"status": 400})
            self.answer(400, {"fault_message": "x" * (1 << 20)})
            return
        status, message = 204, None
        found = server.spec.operation(method, path)
        if entry["conforms"] is False:
            status, message = 400, entry["error"]
        elif found is None:
            entry.update(conforms=False, error="no such method and path in the spec")
            status, message = 400, f"Invalid request method and/or path: {method} {path}."
        else:
            op, template = found
            try:
                server.spec.check_body(op, body)
            except SchemaError as e:
                entry.update(conforms=False, error=str(e))
                status, message = 400, f"An error occurred when deserializing the json body " \
                                        f"of a request: {e}."
            if status == 204:
                parts = os.environ.get("FAKE_FIRECRACKER_FAIL", "").split(" ", 3)
                if len(parts) == 4 and parts[0] == method and parts[1] == path:
                    status, message = int(parts[2]), parts[3]
            if status == 204 and method == "GET":
                server.log(entry | {"status": 200})
                self.answer(200, {"id": "fake", "state": server.vm.state,
                                  "vmm_version": "FAKE", "app_name": "Firecracker"})
                return
            if status == 204:
                with server.vm.lock:
                    message = server.vm.apply(method, template, path, body)
                if message is not None:
                    status = 400
                else:
                    server.after(template, body)
        entry["status"] = status
        server.log(entry)
        self.answer(status, None if status == 204 else {"fault_message": message})

    do_GET = do_PUT = do_PATCH = do_POST = do_DELETE = handle_any


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path, spec):
        self.spec = spec
        self.vm = Vm()
        self.log_lock = threading.Lock()
        self.connections = 0
        self.log_path = os.environ.get("FAKE_FIRECRACKER_LOG")
        super().__init__(path, Handler)

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    def log(self, entry):
        if not self.log_path:
            return
        with self.log_lock, open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def after(self, template, body):
        if template == "/actions" and body["action_type"] == "SendCtrlAltDel":
            if not os.environ.get("FAKE_FIRECRACKER_IGNORE_CTRL_ALT_DEL"):
                # The guest reboots; with reboot=k Firecracker exits.
                threading.Timer(0.05, lambda: os._exit(0)).start()
        started = template == "/snapshot/load" or (
            template == "/actions" and body["action_type"] == "InstanceStart")
        if started and self.vm.vsock_path is None and template == "/snapshot/load":
            # A restored VM's vsock is the one its snapshot was taken with: the fake keeps no
            # device state, so it listens next to its API socket.
            self.vm.vsock_path = os.path.join(os.path.dirname(self.server_address), "v.sock")
        if started and self.vm.vsock_path:
            # The agents' work directories go next to the API socket: whoever removes the VM's
            # directory removes them too.
            base = os.path.dirname(self.server_address)
            threading.Thread(target=serve_vsock, args=(self.vm.vsock_path, base),
                             daemon=True).start()


def serve_vsock(path, work_base):
    """The host side of Firecracker's hybrid vsock: CONNECT <port>\\n, OK <host port>\\n."""
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    host_port = 1073741824
    while True:
        conn, _ = listener.accept()
        line = b""
        while not line.endswith(b"\n") and len(line) < 32:
            chunk = conn.recv(1)
            if not chunk:
                break
            line += chunk
        m = re.fullmatch(rb"CONNECT (\d+)\n", line)
        agent = os.environ.get("FAKE_FIRECRACKER_AGENT")
        if not m or not agent:
            conn.close()  # Firecracker closes a connection it cannot forward
            continue
        host_port += 1
        conn.sendall(b"OK %d\n" % host_port)
        work = tempfile.mkdtemp(prefix="agent-work-", dir=work_base)
        subprocess.Popen([agent, "--channel-fd", str(conn.fileno()), "--work-dir", work],
                         pass_fds=[conn.fileno()], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        conn.close()


def main(argv):
    if "--version" in argv[1:]:
        print("Firecracker vFAKE (the fake_firecracker.py test double)")
        return 0
    api_sock = None
    i = 1
    while i < len(argv):
        if argv[i] == "--api-sock" and i + 1 < len(argv):
            api_sock = argv[i + 1]
            i += 2
        else:
            i += 1  # Firecracker's other flags mean nothing to the fake
    if not api_sock:
        print("fake_firecracker: --api-sock PATH is required", file=sys.stderr)
        return 2
    if os.environ.get("FAKE_FIRECRACKER_IGNORE_SIGTERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    spec = Spec(load_spec(os.environ.get("FAKE_FIRECRACKER_SPEC", SPEC_PATH)))
    delay = int(os.environ.get("FAKE_FIRECRACKER_LISTEN_DELAY_MS", "0"))
    if delay:
        time.sleep(delay / 1000)
    if os.path.exists(api_sock):
        os.unlink(api_sock)
    server = Server(api_sock, spec)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
