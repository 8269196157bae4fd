"""Test harness: starts the real orderflow binary on an ephemeral port in a temporary data
directory and talks to it over HTTP (Python standard library only).

Every server a test starts is stopped by pid at the end; nothing else is touched.
"""
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

BIN = os.environ.get("ORDERFLOW_BIN", os.path.join(os.path.dirname(__file__), "../../build/orderflow"))

CLIENT_KEY = "test-client-key-0001"
ADMIN_KEY = "test-admin-key-00001"
WORKER_KEY = "test-worker-key-0001"
OTHER_TENANT_KEY = "test-other-tenant-01"
OTHER_WORKER_KEY = "test-other-worker-01"
DEFAULT_KEYS = [
    f"{OTHER_WORKER_KEY}:globex:worker",
    f"{CLIENT_KEY}:acme:client",
    f"{ADMIN_KEY}:acme:admin",
    f"{WORKER_KEY}:acme:worker",
    f"{OTHER_TENANT_KEY}:globex:client+admin",
]


def seeded_random(test_name):
    """A Random whose seed is printed, so a failing run can be repeated (ORDERFLOW_SEED)."""
    seed = int(os.environ.get("ORDERFLOW_SEED", random.randrange(1 << 32)))
    print(f"[{test_name}] seed={seed} (rerun with ORDERFLOW_SEED={seed})", flush=True)
    return random.Random(seed)


def order_body(**overrides):
    body = {
        "customer_id": "c-1",
        "merchant_id": "m-7",
        "items": [{"sku": "burger", "quantity": 2, "unit_price_cents": 899}],
        "currency": "USD",
        "payment_method": "tok_visa",
        "delivery_address": "1 Main St, Springfield",
        "tip_cents": 200,
        "metadata": {"channel": "ios"},
    }
    for k, v in overrides.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


# The parts of an order fixed at creation: what "the same order" means once the pipeline runs.
IMMUTABLE_FIELDS = ("id", "customer_id", "merchant_id", "items", "currency", "payment_method",
                    "delivery_address", "tip_cents", "metadata", "subtotal_cents", "total_cents",
                    "created_at")

# Holds every order at `pending`: the inventory stage is external and no worker polls.
FROZEN_PIPELINE = ("--stage-mode", "inventory=external")


def immutable(order):
    return {k: order[k] for k in IMMUTABLE_FIELDS}


def read_responses(sock, count):
    """Reads `count` whole responses from `sock` (pipelined answers may share a read):
    their status codes, as bytes, in order."""
    got, statuses = b"", []
    while len(statuses) < count:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {statuses}: {got[:300]!r}")
        got += chunk
        while b"\r\n\r\n" in got:  # take each complete response off the front
            head_end = got.index(b"\r\n\r\n") + 4
            length = int(re.search(rb"(?i)content-length: (\d+)", got[:head_end]).group(1))
            if len(got) < head_end + length:
                break
            statuses.append(got.split(b" ", 2)[1])
            got = got[head_end + length:]
    return statuses


def wait_for(predicate, timeout=15.0, interval=0.02, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<{self.status} {self.raw[:300]!r}>"


class Client:
    """One keep-alive connection."""

    def __init__(self, port, key=CLIENT_KEY, timeout=30):
        self.port = port
        self.key = key
        self.timeout = timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def close(self):
        self.conn.close()

    def request(self, method, path, body=None, headers=None, key="default", raw_body=None):
        h = {}
        k = self.key if key == "default" else key
        if k is not None:
            h["Authorization"] = f"Bearer {k}"
        data = None
        if raw_body is not None:
            data = raw_body if isinstance(raw_body, bytes) else raw_body.encode()
        elif body is not None:
            data = json.dumps(body).encode()
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        h = {k2: v for k2, v in h.items() if v is not None}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                return Response(r.status, r.getheaders(), r.read().decode())
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                if attempt == 1:
                    raise

    def create(self, body=None, idem=None, key="default", headers=None):
        hdrs = {"Idempotency-Key": idem or f"k-{random.getrandbits(64):x}"}
        hdrs.update(headers or {})
        return self.request("POST", "/v1/orders", body or order_body(), hdrs, key=key)

    def get(self, path, key="default"):
        return self.request("GET", path, key=key)


class Server:
    def __init__(self, data_dir=None, keys=DEFAULT_KEYS, args=(), env=None):
        self.owns_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="orderflow-it-")
        self.keys = keys
        self.args = list(args)
        self.env = env
        self.proc = None
        self.port = None
        self.log_path = None

    def start(self, timeout=20, expect_ready=True):
        cmd = [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", self.data_dir]
        for k in self.keys or []:
            cmd += ["--api-key", k]
        cmd += self.args
        env = dict(os.environ)
        env.pop("ORDERFLOW_API_KEYS", None)
        env.update(self.env or {})
        fd, self.log_path = tempfile.mkstemp(prefix="orderflow-it-log-")
        self.out_path = self.log_path + ".out"
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=fd, env=env)
        os.close(fd)
        if not expect_ready:
            return self
        deadline = time.time() + timeout
        while time.time() < deadline:
            with open(self.log_path) as f:
                m = re.search(r"ready on .*:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"orderflow exited with {self.proc.returncode}: {self.log()}")
            time.sleep(0.02)
        log = self.log()
        self.kill()
        raise RuntimeError(f"orderflow did not become ready: {log}")

    def log(self):
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path) as f:
            return f.read()

    def stdout(self):
        with open(self.out_path) as f:
            return f.read()

    def client(self, key=CLIENT_KEY):
        return Client(self.port, key)

    def terminate(self, timeout=30):
        """SIGTERM, and wait for the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        for p in (self.log_path, getattr(self, "out_path", None)):
            if p and os.path.exists(p):
                os.unlink(p)
        if self.owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class ServerTest(unittest.TestCase):
    """One server for the whole class."""

    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(args=cls.server_args)
        # Registered first: runs even when the rest of a subclass's setUpClass fails.
        cls.addClassCleanup(cls.server.cleanup)
        cls.server.start()
        cls.port = cls.server.port

    @classmethod
    def tearDownClass(cls):
        if cls.server.proc is not None and cls.server.proc.poll() is None:
            cls.server.terminate()

    def setUp(self):
        self.c = Client(self.port, CLIENT_KEY)

    def tearDown(self):
        self.c.close()

    def assertSameOrder(self, a, b):
        self.assertEqual(immutable(a), immutable(b))

    def wait_status(self, order_id, statuses, client=None, timeout=15.0):
        """Polls until the order's status is one of `statuses`; returns the order."""
        c = client or self.c
        if isinstance(statuses, str):
            statuses = (statuses,)
        last = {}

        def check():
            r = c.get(f"/v1/orders/{order_id}")
            last["order"] = r.json
            return r.json if r.status == 200 and r.json["status"] in statuses else None

        try:
            return wait_for(check, timeout, what=f"{order_id} to reach {statuses}")
        except AssertionError:
            raise AssertionError(f"order never reached {statuses}: {last.get('order')}")

    def assertError(self, r, status, code):
        self.assertEqual(r.status, status, r)
        self.assertIsNotNone(r.json, r)
        self.assertIn("error", r.json, r)
        self.assertEqual(r.json["error"]["code"], code, r)
        self.assertIsInstance(r.json["error"]["message"], str)
        self.assertTrue(r.json["error"]["message"])
