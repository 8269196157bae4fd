#include "app/serve.h"

#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "core/clock.h"
#include "core/order_json.h"
#include "core/routing.h"
#include "engine/engine.h"
#include "http/api.h"
#include "http/auth.h"
#include "http/server.h"
#include "metrics/log.h"
#include "metrics/metrics.h"
#include "engine/task_queue.h"
#include "sim/simulators.h"
#include "storage/local/log_store.h"
#include "storage/local/rocks_store.h"

namespace orderflow::app {
namespace {

constexpr char kKeyFile[] = "api_keys";

int fail(const std::string& message) {
  log::error(message);
  return 1;
}

bool split_host_port(const std::string& listen, std::string& host, uint16_t& port) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 >= listen.size()) return false;
  host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return false;
  const std::string p = listen.substr(colon + 1);
  char* end = nullptr;
  errno = 0;
  unsigned long v = std::strtoul(p.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v > 65535 || p.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  port = static_cast<uint16_t>(v);
  return true;
}

std::string random_key() {
  unsigned char bytes[24];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    OF_ASSERT(n > 0);
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string key = "of_";
  for (unsigned char b : bytes) {
    key.push_back(kHex[b >> 4]);
    key.push_back(kHex[b & 15]);
  }
  return key;
}

// Keys from flags and ORDERFLOW_API_KEYS; without any, the data directory's key file, which is
// created with a fresh random key on first start. `printable` gets the key to show the user.
Result<std::vector<http::ApiKey>> resolve_keys(const ServeOptions& o, std::string& printable) {
  std::vector<std::string> specs = o.api_keys;
  if (const char* env = std::getenv("ORDERFLOW_API_KEYS"); env != nullptr && *env != '\0') {
    std::stringstream ss(env);
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) specs.push_back(item);
    }
  }
  const auto key_file = std::filesystem::path(o.data_dir) / kKeyFile;
  bool from_file = false;
  if (specs.empty()) {
    std::ifstream in(key_file);
    if (in) {
      std::string line;
      while (std::getline(in, line)) {
        if (!line.empty()) specs.push_back(line);
      }
      from_file = true;
    } else {
      http::ApiKey k{random_key(), http::Principal{"default", http::kAllRoles}};
      std::string spec = http::format_api_key_spec(k);
      std::string tmp = key_file.string() + ".tmp";
      {
        std::ofstream out(tmp, std::ios::trunc);
        out << spec << "\n";
        out.flush();
        if (!out) return make_error(Errc::internal, "cannot write " + tmp);
      }
      ::chmod(tmp.c_str(), 0600);
      std::filesystem::rename(tmp, key_file);
      specs.push_back(spec);
      from_file = true;
    }
  }
  std::vector<http::ApiKey> keys;
  for (const auto& spec : specs) {
    auto k = http::parse_api_key_spec(spec);
    if (!k) return k.take_error();
    keys.push_back(std::move(*k));
  }
  if (from_file && !keys.empty()) printable = keys.front().key;
  return keys;
}

void print_banner(const ServeOptions& o, const std::string& host, uint16_t port,
                  const std::string& key) {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  std::string url = "http://" + h + ":" + std::to_string(port);
  std::printf("orderflow serving on %s (data: %s, durability: %s, partitions: %u)\n", url.c_str(),
              o.data_dir.c_str(), o.durability.c_str(), o.partitions);
  std::string shown = key.empty() ? "$ORDERFLOW_API_KEY" : key;
  if (!key.empty()) {
    std::printf("API key (tenant default, roles client+worker+admin; stored in %s/%s):\n  %s\n",
                o.data_dir.c_str(), kKeyFile, key.c_str());
  }
  std::printf(
      "Place an order:\n"
      "  curl -s -X POST %s/v1/orders -H 'Authorization: Bearer %s' "
      "-H 'Content-Type: application/json' -H 'Idempotency-Key: demo-1' -d "
      "'{\"customer_id\":\"c-1\",\"merchant_id\":\"m-7\",\"items\":[{\"sku\":\"burger\","
      "\"quantity\":2,\"unit_price_cents\":899}],\"currency\":\"USD\",\"payment_method\":"
      "\"tok_visa\",\"delivery_address\":\"1 Main St, Springfield\",\"tip_cents\":200}'\n",
      url.c_str(), shown.c_str());
  if (o.admin_listen.empty()) {
    std::printf("Dashboard: %s/ (paste the API key into the page)\n", url.c_str());
  }
  std::fflush(stdout);
}

