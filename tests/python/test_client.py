"""paddock_client (tools/python) against a real paddock-broker and paddock-worker.

The binaries come from PADDOCK_BROKER_BIN / PADDOCK_WORKER_BIN (ctest sets them). When they are
not set the tests FAIL: this file always runs under ctest, so a missing binary is a build or
registration problem, not a reason to skip.

The worker runs the in-memory test double backend ("memory"): it executes nothing and interprets
argv as a script (echo, exit N, fail VARIANT DETAIL, ...), see runtime/README.md.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import paddock_client
from paddock_client import Client

START_TIMEOUT_S = 15.0
JOB_TIMEOUT_S = 60.0


def binary(env_name):
    path = os.environ.get(env_name)
    if not path:
        raise AssertionError(
            f"{env_name} is not set: tests/python/test_client.py needs the paddock binaries "
            f"(ctest sets PADDOCK_BROKER_BIN and PADDOCK_WORKER_BIN; when running by hand, "
            f"export them, e.g. {env_name}=build/broker/paddock-broker)")
    if not os.access(path, os.X_OK):
        raise AssertionError(f"{env_name}={path} is not an executable file")
    return path


class BrokerWorkerTest(unittest.TestCase):
    """Starts one broker and one worker (4 slots) per test; stops both in tearDown."""

    def setUp(self):
        self.procs = []
        self.client = None
        self.tmp = tempfile.mkdtemp(prefix="paddock-pytest-")
        try:
            self._start()
        except BaseException:
            self._stop()
            raise

    def tearDown(self):
        self._stop()

    # -- processes -----------------------------------------------------------------------------

    def _spawn(self, name, argv, env=None):
        log = open(os.path.join(self.tmp, name + ".log"), "wb")
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
        finally:
            log.close()
        self.procs.append((name, proc))
        return proc

    def logs(self):
        """The tail of each process's output, for failure messages."""
        out = []
        for name, _ in self.procs:
            try:
                with open(os.path.join(self.tmp, name + ".log"), "rb") as f:
                    text = f.read()[-4000:].decode("utf-8", "replace")
            except OSError:
                text = "(no log)"
            out.append(f"--- {name} ---\n{text}")
        return "\n".join(out)

    def _start(self):
        broker_bin = binary("PADDOCK_BROKER_BIN")
        worker_bin = binary("PADDOCK_WORKER_BIN")
        ready = os.path.join(self.tmp, "broker.json")
        broker = self._spawn("broker", [
            broker_bin, "--client-endpoint", "tcp://127.0.0.1:*",
            "--worker-endpoint", "tcp://127.0.0.1:*", "--ready-file", ready,
            "--heartbeat-ms", "200", "--liveness", "5", "--image-grace-ms", "0",
            "--log-level", "info"],
            # No journal flag: the broker's default journal, in the state directory a service
            # manager would give it (systemd's StateDirectory= sets STATE_DIRECTORY).
            env={**os.environ, "STATE_DIRECTORY": os.path.join(self.tmp, "broker-state")})
        deadline = time.monotonic() + START_TIMEOUT_S
        info = None
        while info is None:
            if broker.poll() is not None:
                self.fail(f"paddock-broker exited with {broker.returncode} before it was "
                          f"ready\n{self.logs()}")
            if time.monotonic() > deadline:
                self.fail(f"paddock-broker wrote no {ready} within {START_TIMEOUT_S}s\n"
                          f"{self.logs()}")
            try:
                with open(ready) as f:
                    info = json.load(f)
            except (OSError, ValueError):
                time.sleep(0.02)
        self.assertEqual(info.get("pid"), broker.pid, f"ready file: {info}")
        self.assertRegex(info.get("client", ""), r"^tcp://127\.0\.0\.1:\d+$")
        self.assertRegex(info.get("worker", ""), r"^tcp://127\.0\.0\.1:\d+$")
        self.endpoints = info
        self._spawn("worker", [
            worker_bin, "--broker", info["worker"], "--slots", "4", "--worker-id", "py-worker",
            "--backend", "memory", "--memory-images", "default,python", "--heartbeat-ms", "200",
            "--log-level", "info"])
        self.client = Client(info["client"])

    def _stop(self):
        if self.client is not None:
            self.client.close()
            self.client = None
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    def events_until(self, done, timeout_s=JOB_TIMEOUT_S):
        """Reads events until done(events) is true; fails with the logs on timeout."""
        events = []
        deadline = time.monotonic() + timeout_s
        while not done(events):
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"timed out after {timeout_s}s; events so far: {events[-20:]}\n"
                          f"{self.logs()}")
            for name, proc in self.procs:
                if proc.poll() is not None:
                    self.fail(f"{name} exited with {proc.returncode}\n{self.logs()}")
            event = self.client.next_event(min(int(left * 1000), 200))
            if event is not None:
                events.append(event)
        return events

    def run_one(self, request):
        try:
            results = self.client.run_jobs([request], timeout_s=JOB_TIMEOUT_S)
        except TimeoutError as e:
            self.fail(f"{e}\n{self.logs()}")
        self.assertEqual(list(results), [request["job_id"]])
        return results[request["job_id"]]

    # -- tests ---------------------------------------------------------------------------------

    def test_fifty_echo_jobs_are_each_answered_once_with_their_stdout(self):
        n = 50
        requests = [{"job_id": f"echo-{i}", "argv": ["echo", "hello", str(i)]} for i in range(n)]
        self.client.submit(requests)
        ids = {r["job_id"] for r in requests}

        def all_final(events):
            return len({e.job_id for e in events if e.is_final}) >= n

        events = self.events_until(all_final)
        # Anything still in flight (a duplicate answer) arrives within a few heartbeats.
        time.sleep(0.5)
        while (e := self.client.next_event(0)) is not None:
            events.append(e)

        accepted = [i for e in events if e.kind == "accepted" for i in e.job_ids]
        self.assertEqual(sorted(accepted), sorted(ids), "each job ACCEPTED exactly once")
        finals = [e for e in events if e.is_final]
        self.assertEqual(sorted(e.job_id for e in finals), sorted(ids),
                         f"each job answered exactly once; finals: {finals}")
        unexpected = [e for e in events if e.kind not in ("accepted", "result")]
        self.assertEqual(unexpected, [])
        for e in finals:
            i = e.job_id.split("-")[1]
            self.assertEqual(e.body["exit_code"], 0, e)
            self.assertEqual(e.body["stdout"], f"hello {i}\n".encode(), e)
            self.assertEqual(e.body["backend"], "memory")
            self.assertEqual(e.body["worker_id"], "py-worker")
            # Warm (a clone of the worker's template) or, before the template exists, cold.
            self.assertIsInstance(e.body["warm"], bool)
            if e.body["warm"]:
                self.assertTrue(e.body["template"].startswith("tpl-default-1x128-"), e.body)
            else:
                self.assertEqual(e.body.get("template", ""), "")

    def test_the_broker_journals_by_default_in_its_state_directory(self):
        state = os.path.join(self.tmp, "broker-state")
        self.run_one({"job_id": "journaled", "argv": ["true"]})
        self.assertTrue(os.path.exists(os.path.join(state, "journal.db")), self.logs())
        with open(os.path.join(state, "journal.db.lock")) as f:
            self.assertEqual(f.read().strip(), str(self.procs[0][1].pid))

    def test_a_client_given_a_dead_broker_first_fails_over_to_the_next(self):
        # Nothing listens on the first endpoint: silence, then the client moves on and submits
        # its unanswered jobs again to the live broker.
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = f"tcp://127.0.0.1:{s.getsockname()[1]}"
        with Client([dead, self.endpoints["client"]], failover_silence_ms=600) as c:
            jobs = [paddock_client.job(f"fo-{i}", ["echo", f"fo-{i}"]) for i in range(20)]
            results = c.run_jobs(jobs, timeout_s=JOB_TIMEOUT_S)
            self.assertEqual(c.failovers, 1)
            self.assertEqual(c.endpoint, self.endpoints["client"])
        self.assertEqual(sorted(results), sorted(j["job_id"] for j in jobs))
        for job_id, event in results.items():
            self.assertEqual(event.kind, "result", f"{event}\n{self.logs()}")
            self.assertEqual(event.body["stdout"], f"{job_id}\n".encode())

    def test_exit_code_is_reported(self):
        event = self.run_one({"job_id": "exit-3", "argv": ["exit", "3"]})
        self.assertEqual(event.kind, "result", event)
        self.assertEqual(event.body["exit_code"], 3)
        self.assertEqual(event.body["signal"], 0)
        self.assertFalse(event.body["timed_out"])

    def test_steps_run_in_order_and_stop_after_a_failure_unless_told_to_go_on(self):
        steps = [paddock_client.step(["echo", "one"]), paddock_client.step(["exit", "3"]),
                 paddock_client.step(["cat"], stdin="three")]
        event = self.run_one(paddock_client.steps_job("steps-1", steps))
        self.assertEqual(event.kind, "result", event)
        self.assertEqual([s["exit_code"] for s in event.steps], [0, 3])
        self.assertEqual(event.steps[0]["stdout"], b"one\n")
        self.assertEqual(event.body["exit_code"], 3)  # the last step run's
        self.assertEqual(event.body["stdout"], b"")  # output is in the steps
        event = self.run_one(paddock_client.steps_job("steps-2", steps, stop_on_failure=False))
        self.assertEqual([s["exit_code"] for s in event.steps], [0, 3, 0])
        self.assertEqual(event.steps[2]["stdout"], b"three")
        self.assertEqual(event.body["exit_code"], 0)

    def test_stdin_bytes_reach_the_job(self):
        data = bytes(range(256))
        event = self.run_one({"job_id": "cat-1", "argv": ["cat"], "stdin": data})
        self.assertEqual(event.kind, "result", event)
        self.assertEqual(event.body["stdout"], data)

    def test_runtime_error_is_an_error_with_code_variant_and_message(self):
        event = self.run_one({"job_id": "fail-1", "argv": ["fail", "Jailer", "boom"]})
        self.assertEqual(event.kind, "error", event)
        self.assertEqual(event.code, 11)
        self.assertEqual(event.variant, "Jailer")
        self.assertEqual(paddock_client.CODES[event.code], "Jailer")
        self.assertEqual(event.message, "jailer error: boom")
        self.assertEqual(event.job_id, "fail-1")

    def test_invalid_request_is_error_100_naming_the_field(self):
        event = self.run_one({"job_id": "no-argv-1", "image": "default"})
        self.assertEqual(event.kind, "error", event)
        self.assertEqual(event.code, 100)
        self.assertEqual(event.variant, "InvalidRequest")
        self.assertIn("argv", event.message)
        self.assertFalse(event.body.get("retryable", False))

    def test_image_chooses_the_worker_and_an_unknown_image_is_error_106(self):
        # The worker (the memory test double) says it has "default" and "python".
        event = self.run_one(paddock_client.job("py-1", ["echo", "hi"], image="python"))
        self.assertEqual(event.kind, "result", f"{event}\n{self.logs()}")
        self.assertEqual(event.body["stdout"], b"hi\n")
        event = self.run_one(paddock_client.job("rb-1", ["echo", "hi"], image="ruby"))
        self.assertEqual(event.kind, "error")
        self.assertEqual((event.code, event.variant), (106, "UnknownImage"))
        self.assertEqual(event.message, "no connected worker has image 'ruby' (the 1 connected "
                                        "worker(s) have: default, python)")
        self.assertFalse(event.body.get("retryable"))

    def test_ping_gets_pong(self):
        self.client.ping()
        events = self.events_until(lambda ev: any(e.kind == "pong" for e in ev), timeout_s=10)
        self.assertEqual([e.kind for e in events], ["pong"])
        self.client.ping({"nonce": 42, "who": "py"})
        events = self.events_until(lambda ev: any(e.kind == "pong" for e in ev), timeout_s=10)
        self.assertEqual(events[-1].body, {"nonce": 42, "who": "py"})

    def test_run_streaming_yields_live_output_then_the_result_and_nothing_after(self):
        try:
            events = list(self.client.run_streaming(
                paddock_client.job("py-live", ["every", "50", "3", "tick"]),
                timeout_s=JOB_TIMEOUT_S))
        except TimeoutError as e:
            self.fail(f"{e}\n{self.logs()}")
        self.assertTrue(events, self.logs())
        *outputs, final = events
        self.assertEqual(final.kind, "result", f"{events}\n{self.logs()}")
        self.assertEqual(final.job_id, "py-live")
        self.assertEqual(final.body["exit_code"], 0)
        self.assertEqual(final.body["stdout"], b"tick\ntick\ntick\n")
        self.assertTrue(outputs, f"no OUTPUT before the RESULT: {events}")
        offset = 0
        for e in outputs:
            self.assertEqual((e.kind, e.job_id, e.attempt, e.step, e.stream),
                             ("output", "py-live", 1, None, "stdout"), e)
            self.assertEqual(e.offset, offset, f"not contiguous: {outputs}")
            offset += len(e.data)
        self.assertEqual(b"".join(e.data for e in outputs), b"tick\ntick\ntick\n")
        self.assertEqual(b"".join(e.data for e in outputs), final.body["stdout"])
        # Nothing of that job comes after its RESULT: a PING's PONG, answered after anything the
        # broker had for this connection, is the next event.
        self.client.ping()
        after = self.events_until(lambda ev: any(e.kind == "pong" for e in ev), timeout_s=10)
        self.assertEqual([e.kind for e in after], ["pong"], after)

    def test_a_job_without_stream_gets_no_output_events(self):
        request = paddock_client.job("py-quiet", ["every", "20", "3", "tick"])
        self.assertNotIn("stream", request)
        self.client.submit([request])
        events = self.events_until(lambda ev: any(e.is_final for e in ev))
        self.client.ping()
        events += self.events_until(lambda ev: any(e.kind == "pong" for e in ev), timeout_s=10)
        self.assertEqual([e.kind for e in events], ["accepted", "result", "pong"], events)
        self.assertEqual(events[1].body["stdout"], b"tick\ntick\ntick\n")

    def test_cancel_of_an_unknown_job_is_error_105(self):
        self.client.cancel("never-submitted")
        events = self.events_until(lambda ev: any(e.kind == "error" for e in ev), timeout_s=10)
        self.assertEqual(events[-1].code, 105, events)
        self.assertEqual(events[-1].job_id, "never-submitted")


