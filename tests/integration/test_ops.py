"""Operating orderflow: Prometheus metrics (exact counts after a known sequence), request ids,
JSON logs, stuck-order detection and bulk redrive."""
import json
import re
import time
import unittest

from harness import (ADMIN_KEY, CLIENT_KEY, WORKER_KEY, Client, Server, ServerTest, order_body,
                     wait_for)


def parse_metrics(text):
    """{(name, frozenset(labels)): value} from the Prometheus text format."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        assert m, line
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        out[(m.group(1), labels)] = float(m.group(4))
    return out


def metric(ms, name, **labels):
    return ms.get((name, frozenset(labels.items())), 0.0)


class MetricsTest(unittest.TestCase):
    def test_exact_counts_after_a_known_sequence(self):
        server = Server(args=("--log-level", "debug")).start()
        try:
            c = server.client()
            ids = [c.create().json["id"] for _ in range(3)]
            declined = c.create(order_body(payment_method="tok_declined")).json["id"]
            self.assertEqual(c.create(order_body(currency="us")).status, 400)
            self.assertEqual(c.get("/v1/orders", key=None).status, 401)
            for i in ids:
                wait_for(lambda: c.get(f"/v1/orders/{i}").json["status"] == "delivered", what="delivered")
            wait_for(lambda: c.get(f"/v1/orders/{declined}").json["status"] == "failed", what="failed")
            r = c.request("GET", "/metrics", key=None)
            self.assertEqual(r.status, 200)
            self.assertTrue(r.header("Content-Type").startswith("text/plain"))
            ms = parse_metrics(r.raw)
            self.assertEqual(metric(ms, "orderflow_order_transitions_total", **{"from": "pending", "to": "inventory_reserved"}), 4)
            self.assertEqual(metric(ms, "orderflow_order_transitions_total", **{"from": "courier_assigned", "to": "delivered"}), 3)
            self.assertEqual(metric(ms, "orderflow_order_transitions_total", **{"from": "compensating", "to": "failed"}), 1)
            self.assertEqual(metric(ms, "orderflow_effect_attempts_total", stage="payment", action="capture"), 3)
            self.assertEqual(metric(ms, "orderflow_effect_attempts_total", stage="inventory", action="release"), 1)
            self.assertEqual(metric(ms, "orderflow_effect_failures_total", stage="payment", action="authorize",
                                    code="payment_declined", kind="permanent"), 1)
            self.assertEqual(metric(ms, "orderflow_http_requests_total", route="/v1/orders", code="201"), 4)
            self.assertEqual(metric(ms, "orderflow_http_requests_total", route="/v1/orders", code="400"), 1)
            self.assertEqual(metric(ms, "orderflow_rejected_requests_total", reason="validation"), 1)
            self.assertEqual(metric(ms, "orderflow_rejected_requests_total", reason="auth"), 1)
            self.assertEqual(metric(ms, "orderflow_stage_duration_seconds_count", stage="payment", action="capture"), 3)
            self.assertEqual(metric(ms, "orderflow_orders_in_flight"), 0)
            self.assertEqual(metric(ms, "orderflow_dead_letters"), 0)
            self.assertGreaterEqual(sum(v for (n, _), v in ms.items() if n == "orderflow_log_commit_seconds_count"), 1)
            self.assertGreaterEqual(sum(v for (n, _), v in ms.items() if n == "orderflow_partition_batch_commands_count"), 1)
            self.assertIn(("orderflow_partition_queue_depth", frozenset({("partition", "0")})), ms)
            self.assertGreaterEqual(metric(ms, "orderflow_log_fsync_seconds_count"), 1)
            self.assertGreater(metric(ms, "orderflow_log_fsync_seconds_sum"), 0)
            # The settling queue: exported, within its bound, and a few orders never filled it.
            self.assertIn(("orderflow_log_settle_queue", frozenset()), ms)
            self.assertIn(("orderflow_log_settle_waits_total", frozenset()), ms)
            self.assertTrue(0 <= metric(ms, "orderflow_log_settle_queue") <= 64)
            self.assertEqual(metric(ms, "orderflow_log_settle_waits_total"), 0)
            # Logs: one JSON object per line; at debug, a line per request with its id.
            c.request("GET", "/healthz", key=None, headers={"X-Request-Id": "trace-me-123"})
            lines = [json.loads(l) for l in server.log().splitlines() if l.strip()]
            for l in lines:
                self.assertIn(l["level"], ("debug", "info", "warn", "error"))
                self.assertRegex(l["time"], r"Z$")
            self.assertTrue(any(l.get("request_id") == "trace-me-123" and l["route"] == "/healthz" for l in lines))
            created = [l for l in lines if l.get("route") == "/v1/orders" and l.get("status") == "201"]
            self.assertEqual(sorted(l["order_id"] for l in created), sorted(ids + [declined]))
            self.assertTrue(any(l.get("order_id") == ids[0] and l["route"] == "/v1/orders/{id}" for l in lines))
            c.close()
        finally:
            server.cleanup()


class SimDurabilityTest(unittest.TestCase):
    """--sim-durability: the built-in simulators' ledger synced before they answer, or written
    without a sync; the orders' own durability (--durability) is separate."""

    def ledger_counts(self, *args):
        server = Server(args=args + ("--partitions", "1")).start()
        try:
            c = server.client()
            ids = [c.create().json["id"] for _ in range(3)]
            for i in ids:
                wait_for(lambda: c.get(f"/v1/orders/{i}").json["status"] == "delivered", what="delivered")
            ms = parse_metrics(c.request("GET", "/metrics", key=None).raw)
            c.close()
            self.assertEqual(server.terminate(), 0)
            return (metric(ms, "orderflow_sim_ledger_batches_total"), metric(ms, "orderflow_sim_ledger_syncs_total"),
                    metric(ms, "orderflow_log_fsync_seconds_count"))
        finally:
            server.cleanup()

    def test_default_follows_durability(self):
        batches, syncs, log_syncs = self.ledger_counts()
        self.assertGreaterEqual(batches, 5)  # 3 orders x 6 actions, in at least one batch a stage
        self.assertEqual(syncs, batches)
        self.assertGreaterEqual(log_syncs, 1)
        batches, syncs, log_syncs = self.ledger_counts("--durability", "none")
        self.assertGreaterEqual(batches, 5)
        self.assertEqual(syncs, 0)
        self.assertEqual(log_syncs, 0)

    def test_set_apart_from_the_orders(self):
        batches, syncs, log_syncs = self.ledger_counts("--sim-durability", "none")
        self.assertGreaterEqual(batches, 5)
        self.assertEqual(syncs, 0)
        self.assertGreaterEqual(log_syncs, 1)  # the orders are still synced
        batches, syncs, log_syncs = self.ledger_counts("--durability", "none", "--sim-durability", "fsync")
        self.assertGreaterEqual(batches, 5)
        self.assertEqual(syncs, batches)
        self.assertEqual(log_syncs, 0)