// Parses NAME=VALUE; VALUE an integer in [lo, hi].
bool parse_assignment(const std::string& spec, std::string& name, int64_t lo, int64_t hi,
                      int64_t& value) {
  size_t eq = spec.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  name = spec.substr(0, eq);
  const std::string v = spec.substr(eq + 1);
  if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos || v.size() > 12) {
    return false;
  }
  value = std::stoll(v);
  return value >= lo && value <= hi;
}

// Applies STAGE=N flags through `set`; an error message names the flag.
std::string per_stage(const std::vector<std::string>& specs, const char* flag, int64_t lo,
                      int64_t hi, const std::function<void(Stage, int64_t)>& set) {
  for (const auto& spec : specs) {
    std::string name;
    int64_t v = 0;
    bool ok = parse_assignment(spec, name, lo, hi, v);
    auto stage = parse_stage(name);
    if (!ok || !stage) {
      return std::string(flag) + " must be STAGE=N with STAGE one of inventory, payment, "
             "merchant, dispatch, delivery and N from " + std::to_string(lo) + " to " +
             std::to_string(hi) + ": got '" + spec + "'";
    }
    set(*stage, v);
  }
  return {};
}

}  // namespace

int serve(const ServeOptions& options) {
  ServeOptions o = options;  // the partition count is settled by the data directory
  log::Level level;
  if (log::parse_level(o.log_level, level)) log::set_level(level);
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(o.listen, host, port)) {
    return fail("--listen must be HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080");
  }
  std::error_code ec;
  std::filesystem::create_directories(o.data_dir, ec);
  if (ec) return fail("cannot create data directory " + o.data_dir + ": " + ec.message());

  // Pipeline policy and stage services, all validated before anything starts.
  PipelinePolicy policy;
  std::array<bool, kStageCount> external{};
  SimOptions sim_opts;
  sim_opts.path = (std::filesystem::path(o.data_dir) / "sim").string();
  const std::string& sim_durability = o.sim_durability.empty() ? o.durability : o.sim_durability;
  sim_opts.durability = sim_durability == "none" ? Durability::none : Durability::fsync;
  sim_opts.closed_merchants = o.sim_closed_merchants;
  std::string err = per_stage(o.stage_deadlines, "--stage-deadline-ms", 1, 86400000,
                              [&](Stage s, int64_t v) {
                                policy.stages[static_cast<int>(s)].deadline_ms = v;
                              });
  if (err.empty()) {
    err = per_stage(o.stage_attempts, "--stage-attempts-max", 1, 100, [&](Stage s, int64_t v) {
      policy.stages[static_cast<int>(s)].attempts_max = static_cast<uint32_t>(v);
    });
  }
  if (err.empty()) {
    err = per_stage(o.sim_latencies, "--sim-latency-ms", 0, 3600000, [&](Stage s, int64_t v) {
      sim_opts.latency_ms[static_cast<int>(s)] = static_cast<uint32_t>(v);
    });
  }
  EngineOptions engine_opts;
  if (err.empty()) {
    err = per_stage(o.stage_slas, "--stage-sla-ms", 1, 604800000, [&](Stage s, int64_t v) {
      engine_opts.stage_sla_ms[static_cast<int>(s)] = static_cast<uint64_t>(v);
    });
  }
  if (!err.empty()) return fail(err);
  for (const auto& spec : o.stage_modes) {
    size_t eq = spec.find('=');
    auto stage = parse_stage(spec.substr(0, eq));
    std::string mode = eq == std::string::npos ? "" : spec.substr(eq + 1);
    if (!stage || (mode != "external" && mode != "simulator")) {
      return fail("--stage-mode must be STAGE=simulator|external: got '" + spec + "'");
    }
    external[static_cast<int>(*stage)] = mode == "external";
  }
  for (const auto& spec : o.sim_stock) {
    std::string sku;
    int64_t units = 0;
    if (!parse_assignment(spec, sku, 0, 1000000000, units) || !is_valid_token(sku, 64)) {
      return fail("--sim-stock must be SKU=N (N from 0 to 1000000000): got '" + spec + "'");
    }
    sim_opts.stock.emplace_back(sku, units);
  }
  for (const auto& m : o.sim_closed_merchants) {
    if (!is_valid_token(m, 64)) return fail("--sim-closed-merchant: invalid merchant id '" + m + "'");
  }

  std::string printable_key;
  auto keys = resolve_keys(o, printable_key);
  if (!keys) return fail(keys.error().message);
  http::ApiKeys key_table;
  for (auto& k : *keys) {
    Status s = key_table.add(std::move(k));
    if (!s.ok()) return fail(s.error().message);
  }

  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Serve /healthz at once; /readyz and the API once recovery is done.
  Metrics metrics;
  const bool separate_admin = !o.admin_listen.empty();
  std::string admin_host;
  uint16_t admin_port = 0;
  if (separate_admin && !split_host_port(o.admin_listen, admin_host, admin_port)) {
    return fail("--admin-listen must be HOST:PORT");
  }
  http::Api api(key_table, &metrics, /*operator_pages=*/!separate_admin);
  http::Api admin_api(key_table, &metrics, /*operator_pages=*/true);
  http::ServerOptions server_opts;
  server_opts.host = host;
  server_opts.port = port;
  server_opts.io_threads = o.io_threads;
  server_opts.io_engine = o.io_engine;
  server_opts.connections_max = o.connections_max;
  server_opts.idle_timeout_s = o.idle_timeout_s;
  server_opts.large_body_paths = {"/v1/orders:batch"};
  http::HttpServer server(server_opts, api);
  if (Status s = server.start(); !s.ok()) return fail(s.error().message);
  if (!server.io_engine_note().empty()) {
    log::warn("io_uring is not available here; serving through epoll",
              {{"reason", server.io_engine_note()}});
  }
  http::ServerOptions admin_opts = server_opts;
  admin_opts.host = admin_host;
  admin_opts.port = admin_port;
  admin_opts.io_threads = 1;
  admin_opts.thread_name = "of-admin-io";
  admin_opts.connections_max = 256;
  http::HttpServer admin_server(admin_opts, admin_api);
  if (separate_admin) {
    if (Status s = admin_server.start(); !s.ok()) {
      server.stop();
      return fail(s.error().message);
    }
  }

  RocksStoreOptions store_opts;
  store_opts.path = (std::filesystem::path(o.data_dir) / "store").string();
  // Orders in progress live in the order log; RocksDB gets each order's index entries when it
  // is created and its record when it ends, unsynced: the log is what makes a batch durable
  // (storage/local/log_store.h).
  store_opts.beneath_order_log = true;
  store_opts.partitions = o.partitions;
  store_opts.partitions_if_new = default_partitions(std::thread::hardware_concurrency());
  auto rocks = RocksStore::open(store_opts);
  if (!rocks) {
    server.stop();
    return fail(rocks.error().message);
  }
  o.partitions = (*rocks)->partitions();
  LogStoreOptions log_opts;
  log_opts.dir = (std::filesystem::path(o.data_dir) / "log").string();
  log_opts.partitions = o.partitions;  // as stored
  log_opts.durability = o.durability == "none" ? Durability::none : Durability::fsync;
  log_opts.segment_bytes_max = uint64_t{o.log_segment_mib} << 20;
  log_opts.on_sync = [&metrics](double seconds) { metrics.wal_sync(seconds); };
  auto store = LogStore::open(log_opts, std::move(*rocks));
  if (!store) {
    server.stop();
    return fail(store.error().message);
  }
  auto sims = Simulators::open(sim_opts);
  if (!sims) {
    server.stop();
    return fail(sims.error().message);
  }
  SystemClock clock;
  TaskOptions task_opts;
  task_opts.lease_ms = o.task_lease_ms;
  TaskQueue tasks(clock, task_opts);
  std::array<StageService*, kStageCount> services{};
  for (int i = 0; i < kStageCount; ++i) {
    services[i] = external[i] ? static_cast<StageService*>(&tasks) : sims->get();
  }
  engine_opts.partitions = o.partitions;
  engine_opts.metrics = &metrics;
  engine_opts.queue_depth_max = o.queue_depth_max;
  engine_opts.batch_max = o.batch_max;
  engine_opts.active_orders_max = o.active_orders_max;
  Engine engine(**store, clock, engine_opts, policy, services);
  if (Status s = engine.start(); !s.ok()) {
    server.stop();
    return fail(s.error().message);
  }
  http::Backend backend{&engine, sims->get(), &tasks, external};
  const std::string data_dir = o.data_dir;
  metrics.set_sampler([&engine, log_store = store->get(), sim = sims->get(), data_dir](Metrics& m) {
    struct statvfs fs;
    if (statvfs(data_dir.c_str(), &fs) == 0) {
      m.set_disk(static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize),
                 static_cast<double>(fs.f_blocks) * static_cast<double>(fs.f_frsize));
    }
    int64_t in_flight = 0;
    for (int s = 0; s < kOrderStatusCount; ++s) {
      auto st = static_cast<OrderStatus>(s);
      if (is_terminal(st)) continue;
      int64_t n = engine.orders_in_status(st);
      m.set_orders(st, static_cast<double>(n));
      in_flight += n;
    }
    m.set_in_flight(static_cast<double>(in_flight));
    auto depths = engine.queue_depths();
    for (size_t p = 0; p < depths.size(); ++p) m.set_queue_depth(static_cast<uint32_t>(p), static_cast<double>(depths[p]));
    for (int s = 0; s < kStageCount; ++s) {
      m.set_stuck(static_cast<Stage>(s), static_cast<double>(engine.stuck_in_stage(static_cast<Stage>(s))));
    }
    m.set_settling(static_cast<double>(log_store->settle_queued()), log_store->settle_waits());
    m.set_sim_ledger(sim->ledger_batches(), sim->ledger_syncs());
  });
  api.set_ready(&backend);
  admin_api.set_ready(&backend);
  print_banner(o, host, server.port(), printable_key);
  if (separate_admin) {
    log::info("dashboard and metrics on " + admin_host + ":" + std::to_string(admin_server.port()));
  }
  log::info("ready on " + host + ":" + std::to_string(server.port()),
            {{"data_dir", o.data_dir}, {"durability", o.durability},
             {"partitions", std::to_string(o.partitions)}, {"io_engine", server.io_engine()}});

  int sig = 0;
  sigwait(&signals, &sig);
  log::info(std::string(sig == SIGTERM ? "SIGTERM" : "SIGINT") + " received, draining");
  // Drain: no new connections; every enqueued command is applied, committed and answered.
  server.stop_accepting();
  if (separate_admin) admin_server.stop_accepting();
  api.shutdown();
  tasks.stop();   // answers waiting polls; unanswered leases are re-offered after a restart
  engine.stop();  // applies and commits what is queued; answers every accepted request
  (*sims)->stop();
  // A checkpoint per partition: the next start reads snapshots, not the segments' history.
  const auto close_t0 = std::chrono::steady_clock::now();
  if (Status st = (*store)->close(); !st.ok()) {
    log::error("closing the order log", {{"error", st.error().message}});
  } else {
    log::info("order log closed",
              {{"ms", std::to_string(std::chrono::duration<double, std::milli>(
                                         std::chrono::steady_clock::now() - close_t0)
                                         .count())}});
  }
  if (!server.wait_idle(5000)) log::warn("some requests did not finish within 5 s");
  server.stop();
  admin_server.stop();
  log::info("stopped");
  return 0;
}

}  // namespace orderflow::app
