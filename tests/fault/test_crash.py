"""Crash test: kill -9 the server at random moments under concurrent create load while
orders are mid-pipeline, restart it on the same data directory, and check that
- every 201-acknowledged order is there with identical content (what was acknowledged),
- no idempotency key produced two orders,
- after the last restart every order reaches a terminal state, and
- the simulators' durable ledgers show no double reservation, authorization or capture, a
  capture of exactly the total for every delivered order, and stock conserved.

The simulators answer after a few milliseconds, so kills land between an effect's request,
its execution and its result. Bounded: 6 kill rounds of under a second of load each, then 3
more with the simulators' ledger written but not synced (--sim-durability none: a process
crash must lose nothing of it either; only a power loss could).
"""
import collections
import threading
import time
import unittest

from harness import ADMIN_KEY, Client, Server, immutable, order_body, seeded_random, wait_for

ROUNDS = 6
CONNECTIONS = 8
STAGES = {"reserve": "inventory", "release": "inventory", "authorize": "payment", "void": "payment",
          "capture": "payment", "confirm": "merchant", "notify_cancel": "merchant",
          "assign": "dispatch", "unassign": "dispatch", "deliver": "delivery"}


def stage_of(action):
    return STAGES[action]


def body_for(key):
    """The one request body of a key (a retry must send the same)."""
    return order_body(customer_id="crash", metadata={"key": key},
                      items=[{"sku": "pizza", "quantity": 1 + len(key) % 3, "unit_price_cents": 1200}],
                      payment_method="tok_flaky" if len(key) % 4 == 0 else "tok_visa")


class CrashRecoveryTest(unittest.TestCase):
    def test_kill_minus_9_loses_nothing_acknowledged(self):
        self.kill_rounds(ROUNDS, "CrashRecoveryTest")

    def test_kill_minus_9_with_the_simulators_ledger_unsynced(self):
        self.kill_rounds(3, "CrashRecoveryTest.unsynced", "--sim-durability", "none")

    def kill_rounds(self, rounds, seed_name, *args):
        rnd = seeded_random(seed_name)
        server = Server(args=("--partitions", "4", "--sim-stock", "pizza=100000",
                              "--sim-latency-ms", "inventory=3", "--sim-latency-ms", "payment=5",
                              "--sim-latency-ms", "dispatch=2", "--sim-latency-ms", "delivery=4") + args)
        acknowledged = {}       # idempotency key → order JSON as acknowledged
        uncertain = set()       # sent, but the answer was lost in the crash
        lock = threading.Lock()
        try:
            for rnd_no in range(rounds):
                server.start()
                stop = threading.Event()

                def load(conn_no, seed):
                    r_local = __import__("random").Random(seed)
                    c = Client(server.port, timeout=10)
                    i = 0
                    while not stop.is_set():
                        # Some keys are shared between connections on purpose: racing
                        # duplicates must still create one order.
                        if r_local.random() < 0.2:
                            key = f"shared-{rnd_no}-{i // 3}"
                        else:
                            key = f"r{rnd_no}-c{conn_no}-{i}"
                        body = body_for(key)
                        try:
                            r = c.create(body, idem=key)
                        except OSError:
                            with lock:
                                uncertain.add(key)
                            return
                        with lock:
                            if r.status in (200, 201):
                                prev = acknowledged.get(key)
                                if prev is not None:
                                    assert prev["id"] == r.json["id"], (prev, r.json)
                                acknowledged[key] = r.json
                        i += 1

                threads = [threading.Thread(target=load, args=(n, rnd.random())) for n in range(CONNECTIONS)]
                for t in threads:
                    t.start()
                time.sleep(0.2 + rnd.random() * 0.8)
                server.kill()
                stop.set()
                for t in threads:
                    t.join(timeout=30)
                print(f"round {rnd_no}: {len(acknowledged)} acknowledged so far", flush=True)

            server.start()
            c = server.client()
            # 1. Every acknowledged order is readable with identical content.
            for key, order in acknowledged.items():
                r = c.get(f"/v1/orders/{order['id']}")
                self.assertEqual(r.status, 200, (key, r))
                self.assertEqual(immutable(r.json), immutable(order), key)
            # 2. No key produced two orders: count orders per key over the whole list.
            per_key = collections.Counter()
            token = None
            while True:
                q = "/v1/orders?customer_id=crash&limit=500" + (f"&page_token={token}" if token else "")
                page = c.get(q).json
                for o in page["orders"]:
                    per_key[o["metadata"]["key"]] += 1
                token = page["next_page_token"]
                if token is None:
                    break
            dupes = {k: n for k, n in per_key.items() if n > 1}
            self.assertEqual(dupes, {})
            for key in acknowledged:
                self.assertEqual(per_key[key], 1, key)
            # 3. A key whose answer was lost resolves on retry to one order: created now, or
            #    replayed if it had become durable before the crash.
            for key in sorted(uncertain):
                r = c.create(body_for(key), idem=key)
                self.assertIn(r.status, (200, 201), (key, r))
                if key in acknowledged:
                    self.assertEqual(r.json["id"], acknowledged[key]["id"])
            self.assertGreater(len(acknowledged), 100)
            # 4. Every order reaches a terminal state; effects happened exactly once.
            admin = Client(server.port, ADMIN_KEY)
            all_orders = {}
            token = None
            while True:
                q = "/v1/orders?customer_id=crash&limit=500" + (f"&page_token={token}" if token else "")
                page = c.get(q).json
                for o in page["orders"]:
                    all_orders[o["id"]] = o
                token = page["next_page_token"]
                if token is None:
                    break

            def all_terminal():
                for oid, o in list(all_orders.items()):
                    if o["status"] not in ("delivered", "cancelled", "failed"):
                        all_orders[oid] = c.get(f"/v1/orders/{oid}").json
                return all(o["status"] in ("delivered", "cancelled", "failed") for o in all_orders.values())

            wait_for(all_terminal, timeout=120, interval=0.2, what="every order to finish")
            reserved_units = 0
            for oid, o in all_orders.items():
                self.assertEqual(o["status"], "delivered", o)  # nothing here fails or cancels
                ev = c.get(f"/v1/orders/{oid}/events").json["events"]
                self.assertEqual([e["seq"] for e in ev], list(range(1, o["version"] + 1)), oid)
                captures = [e for e in ev if e["type"] == "effect_succeeded" and e["data"]["action"] == "capture"]
                self.assertEqual(len(captures), 1, oid)
                self.assertEqual(o["payment"]["captured_cents"], o["total_cents"])
                ledger = admin.get(f"/v1/admin/sim/ledger?order_id={oid}").json["entries"]
                applied = {e["action"]: e["applied"] for e in ledger}
                for action in ("reserve", "authorize", "confirm", "assign", "deliver", "capture"):
                    self.assertEqual(applied.get(action), 1, (oid, action, ledger))
                for e in ledger:
                    self.assertEqual(e["idempotency_key"], f"{oid}:{stage_of(e['action'])}:{e['action']}")
                reserved_units += o["items"][0]["quantity"]
            stock = admin.get("/v1/admin/sim/stock").json["stock"]
            self.assertEqual(stock["pizza"], 100000 - reserved_units)
            print(f"{len(all_orders)} orders delivered, each effect applied once", flush=True)
            admin.close()
            c.close()
            self.assertEqual(server.terminate(), 0)
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
