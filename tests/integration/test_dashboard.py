"""The dashboard in a real browser (Debian's headless Chromium): the page loads against a server
under a small load, and the figures it shows match the API. A screenshot is saved under build/."""
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest
from html.parser import HTMLParser

from harness import (ADMIN_KEY, BIN, CLIENT_KEY, WORKER_KEY, Client, Server, order_body, wait_for)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
BUILD_DIR = os.path.dirname(os.path.abspath(BIN))


class Dom(HTMLParser):
    """Collects text by element id and the data-* attributes of rows and timeline items."""

    def __init__(self):
        super().__init__()
        self.text = {}
        self.stack = []
        self.rows = {}      # table id -> [data-id / data-code]
        self.timeline = []  # (seq, type)
        self.table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.stack.append(a.get("id"))
        if tag == "table":
            self.table = a.get("id")
        if tag == "tr" and self.table and ("data-id" in a or "data-code" in a):
            self.rows.setdefault(self.table, []).append(a.get("data-id") or a.get("data-code"))
        if tag == "li" and "data-seq" in a:
            self.timeline.append((int(a["data-seq"]), a["data-type"]))

    def handle_endtag(self, tag):
        if self.stack:
            self.stack.pop()
        if tag == "table":
            self.table = None

    def handle_data(self, data):
        for el in self.stack:
            if el:
                self.text[el] = self.text.get(el, "") + data


def chromium(url, *extra, budget_ms=5000):
    profile = tempfile.mkdtemp(prefix="orderflow-chromium-")
    try:
        cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}", *extra, url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@unittest.skipIf(CHROMIUM is None, "Debian's chromium is not installed (scripts/setup.sh installs it)")
class DashboardTest(unittest.TestCase):
    def test_dashboard_shows_what_the_api_says(self):
        server = Server(args=("--stage-mode", "merchant=external", "--stage-sla-ms", "merchant=100",
                              "--admin-listen", "127.0.0.1:0"))
        server.start()
        try:
            admin_port = int(re.search(r"dashboard and metrics on [^:]+:(\d+)", server.log()).group(1))
            c, w = server.client(), Client(server.port, WORKER_KEY)
            admin_api = Client(server.port, ADMIN_KEY)
            # The operator pages live only on the admin address.
            self.assertEqual(c.get("/", key=None).status, 404)
            self.assertEqual(c.get("/metrics", key=None).status, 404)
            page = Client(admin_port).get("/", key=None)
            self.assertEqual(page.status, 200)
            self.assertIn("text/html", page.header("Content-Type"))
            self.assertNotIn("http://", page.raw.replace("http://www.w3.org", ""))  # no CDN

            ids = [c.create(order_body(customer_id=f"dash-{i}")).json["id"] for i in range(5)]
            tasks = {}

            def poll_all():
                for t in w.request("POST", "/v1/tasks/poll", {"stage": "merchant", "max_tasks": 10, "wait_ms": 200}).json["tasks"]:
                    tasks[t["order_id"]] = t
                return len(tasks) == 5
            wait_for(poll_all, what="five merchant tasks")
            for oid in ids[:2]:
                self.assertEqual(w.request("POST", f"/v1/tasks/{tasks[oid]['task_id']}/complete", {}).status, 200)
            r = w.request("POST", f"/v1/tasks/{tasks[ids[2]]['task_id']}/fail", {"code": "kitchen_closed", "retryable": False})
            self.assertEqual(r.status, 200)
            for oid in ids[:2]:
                wait_for(lambda: c.get(f"/v1/orders/{oid}").json["status"] == "delivered", what="delivered")
            wait_for(lambda: c.get(f"/v1/orders/{ids[2]}").json["status"] == "failed", what="failed")
            # The two left wait at the merchant (leases of 30 s: nothing moves during the test).
            stuck_api = wait_for(lambda: (lambda s: s if len(s) == 2 else None)(
                admin_api.get("/v1/admin/orders/stuck").json["orders"]), what="two stuck orders")

            # The stuck gauge is refreshed by each partition at least once a second.
            metrics = Client(admin_port)
            wait_for(lambda: re.search(r'^orderflow_orders_stuck\{stage="merchant"\} 2$',
                                       metrics.get("/metrics", key=None).raw, re.M), what="the stuck gauge")
            metrics.close()
            # A small, bounded background load while the browser looks.
            stop = threading.Event()

            def load():
                lc = server.client()
                for _ in range(2000):
                    if stop.is_set():
                        break
                    lc.get(f"/v1/orders/{ids[0]}")
                    time.sleep(0.005)
                lc.close()
            t = threading.Thread(target=load)
            t.start()
            try:
                url = f"http://127.0.0.1:{admin_port}/#key={ADMIN_KEY}&order={ids[2]}"
                out = chromium(url, "--dump-dom")
                self.assertEqual(out.returncode, 0, out.stderr[-2000:])
                dom = Dom()
                dom.feed(out.stdout)
                shot = os.path.join(BUILD_DIR, "dashboard.png")
                snap = chromium(url, f"--screenshot={shot}", "--window-size=1400,1000")
                self.assertEqual(snap.returncode, 0, snap.stderr[-2000:])
                self.assertTrue(os.path.getsize(shot) > 10000)
            finally:
                stop.set()
                t.join()

            g = lambda k: dom.text.get(k, "").strip()
            self.assertEqual(g("total-delivered"), "2", dom.text)
            self.assertEqual(g("total-failed"), "1")
            self.assertEqual(g("total-cancelled"), "0")
            self.assertEqual(g("in-flight"), "2")
            self.assertEqual(g("stuck"), "2")
            self.assertEqual(g("dead-letters"), "0")
            self.assertEqual(dom.rows.get("stuck-table"), [o["id"] for o in stuck_api])
            self.assertIn("kitchen_closed", dom.rows.get("failures", []))
            events = c.get(f"/v1/orders/{ids[2]}/events").json["events"]
            self.assertEqual(dom.timeline, [(e["seq"], e["type"]) for e in events])
            self.assertEqual(g("order-status"), "failed")
            self.assertIn("live", g("conn"))
            for x in (c, w, admin_api):
                x.close()
        finally:
            server.cleanup()


if __name__ == "__main__":
    unittest.main()
