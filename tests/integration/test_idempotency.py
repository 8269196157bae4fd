"""Idempotency-Key semantics: replay, reuse, races, persistence across restarts."""
import json
import threading
import unittest

from harness import CLIENT_KEY, Client, Server, ServerTest, order_body


class IdempotencyTest(ServerTest):
    def test_replay_returns_the_same_order(self):
        first = self.c.create(order_body(), idem="replay-1")
        self.assertEqual(first.status, 201)
        self.assertIsNone(first.header("Idempotent-Replayed"))
        again = self.c.create(order_body(), idem="replay-1")
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.header("Idempotent-Replayed"), "true")
        self.assertSameOrder(again.json, first.json)  # the same order, in its current state

    def test_same_request_in_another_spelling_is_a_replay(self):
        body = order_body(metadata={"a": "1", "b": "2"})
        first = self.c.create(body, idem="spelling-1")
        self.assertEqual(first.status, 201)
        # Reordered keys, other white space, tip omitted vs. 0.
        reordered = dict(reversed(list(body.items())))
        reordered["metadata"] = {"b": "2", "a": "1"}
        raw = json.dumps(reordered, indent=3)
        r = self.c.request("POST", "/v1/orders", raw_body=raw, headers={"Idempotency-Key": "spelling-1"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["id"], first.json["id"])

        no_tip = self.c.create(order_body(tip_cents=None), idem="spelling-2")
        self.assertEqual(no_tip.status, 201)
        zero_tip = self.c.create(order_body(tip_cents=0), idem="spelling-2")
        self.assertEqual(zero_tip.status, 200)
        self.assertEqual(zero_tip.json["id"], no_tip.json["id"])

    def test_different_request_is_rejected(self):
        self.assertEqual(self.c.create(order_body(), idem="reuse-1").status, 201)
        for changed in (order_body(tip_cents=201), order_body(customer_id="c-2"),
                        order_body(items=[{"sku": "burger", "quantity": 3, "unit_price_cents": 899}]),
                        order_body(metadata={"channel": "web"})):
            self.assertError(self.c.create(changed, idem="reuse-1"), 422, "idempotency_key_reuse")

    def test_invalid_request_does_not_consume_the_key(self):
        self.assertError(self.c.create(order_body(currency="us"), idem="consume-1"), 400, "invalid_argument")
        self.assertEqual(self.c.create(order_body(), idem="consume-1").status, 201)

    def test_concurrent_requests_with_one_key_create_one_order(self):
        results = []
        lock = threading.Lock()
        barrier = threading.Barrier(24)

        def worker():
            c = Client(self.port)
            barrier.wait()
            r = c.create(order_body(customer_id="race"), idem="race-key")
            with lock:
                results.append(r)
            c.close()

        threads = [threading.Thread(target=worker) for _ in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        self.assertEqual(statuses.count(201), 1, statuses)
        self.assertTrue(all(s in (200, 201, 409) for s in statuses), statuses)
        ids = {r.json["id"] for r in results if r.status in (200, 201)}
        self.assertEqual(len(ids), 1)
        listed = self.c.get("/v1/orders?customer_id=race").json["orders"]
        self.assertEqual(len(listed), 1)


class IdempotencyAcrossRestartTest(unittest.TestCase):
    def test_keys_survive_restart(self):
        server = Server().start()
        try:
            c = server.client()
            first = c.create(order_body(), idem="persist-1")
            self.assertEqual(first.status, 201)
            c.close()
            self.assertEqual(server.terminate(), 0)
            server.start()
            c = server.client()
            again = c.create(order_body(), idem="persist-1")
            self.assertEqual(again.status, 200, again)
            self.assertEqual(again.json["id"], first.json["id"])
            self.assertEqual(again.json["created_at"], first.json["created_at"])
            self.assertEqual(c.create(order_body(tip_cents=5), idem="persist-1").status, 422)
            c.close()
            self.assertEqual(server.terminate(), 0)
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
