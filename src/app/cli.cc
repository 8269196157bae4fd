#include "app/cli.h"

#include <CLI/CLI.hpp>

#include "app/serve.h"

namespace orderflow::app {

int run_cli(int argc, char** argv) {
  CLI::App app{"orderflow: a durable, partitioned order processing pipeline"};
  app.require_subcommand(1);

  ServeOptions serve_opts;
  CLI::App* serve_cmd = app.add_subcommand("serve", "Run the order service (embedded mode)");
  serve_cmd->add_option("--listen", serve_opts.listen, "HOST:PORT to listen on ([::1]:PORT for IPv6)")
      ->capture_default_str();
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
                   "directory is created")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  serve_cmd
      ->add_option("--durability", serve_opts.durability,
                   "fsync: acknowledge after fdatasync (group commit); none: after the write "
                   "reaches the OS (survives a process crash, not a power loss)")
      ->check(CLI::IsMember({"fsync", "none"}))
      ->capture_default_str();
  serve_cmd->add_option("--io-threads", serve_opts.io_threads, "HTTP I/O threads, 1-64")
      ->check(CLI::Range(1, 64))
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
  serve_cmd->add_option("--sim-closed-merchant", serve_opts.sim_closed_merchants,
                        "ID (repeatable): the merchant simulator rejects this merchant's orders");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (serve_cmd->parsed()) return serve(serve_opts);
  return 2;
}

}  // namespace orderflow::app
