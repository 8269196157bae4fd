// `orderflow bench`: drives an orderflow server over HTTP with realistic orders and reports
// throughput, latency percentiles (HDR histogram), errors by code, and whether every
// acknowledged order reached a terminal status.
#pragma once

#include <cstdint>
#include <string>

namespace orderflow::app {

struct BenchOptions {
  std::string server = "http://127.0.0.1:8080";
  std::string api_key;          // default: $ORDERFLOW_API_KEY
  int connections = 64;
  double rate = 0;              // orders/s, open loop; 0 = closed loop
  double duration_s = 10;
  uint64_t orders = 0;          // stop after this many orders (0 = by duration)
  double warmup_s = 1;
  int batch = 0;                // >0: POST /v1/orders:batch with this many orders each
  std::string json_path;
  bool embedded = false;        // start a server of our own
  std::string data_dir;         // embedded: where (default: a temporary directory)
  std::string durability = "fsync";
  uint32_t partitions = 0;  // 0: the server's default
  std::string server_args;      // embedded: extra `serve` flags, space-separated
  bool check_terminal = true;
  double terminal_timeout_s = 60;
  uint64_t seed = 0;            // 0: random (printed)
  bool quiet = false;
  // How the load's connections are driven: "io_uring", "epoll" (Asio), or "auto" (io_uring
  // where the kernel allows it, epoll otherwise).
  std::string io_engine = "auto";
};

int bench(const BenchOptions& options);

}  // namespace orderflow::app
