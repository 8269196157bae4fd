"""`orderflow bench`, the load generator: a small embedded run reports every figure and checks
every acknowledged order; a run that reaches no server reports zeros, never negative rates."""
import json
import os
import socket
import subprocess
import tempfile
import unittest

from harness import BIN


class BenchTest(unittest.TestCase):
    def test_embedded_run_checks_every_acknowledged_order(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            p = subprocess.run([BIN, "bench", "--embedded", "--orders", "300", "--batch", "10",
                                "--connections", "4", "--warmup", "0", "--quiet", "--json", out],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            r = json.load(open(out))
            self.assertEqual(r["orders_acknowledged"], 300)
            self.assertEqual(r["errors"], {})
            self.assertEqual(r["terminal"]["checked"], 300)
            self.assertEqual(r["terminal"]["not_terminal"], 0)
            self.assertEqual(r["terminal"]["by_status"], {"delivered": 300})
            self.assertGreater(r["terminal"]["delivered_per_s"], 0)
            self.assertIn("pipeline:", p.stdout)
            # The pipeline's time ends when its last order ended, which the check saw, so the
            # drain is within the check's duration; the rate is over load plus drain.
            t = r["terminal"]
            self.assertGreaterEqual(t["drain_s"], 0)
            self.assertLessEqual(t["drain_s"], t["check_s"])
            self.assertAlmostEqual(t["delivered_per_s"], 300 / (t["load_s"] + t["drain_s"]),
                                   delta=t["delivered_per_s"] * 1e-3)

    def test_orders_not_ended_count_the_whole_check_as_drain(self):
        # Merchants answer after 3 s and the check gives up after 1 s: nothing has ended, so
        # the drain is the whole check and no order counts as delivered.
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            p = subprocess.run([BIN, "bench", "--embedded", "--orders", "20", "--connections", "2",
                                "--warmup", "0", "--quiet", "--terminal-timeout", "1",
                                "--server-args", "--sim-latency-ms merchant=3000", "--json", out],
                               capture_output=True, text=True, timeout=120)
            self.assertEqual(p.returncode, 3, p.stderr + p.stdout)
            with open(out) as f:
                t = json.load(f)["terminal"]
            self.assertEqual(t["not_terminal"], 20)
            self.assertEqual(t["drain_s"], t["check_s"])
            self.assertGreaterEqual(t["check_s"], 1)
            self.assertEqual(t["delivered_per_s"], 0)

    def test_no_server_reports_errors_and_zero_rates(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            p = subprocess.run([BIN, "bench", "--server", f"http://127.0.0.1:{port}",
                                "--api-key", "test-client-key-0001", "--connections", "2",
                                "--duration", "0.5", "--warmup", "0", "--quiet", "--json", out],
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
            r = json.load(open(out))
            self.assertEqual(r["orders_acknowledged"], 0)
            self.assertGreater(r["errors"].get("connect_error", 0), 0)
            self.assertEqual(r["throughput_orders_per_s"], 0)
            self.assertEqual(r["terminal"]["delivered_per_s"], 0)
            self.assertGreaterEqual(r["terminal"]["load_s"], 0)
            self.assertIn("pipeline: 0 orders", p.stdout)


if __name__ == "__main__":
    unittest.main()