class RequestIdTest(ServerTest):
    def test_request_id_is_echoed_or_generated(self):
        r = self.c.request("GET", "/healthz", key=None, headers={"X-Request-Id": "abc-123"})
        self.assertEqual(r.header("X-Request-Id"), "abc-123")
        r = self.c.request("GET", "/healthz", key=None)
        self.assertRegex(r.header("X-Request-Id"), r"^req-")
        r = self.c.request("GET", "/v1/orders", key=None, headers={"X-Request-Id": "bad id with spaces"})
        self.assertRegex(r.header("X-Request-Id"), r"^req-")
        self.assertEqual(r.status, 401)
        self.assertNotEqual(self.c.request("GET", "/healthz", key=None).header("X-Request-Id"),
                            self.c.request("GET", "/healthz", key=None).header("X-Request-Id"))


class StuckTest(ServerTest):
    server_args = ("--sim-latency-ms", "merchant=4000", "--stage-sla-ms", "merchant=400")

    def test_orders_past_their_stage_sla_are_listed_oldest_first(self):
        admin = Client(self.port, ADMIN_KEY)
        old = [self.c.create().json["id"] for _ in range(2)]
        time.sleep(0.7)
        fresh = self.c.create().json["id"]  # within its SLA: not listed
        wait_for(lambda: self.c.get(f"/v1/orders/{fresh}").json["status"] == "payment_authorized", what="fresh at merchant")
        r = admin.get("/v1/admin/orders/stuck")
        self.assertEqual(r.status, 200, r)
        listed = r.json["orders"]
        self.assertEqual([o["id"] for o in listed], old)  # oldest in stage first, fresh excluded
        for o in listed:
            self.assertEqual(o["stage"], "merchant")
            self.assertGreaterEqual(o["in_stage_ms"], 400)
            self.assertEqual(o["status"], "payment_authorized")
        self.assertGreaterEqual(listed[0]["in_stage_ms"], listed[1]["in_stage_ms"])
        self.assertEqual(len(admin.get("/v1/admin/orders/stuck?limit=1").json["orders"]), 1)
        self.assertError(admin.get("/v1/admin/orders/stuck?limit=0"), 400, "invalid_argument")
        self.assertError(admin.get("/v1/admin/orders/stuck?limit=1001"), 400, "invalid_argument")
        self.assertError(self.c.get("/v1/admin/orders/stuck"), 403, "permission_denied")

        def gauge():
            ms = parse_metrics(self.c.request("GET", "/metrics", key=None).raw)
            return metric(ms, "orderflow_orders_stuck", stage="merchant") >= 2
        wait_for(gauge, timeout=5, what="the stuck gauge")
        admin.close()