class ClientUnitTest(unittest.TestCase):
    """paddock_client's local behaviour, no broker needed."""

    def test_codes_table(self):
        self.assertEqual(paddock_client.CODES[1], "VmAlreadyExists")
        self.assertEqual(paddock_client.CODES[13], "NetworkSetup")
        self.assertEqual(paddock_client.CODES[14], "GuestAgent")
        self.assertEqual(paddock_client.CODES[100], "InvalidRequest")
        self.assertEqual(paddock_client.CODES[105], "UnknownJob")
        self.assertEqual(paddock_client.CODES[106], "UnknownImage")
        self.assertEqual(sorted(paddock_client.CODES), list(range(1, 15)) + list(range(100, 110)))
        self.assertEqual(paddock_client.code_name(4242), "Unknown")

    def test_quota_refusal_is_told_apart(self):
        Event = paddock_client.Event
        quota = Event("rejected", {"job_id": "a", "code": 108, "variant": "QuotaExceeded",
                                   "message": "tenant 'local' has 2 jobs queued, its max_queued",
                                   "retryable": True})
        self.assertTrue(quota.quota_exceeded)
        self.assertTrue(quota.retryable)
        self.assertIn("max_queued", quota.message)
        full = Event("rejected", {"job_id": "b", "code": 103, "retryable": True})
        self.assertFalse(full.quota_exceeded)
        too_large = Event("error", {"job_id": "c", "code": 109, "retryable": False})
        self.assertFalse(too_large.quota_exceeded)
        self.assertFalse(too_large.retryable)
        self.assertEqual(too_large.variant, "TooLarge")
        self.assertIsNone(Event("result", {"job_id": "d"}).retryable)

    def test_job_builds_a_request_with_its_image(self):
        self.assertEqual(paddock_client.job("a", ("true",)), {"job_id": "a", "argv": ["true"]})
        self.assertEqual(paddock_client.job("b", ["python3"], image="python", timeout_ms=5),
                         {"job_id": "b", "argv": ["python3"], "image": "python", "timeout_ms": 5})

    def test_submit_refuses_more_than_1024_bodies_and_none(self):
        with Client("tcp://127.0.0.1:1") as client:
            with self.assertRaises(paddock_client.ProtocolError):
                client.submit([{"job_id": f"j{i}", "argv": ["true"]} for i in range(1025)])
            with self.assertRaises(paddock_client.ProtocolError):
                client.submit([])

    def test_decoding_of_broker_messages(self):
        dec = paddock_client._decode_message
        pack = paddock_client._pack
        e = dec([b"PDK1", b"\x05", pack({"job_ids": ["a", "b"]})])
        self.assertEqual((e.kind, e.job_ids), ("accepted", ["a", "b"]))
        e = dec([b"PDK1", b"\x08", pack({"job_id": "x", "code": 4242, "variant": "New",
                                          "message": "m"})])
        self.assertEqual((e.kind, e.code, e.variant, e.is_final), ("error", 4242, "New", True))
        e = dec([b"PDK1", b"\x07", pack({"job_id": "x", "exit_code": 0, "stdout": b"\xff"})])
        self.assertEqual((e.kind, e.body["stdout"]), ("result", b"\xff"))
        self.assertEqual(dec([b"PDK1", b"\x09"]).kind, "pong")
        self.assertEqual(dec([b"PDK2", b"\x09"]).kind, "invalid")
        self.assertEqual(dec([b"PDK1", b"\x01", pack({})]).kind, "invalid")  # wrong direction
        self.assertEqual(dec([b"PDK1", b"\x07"]).kind, "invalid")  # RESULT needs a body
        self.assertEqual(dec([b"PDK1", b"\x07", b"\xc1"]).kind, "invalid")
        self.assertEqual(dec([b"PDK1", b"\x07", pack({"job_id": "x"}) + b"\x00"]).kind,
                         "invalid")

    def test_stdin_text_is_sent_as_bin(self):
        import msgpack
        wire = paddock_client._pack(paddock_client._wire_request(
            {"job_id": "a", "argv": ["cat"], "stdin": "t\u00e9xt",
             "files": [{"path": "f", "data": "d"}]}))
        body = msgpack.unpackb(wire, raw=False)
        self.assertEqual(body["stdin"], "t\u00e9xt".encode())
        self.assertEqual(body["files"][0]["data"], b"d")
        wire = paddock_client._pack(paddock_client._wire_request(paddock_client.steps_job(
            "s", [paddock_client.step(["cat"], stdin="x")], stop_on_failure=False)))
        body = msgpack.unpackb(wire, raw=False)
        self.assertEqual(body["steps"], [{"argv": ["cat"], "stdin": b"x"}])
        self.assertIs(body["stop_on_failure"], False)
        self.assertNotIn("argv", body)

    # -- live output (OUTPUT, 0x11) ------------------------------------------------------------

    def test_a_streaming_request_says_stream_only_when_true(self):
        import msgpack
        self.assertEqual(paddock_client.job("a", ["make"], stream=True),
                         {"job_id": "a", "argv": ["make"], "stream": True})
        self.assertNotIn("stream", paddock_client.job("a", ["make"]))
        self.assertNotIn("stream", paddock_client.job("a", ["make"], stream=False))
        body = msgpack.unpackb(paddock_client._pack(paddock_client._wire_request(
            paddock_client.steps_job("s", [paddock_client.step(["true"])], stream=True))),
            raw=False)
        self.assertIs(body["stream"], True)
        self.assertNotIn("stream", paddock_client.steps_job("s", [paddock_client.step(["x"])]))

    def output_body(self, **fields):
        import msgpack
        body = {"job_id": "live-1", "attempt": 1, "stream": "stdout", "offset": 0,
                "data": b"hello\n"}
        body.update(fields)
        return msgpack.packb({k: v for k, v in body.items() if v is not Ellipsis},
                             use_bin_type=True)

    def test_output_is_decoded_into_an_output_event(self):
        dec = paddock_client._decode_message
        e = dec([b"PDK1", b"\x11", self.output_body()])
        self.assertEqual(e.kind, "output")
        self.assertEqual((e.job_id, e.attempt, e.step, e.stream, e.offset, e.data),
                         ("live-1", 1, None, "stdout", 0, b"hello\n"))
        self.assertFalse(e.is_final)
        self.assertIn("6 bytes", repr(e))
        e = dec([b"PDK1", b"\x11", self.output_body(
            attempt=2, step=15, stream="stderr", offset=8388608 - 65536, data=b"\xff" * 65536)])
        self.assertEqual((e.kind, e.attempt, e.step, e.stream, e.offset, len(e.data)),
                         ("output", 2, 15, "stderr", 8388608 - 65536, 65536))
        # A worker's OUTPUT names its tenant; step nil is absent.
        got = paddock_client.decode_output(self.output_body(tenant="team-a", step=None))
        self.assertEqual((got["tenant"], got["step"]), ("team-a", None))
        # Other kinds have no output fields.
        result = dec([b"PDK1", b"\x07", paddock_client._pack({"job_id": "x", "attempt": 2})])
        self.assertEqual((result.attempt, result.stream, result.data), (None, None, None))

    def test_bad_output_bodies_are_invalid_events_naming_the_field(self):
        cases = [
            ({"data": b""}, "data"),
            ({"data": ...}, "data"),
            ({"data": b"x" * 65537}, "data"),
            ({"data": 5}, "data"),
            ({"stream": "x"}, "stream"),
            ({"stream": ...}, "stream"),
            ({"stream": b"stdout"}, "stream"),
            ({"offset": 8388600, "data": b"123456789"}, "data"),
            ({"offset": 8388609, "data": b"x"}, "offset"),
            ({"offset": -1}, "offset"),
            ({"offset": ...}, "offset"),
            ({"attempt": 0}, "attempt"),
            ({"attempt": ...}, "attempt"),
            ({"attempt": True}, "attempt"),
            ({"attempt": 2**32}, "attempt"),
            ({"step": 16}, "step"),
            ({"step": "0"}, "step"),
            ({"job_id": ""}, "job_id"),
            ({"job_id": ...}, "job_id"),
            ({"job_id": "j" * 129}, "job_id"),
            ({"tenant": ".hidden"}, "tenant"),
            ({"tenant": "a/b"}, "tenant"),
        ]
        for fields, field in cases:
            with self.subTest(fields={k: (v if not isinstance(v, bytes) or len(v) < 16
                                          else f"{len(v)} bytes") for k, v in fields.items()}):
                body = self.output_body(**fields)
                with self.assertRaises(paddock_client.DecodeError) as caught:
                    paddock_client.decode_output(body)
                self.assertEqual(caught.exception.field, field, caught.exception)
                e = paddock_client._decode_message([b"PDK1", b"\x11", body])
                self.assertEqual(e.kind, "invalid")
                self.assertTrue(e.message.startswith(field + ": "), e.message)
        # At the cap exactly is fine.
        self.assertEqual(paddock_client.decode_output(
            self.output_body(offset=8388605, data=b"end"))["offset"], 8388605)
        # Not a map, trailing bytes, no body, two bodies.
        with self.assertRaises(paddock_client.DecodeError) as caught:
            paddock_client.decode_output(paddock_client._pack(["live-1"]))
        self.assertEqual(caught.exception.field, "body")
        dec = paddock_client._decode_message
        self.assertEqual(dec([b"PDK1", b"\x11", self.output_body() + b"\x00"]).kind, "invalid")
        self.assertEqual(dec([b"PDK1", b"\x11"]).kind, "invalid")
        self.assertEqual(dec([b"PDK1", b"\x11", self.output_body(), self.output_body()]).kind,
                         "invalid")

    def test_run_streaming_yields_output_then_the_final_event(self):
        pack = paddock_client._pack

        class Fake(Client):
            """A client whose broker is a script of answers (no socket I/O)."""

            def __init__(self, answers):
                super().__init__("tcp://127.0.0.1:1")
                self.answers = list(answers)
                self.sent = []

            def submit(self, requests):
                self.sent.extend(requests)
                return [r["job_id"] for r in requests]

            def next_event(self, timeout_ms):
                if not self.answers:
                    return None
                return paddock_client._decode_message([b"PDK1"] + self.answers.pop(0))

        def out(job_id, offset, data):
            return [b"\x11", pack({"job_id": job_id, "attempt": 1, "stream": "stdout",
                                   "offset": offset, "data": data})]

        with Fake([[b"\x05", pack({"job_ids": ["s-1"]})], out("s-1", 0, b"a"),
                   out("other", 0, b"z"), out("s-1", 1, b"b"),
                   [b"\x07", pack({"job_id": "other"})],
                   [b"\x07", pack({"job_id": "s-1", "stdout": b"ab"})],
                   out("s-1", 2, b"never")]) as fake:
            events = list(fake.run_streaming(paddock_client.job("s-1", ["echo"])))
            self.assertEqual(fake.sent, [{"job_id": "s-1", "argv": ["echo"], "stream": True}])
        self.assertEqual([(e.kind, e.job_id) for e in events],
                         [("output", "s-1"), ("output", "s-1"), ("result", "s-1")])
        self.assertEqual(b"".join(e.data for e in events[:2]), events[2].body["stdout"])

        with Fake([out("s-2", 0, b"a")]) as fake:
            it = fake.run_streaming({"job_id": "s-2", "argv": ["x"], "stream": True},
                                    timeout_s=0.05)
            self.assertEqual(next(it).data, b"a")
            with self.assertRaises(TimeoutError) as caught:
                next(it)
            self.assertEqual(caught.exception.outputs, 1)
        with Client("tcp://127.0.0.1:1") as client:
            with self.assertRaises(paddock_client.ProtocolError):
                next(client.run_streaming({"argv": ["x"]}))


if __name__ == "__main__":
    unittest.main()
