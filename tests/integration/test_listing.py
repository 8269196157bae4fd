"""GET /v1/orders: filters, newest first, paging without repeats or gaps, consistency."""
import unittest

from harness import FROZEN_PIPELINE, ServerTest, order_body, seeded_random


class ListingTest(ServerTest):
    # Orders hold still at pending (a cancel leaves them cancelling, awaiting the reservation).
    server_args = FROZEN_PIPELINE

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        from harness import Client
        c = Client(cls.port)
        rnd = seeded_random("ListingTest")
        cls.created = []  # in creation order
        for i in range(60):
            body = order_body(customer_id=f"lc-{rnd.randrange(3)}", merchant_id=f"lm-{rnd.randrange(2)}")
            r = c.create(body, idem=f"list-{i}")
            assert r.status == 201, r
            cls.created.append(r.json)
        # Cancel every fifth order.
        for o in cls.created[::5]:
            r = c.request("POST", f"/v1/orders/{o['id']}/cancel")
            assert r.status == 202, r
            o.update(r.json)
        # The current (frozen) state of each: the pipeline has requested the reservation.
        cls.created = [c.get(f"/v1/orders/{o['id']}").json for o in cls.created]
        c.close()

    def collect(self, query, limit):
        ids, token, pages = [], None, 0
        while True:
            q = f"/v1/orders?limit={limit}" + (f"&{query}" if query else "")
            if token:
                q += f"&page_token={token}"
            r = self.c.get(q)
            self.assertEqual(r.status, 200, r)
            self.assertLessEqual(len(r.json["orders"]), limit)
            ids += [o["id"] for o in r.json["orders"]]
            token = r.json["next_page_token"]
            pages += 1
            self.assertLess(pages, 200)
            if token is None:
                return ids

    def expected(self, pred):
        # Newest first; created in order on one connection, so ids and time agree.
        return [o["id"] for o in reversed(self.created) if pred(o)]

    def test_every_filter_combination_pages_exactly(self):
        filters = {
            "": lambda o: True,
            "customer_id=lc-1": lambda o: o["customer_id"] == "lc-1",
            "merchant_id=lm-0": lambda o: o["merchant_id"] == "lm-0",
            "status=cancelling": lambda o: o["status"] == "cancelling",
            "status=pending": lambda o: o["status"] == "pending",
            "customer_id=lc-2&merchant_id=lm-1": lambda o: o["customer_id"] == "lc-2" and o["merchant_id"] == "lm-1",
            "customer_id=lc-0&status=pending": lambda o: o["customer_id"] == "lc-0" and o["status"] == "pending",
            "merchant_id=lm-1&status=cancelling": lambda o: o["merchant_id"] == "lm-1" and o["status"] == "cancelling",
            "customer_id=lc-1&merchant_id=lm-0&status=pending":
                lambda o: o["customer_id"] == "lc-1" and o["merchant_id"] == "lm-0" and o["status"] == "pending",
            "customer_id=nobody": lambda o: False,
        }
        for query, pred in filters.items():
            for limit in (1, 7, 500):
                with self.subTest(query=query, limit=limit):
                    got = self.collect(query, limit)
                    self.assertEqual(len(got), len(set(got)), "an order repeated")
                    self.assertEqual(got, self.expected(pred))

    def test_listed_orders_carry_current_status(self):
        r = self.c.get("/v1/orders?limit=500")
        by_id = {o["id"]: o for o in r.json["orders"]}
        for o in self.created:
            self.assertEqual(by_id[o["id"]]["status"], o["status"])
            self.assertEqual(by_id[o["id"]]["version"], o["version"])

    def test_new_order_is_listed_at_once(self):
        r = self.c.create(order_body(customer_id="fresh-1"))
        self.assertEqual(r.status, 201)
        listed = self.c.get("/v1/orders?customer_id=fresh-1&status=pending").json["orders"]
        self.assertEqual([o["id"] for o in listed], [r.json["id"]])
        self.c.request("POST", f"/v1/orders/{r.json['id']}/cancel")
        self.assertEqual(self.c.get("/v1/orders?customer_id=fresh-1&status=pending").json["orders"], [])
        self.assertEqual(len(self.c.get("/v1/orders?customer_id=fresh-1&status=cancelling").json["orders"]), 1)

    def test_default_limit_is_50(self):
        r = self.c.get("/v1/orders")
        self.assertEqual(len(r.json["orders"]), 50)
        self.assertIsNotNone(r.json["next_page_token"])

    def test_limit_bounds_and_bad_parameters(self):
        self.assertEqual(self.c.get("/v1/orders?limit=1").status, 200)
        self.assertEqual(self.c.get("/v1/orders?limit=500").status, 200)
        for q in ("limit=0", "limit=501", "limit=abc", "limit=-1", "limit=", "status=shipped",
                  "customer_id=a%20b", "page_token=nonsense", "color=red", "limit=5&limit=6",
                  "customer_id=%zz"):
            with self.subTest(q=q):
                r = self.c.get(f"/v1/orders?{q}")
                self.assertError(r, 400, "invalid_argument")


if __name__ == "__main__":
    unittest.main()
