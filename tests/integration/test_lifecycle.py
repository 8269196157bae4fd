"""The process: flags, API keys, readiness, graceful drain on SIGTERM/SIGINT, restarts."""
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import BIN, CLIENT_KEY, Client, Server, immutable, order_body, wait_for


class HelpTest(unittest.TestCase):
    def test_serve_help_documents_every_flag(self):
        out = subprocess.run([BIN, "serve", "--help"], capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0)
        for flag in ("--listen", "--data-dir", "--api-key", "--partitions", "--durability",
                     "--sim-durability", "--log-segment-mib", "--io-threads", "--queue-depth-max", "--batch-max", "--connections-max",
                     "--idle-timeout-s", "ORDERFLOW_API_KEYS"):
            self.assertIn(flag, out.stdout)

    def test_bad_flags_exit_non_zero_with_a_message(self):
        for args in (["--durability", "sometimes"], ["--sim-durability", "sometimes"],
                     ["--sim-durability", ""], ["--log-segment-mib", "0"],
                     ["--log-segment-mib", "1025"], ["--partitions", "0"], ["--partitions", "257"],
                     ["--listen", "nonsense"], ["--listen", "127.0.0.1:99999"],
                     ["--api-key", "short:t:client"], ["--api-key", "0123456789abcdef:t:root"],
                     ["--idle-timeout-s", "0"], ["--idle-timeout-s", "86401"]):
            with tempfile.TemporaryDirectory() as d:
                out = subprocess.run([BIN, "serve", "--data-dir", d] + args, capture_output=True,
                                     text=True, timeout=10)
                self.assertNotEqual(out.returncode, 0, args)
                self.assertTrue(out.stderr.strip() or out.stdout.strip(), args)


class KeysTest(unittest.TestCase):
    def test_generated_key_is_stored_and_printed(self):
        server = Server(keys=None).start()
        try:
            key_file = os.path.join(server.data_dir, "api_keys")
            with open(key_file) as f:
                spec = f.read().strip()
            key, tenant, roles = spec.split(":")
            self.assertEqual(tenant, "default")
            self.assertEqual(roles, "client+worker+admin")
            self.assertEqual(os.stat(key_file).st_mode & 0o077, 0)
            out = server.stdout()
            self.assertIn(key, out)
            self.assertIn("curl", out)
            c = Client(server.port, key)
            self.assertEqual(c.create().status, 201)
            self.assertEqual(c.get("/v1/orders").status, 200)
            c.close()
            # The same key after a restart.
            self.assertEqual(server.terminate(), 0)
            server.start()
            c = Client(server.port, key)
            self.assertEqual(len(c.get("/v1/orders").json["orders"]), 1)
            c.close()
        finally:
            server.cleanup()

    def test_keys_from_environment(self):
        keys = "envkey-client-000001:t1:client,envkey-admin-0000001:t1:admin"
        server = Server(keys=None, env={"ORDERFLOW_API_KEYS": keys}).start()
        try:
            self.assertEqual(Client(server.port, "envkey-client-000001").create().status, 201)
            self.assertEqual(Client(server.port, "envkey-admin-0000001").create().status, 403)
            self.assertFalse(os.path.exists(os.path.join(server.data_dir, "api_keys")))
        finally:
            server.cleanup()


class DrainTest(unittest.TestCase):
    def _drain(self, sig):
        server = Server().start()
        try:
            acknowledged = []
            lock = threading.Lock()
            stop = threading.Event()

            def load(n):
                c = Client(server.port)
                i = 0
                while not stop.is_set():
                    try:
                        r = c.create(order_body(customer_id=f"drain-{n}"), idem=f"d-{n}-{i}")
                    except OSError:
                        return
                    if r.status == 201:
                        with lock:
                            acknowledged.append(r.json)
                    i += 1

            threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            server.proc.send_signal(sig)
            self.assertEqual(server.proc.wait(timeout=30), 0)
            stop.set()
            for t in threads:
                t.join()
            self.assertGreater(len(acknowledged), 0)
            self.assertIn("draining", server.log())
            # Everything acknowledged before the drain is there after a restart.
            server.start()
            c = server.client()
            for o in acknowledged:
                r = c.get(f"/v1/orders/{o['id']}")
                self.assertEqual(r.status, 200)
                self.assertEqual(immutable(r.json), immutable(o))
            c.close()
        finally:
            server.cleanup()

    def test_sigterm_drains_and_exits_0(self):
        self._drain(signal.SIGTERM)

    def test_sigint_drains_and_exits_0(self):
        self._drain(signal.SIGINT)


