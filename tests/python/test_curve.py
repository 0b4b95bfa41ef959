"""paddock_client over CURVE against a real paddock-broker (--curve-secret-key, --client-allow,
--worker-allow) and a memory worker with its own key (README.md, "Operating Paddock")."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import zmq

import paddock_client
from paddock_client import Client
from test_client import binary

START_TIMEOUT_S = 15.0


def write_key_pair(directory, name):
    """NAME.key (0600) and NAME.pub, as 'paddock keys generate' writes them."""
    public, secret = zmq.curve_keypair()
    key = os.path.join(directory, name + ".key")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(f"# Paddock CURVE secret key '{name}'\n{secret.decode()}\n")
    with open(os.path.join(directory, name + ".pub"), "w") as f:
        f.write(f"{public.decode()} {name}\n")
    return public.decode()


class CurveTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="paddock-pycurve-")
        self.procs = []
        try:
            self._start()
        except BaseException:
            self.tearDown()
            raise

    def tearDown(self):
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self.procs = []
        shutil.rmtree(self.tmp, ignore_errors=True)

    def key(self, name):
        return os.path.join(self.tmp, name)

    def log(self, name):
        with open(os.path.join(self.tmp, name + ".log"), "rb") as f:
            return f.read().decode("utf-8", "replace")

    def _spawn(self, name, argv):
        with open(os.path.join(self.tmp, name + ".log"), "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def _start(self):
        for name in ("broker", "py", "w1", "stranger"):
            write_key_pair(self.tmp, name)
        ready = os.path.join(self.tmp, "broker.json")
        broker = self._spawn("broker", [
            binary("PADDOCK_BROKER_BIN"), "--client-endpoint", "tcp://127.0.0.1:*",
            "--worker-endpoint", "tcp://127.0.0.1:*", "--ready-file", ready,
            "--state-dir", os.path.join(self.tmp, "broker-state"),
            "--curve-secret-key", self.key("broker.key"), "--client-allow", self.key("py.pub"),
            "--worker-allow", self.key("w1.pub")])
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(ready):
            if broker.poll() is not None or time.monotonic() > deadline:
                self.fail("paddock-broker did not start:\n" + self.log("broker"))
            time.sleep(0.02)
        time.sleep(0.05)
        with open(ready) as f:
            self.endpoints = json.load(f)
        self._spawn("worker", [
            binary("PADDOCK_WORKER_BIN"), "--broker", self.endpoints["worker"], "--slots", "2",
            "--worker-id", "py-curve", "--backend", "memory",
            "--broker-public-key", self.key("broker.pub"), "--curve-key", self.key("w1.key")])

    def test_allowed_key_runs_jobs(self):
        self.assertEqual(self.endpoints.get("curve_public_key"),
                         paddock_client.read_public_key(self.key("broker.pub")).decode())
        with Client(self.endpoints["client"], broker_public_key=self.key("broker.pub"),
                    curve_key=self.key("py.key")) as client:
            finals = client.run_jobs([paddock_client.job("curve-1", ["echo", "secret"])],
                                     timeout_s=30)
        event = finals["curve-1"]
        self.assertEqual(event.kind, "result", f"{event}\n{self.log('broker')}")
        self.assertEqual(event.body["stdout"], b"secret\n")

    def test_unknown_key_and_no_key_hear_nothing(self):
        for kwargs in ({}, {"broker_public_key": self.key("broker.pub"),
                            "curve_key": self.key("stranger.key")}):
            with Client(self.endpoints["client"], send_timeout_ms=0, **kwargs) as client:
                try:
                    client.submit([paddock_client.job("refused-1", ["echo", "no"])])
                except zmq.Again:
                    pass  # refused already: nothing takes the message
                self.assertIsNone(client.next_event(1500), kwargs)
        deadline = time.monotonic() + 15
        while "key not in the client allowlist" not in self.log("broker"):
            self.assertLess(time.monotonic(), deadline, self.log("broker"))
            time.sleep(0.05)

    def test_secret_key_readable_by_others_is_refused(self):
        os.chmod(self.key("py.key"), 0o644)
        with self.assertRaisesRegex(paddock_client.KeyFileError, "mode 0644.*chmod 600"):
            Client(self.endpoints["client"], broker_public_key=self.key("broker.pub"),
                   curve_key=self.key("py.key"))
        with self.assertRaises(paddock_client.KeyFileError):
            Client(self.endpoints["client"], curve_key=self.key("w1.key"))


if __name__ == "__main__":
    unittest.main()
