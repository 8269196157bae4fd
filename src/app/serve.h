// `orderflow serve`: the embedded order service.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace orderflow::app {

struct ServeOptions {
  std::string listen = "127.0.0.1:8080";
  std::string admin_listen;  // HOST:PORT for the dashboard and /metrics (default: on --listen)
  std::string data_dir = "./data";
  std::vector<std::string> api_keys;  // KEY:TENANT:ROLE[+ROLE...]
  uint32_t partitions = 0;  // 0: the data directory's count, or one per CPU core (at most 8)
  std::string durability = "fsync";
  std::string sim_durability;  // fsync | none; empty: as --durability
  uint32_t log_segment_mib = 16;  // the order log checkpoints a partition past this
  int io_threads = 2;
  std::string io_engine = "auto";  // auto | io_uring | epoll (http/server.h)
  size_t queue_depth_max = 4096;
  size_t batch_max = 1024;
  size_t connections_max = 10000;
  int idle_timeout_s = 60;  // a connection waiting this long for a request (or a write) closes
  size_t active_orders_max = 25000;
  // Pipeline and stage services.
  std::vector<std::string> stage_modes;        // STAGE=simulator|external
  std::vector<std::string> stage_deadlines;    // STAGE=MS
  std::vector<std::string> stage_attempts;     // STAGE=N
  uint64_t task_lease_ms = 30000;
  std::vector<std::string> sim_latencies;      // STAGE=MS
  std::vector<std::string> sim_stock;          // SKU=N
  std::vector<std::string> sim_closed_merchants;
  std::vector<std::string> stage_slas;         // STAGE=MS
  std::string log_level = "info";
};

// Runs until SIGTERM or SIGINT, then drains and returns 0; non-zero on a start-up error.
int serve(const ServeOptions& options);

}  // namespace orderflow::app
