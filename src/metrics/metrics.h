// The process's metrics, in the Prometheus text format (GET /metrics), on prometheus-cpp.
//
// Names follow Prometheus conventions: an `orderflow_` prefix, base units (`_seconds`),
// `_total` for counters. Hot paths use series resolved once (arrays indexed by enums, or a
// small cache keyed by route); every recording is a relaxed atomic update.
//
// Thread safety: every method from any thread. A null Metrics* means "not recorded" to the
// components that take one (unit tests).
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "core/order.h"
#include "core/order_machine.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace orderflow {

enum class Rejection { overload, auth, validation };

class Metrics {
 public:
  Metrics();
  ~Metrics();

  // HTTP: one request answered, by route pattern (e.g. /v1/orders/{id}) and status code.
  void http_request(std::string_view route, int status, double seconds);
  void rejected(Rejection reason);

  // Pipeline.
  void transition(OrderStatus from, OrderStatus to);
  void effect_requested(Stage stage, Action action, uint32_t attempt);
  void effect_result(Stage stage, Action action, EffectOutcome outcome, std::string_view code,
                     double seconds);

  // Partitions and storage.
  void batch(uint32_t partition, size_t commands, double commit_seconds);

  // Sampled when /metrics is read: fills gauges from live state.
  using Sampler = std::function<void(Metrics&)>;
  void set_sampler(Sampler sampler);
  void set_orders(OrderStatus status, double n);
  void set_in_flight(double n);
  void set_queue_depth(uint32_t partition, double n);
  void set_stuck(Stage stage, double n);
  void set_disk(double free_bytes, double capacity_bytes);
  void wal_sync(double seconds);
  // The order log's settling queue: batches waiting now, and the writers' waits for room so
  // far (a running total; the counter follows it).
  void set_settling(double queued, uint64_t waits_total);
  // The built-in simulators' ledger: batches written and synced so far (running totals).
  void set_sim_ledger(uint64_t batches_total, uint64_t syncs_total);

  std::string render();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace orderflow
