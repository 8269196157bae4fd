"""External workers: the task API (poll, complete, fail, leases), and dead letters with redrive."""
import threading
import time
import unittest

from harness import (ADMIN_KEY, CLIENT_KEY, OTHER_WORKER_KEY, WORKER_KEY, Client, ServerTest,
                     order_body, wait_for)

TERMINAL = ("delivered", "cancelled", "failed")


class WorkerTest(ServerTest):
    server_args = ("--stage-mode", "dispatch=external", "--task-lease-ms", "600",
                   "--stage-attempts-max", "dispatch=4")

    def setUp(self):
        super().setUp()
        self.w = Client(self.port, WORKER_KEY)

    def tearDown(self):
        self.w.close()
        super().tearDown()

    def poll(self, wait_ms=5000, max_tasks=10, stage="dispatch", client=None):
        r = (client or self.w).request("POST", "/v1/tasks/poll",
                                       {"stage": stage, "max_tasks": max_tasks, "wait_ms": wait_ms})
        self.assertEqual(r.status, 200, r)
        return r.json["tasks"]

    def task_for(self, order_id, wait_s=10):
        """Polls until a task for `order_id` comes; other orders' tasks are completed."""
        deadline = time.time() + wait_s
        while time.time() < deadline:
            for t in self.poll(wait_ms=1000):
                if t["order_id"] == order_id:
                    return t
                self.w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {"result": {}})
        self.fail(f"no task for {order_id}")

    def test_poll_complete_delivers_with_the_workers_courier(self):
        o = self.c.create().json
        t = self.task_for(o["id"])
        self.assertEqual((t["stage"], t["action"], t["attempt"]), ("dispatch", "assign", 1))
        self.assertEqual(t["idempotency_key"], f"{o['id']}:dispatch:assign")
        self.assertTrue(t["task_id"].startswith("t_"))
        self.assertRegex(t["lease_expires_at"], r"Z$")
        self.assertEqual(t["order"]["id"], o["id"])
        self.assertEqual(t["order"]["status"], "merchant_confirmed")
        r = self.w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {"result": {"courier_id": "bike-42"}})
        self.assertEqual(r.status, 200, r)
        final = self.wait_status(o["id"], TERMINAL)
        self.assertEqual(final["status"], "delivered")
        self.assertEqual(final["courier_id"], "bike-42")
        # Completing again: the lease is gone.
        again = self.w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {"result": {}})
        self.assertError(again, 409, "conflict")

    def test_retryable_failure_is_offered_again_under_a_new_task_id(self):
        o = self.c.create().json
        t1 = self.task_for(o["id"])
        r = self.w.request("POST", f"/v1/tasks/{t1['task_id']}/fail",
                           {"code": "no_courier_nearby", "message": "try again", "retryable": True})
        self.assertEqual(r.status, 200, r)
        t2 = self.task_for(o["id"])
        self.assertNotEqual(t2["task_id"], t1["task_id"])
        self.assertEqual(t2["attempt"], 2)
        self.assertEqual(t2["idempotency_key"], t1["idempotency_key"])
        self.assertEqual(self.w.request("POST", f"/v1/tasks/{t2['task_id']}/complete", {}).status, 200)
        self.assertEqual(self.wait_status(o["id"], TERMINAL)["status"], "delivered")
        events = self.c.get(f"/v1/orders/{o['id']}/events").json["events"]
        failed = [e for e in events if e["type"] == "effect_failed"]
        self.assertEqual(len(failed), 1)
        self.assertEqual(failed[0]["data"]["code"], "no_courier_nearby")
        self.assertTrue(failed[0]["data"]["retryable"])

    def test_permanent_failure_compensates(self):
        o = self.c.create().json
        t = self.task_for(o["id"])
        r = self.w.request("POST", f"/v1/tasks/{t['task_id']}/fail",
                           {"code": "area_not_served", "retryable": False})
        self.assertEqual(r.status, 200, r)
        final = self.wait_status(o["id"], TERMINAL)
        self.assertEqual(final["status"], "failed")
        self.assertEqual(final["failure"]["stage"], "dispatch")
        self.assertEqual(final["failure"]["code"], "area_not_served")
        self.assertEqual(final["payment"]["status"], "voided")

    def test_expired_lease_is_reoffered_and_the_old_task_id_refused(self):
        o = self.c.create().json
        t1 = self.task_for(o["id"])
        time.sleep(0.9)  # the 600 ms lease runs out
        t2 = self.task_for(o["id"])
        self.assertNotEqual(t2["task_id"], t1["task_id"])
        self.assertEqual(t2["attempt"], 2)
        late = self.w.request("POST", f"/v1/tasks/{t1['task_id']}/complete", {"result": {"courier_id": "late"}})
        self.assertError(late, 409, "conflict")
        late_fail = self.w.request("POST", f"/v1/tasks/{t1['task_id']}/fail", {"code": "x", "retryable": False})
        self.assertError(late_fail, 409, "conflict")
        self.assertEqual(self.w.request("POST", f"/v1/tasks/{t2['task_id']}/complete", {}).status, 200)
        final = self.wait_status(o["id"], TERMINAL)
        self.assertEqual(final["status"], "delivered")
        self.assertNotEqual(final["courier_id"], "late")
        events = self.c.get(f"/v1/orders/{o['id']}/events").json["events"]
        codes = [e["data"]["code"] for e in events if e["type"] == "effect_failed"]
        self.assertEqual(codes, ["lease_expired"])

    def test_long_poll_wakes_when_a_task_arrives(self):
        got = {}

        def waiter():
            w = Client(self.port, WORKER_KEY)
            start = time.time()
            got["tasks"] = self.poll(wait_ms=10000, client=w)
            got["elapsed"] = time.time() - start
            w.close()

        # Drain what is ready first so that the poll really waits.
        while self.poll(wait_ms=0):
            pass
        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.3)
        o = self.c.create().json
        th.join(timeout=15)
        self.assertTrue(got["tasks"])
        self.assertEqual(got["tasks"][0]["order_id"], o["id"])
        self.assertLess(got["elapsed"], 5)
        for t in got["tasks"]:
            self.w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {})

    def test_empty_poll_returns_after_wait_ms(self):
        while self.poll(wait_ms=0):
            pass
        start = time.time()
        self.assertEqual(self.poll(wait_ms=300), [])
        self.assertGreaterEqual(time.time() - start, 0.25)

    def test_tasks_are_per_tenant(self):
        o = self.c.create().json
        other = Client(self.port, OTHER_WORKER_KEY)
        self.assertEqual(self.poll(wait_ms=300, client=other), [])
        t = self.task_for(o["id"])
        self.assertError(other.request("POST", f"/v1/tasks/{t['task_id']}/complete", {}), 409, "conflict")
        self.assertEqual(self.w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {}).status, 200)
        other.close()

    def test_poll_validation_and_roles(self):
        for body in ({"stage": "dispatch", "wait_ms": 30001}, {"stage": "dispatch", "max_tasks": 0},
                     {"stage": "dispatch", "max_tasks": 101}, {"stage": "teleport"},
                     {"stage": "payment"}, {}, {"stage": "dispatch", "color": 1},
                     {"stage": "dispatch", "wait_ms": -1}, {"stage": "dispatch", "wait_ms": 1.5}):
            with self.subTest(body=body):
                self.assertError(self.w.request("POST", "/v1/tasks/poll", body), 400, "invalid_argument")
        self.assertEqual(self.w.request("POST", "/v1/tasks/poll",
                                        {"stage": "dispatch", "max_tasks": 100, "wait_ms": 0}).status, 200)
        self.assertError(self.w.request("POST", "/v1/tasks/poll", raw_body="{"), 400, "invalid_json")
        self.assertError(self.c.request("POST", "/v1/tasks/poll", {"stage": "dispatch"}), 403, "permission_denied")
        self.assertError(self.w.request("GET", "/v1/tasks/poll"), 405, "method_not_allowed")
        self.assertError(self.w.request("POST", "/v1/tasks/t_x/fail", {"retryable": True}), 400, "invalid_argument")
        self.assertError(self.w.request("POST", "/v1/tasks/t_x/fail", {"code": "x", "retryable": "yes"}),
                         400, "invalid_argument")
        self.assertError(self.w.request("POST", "/v1/tasks/t_x/complete", {"result": {"courier_id": "a b"}}),
                         400, "invalid_argument")
        self.assertError(self.w.request("POST", "/v1/tasks/t_unknown/complete", {}), 409, "conflict")
        self.assertError(self.w.request("POST", "/v1/tasks/t_x/explode", {}), 404, "not_found")