class DataDirTest(unittest.TestCase):
    def test_partition_count_is_fixed(self):
        server = Server(args=("--partitions", "4")).start()
        try:
            self.assertEqual(server.terminate(), 0)
            server.args = ["--partitions", "8"]
            server.start(expect_ready=False)
            self.assertNotEqual(server.proc.wait(timeout=20), 0)
            self.assertIn("--partitions 4", server.log())
        finally:
            server.cleanup()

    def test_without_partitions_the_directory_keeps_its_count(self):
        server = Server(args=("--partitions", "3")).start()
        try:
            self.assertEqual(server.terminate(), 0)
            server.args = []
            server.start()
            self.assertIn('"partitions":"3"', server.log())
            self.assertEqual(server.client().create().status, 201)
        finally:
            server.cleanup()
        fresh = Server().start()  # a new directory: one partition per CPU core but one, 1-8
        try:
            cores = os.cpu_count() or 0
            expected = 1 if cores <= 2 else min(cores - 1, 8)
            self.assertIn(f'"partitions":"{expected}"', fresh.log())
        finally:
            fresh.cleanup()

    def test_second_process_on_same_dir_is_refused(self):
        a = Server().start()
        b = Server(data_dir=a.data_dir)
        try:
            b.start(expect_ready=False)
            self.assertNotEqual(b.proc.wait(timeout=20), 0)
            self.assertIn("lock", b.log().lower())
            self.assertEqual(a.client().get("/readyz", key=None).status, 200)
        finally:
            b.cleanup()
            a.cleanup()

    def test_orders_that_ended_stay_ended_over_restarts_and_checkpoints(self):
        """Fifteenth session's recovery bug: the segment a start had read stayed on disk; once
        checkpoints had retired the ones after it, the next start read it first and orders in
        progress at the earlier start, delivered since, came back in progress."""
        server = Server(args=("--partitions", "1", "--log-segment-mib", "1",
                              "--sim-latency-ms", "delivery=1000"))
        try:
            server.start()
            c = server.client()
            first = [c.create().json["id"] for _ in range(30)]
            c.close()
            server.kill()  # the orders wait for delivery: in progress in the log
            server.start()
            c = server.client()
            for i in first:
                wait_for(lambda: c.get(f"/v1/orders/{i}").json["status"] == "delivered", timeout=30,
                         what="delivered after the restart")
            # Enough orders for several checkpoints of 1 MiB segments.
            out = subprocess.run([BIN, "bench", "--server", f"http://127.0.0.1:{server.port}",
                                  "--api-key", CLIENT_KEY, "--orders", "6000", "--batch", "100",
                                  "--connections", "4", "--quiet", "--terminal-timeout", "120"],
                                 capture_output=True, text=True, timeout=300)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("0 not terminal", out.stdout)
            checkpoints = server.log().count('"order log checkpoint"')
            self.assertGreaterEqual(checkpoints, 4, "1 at the start and 3 past the segment limit")
            c.close()
            self.assertEqual(server.terminate(), 0)
            server.start()
            c = server.client()
            for i in first:
                self.assertEqual(c.get(f"/v1/orders/{i}").json["status"], "delivered", i)
            self.assertEqual(c.get("/v1/orders?status=courier_assigned&limit=5").json["orders"], [])
            c.close()
        finally:
            server.cleanup()

    def test_durability_none_serves_and_survives_restart(self):
        server = Server(args=("--durability", "none", "--partitions", "1")).start()
        try:
            c = server.client()
            ids = [c.create().json["id"] for _ in range(20)]
            c.close()
            self.assertEqual(server.terminate(), 0)
            server.start()
            c = server.client()
            for i in ids:
                self.assertEqual(c.get(f"/v1/orders/{i}").status, 200)
            c.close()
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
