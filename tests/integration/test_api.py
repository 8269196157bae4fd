"""Every endpoint and every error code of the foundation API, over real HTTP."""
import json
import re
import socket
import time
import unittest

from harness import (ADMIN_KEY, CLIENT_KEY, FROZEN_PIPELINE, OTHER_TENANT_KEY, WORKER_KEY, Client,
                     Server, ServerTest, order_body)

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def read_response(s, closed_early="the server closed the connection mid-response"):
    """Reads one response from socket `s`: (head lines, body by its Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError(closed_early)
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = int(next(l.split(":")[1] for l in lines if l.lower().startswith("content-length:")))
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError(closed_early)
        body += chunk
    return lines, body


class HealthTest(ServerTest):
    def test_health_and_ready_need_no_key(self):
        for path, status in (("/healthz", "ok"), ("/readyz", "ready")):
            r = self.c.request("GET", path, key=None)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["status"], status)

    def test_health_wrong_method(self):
        r = self.c.request("POST", "/healthz", key=None)
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "GET")


class AuthTest(ServerTest):
    def test_missing_key(self):
        r = self.c.request("GET", "/v1/orders", key=None)
        self.assertError(r, 401, "unauthenticated")
        self.assertEqual(r.header("WWW-Authenticate"), "Bearer")

    def test_unknown_key(self):
        self.assertError(self.c.get("/v1/orders", key="not-a-real-key-000"), 401, "unauthenticated")

    def test_wrong_scheme(self):
        r = self.c.request("GET", "/v1/orders", key=None,
                           headers={"Authorization": f"Basic {CLIENT_KEY}"})
        self.assertError(r, 401, "unauthenticated")

    def test_role_not_allowed(self):
        # worker may not place, read or cancel orders; admin may read but not place.
        self.assertError(self.c.create(key=WORKER_KEY), 403, "permission_denied")
        self.assertError(self.c.get("/v1/orders", key=WORKER_KEY), 403, "permission_denied")
        self.assertError(self.c.create(key=ADMIN_KEY), 403, "permission_denied")
        self.assertEqual(self.c.get("/v1/orders", key=ADMIN_KEY).status, 200)

    def test_auth_comes_before_routing(self):
        self.assertError(self.c.get("/v1/nothing-here", key=None), 401, "unauthenticated")
        self.assertError(self.c.get("/v1/nothing-here"), 404, "not_found")


class CreateTest(ServerTest):
    server_args = FROZEN_PIPELINE
    def test_created_order_resource(self):
        r = self.c.create(order_body(), idem="create-1")
        self.assertEqual(r.status, 201, r)
        o = r.json
        self.assertEqual(r.header("Location"), f"/v1/orders/{o['id']}")
        self.assertRegex(o["id"], r"^[0-9a-z]{16}$")
        expected = order_body()
        for k, v in expected.items():
            self.assertEqual(o[k], v, k)
        self.assertEqual(o["subtotal_cents"], 2 * 899)
        self.assertEqual(o["total_cents"], 2 * 899 + 200)
        self.assertEqual(o["status"], "pending")
        self.assertEqual(o["version"], 1)  # as placed
        self.assertRegex(o["created_at"], ISO_MS)
        self.assertEqual(o["created_at"], o["updated_at"])
        self.assertIsNone(o["failure"])
        self.assertEqual(o["payment"], {"status": "none", "authorized_cents": 0, "captured_cents": 0})
        self.assertIsNone(o["courier_id"])

        g = self.c.get(f"/v1/orders/{o['id']}")
        self.assertEqual(g.status, 200)
        self.assertSameOrder(g.json, o)
        # The pipeline has requested the reservation (held: inventory is external here).
        self.assertEqual(g.json["status"], "pending")
        self.assertEqual(g.json["version"], 2)

        e = self.c.get(f"/v1/orders/{o['id']}/events")
        self.assertEqual(e.status, 200)
        events = e.json["events"]
        self.assertEqual([ev["seq"] for ev in events], [1, 2])
        self.assertEqual(events[0]["type"], "order_placed")
        self.assertRegex(events[0]["at"], ISO_MS)
        self.assertEqual(events[0]["data"]["customer_id"], "c-1")
        self.assertEqual(events[1]["type"], "effect_requested")
        self.assertEqual(events[1]["data"], {"stage": "inventory", "action": "reserve", "attempt": 1,
                                             "idempotency_key": f"{o['id']}:inventory:reserve"})
        self.assertEqual(events[-1]["seq"], g.json["version"])

    def test_defaults(self):
        r = self.c.create(order_body(tip_cents=None, metadata=None))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json["tip_cents"], 0)
        self.assertEqual(r.json["metadata"], {})
        self.assertEqual(r.json["total_cents"], r.json["subtotal_cents"])

    def test_unicode_address(self):
        addr = "Königstraße 5, 東京 🍔"
        r = self.c.create(order_body(delivery_address=addr))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(self.c.get(f"/v1/orders/{r.json['id']}").json["delivery_address"], addr)

    def test_validation_lists_every_violation_with_paths(self):
        items = [{"sku": f"s{i}", "quantity": 1, "unit_price_cents": 1} for i in range(3)]
        items.append({"sku": "bad sku", "quantity": 0, "unit_price_cents": 1.5})
        r = self.c.create(order_body(items=items, currency="usd", customer_id=""))
        self.assertError(r, 400, "invalid_argument")
        fields = sorted(d["field"] for d in r.json["error"]["details"])
        self.assertEqual(fields, ["currency", "customer_id", "items[3].quantity", "items[3].sku",
                                  "items[3].unit_price_cents"])
        for d in r.json["error"]["details"]:
            self.assertTrue(d["reason"])

    def test_wrong_types_and_unknown_fields(self):
        for body in (order_body(tip_cents="2"), order_body(tip_cents=1e3), order_body(extra=1),
                     order_body(items="burger"), order_body(metadata={"k": 1})):
            self.assertError(self.c.create(body), 400, "invalid_argument")
        self.assertError(self.c.request("POST", "/v1/orders", raw_body="[1,2]",
                                        headers={"Idempotency-Key": "arr"}), 400, "invalid_argument")

    def test_malformed_json(self):
        for raw in ("{", "{\"customer_id\":}", "not json", "", "{\"a\":1}{"):
            r = self.c.request("POST", "/v1/orders", raw_body=raw, headers={"Idempotency-Key": "mj"})
            self.assertError(r, 400, "invalid_json")

    def test_idempotency_key_header(self):
        r = self.c.request("POST", "/v1/orders", order_body())
        self.assertError(r, 400, "invalid_argument")
        self.assertEqual(r.json["error"]["details"][0]["field"], "Idempotency-Key")
        self.assertEqual(self.c.create(idem="k" * 128).status, 201)
        self.assertError(self.c.create(idem="k" * 129), 400, "invalid_argument")
        self.assertError(self.c.create(idem="has space"), 400, "invalid_argument")
        self.assertEqual(self.c.create(idem="x").status, 201)

    def test_content_type(self):
        data = json.dumps(order_body())
        r = self.c.request("POST", "/v1/orders", raw_body=data,
                           headers={"Content-Type": "text/plain", "Idempotency-Key": "ct1"})
        self.assertError(r, 415, "unsupported_media_type")
        r = self.c.request("POST", "/v1/orders", raw_body=data,
                           headers={"Content-Type": None, "Idempotency-Key": "ct2"})
        self.assertError(r, 415, "unsupported_media_type")
        r = self.c.request("POST", "/v1/orders", raw_body=data,
                           headers={"Content-Type": "Application/JSON; charset=utf-8",
                                    "Idempotency-Key": "ct3"})
        self.assertEqual(r.status, 201, r)

    def test_body_limit_both_sides(self):
        data = json.dumps(order_body())
        at_limit = data + " " * (64 * 1024 - len(data))
        self.assertEqual(len(at_limit), 65536)
        r = self.c.request("POST", "/v1/orders", raw_body=at_limit, headers={"Idempotency-Key": "big1"})
        self.assertEqual(r.status, 201, r)
        over = at_limit + " "
        c = Client(self.port)
        r = c.request("POST", "/v1/orders", raw_body=over, headers={"Idempotency-Key": "big2"})
        self.assertError(r, 413, "payload_too_large")
        c.close()
        # Nothing was created under the rejected key.
        r = self.c.create(order_body(tip_cents=1), idem="big2")
        self.assertEqual(r.status, 201, r)


class ReadTest(ServerTest):
    server_args = FROZEN_PIPELINE
    def test_not_found(self):
        self.assertError(self.c.get("/v1/orders/06h2bq4684006000"), 404, "not_found")
        self.assertError(self.c.get("/v1/orders/06h2bq4684006000/events"), 404, "not_found")
        self.assertError(self.c.get("/v1/orders/not-an-id"), 404, "not_found")
        self.assertError(self.c.get("/v1/orders/zzzzzzzzzzzzzzzz"), 404, "not_found")  # partition out of range
        self.assertError(self.c.get("/v1/orders/06h2bq4684006000/other"), 404, "not_found")
        self.assertError(self.c.get("/nope", key=None), 404, "not_found")

    def test_method_not_allowed(self):
        r = self.c.request("DELETE", "/v1/orders")
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "GET, POST")
        r = self.c.request("POST", "/v1/orders/06h2bq4684006000")
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "GET")
        r = self.c.request("GET", "/v1/orders/06h2bq4684006000/cancel")
        self.assertError(r, 405, "method_not_allowed")
        self.assertEqual(r.header("Allow"), "POST")


class CancelTest(ServerTest):
    # The reservation takes 300 ms: a new order is caught pending with it in flight.
    server_args = ("--sim-latency-ms", "inventory=300")

    def test_cancel_then_terminal(self):
        o = self.c.create().json
        r = self.c.request("POST", f"/v1/orders/{o['id']}/cancel", {"reason": "changed my mind"})
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json["status"], "cancelling")
        done = self.wait_status(o["id"], "cancelled")
        events = self.c.get(f"/v1/orders/{o['id']}/events").json["events"]
        self.assertEqual([e["seq"] for e in events], list(range(1, done["version"] + 1)))
        types = [e["type"] for e in events]
        self.assertEqual(types[:4], ["order_placed", "effect_requested", "cancel_requested", "status_changed"])
        self.assertEqual(events[2]["data"], {"reason": "changed my mind"})
        self.assertEqual(events[3]["data"], {"from": "pending", "to": "cancelling"})
        self.assertEqual(events[-1]["data"], {"from": "cancelling", "to": "cancelled"})
        again = self.c.request("POST", f"/v1/orders/{o['id']}/cancel")
        self.assertError(again, 409, "failed_precondition")
        self.assertEqual(self.c.get(f"/v1/orders/{o['id']}").json["version"], done["version"])

    def test_cancel_without_body_and_bad_bodies(self):
        o = self.c.create().json
        self.assertError(self.c.request("POST", f"/v1/orders/{o['id']}/cancel", {"why": "x"}),
                         400, "invalid_argument")
        self.assertError(self.c.request("POST", f"/v1/orders/{o['id']}/cancel", raw_body="{"),
                         400, "invalid_json")
        self.assertError(self.c.request("POST", f"/v1/orders/{o['id']}/cancel", {"reason": "r" * 513}),
                         400, "invalid_argument")
        self.assertEqual(self.c.get(f"/v1/orders/{o['id']}").json["status"], "pending")
        r = self.c.request("POST", f"/v1/orders/{o['id']}/cancel")
        self.assertEqual(r.status, 202, r)
        self.wait_status(o["id"], "cancelled")

    def test_cancel_unknown(self):
        self.assertError(self.c.request("POST", "/v1/orders/06h2bq4684006000/cancel"), 404, "not_found")


class TenantIsolationTest(ServerTest):
    server_args = FROZEN_PIPELINE
    def test_other_tenant_sees_nothing(self):
        o = self.c.create(order_body(customer_id="iso-1")).json
        other = Client(self.port, OTHER_TENANT_KEY)
        self.assertError(other.get(f"/v1/orders/{o['id']}"), 404, "not_found")
        self.assertError(other.get(f"/v1/orders/{o['id']}/events"), 404, "not_found")
        self.assertError(other.request("POST", f"/v1/orders/{o['id']}/cancel"), 404, "not_found")
        self.assertEqual(other.get("/v1/orders?customer_id=iso-1").json["orders"], [])
        self.assertEqual(self.c.get(f"/v1/orders/{o['id']}").json["status"], "pending")
        # The same idempotency key in another tenant is another order.
        a = self.c.create(idem="shared-key").json
        b = other.create(idem="shared-key")
        self.assertEqual(b.status, 201)
        self.assertNotEqual(a["id"], b.json["id"])
        other.close()


class ProtocolTest(ServerTest):
    server_args = ("--connections-max", "3")

    def test_keep_alive_many_requests_one_connection(self):
        for _ in range(50):
            self.assertEqual(self.c.get("/healthz", key=None).status, 200)

    def test_malformed_http_is_answered_and_server_survives(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"GARBAGE\r\n\r\n")
        data = s.recv(4096)
        s.close()
        self.assertIn(b" 400 ", data.split(b"\r\n")[0])
        self.assertIn(b"invalid_argument", data)
        self.assertEqual(self.c.get("/healthz", key=None).status, 200)

    def exchange(self, raw):
        """Sends raw bytes on a new connection; returns (head lines, body, closed by the server)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(raw)
        lines, body = read_response(s)
        s.settimeout(2)
        try:
            closed = s.recv(1) == b""
        except socket.timeout:
            closed = False
        s.close()
        return lines, body, closed

    def test_response_head_by_version_and_connection(self):
        def fields(lines):
            return [l.split(":")[0].lower() for l in lines[1:]]
        # (request, status line, Connection field expected, closed after the response): HTTP/1.1
        # keeps alive unless told to close; HTTP/1.0 closes unless asked to keep alive, and then
        # says so. The body is JSON unless the route says otherwise.
        cases = [
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200 OK", None, False),
            (b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK",
             "Connection: close", True),
            (b"GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK", None, True),
            (b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "HTTP/1.0 200 OK",
             "Connection: keep-alive", False),
        ]
        for raw, status, connection, closes in cases:
            with self.subTest(request=raw):
                lines, body, closed = self.exchange(raw)
                self.assertEqual(lines[0], status)
                self.assertIn("Content-Type: application/json", lines)
                self.assertEqual(body, b'{"status":"ok"}')
                if connection:
                    self.assertIn(connection, lines)
                else:
                    self.assertNotIn("connection", fields(lines))
                self.assertEqual(closed, closes)
        # A route's own Content-Type replaces the default: one Content-Type field.
        lines, body, _ = self.exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(fields(lines).count("content-type"), 1)
        self.assertIn("Content-Type: text/plain; version=0.0.4; charset=utf-8", lines)
        self.assertIn(b"orderflow_", body)

    def test_connection_limit_both_sides(self):
        # self.c is one connection; two more reach the limit of 3, a fourth is refused.
        self.assertEqual(self.c.get("/healthz", key=None).status, 200)
        held = [Client(self.port) for _ in range(2)]
        for h in held:
            self.assertEqual(h.get("/healthz", key=None).status, 200)
        extra = Client(self.port)
        r = extra.get("/healthz", key=None)
        self.assertError(r, 503, "overloaded")
        self.assertEqual(r.header("Retry-After"), "1")
        extra.close()
        for h in held:
            h.close()
        time.sleep(0.2)
        again = Client(self.port)
        self.assertEqual(again.get("/healthz", key=None).status, 200)
        again.close()


