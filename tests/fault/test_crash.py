"""Crash test: kill -9 the server at random moments under concurrent create load, restart
it on the same data directory, and check that every 201-acknowledged order is there with
identical content and that no idempotency key produced two orders.

Bounded: 6 kill rounds, each under a second of load from 8 connections.
"""
import collections
import threading
import time
import unittest

from harness import Client, Server, order_body, seeded_random

ROUNDS = 6
CONNECTIONS = 8


class CrashRecoveryTest(unittest.TestCase):
    def test_kill_minus_9_loses_nothing_acknowledged(self):
        rnd = seeded_random("CrashRecoveryTest")
        server = Server(args=("--partitions", "4"))
        acknowledged = {}       # idempotency key → order JSON as acknowledged
        uncertain = set()       # sent, but the answer was lost in the crash
        lock = threading.Lock()
        try:
            for rnd_no in range(ROUNDS):
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
                        body = order_body(customer_id="crash", metadata={"key": key})
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
                self.assertEqual(r.json, order, key)
                ev = c.get(f"/v1/orders/{order['id']}/events").json["events"]
                self.assertEqual([e["seq"] for e in ev], [1])
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
                body = order_body(customer_id="crash", metadata={"key": key})
                r = c.create(body, idem=key)
                self.assertIn(r.status, (200, 201), (key, r))
                if key in acknowledged:
                    self.assertEqual(r.json["id"], acknowledged[key]["id"])
            self.assertGreater(len(acknowledged), 100)
            c.close()
            self.assertEqual(server.terminate(), 0)
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
