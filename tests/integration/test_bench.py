"""`orderflow bench`, the load generator: a small embedded run reports every figure and checks
every acknowledged order; a run that reaches no server reports zeros, never negative rates, and
exits 4 (nothing measured)."""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

from harness import BIN

# The load generator's two ways of driving connections; `auto` picks io_uring where it can.
ENGINES = ("io_uring", "epoll")


class BenchTest(unittest.TestCase):
    def bench(self, *args, returncode=0, timeout=120):
        """Runs `orderflow bench ARGS --quiet --json FILE`, checks its exit code, and returns
        the finished process and the JSON it wrote."""
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "r.json")
            p = subprocess.run([BIN, "bench", *args, "--quiet", "--json", out],
                               capture_output=True, text=True, timeout=timeout)
            self.assertEqual(p.returncode, returncode, p.stderr + p.stdout)
            with open(out) as f:
                return p, json.load(f)

    def test_cpu_during_a_timed_load(self):
        # A second of load: far more than the 10 ms tick /proc counts the server's and the
        # machine's CPU in. Per acknowledged order: the embedded server's (its own process) and
        # the load generator's; and how busy the machine was.
        p, r = self.bench("--embedded", "--duration", "1", "--warmup", "0", "--connections", "8")
        self.assertGreater(r["orders_acknowledged"], 0)
        cpu = r["cpu_us_per_order"]
        self.assertGreater(cpu["server"], 0)
        self.assertLess(cpu["server"], 1e6)  # under a second of CPU per order
        self.assertGreater(cpu["load_generator"], 0)
        self.assertLess(cpu["load_generator"], 1e6)
        self.assertGreater(r["machine_busy"], 0)
        self.assertLessEqual(r["machine_busy"], 1)
        self.assertRegex(p.stdout, r"cpu during the load, per acknowledged order: server [0-9.]+ us, "
                                   r"load generator [0-9.]+ us; machine [0-9]+% busy")

    def test_embedded_run_checks_every_acknowledged_order(self):
        for engine in ENGINES:
            with self.subTest(engine=engine):
                self.check_every_acknowledged_order(engine)

    def check_every_acknowledged_order(self, engine):
        p, r = self.bench("--embedded", "--orders", "300", "--batch", "10", "--connections", "4",
                          "--warmup", "0", "--io-engine", engine)
        self.assertEqual(r["io_engine"], engine)
        self.assertIn(f", {engine}\n", p.stdout)
        self.assertEqual(r["orders_acknowledged"], 300)
        self.assertEqual(r["errors"], {})
        self.assertEqual(r["terminal"]["checked"], 300)
        self.assertEqual(r["terminal"]["not_terminal"], 0)
        self.assertEqual(r["terminal"]["by_status"], {"delivered": 300})
        self.assertGreater(r["terminal"]["delivered_per_s"], 0)
        self.assertIn("pipeline:", p.stdout)
        # CPU figures are measured (test_cpu_during_a_timed_load); this load may last less
        # than the 10 ms tick of /proc, so only their presence and range are checked here.
        cpu = r["cpu_us_per_order"]
        self.assertGreaterEqual(cpu["server"], 0)
        self.assertGreaterEqual(cpu["load_generator"], 0)
        self.assertTrue(0 <= r["machine_busy"] <= 1, r["machine_busy"])
        # The pipeline's time ends when its last order ended, which the check saw, so the
        # drain is within the check's duration; the rate is over load plus drain.
        t = r["terminal"]
        self.assertGreaterEqual(t["drain_s"], 0)
        self.assertLessEqual(t["drain_s"], t["check_s"])
        self.assertAlmostEqual(t["delivered_per_s"], 300 / (t["load_s"] + t["drain_s"]),
                               delta=t["delivered_per_s"] * 1e-3)

    def test_orders_not_ended_count_the_whole_check_as_drain(self):
        # Merchants answer after 3 s and the check gives up after 1 s: nothing has ended, so
        # the drain is the whole check and no order counts as delivered.
        _, r = self.bench("--embedded", "--orders", "20", "--connections", "2", "--warmup", "0",
                          "--terminal-timeout", "1", "--server-args", "--sim-latency-ms merchant=3000",
                          returncode=3)
        t = r["terminal"]
        self.assertEqual(t["not_terminal"], 20)
        self.assertEqual(t["drain_s"], t["check_s"])
        self.assertGreaterEqual(t["check_s"], 1)
        self.assertEqual(t["delivered_per_s"], 0)

    def test_closed_loop_waits_as_asked_when_the_server_sheds_load(self):
        # Five orders may be in progress, and none ends for 5 s: the first five are accepted,
        # then every create is a 503 with Retry-After: 1. Each connection waits that second
        # instead of asking again at once (which made ~35,000 requests in 1.5 s). The same
        # for batches turned away whole.
        for engine, extra in [(e, x) for e in ENGINES for x in ([], ["--batch", "10"])]:
            with self.subTest(engine=engine, extra=extra):
                p, r = self.bench("--embedded", "--connections", "2", "--duration", "1.5",
                                  "--warmup", "0", "--no-terminal-check", "--server-args",
                                  "--active-orders-max 5 --partitions 1 --sim-latency-ms merchant=5000",
                                  "--io-engine", engine, *extra)
                self.assertEqual(r["orders_acknowledged"], 5)
                self.assertGreater(r["errors"].get("overloaded", 0), 0)
                self.assertGreaterEqual(r["waits_after_shed"], 2)  # each connection waited
                self.assertLessEqual(r["waits_after_shed"], 6)     # ~1 s each within 1.5 s
                self.assertIn("waits as the server asked", p.stdout)

    def test_no_waits_below_the_limit(self):
        _, r = self.bench("--embedded", "--orders", "50", "--connections", "2", "--warmup", "0")
        self.assertEqual(r["orders_acknowledged"], 50)
        self.assertEqual(r["errors"], {})
        self.assertEqual(r["waits_after_shed"], 0)

    def test_open_loop_keeps_its_schedule(self):
        # 400 orders/s for 1 s after 0.5 s of warm-up: the requests go out on whole
        # milliseconds, so the rate is the schedule's, and each latency counts from its own
        # intended time (at most the wait to the boundary plus the answer).
        for engine in ENGINES:
            with self.subTest(engine=engine):
                p, r = self.bench("--embedded", "--rate", "400", "--duration", "1", "--warmup", "0.5",
                                  "--connections", "16", "--io-engine", engine)
                self.assertEqual(r["mode"], "open")
                self.assertEqual(r["errors"], {})
                self.assertAlmostEqual(r["throughput_orders_per_s"], 400, delta=40)
                self.assertEqual(r["terminal"]["not_terminal"], 0)
                self.assertGreater(r["latency_ms"]["p50"], 0)

    def test_no_server_reports_errors_and_zero_rates(self):
        for engine in ENGINES:
            with self.subTest(engine=engine):
                self.check_no_server(engine)

    def check_no_server(self, engine):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        p, r = self.bench("--server", f"http://127.0.0.1:{port}", "--api-key", "test-client-key-0001",
                          "--connections", "2", "--duration", "0.5", "--warmup", "0",
                          "--io-engine", engine, returncode=4, timeout=60)
        # Nothing measured is not a result of zero: the exit status says so (it was 0, and a
        # script running the bench took the zeros for figures).
        self.assertIn("no order was acknowledged", p.stderr)
        self.assertEqual(r["orders_acknowledged"], 0)
        self.assertGreater(r["errors"].get("connect_error", 0), 0)
        self.assertEqual(r["throughput_orders_per_s"], 0)
        self.assertEqual(r["terminal"]["delivered_per_s"], 0)
        self.assertGreaterEqual(r["terminal"]["load_s"], 0)
        self.assertIn("pipeline: 0 orders", p.stdout)
        # No orders, and a server that is not the bench's child: no CPU per order.
        self.assertEqual(r["cpu_us_per_order"], {"server": None, "load_generator": None})
        self.assertNotIn("cpu during the load", p.stdout)

    def test_the_embedded_server_goes_when_the_bench_is_killed(self):
        # kill -9 leaves the bench no chance to stop its server: the server is told by the
        # kernel (SIGTERM when its parent dies) and drains. Without that it served on, orphaned.
        # Its temporary directory stays (nothing is left to remove it).
        self.interrupt_embedded_run(signal.SIGKILL, returncode=-signal.SIGKILL, removes_data=False)

    def test_an_interrupted_bench_stops_its_server_and_removes_its_data(self):
        # Ctrl-C or SIGTERM: the bench stops its server and removes its directory, then exits
        # 128 + the signal. (Both used to die and leave the directory, with its data.)
        self.interrupt_embedded_run(signal.SIGINT, returncode=128 + signal.SIGINT, removes_data=True)
        self.interrupt_embedded_run(signal.SIGTERM, returncode=128 + signal.SIGTERM, removes_data=True)

    def interrupt_embedded_run(self, sig, returncode, removes_data):
        p = subprocess.Popen([BIN, "bench", "--embedded", "--duration", "60", "--warmup", "0",
                              "--rate", "100", "--connections", "2", "--quiet",
                              "--api-key", "test-client-key-0001"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        pid, data = None, None
        try:
            for line in p.stderr:
                m = re.search(r"embedded server pid (\d+) on \S+, data in (\S+)", line)
                if m:
                    pid, data = int(m.group(1)), m.group(2)
                    break
            self.assertIsNotNone(pid, "the bench did not report its server")
            time.sleep(0.5)  # under load
            p.send_signal(sig)
            self.assertEqual(p.wait(timeout=20), returncode)
            deadline = time.time() + 20
            while time.time() < deadline and running(pid):
                time.sleep(0.1)
            self.assertFalse(running(pid), "the embedded server outlived its bench")
            self.assertEqual(os.path.exists(data), not removes_data, data)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()
            if pid is not None and running(pid):
                os.kill(pid, signal.SIGKILL)  # (started by the bench this test started)
            if data:
                shutil.rmtree(data, ignore_errors=True)

    def test_arguments_out_of_bounds_are_refused(self):
        # Exit 2 with the reason, before anything runs. The accepted side of each bound gets as
        # far as the server address (refused too, so that nothing runs).
        def run(*args):
            return subprocess.run([BIN, "bench", *args], capture_output=True, text=True, timeout=30)
        refused = [
            (["--embedded", "--server", "http://127.0.0.1:1"], "--server excludes --embedded"),
            (["--data-dir", "/nonexistent/x"], "--data-dir requires --embedded"),
            (["--durability", "none"], "--durability requires --embedded"),
            (["--partitions", "2"], "--partitions requires --embedded"),
            (["--server-args", "--batch-max 8"], "--server-args requires --embedded"),
            (["--duration", "nan"], "not in range"),
            (["--duration", "0.09"], "not in range"),
            (["--rate", "nan"], "not in range"),
            (["--warmup", "nan"], "not in range"),
            (["--terminal-timeout", "-1"], "not in range"),
            (["--terminal-timeout", "86401"], "not in range"),
            (["--orders", "-1"], "not in range"),
            (["--orders", "1000000000001"], "not in range"),
        ]
        for args, why in refused:
            with self.subTest(args=args):
                r = run(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(why, r.stderr)
        accepted = [["--duration", "0.1"], ["--rate", "10000000"], ["--warmup", "0"],
                    ["--terminal-timeout", "0"], ["--terminal-timeout", "86400"],
                    ["--orders", "1000000000000"]]
        for args in accepted:
            with self.subTest(args=args):
                r = run(*args, "--server", "not-a-url")
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn("--server must be http://HOST:PORT", r.stderr)


def running(pid):
    """True while the process exists and is not a zombie (an orphan's zombie waits for init)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class BenchReportTest(unittest.TestCase):
    """bench/report.py, which make bench ends with: a run's files in, the table, latest.json
    and latest.svg out, every row drawn (reference rows against the goal above them)."""
    REPORT = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "report.py")

    def test_a_run_becomes_a_table_json_and_chart(self):
        def pipeline(rate, cpu=None):
            doc = {"terminal": {"delivered_per_s": rate, "drain_s": 0.1, "check_s": 2.0}}
            if cpu:
                doc["cpu_us_per_order"] = {"server": cpu[0], "load_generator": cpu[1]}
                doc["machine_busy"] = 0.95
            return doc
        with tempfile.TemporaryDirectory() as work, tempfile.TemporaryDirectory() as out:
            for name, doc in (("pipeline.json", pipeline(20000.0, cpu=(61.2, 9.4))),
                              ("pipeline_batched.json", pipeline(30000.0)),
                              ("pipeline_sim_synced.json", pipeline(17000.0)),
                              ("pipeline_now.json", pipeline(20500.0)),
                              ("latency.json", {"latency_ms": {"p99": 4.0}, "target_rate": 10250}),
                              ("latency_step1.json", {"latency_ms": {"p99": 11.0}, "target_rate": 10000}),
                              ("latency_creates.json", {"latency_ms": {"p99": 12.0}, "target_rate": 11000})):
                with open(os.path.join(work, name), "w") as f:
                    json.dump(doc, f)
            with open(os.path.join(work, "pg.txt"), "w") as f:
                f.write("pg_pipeline delivered_orders_per_s=1000.0 transactions_per_s=6000\n")
            p = subprocess.run(
                [sys.executable, self.REPORT, work, out, "create_rps=30000", "nginx_rps=150000",
                 "get_rps=70000", "health_rps=100000", "create_cpu_us=48.51", "nginx_cpu_us=7.25",
                 "get_cpu_us=", "health_cpu_us=", "stored=5000000", "fill_s=200",
                 "rss_peak_kb=262144", "rss_after_kb=200000", "disk_kb=1000000", "restart_s=0.4",
                 "connections=64", "seconds=15", "create_synced_rps=27000", "create_synced_cpu_us=52.0",
                 "sim_durability=none"], capture_output=True, text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(out, "latest.json")) as f:
                rows = {r["metric"].strip(): r for r in json.load(f)["results"]}
            self.assertAlmostEqual(rows["full pipeline vs PostgreSQL"]["value"], 20.0)
            self.assertFalse(rows["full pipeline vs PostgreSQL"]["met"])
            self.assertAlmostEqual(rows["same, orders placed in batches of 100"]["value"], 30.0)
            self.assertIsNone(rows["same, orders placed in batches of 100"]["met"])
            # The CPU per order goes with the row when the run measured it (not the batched run here).
            self.assertIn("CPU per order: server 61 us, load generator 9 us, machine 95% busy",
                          rows["full pipeline vs PostgreSQL"]["detail"])
            self.assertNotIn("CPU", rows["same, orders placed in batches of 100"]["detail"])
            # The goal rows say how the simulators' ledger was run; the reference rows measure
            # it synced (as every run before the fifteenth session did).
            self.assertIn("simulators' ledger none", rows["full pipeline vs PostgreSQL"]["detail"])
            self.assertIn("simulators' ledger none", rows["single-order creates vs nginx static"]["detail"])
            self.assertAlmostEqual(rows["same, simulators' ledger synced too"]["value"], 17.0)
            self.assertIsNone(rows["same, simulators' ledger synced too"]["met"])
            self.assertAlmostEqual(rows["same, creates with the simulators' ledger synced"]["value"], 0.18)
            self.assertIn("orderflow 52.0 us", rows["same, creates with the simulators' ledger synced"]["detail"])
            with open(os.path.join(out, "latest.json")) as f:
                self.assertEqual(json.load(f)["settings"]["sim_durability"], "none")
            self.assertAlmostEqual(rows["single-order creates vs nginx static"]["value"], 0.2)
            # The servers' CPU per request goes with a wrk row when measured (not GET's here).
            self.assertIn("CPU per request: orderflow (its pipeline included) 48.5 us, nginx 7.2 us",
                          rows["single-order creates vs nginx static"]["detail"])
            self.assertNotIn("CPU", rows["GET by id vs /healthz"]["detail"])
            self.assertTrue(rows["GET by id vs /healthz"]["met"])
            self.assertTrue(rows["create p99 at 50% of max sustainable rate"]["met"])
            # The goal row's rate is half of the pipeline's measured right before it; half of
            # step 1's (the basis until run 32) is a reference row.
            self.assertIn("at 10250 orders/s (50% of 20500 delivered/s measured just before)",
                          rows["create p99 at 50% of max sustainable rate"]["detail"])
            self.assertAlmostEqual(rows["same, at 50% of step 1's pipeline rate"]["value"], 11.0)
            self.assertIsNone(rows["same, at 50% of step 1's pipeline rate"]["met"])
            self.assertIn("at 10000 orders/s", rows["same, at 50% of step 1's pipeline rate"]["detail"])
            self.assertAlmostEqual(rows["same, at 50% of the create rate"]["value"], 12.0)
            self.assertTrue(rows["peak RSS, 5,000,000 orders delivered"]["met"])
            self.assertTrue(rows["restart to ready, 5,000,000 stored"]["met"])
            with open(os.path.join(out, "latest.svg")) as f:
                svg = f.read()
            self.assertEqual(svg.count("<rect"), 1 + len(rows))  # background + one bar a row
            self.assertIn("30.00x (reference)", svg)
            # A ratio below 1 shows three decimals: 0.2997 would otherwise read "0.30x" beside a
            # goal of 0.30x that it missed.
            self.assertIn("0.200x (goal &gt;= 0.30x)", svg)
            # --chart redraws the chart from the saved JSON alone.
            os.remove(os.path.join(out, "latest.svg"))
            p = subprocess.run([sys.executable, self.REPORT, "--chart", out], capture_output=True,
                               text=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            with open(os.path.join(out, "latest.svg")) as f:
                self.assertEqual(f.read(), svg)


if __name__ == "__main__":
    unittest.main()
