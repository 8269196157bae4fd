#include "app/cli.h"

#include <CLI/CLI.hpp>
#include <cmath>

#include "app/bench.h"
#include "app/ctl.h"
#include "app/serve.h"

namespace orderflow::app {
namespace {

// A number of seconds or a rate: finite and within [min, max]. (CLI::Range alone lets "nan"
// through: every comparison with NaN is false.)
CLI::Validator finite_range(double min, double max) {
  const std::string range = CLI::detail::to_string(min) + " to " + CLI::detail::to_string(max);
  return CLI::Validator(
      [min, max, range](std::string& s) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(s, v) || !std::isfinite(v) || v < min || v > max) {
          return "Value " + s + " not in range " + range;
        }
        return {};
      },
      "FLOAT in [" + range + "]");
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"orderflow: a durable, partitioned order processing pipeline"};
  app.require_subcommand(1);

  ServeOptions serve_opts;
  CLI::App* serve_cmd = app.add_subcommand("serve", "Run the order service (embedded mode)");
  serve_cmd->add_option("--listen", serve_opts.listen, "HOST:PORT to listen on ([::1]:PORT for IPv6)")
      ->capture_default_str();
  serve_cmd->add_option("--admin-listen", serve_opts.admin_listen,
                        "HOST:PORT for the dashboard (GET /) and GET /metrics, which need no key; "
                        "they then leave --listen (which keeps the API)");
  serve_cmd->add_option("--data-dir", serve_opts.data_dir, "Directory of the durable store")
      ->capture_default_str();
  serve_cmd
      ->add_option("--api-key", serve_opts.api_keys,
                   "KEY:TENANT:ROLE[+ROLE...] (repeatable; roles: client, worker, admin). Also "
                   "from ORDERFLOW_API_KEYS (comma-separated). Without any, a key for tenant "
                   "'default' with all roles is created in the data directory and printed")
      ;
  serve_cmd
      ->add_option("--partitions", serve_opts.partitions,
                   "Number of partitions (single-writer shards), 1-256; fixed when the data "
                   "directory is created. Default: the directory's count, or for a new one "
                   "one per CPU core but one (at least 1, at most 8)")
      ->check(CLI::Range(1, 256));
  serve_cmd
      ->add_option("--durability", serve_opts.durability,
                   "fsync: acknowledge after fdatasync (group commit); none: after the write "
                   "reaches the OS (survives a process crash, not a power loss)")
      ->check(CLI::IsMember({"fsync", "none"}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--sim-durability", serve_opts.sim_durability,
                   "The built-in simulators' ledger: fsync (synced before they answer) or none "
                   "(written, not synced: survives a process crash, not a power loss). "
                   "Default: as --durability. Orders are durable as --durability says either way")
      ->check(CLI::IsMember({"fsync", "none"}));
  serve_cmd
      ->add_option("--log-segment-mib", serve_opts.log_segment_mib,
                   "A partition's order log checkpoints (a new segment starting with a snapshot "
                   "of its orders in progress) once its segment has grown this much past its "
                   "snapshot, 1-1024: larger means fewer checkpoints, and more to replay after "
                   "a crash")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  serve_cmd->add_option("--io-threads", serve_opts.io_threads, "HTTP I/O threads, 1-64")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  serve_cmd
      ->add_option("--io-engine", serve_opts.io_engine,
                   "How HTTP connections are served: io_uring, epoll, or auto (io_uring where "
                   "the kernel allows it)")
      ->check(CLI::IsMember({"auto", "io_uring", "epoll"}))
      ->capture_default_str();
  serve_cmd
      ->add_option("--queue-depth-max", serve_opts.queue_depth_max,
                   "Commands waiting per partition before requests get 503 overloaded")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  serve_cmd
      ->add_option("--batch-max", serve_opts.batch_max,
                   "Commands a partition applies and commits in one durable write")
      ->check(CLI::Range(1, 65536))
      ->capture_default_str();
  serve_cmd
      ->add_option("--connections-max", serve_opts.connections_max,
                   "Open connections before new ones get 503 overloaded")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  serve_cmd
      ->add_option("--idle-timeout-s", serve_opts.idle_timeout_s,
                   "Seconds a connection may take to send its next request (or to take a "
                   "response) before it is closed, 1-86400; checked once a second")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();

  serve_cmd
      ->add_option("--active-orders-max", serve_opts.active_orders_max,
                   "Orders in progress per partition before new ones get 503 overloaded")
      ->check(CLI::Range(1, 10000000))
      ->capture_default_str();
  serve_cmd->add_option("--stage-mode", serve_opts.stage_modes,
                        "STAGE=simulator|external (repeatable): external hands the stage's "
                        "actions to workers through the task API");
  serve_cmd->add_option("--stage-deadline-ms", serve_opts.stage_deadlines,
                        "STAGE=MS (repeatable): no new attempt of an action after this long "
                        "(default 60000)");
  serve_cmd->add_option("--stage-attempts-max", serve_opts.stage_attempts,
                        "STAGE=N (repeatable): attempts per action before it fails (default 5)");
  serve_cmd
      ->add_option("--task-lease-ms", serve_opts.task_lease_ms,
                   "How long a polled task is leased to its worker")
      ->check(CLI::Range(100, 3600000))
      ->capture_default_str();
  serve_cmd->add_option("--sim-latency-ms", serve_opts.sim_latencies,
                        "STAGE=MS (repeatable): the built-in simulator answers after MS");
  serve_cmd->add_option("--sim-stock", serve_opts.sim_stock,
                        "SKU=N (repeatable): limited stock for SKU (others are unlimited)");
  serve_cmd->add_option("--stage-sla-ms", serve_opts.stage_slas,
                        "STAGE=MS (repeatable): an order in the stage longer than this is stuck "
                        "(defaults: inventory 30000, payment 30000, merchant 300000, dispatch "
                        "600000, delivery 3600000)");
  serve_cmd->add_option("--log-level", serve_opts.log_level, "debug (one line per request), info, warn, error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}))
      ->capture_default_str();
  serve_cmd->add_option("--sim-closed-merchant", serve_opts.sim_closed_merchants,
                        "ID (repeatable): the merchant simulator rejects this merchant's orders");

  BenchOptions bo;
  CLI::App* bench_cmd = app.add_subcommand(
      "bench", "Drive a server with realistic orders; report throughput, latency, errors and "
               "whether every acknowledged order reached a terminal status");
  CLI::Option* server_opt =
      bench_cmd->add_option("--server", bo.server, "http://HOST:PORT of the server")->capture_default_str();
  bench_cmd->add_option("--api-key", bo.api_key, "A key with role client (default: $ORDERFLOW_API_KEY)");
  bench_cmd->add_option("--connections", bo.connections, "Concurrent connections")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  bench_cmd->add_option("--rate", bo.rate,
                        "Open loop: orders/s to send on schedule, those due within a "
                        "millisecond together (latency counts from each one's intended send "
                        "time); 0 = closed loop")
      ->check(finite_range(0, 10000000))
      ->capture_default_str();
  bench_cmd->add_option("--duration", bo.duration_s, "Seconds to measure, after the warm-up")
      ->check(finite_range(0.1, 86400))
      ->capture_default_str();
  bench_cmd->add_option("--orders", bo.orders, "Stop after this many orders instead (0: by duration)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1'000'000'000'000}))
      ->capture_default_str();
  bench_cmd->add_option("--warmup", bo.warmup_s, "Seconds of load before measuring")
      ->check(finite_range(0, 3600))
      ->capture_default_str();
  bench_cmd->add_option("--batch", bo.batch, "Send POST /v1/orders:batch with N orders each")
      ->check(CLI::Range(0, 1000))
      ->capture_default_str();
  bench_cmd->add_option("--json", bo.json_path, "Also write the results as JSON to FILE");
  // The embedded server's options need --embedded; it and --server exclude each other.
  CLI::Option* embedded_opt = bench_cmd->add_flag(
      "--embedded", bo.embedded, "Start a server of our own on an ephemeral port (not with --server)");
  embedded_opt->excludes(server_opt);
  bench_cmd->add_option("--data-dir", bo.data_dir, "--embedded: data directory (default: temporary)")
      ->needs(embedded_opt);
  bench_cmd->add_option("--durability", bo.durability, "--embedded: fsync|none")
      ->check(CLI::IsMember({"fsync", "none"}))
      ->needs(embedded_opt)
      ->capture_default_str();
  bench_cmd->add_option("--partitions", bo.partitions, "--embedded: partitions (default: the server's)")
      ->check(CLI::Range(1, 256))
      ->needs(embedded_opt);
  bench_cmd->add_option("--server-args", bo.server_args, "--embedded: more `serve` flags, e.g. \"--sim-latency-ms payment=5\"")
      ->needs(embedded_opt);
  bench_cmd->add_flag("!--no-terminal-check", bo.check_terminal,
                      "Skip checking that acknowledged orders reach a terminal status");
  bench_cmd->add_option("--terminal-timeout", bo.terminal_timeout_s,
                        "Seconds to wait for acknowledged orders to finish")
      ->check(finite_range(0, 86400))
      ->capture_default_str();
  bench_cmd->add_option("--seed", bo.seed, "Random seed for the generated orders (0: random)");
  bench_cmd->add_flag("--quiet", bo.quiet, "No progress lines");
  bench_cmd->add_option("--io-engine", bo.io_engine,
                        "How connections are driven: io_uring, epoll, or auto (io_uring where "
                        "the kernel allows it)")
      ->check(CLI::IsMember({"auto", "io_uring", "epoll"}))
      ->capture_default_str();
  bench_cmd->footer(
      "Exit status: 0 measured; 1 the embedded server did not start, or the JSON file could not be "
      "written; 2 bad arguments; 3 an acknowledged order did not reach a terminal status; "
      "4 no order was acknowledged (nothing measured: no server, every request refused); "
      "128 + N stopped by signal N.");

  CtlOptions ctl_opts;
  std::function<int()> ctl_run;
  add_ctl(app, ctl_opts, ctl_run);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (ctl_run) return ctl_run();
  if (serve_cmd->parsed()) return serve(serve_opts);
  if (bench_cmd->parsed()) return bench(bo);
  return 2;
}

}  // namespace orderflow::app
