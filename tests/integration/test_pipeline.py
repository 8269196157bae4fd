"""The order pipeline over HTTP with the built-in simulators: every path to a terminal state,
compensation, retries, cancellation at each cancellable status, and live tracking (SSE)."""
import http.client
import json
import threading
import time
import unittest

from harness import ADMIN_KEY, CLIENT_KEY, Client, Server, ServerTest, order_body, wait_for

TERMINAL = ("delivered", "cancelled", "failed")


def effects(events, type_=None, action=None):
    return [e for e in events if e["type"].startswith("effect_")
            and (type_ is None or e["type"] == type_)
            and (action is None or e["data"]["action"] == action)]


class PipelineTest(ServerTest):
    server_args = ("--sim-stock", "limited=5", "--sim-closed-merchant", "m-closed")

    def setUp(self):
        super().setUp()
        self.admin = Client(self.port, ADMIN_KEY)

    def tearDown(self):
        self.admin.close()
        super().tearDown()

    def run_order(self, **overrides):
        r = self.c.create(order_body(**overrides))
        self.assertEqual(r.status, 201, r)
        o = self.wait_status(r.json["id"], TERMINAL)
        events = self.c.get(f"/v1/orders/{o['id']}/events").json["events"]
        self.assertEqual([e["seq"] for e in events], list(range(1, o["version"] + 1)))
        return o, events

    def ledger(self, order_id):
        r = self.admin.get(f"/v1/admin/sim/ledger?order_id={order_id}")
        self.assertEqual(r.status, 200, r)
        return {e["action"]: e for e in r.json["entries"]}

    def stock(self):
        return self.admin.get("/v1/admin/sim/stock").json["stock"]

    def test_happy_path(self):
        o, events = self.run_order()
        self.assertEqual(o["status"], "delivered")
        self.assertEqual(o["payment"], {"status": "captured", "authorized_cents": o["total_cents"],
                                        "captured_cents": o["total_cents"]})
        self.assertRegex(o["courier_id"], r"^courier-\d+$")
        self.assertIsNone(o["failure"])
        succeeded = [e["data"]["action"] for e in effects(events, "effect_succeeded")]
        self.assertEqual(succeeded, ["reserve", "authorize", "confirm", "assign", "deliver", "capture"])
        statuses = [e["data"]["to"] for e in events if e["type"] == "status_changed"]
        self.assertEqual(statuses, ["inventory_reserved", "payment_authorized", "merchant_confirmed",
                                    "courier_assigned", "delivered"])
        for e in effects(events):
            stage, action = e["data"]["stage"], e["data"]["action"]
            self.assertEqual(e["data"]["idempotency_key"], f"{o['id']}:{stage}:{action}")
            self.assertGreaterEqual(e["data"]["attempt"], 1)
        ledger = self.ledger(o["id"])
        for action in ("reserve", "authorize", "confirm", "assign", "deliver", "capture"):
            self.assertEqual(ledger[action]["applied"], 1, action)
        # A delivered order cannot be cancelled.
        self.assertError(self.c.request("POST", f"/v1/orders/{o['id']}/cancel"), 409, "failed_precondition")

    def test_out_of_stock_fails_and_stock_is_restored(self):
        before = self.stock()["limited"]
        big = [{"sku": "limited", "quantity": before + 1, "unit_price_cents": 100}]
        o, events = self.run_order(items=big)
        self.assertEqual(o["status"], "failed")
        self.assertEqual(o["failure"]["stage"], "inventory")
        self.assertEqual(o["failure"]["code"], "out_of_stock")
        self.assertEqual(o["payment"]["status"], "none")
        self.assertEqual(self.stock()["limited"], before)
        # An order that fits takes stock; one that fails later gives it back.
        fits = [{"sku": "limited", "quantity": 2, "unit_price_cents": 100}]
        o2, _ = self.run_order(items=fits)
        self.assertEqual(o2["status"], "delivered")
        self.assertEqual(self.stock()["limited"], before - 2)
        o3, ev3 = self.run_order(items=fits, payment_method="tok_declined")
        self.assertEqual(o3["status"], "failed")
        self.assertEqual([e["data"]["action"] for e in effects(ev3, "effect_succeeded")], ["reserve", "release"])
        self.assertEqual(self.stock()["limited"], before - 2)
        # At the boundary: exactly the remaining stock fits.
        rest = self.stock()["limited"]
        o4, _ = self.run_order(items=[{"sku": "limited", "quantity": rest, "unit_price_cents": 1}])
        self.assertEqual(o4["status"], "delivered")
        self.assertEqual(self.stock()["limited"], 0)

    def test_decline_tokens(self):
        for token, code in (("tok_declined", "payment_declined"), ("tok_insufficient_funds", "insufficient_funds")):
            with self.subTest(token=token):
                o, events = self.run_order(payment_method=token)
                self.assertEqual(o["status"], "failed")
                self.assertEqual(o["failure"], {"stage": "payment", "code": code, "message": o["failure"]["message"]})
                self.assertEqual(o["payment"]["status"], "declined")
                self.assertEqual(o["payment"]["captured_cents"], 0)
                statuses = [e["data"]["to"] for e in events if e["type"] == "status_changed"]
                self.assertEqual(statuses, ["inventory_reserved", "compensating", "failed"])
                self.assertEqual(self.ledger(o["id"])["release"]["applied"], 1)

    def test_flaky_token_retries_and_authorizes_once(self):
        o, events = self.run_order(payment_method="tok_flaky")
        self.assertEqual(o["status"], "delivered")
        auth = effects(events, action="authorize")
        self.assertEqual([(e["type"], e["data"]["attempt"]) for e in auth],
                         [("effect_requested", 1), ("effect_failed", 1), ("effect_requested", 2),
                          ("effect_failed", 2), ("effect_requested", 3), ("effect_succeeded", 3)])
        self.assertTrue(all(e["data"]["retryable"] for e in auth if e["type"] == "effect_failed"))
        ledger = self.ledger(o["id"])
        self.assertEqual(ledger["authorize"]["applied"], 1)
        self.assertEqual(ledger["authorize"]["requests"], 3)
        self.assertEqual(o["payment"]["authorized_cents"], o["total_cents"])

    def test_closed_merchant_voids_and_releases(self):
        o, events = self.run_order(merchant_id="m-closed", items=[{"sku": "limited", "quantity": 1, "unit_price_cents": 5}])
        self.assertEqual(o["status"], "failed")
        self.assertEqual(o["failure"]["code"], "merchant_rejected")
        self.assertEqual(o["payment"]["status"], "voided")
        done = [e["data"]["action"] for e in effects(events, "effect_succeeded")]
        self.assertEqual(done, ["reserve", "authorize", "void", "release"])
        ledger = self.ledger(o["id"])
        self.assertEqual(ledger["void"]["applied"], 1)
        self.assertEqual(ledger["release"]["applied"], 1)
        self.assertNotIn("capture", ledger)