class IdleTimeoutTest(ServerTest):
    server_args = ("--idle-timeout-s", "2")

    def connect(self):
        s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(10)
        return s

    def healthz(self, s):
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        lines, _ = read_response(s, closed_early="the server closed a connection that was not idle")
        self.assertIn(" 200 ", lines[0])

    def closed_after(self, s, since):
        """Seconds from `since` until the server closes `s` (it sends nothing meanwhile)."""
        try:
            self.assertEqual(s.recv(4096), b"")
        except ConnectionResetError:
            pass
        return time.monotonic() - since

    def test_idle_connection_closes_after_the_timeout_not_before(self):
        s = self.connect()
        time.sleep(1.2)  # idle, under the timeout: still served
        self.healthz(s)
        answered = time.monotonic()
        waited = self.closed_after(s, answered)
        s.close()
        # Closed once the 2 s have passed since the response (the sweep runs once a second).
        self.assertGreaterEqual(waited, 1.9)
        self.assertLess(waited, 4.5)

    def test_a_busy_connection_outlives_the_timeout(self):
        s = self.connect()
        start = time.monotonic()
        while time.monotonic() - start < 4.5:  # over twice the timeout, a request every 0.5 s
            self.healthz(s)
            time.sleep(0.5)
        s.close()

    def test_a_request_trickling_in_is_cut_off(self):
        s = self.connect()
        start = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        waited = self.closed_after(s, start)
        s.close()
        self.assertGreaterEqual(waited, 1.9)
        self.assertLess(waited, 4.5)
        c = Client(self.port)
        self.assertEqual(c.get("/healthz", key=None).status, 200)
        c.close()


if __name__ == "__main__":
    unittest.main()