class DeadLetterTest(ServerTest):
    # Payment is external, so the test's worker can fail the void permanently.
    server_args = ("--stage-mode", "payment=external", "--sim-closed-merchant", "m-closed")

    def test_failed_compensation_parks_then_redrive_finishes(self):
        w = Client(self.port, WORKER_KEY)
        admin = Client(self.port, ADMIN_KEY)

        def next_task(action):
            def got():
                for t in w.request("POST", "/v1/tasks/poll",
                                   {"stage": "payment", "max_tasks": 1, "wait_ms": 500}).json["tasks"]:
                    return t
            t = wait_for(got, what=f"a {action} task")
            self.assertEqual(t["action"], action)
            return t

        o = self.c.create(order_body(merchant_id="m-closed")).json
        t = next_task("authorize")
        self.assertEqual(w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {}).status, 200)
        t = next_task("void")  # the merchant rejected: compensate
        r = w.request("POST", f"/v1/tasks/{t['task_id']}/fail",
                      {"code": "processor_down", "message": "void failed", "retryable": False})
        self.assertEqual(r.status, 200, r)
        parked = self.wait_status(o["id"], "needs_attention")
        self.assertEqual(parked["attention"]["code"], "processor_down")
        self.assertEqual(parked["failure"]["code"], "merchant_rejected")

        dl = admin.get("/v1/admin/dead-letters")
        self.assertEqual(dl.status, 200, dl)
        self.assertIn(o["id"], [x["id"] for x in dl.json["orders"]])
        self.assertError(self.c.get("/v1/admin/dead-letters"), 403, "permission_denied")
        self.assertError(admin.get("/v1/admin/dead-letters?status=failed"), 400, "invalid_argument")

        self.assertError(self.c.request("POST", f"/v1/admin/orders/{o['id']}/redrive"), 403, "permission_denied")
        r = admin.request("POST", f"/v1/admin/orders/{o['id']}/redrive")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json["status"], "compensating")
        self.assertIsNone(r.json["attention"])
        t = next_task("void")
        self.assertEqual(t["attempt"], 1)
        self.assertEqual(w.request("POST", f"/v1/tasks/{t['task_id']}/complete", {}).status, 200)
        final = self.wait_status(o["id"], TERMINAL)
        self.assertEqual(final["status"], "failed")
        self.assertEqual(final["payment"]["status"], "voided")
        events = self.c.get(f"/v1/orders/{o['id']}/events").json["events"]
        self.assertIn("redriven", [e["type"] for e in events])
        self.assertEqual([e["data"]["action"] for e in events if e["type"] == "effect_succeeded"][-1], "release")
        self.assertNotIn(o["id"], [x["id"] for x in admin.get("/v1/admin/dead-letters").json["orders"]])
        # Only parked orders can be redriven.
        self.assertError(admin.request("POST", f"/v1/admin/orders/{o['id']}/redrive"), 409, "failed_precondition")
        self.assertError(admin.request("POST", "/v1/admin/orders/06h2bq4684006000/redrive"), 404, "not_found")
        w.close()
        admin.close()


if __name__ == "__main__":
    unittest.main()