class CancelPipelineTest(unittest.TestCase):
    """Each cancellable status is caught by making the stage that follows it slow."""

    CASES = (
        ("pending", "inventory", ["reserve", "release"]),
        ("inventory_reserved", "payment", ["reserve", "authorize", "void", "release"]),
        ("payment_authorized", "merchant", ["reserve", "authorize", "confirm", "notify_cancel", "void", "release"]),
        ("merchant_confirmed", "dispatch",
         ["reserve", "authorize", "confirm", "assign", "unassign", "notify_cancel", "void", "release"]),
    )

    def test_cancel_at_each_cancellable_status(self):
        for status, slow_stage, expected in self.CASES:
            with self.subTest(status=status):
                server = Server(args=("--sim-latency-ms", f"{slow_stage}=400")).start()
                try:
                    c = server.client()
                    o = c.create().json
                    wait_for(lambda: c.get(f"/v1/orders/{o['id']}").json["status"] == status,
                             what=status)
                    r = c.request("POST", f"/v1/orders/{o['id']}/cancel", {"reason": "test"})
                    self.assertEqual(r.status, 202, r)
                    self.assertEqual(r.json["status"], "cancelling")
                    again = c.request("POST", f"/v1/orders/{o['id']}/cancel")
                    self.assertEqual(again.status, 202, again)  # harmless while cancelling
                    final = wait_for(lambda: (lambda j: j if j["status"] in TERMINAL else None)(
                        c.get(f"/v1/orders/{o['id']}").json), what="terminal")
                    self.assertEqual(final["status"], "cancelled")
                    self.assertIsNone(final["failure"])
                    self.assertNotEqual(final["payment"]["status"], "authorized")
                    self.assertEqual(final["payment"]["captured_cents"], 0)
                    events = c.get(f"/v1/orders/{o['id']}/events").json["events"]
                    done = [e["data"]["action"] for e in effects(events, "effect_succeeded")]
                    self.assertEqual(done, expected)
                    c.close()
                finally:
                    server.cleanup()

    def test_cancel_rejected_from_courier_assigned(self):
        server = Server(args=("--sim-latency-ms", "delivery=1000")).start()
        try:
            c = server.client()
            o = c.create().json
            wait_for(lambda: c.get(f"/v1/orders/{o['id']}").json["status"] == "courier_assigned",
                     what="courier_assigned")
            r = c.request("POST", f"/v1/orders/{o['id']}/cancel")
            self.assertEqual(r.status, 409, r)
            self.assertEqual(r.json["error"]["code"], "failed_precondition")
            final = wait_for(lambda: (lambda j: j if j["status"] in TERMINAL else None)(
                c.get(f"/v1/orders/{o['id']}").json), what="terminal")
            self.assertEqual(final["status"], "delivered")
            c.close()
        finally:
            server.cleanup()