class BulkRedriveTest(ServerTest):
    server_args = ("--stage-mode", "payment=external", "--sim-closed-merchant", "m-closed")

    def park(self, w):
        o = self.c.create(order_body(merchant_id="m-closed")).json
        for action, finish in (("authorize", "complete"), ("void", "fail")):
            def got():
                for t in w.request("POST", "/v1/tasks/poll", {"stage": "payment", "max_tasks": 1, "wait_ms": 500}).json["tasks"]:
                    return t
            t = wait_for(got, what=action)
            self.assertEqual(t["action"], action)
            body = {} if finish == "complete" else {"code": "processor_down", "retryable": False}
            self.assertEqual(w.request("POST", f"/v1/tasks/{t['task_id']}/{finish}", body).status, 200)
        self.wait_status(o["id"], "needs_attention")
        return o["id"]

    def test_bulk_redrive_respects_limit_and_reports(self):
        w = Client(self.port, WORKER_KEY)
        admin = Client(self.port, ADMIN_KEY)
        parked = [self.park(w), self.park(w)]
        for body in ({"status": "failed"}, {}, {"status": "needs_attention", "since": "yesterday"},
                     {"status": "needs_attention", "limit": 0}, {"status": "needs_attention", "limit": 1001},
                     {"status": "needs_attention", "x": 1}):
            self.assertError(admin.request("POST", "/v1/admin/redrive", body), 400, "invalid_argument")
        r = admin.request("POST", "/v1/admin/redrive", {"status": "needs_attention", "limit": 1, "rate_per_s": 10})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["matched"], 1)
        self.assertEqual(r.json["redriven"], 1)
        self.assertEqual(self.c.get(f"/v1/orders/{parked[0]}").json["status"], "compensating")  # oldest first
        self.assertEqual(self.c.get(f"/v1/orders/{parked[1]}").json["status"], "needs_attention")
        future = admin.request("POST", "/v1/admin/redrive", {"status": "needs_attention", "since": "2099-01-01T00:00:00Z"})
        self.assertEqual(future.json["matched"], 0)
        r = admin.request("POST", "/v1/admin/redrive", {"status": "needs_attention", "since": "2000-01-01T00:00:00.000Z"})
        self.assertEqual((r.json["matched"], r.json["redriven"]), (1, 1))
        w.close()
        admin.close()


if __name__ == "__main__":
    unittest.main()
