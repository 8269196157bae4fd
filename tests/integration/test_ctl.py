"""`orderflow ctl` against a real server: every command, tables and --json, exit codes."""
import json
import os
import subprocess
import unittest

from harness import ADMIN_KEY, BIN, CLIENT_KEY, WORKER_KEY, Client, ServerTest, order_body, wait_for


class CtlTest(ServerTest):
    server_args = ("--sim-latency-ms", "merchant=3000", "--stage-sla-ms", "merchant=200")

    def ctl(self, *args, key=ADMIN_KEY, env_key=False):
        env = dict(os.environ)
        cmd = [BIN, "ctl", "--server", f"http://127.0.0.1:{self.port}"]
        if env_key:
            env["ORDERFLOW_API_KEY"] = key
        else:
            env.pop("ORDERFLOW_API_KEY", None)
            cmd += ["--api-key", key]
        out = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, env=env)
        return out.returncode, out.stdout, out.stderr

    def test_orders_commands(self):
        o = self.c.create(order_body(customer_id="ctl-1")).json
        code, out, _ = self.ctl("orders", "get", o["id"])
        self.assertEqual(code, 0)
        self.assertIn(o["id"], out)
        self.assertIn("ctl-1", out)
        code, out, _ = self.ctl("--json", "orders", "get", o["id"], env_key=True)
        self.assertEqual(code, 0)
        self.assertEqual(json.loads(out)["id"], o["id"])
        code, out, _ = self.ctl("orders", "list", "--customer", "ctl-1")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("ID"))
        self.assertIn(o["id"], out)
        code, out, _ = self.ctl("orders", "events", o["id"])
        self.assertEqual(code, 0)
        self.assertIn("order_placed", out)
        code, out, _ = self.ctl("orders", "cancel", o["id"], "--reason", 'said "no"')
        self.assertEqual(code, 0, out)
        self.assertIn("cancelling", out)
        code, out, _ = self.ctl("orders", "watch", o["id"])  # returns once terminal
        self.assertEqual(code, 0)
        self.assertIn("cancelled", out.splitlines()[-1])
        events = self.c.get(f"/v1/orders/{o['id']}/events").json["events"]
        self.assertIn({"reason": 'said "no"'}, [e["data"] for e in events])

    def test_exit_codes(self):
        self.assertEqual(self.ctl("orders", "get", "06h2bq4684006000")[0], 3)
        o = self.c.create().json
        self.assertEqual(self.ctl("orders", "get", o["id"], key=WORKER_KEY)[0], 4)
        self.assertEqual(self.ctl("orders", "get", o["id"], key="not-a-key-at-all-0")[0], 4)
        code, _, err = self.ctl("orders", "bogus")
        self.assertEqual(code, 2)
        # watch: an error answer ends it (it waited forever for a stream that never came: the
        # server keeps the connection open after the error).
        code, _, err = self.ctl("orders", "watch", "06h2bq4684006000")
        self.assertEqual(code, 3, err)
        self.assertIn("404 not_found", err)
        code, _, err = self.ctl("orders", "watch", o["id"], key=WORKER_KEY)
        self.assertEqual(code, 4, err)
        code, _, err = subprocess.run([BIN, "ctl", "--server", "http://127.0.0.1:1", "--api-key", ADMIN_KEY, "stuck"],
                                      capture_output=True, text=True, timeout=30).returncode, None, None
        self.assertEqual(code, 5)

    def test_stuck_stats_and_dead_letters(self):
        o = self.c.create().json
        wait_for(lambda: self.ctl("stuck")[1].count(o["id"]) == 1, timeout=10, what="stuck listing")
        code, out, _ = self.ctl("stuck")
        self.assertIn("merchant", out)
        code, out, _ = self.ctl("--json", "stats")
        self.assertEqual(code, 0)
        stats = json.loads(out)
        self.assertGreaterEqual(stats["in progress (all)"], 1)
        code, out, _ = self.ctl("dead-letters", "list")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith("ID"))
        self.assertEqual(self.ctl("dead-letters", "redrive", o["id"])[0], 4)  # not parked: refused


if __name__ == "__main__":
    unittest.main()