class StreamTest(ServerTest):
    server_args = ("--sim-latency-ms", "merchant=150", "--sim-latency-ms", "delivery=150")

    def read_events(self, order_id, key=CLIENT_KEY, timeout=20):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request("GET", f"/v1/orders/{order_id}/stream", headers={"Authorization": f"Bearer {key}"})
        resp = conn.getresponse()
        if resp.status != 200:
            body = resp.read().decode()
            conn.close()
            return resp.status, body, []
        self.assertEqual(resp.getheader("Content-Type"), "text/event-stream")
        orders, event = [], None
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = resp.fp.readline()
            if not line:
                break  # the server closed the stream
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                self.assertEqual(event, "order")
                orders.append(json.loads(line[6:]))
        conn.close()
        return 200, None, orders

    def test_stream_follows_the_order_to_delivered_and_closes(self):
        o = self.c.create().json
        status, _, orders = self.read_events(o["id"])
        self.assertEqual(status, 200)
        self.assertGreaterEqual(len(orders), 2)
        versions = [x["version"] for x in orders]
        self.assertEqual(versions, sorted(set(versions)), "each version once, in order")
        self.assertEqual(orders[-1]["status"], "delivered")
        self.assertTrue(all(x["id"] == o["id"] for x in orders))
        seen = {x["status"] for x in orders}
        self.assertIn("merchant_confirmed", seen)  # held 150 ms there: the stream saw it

    def test_stream_of_a_finished_order_sends_it_once_and_closes(self):
        o = self.c.create().json
        self.wait_status(o["id"], "delivered")
        status, _, orders = self.read_events(o["id"])
        self.assertEqual(len(orders), 1)
        self.assertEqual(orders[0]["status"], "delivered")

    def test_stream_errors(self):
        status, body, _ = self.read_events("06h2bq4684006000")
        self.assertEqual(status, 404)
        o = self.c.create().json
        from harness import OTHER_TENANT_KEY, WORKER_KEY
        self.assertEqual(self.read_events(o["id"], key=OTHER_TENANT_KEY)[0], 404)
        self.assertEqual(self.read_events(o["id"], key=WORKER_KEY)[0], 403)


if __name__ == "__main__":
    unittest.main()
