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
