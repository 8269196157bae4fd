"""POST /v1/orders:batch: per-item results exactly as POST /v1/orders would give them."""
import json
import unittest

from harness import FROZEN_PIPELINE, WORKER_KEY, ServerTest, order_body, read_responses


class BatchTest(ServerTest):
    server_args = FROZEN_PIPELINE

    def batch(self, items, **kw):
        return self.c.request("POST", "/v1/orders:batch", {"orders": items}, **kw)

    def test_mixed_results_in_request_order(self):
        first = self.c.create(order_body(customer_id="b-0"), idem="batch-existing").json
        items = [
            {"idempotency_key": "batch-new-1", "order": order_body(customer_id="b-1")},
            {"idempotency_key": "batch-bad", "order": order_body(currency="usd")},
            {"idempotency_key": "batch-existing", "order": order_body(customer_id="b-0")},
            {"idempotency_key": "batch-existing", "order": order_body(customer_id="b-9")},
            {"idempotency_key": "bad key", "order": order_body()},
            {"order": order_body()},
            {"idempotency_key": "batch-new-2", "order": order_body(customer_id="b-2"), "x": 1},
        ]
        r = self.batch(items)
        self.assertEqual(r.status, 200, r)
        res = r.json["results"]
        self.assertEqual([x["status"] for x in res], [201, 400, 200, 422, 400, 400, 400])
        self.assertEqual(res[0]["idempotency_key"], "batch-new-1")
        self.assertEqual(res[0]["order"]["customer_id"], "b-1")
        self.assertEqual(res[0]["order"]["status"], "pending")
        self.assertEqual(res[1]["error"]["code"], "invalid_argument")
        self.assertEqual(res[1]["error"]["details"][0]["field"], "orders[1].order.currency")
        self.assertEqual(res[2]["order"]["id"], first["id"])
        self.assertEqual(res[3]["error"]["code"], "idempotency_key_reuse")
        self.assertEqual(res[4]["error"]["details"][0]["field"], "orders[4].idempotency_key")
        self.assertEqual(res[5]["error"]["details"][0]["field"], "orders[5].idempotency_key")
        self.assertEqual(res[6]["error"]["details"][0]["field"], "orders[6].x")
        # Acknowledged items are durable and listed; rejected ones created nothing.
        g = self.c.get(f"/v1/orders/{res[0]['order']['id']}")
        self.assertEqual(g.status, 200)
        self.assertEqual(self.c.get("/v1/orders?customer_id=b-2").json["orders"], [])
        # The same batch again: replays.
        again = self.batch(items[:1]).json["results"]
        self.assertEqual(again[0]["status"], 200)
        self.assertEqual(again[0]["order"]["id"], res[0]["order"]["id"])

    def test_size_bounds_both_sides(self):
        items = [{"idempotency_key": f"big-{i}", "order": order_body(customer_id="bulk")} for i in range(1000)]
        r = self.batch(items)
        self.assertEqual(r.status, 200, r)
        self.assertEqual({x["status"] for x in r.json["results"]}, {201})
        ids = {x["order"]["id"] for x in r.json["results"]}
        self.assertEqual(len(ids), 1000)
        items.append({"idempotency_key": "big-1000", "order": order_body()})
        self.assertError(self.batch(items), 400, "invalid_argument")
        self.assertError(self.batch([]), 400, "invalid_argument")

    def test_envelope_errors(self):
        self.assertError(self.c.request("POST", "/v1/orders:batch", {"items": []}), 400, "invalid_argument")
        self.assertError(self.c.request("POST", "/v1/orders:batch", {}), 400, "invalid_argument")
        self.assertError(self.c.request("POST", "/v1/orders:batch", raw_body="{"), 400, "invalid_json")
        self.assertError(self.c.request("POST", "/v1/orders:batch", raw_body="[]"), 400, "invalid_argument")
        r = self.c.request("POST", "/v1/orders:batch", raw_body=json.dumps({"orders": []}),
                           headers={"Content-Type": "text/plain"})
        self.assertError(r, 415, "unsupported_media_type")
        self.assertError(self.c.request("POST", "/v1/orders:batch", {"orders": [1]}, key=WORKER_KEY),
                         403, "permission_denied")
        self.assertError(self.c.request("GET", "/v1/orders:batch"), 405, "method_not_allowed")

    def test_request_pipelined_behind_a_large_one(self):
        # A small request that arrives in the same reads as a 4 MiB one is answered after it:
        # the buffer that held the large body keeps the bytes that follow it when it shrinks.
        import socket
        from harness import CLIENT_KEY
        body = json.dumps({"orders": [{"idempotency_key": "pipe-1", "order": order_body()}]})
        body = body[:-1] + " " * (4 * 1024 * 1024 - len(body)) + "}"
        head = (f"Host: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
                f"Content-Type: application/json\r\n")
        small = json.dumps(order_body())
        data = (f"POST /v1/orders:batch HTTP/1.1\r\n{head}Content-Length: {len(body)}\r\n\r\n{body}"
                f"POST /v1/orders HTTP/1.1\r\n{head}Idempotency-Key: pipe-2\r\n"
                f"Content-Length: {len(small)}\r\n\r\n{small}").encode()
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        s.sendall(data)
        statuses = read_responses(s, 2)
        s.close()
        self.assertEqual(statuses, [b"200", b"201"])

    def test_body_limit_is_4_mib(self):
        pad = " " * (4 * 1024 * 1024 - 200)
        body = json.dumps({"orders": [{"idempotency_key": "pad-1", "order": order_body()}]})
        at_limit = body[:-1] + pad[: 4 * 1024 * 1024 - len(body)] + "}"
        self.assertEqual(len(at_limit), 4 * 1024 * 1024)
        r = self.c.request("POST", "/v1/orders:batch", raw_body=at_limit)
        self.assertEqual(r.status, 200, r)
        # The connection goes on after its read buffer grew to 4 MiB (the server shrinks it).
        self.assertEqual(self.c.create().status, 201)
        # One byte over: refused from the declared length, before any of the body is read.
        import socket
        from harness import CLIENT_KEY, Client
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall((f"POST /v1/orders:batch HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {4 * 1024 * 1024 + 1}\r\n\r\n").encode())
        head = s.recv(65536).decode()
        s.close()
        self.assertIn(" 413 ", head.split("\r\n")[0])
        self.assertIn("payload_too_large", head)
        # The single-order route keeps its 64 KiB limit.
        c = Client(self.port)
        r = c.request("POST", "/v1/orders", raw_body=json.dumps(order_body()) + " " * 70000,
                      headers={"Idempotency-Key": "single-big"})
        self.assertError(r, 413, "payload_too_large")
        c.close()


if __name__ == "__main__":
    unittest.main()
