#include "metrics/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <map>

namespace orderflow {
namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

const Histogram::BucketBoundaries kLatencyBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const Histogram::BucketBoundaries kBatchBuckets = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

// Brings a counter up to a running total kept elsewhere.
void follow(Counter* counter, uint64_t total) {
  const double seen = counter->Value();
  if (static_cast<double>(total) > seen) counter->Increment(static_cast<double>(total) - seen);
}

}  // namespace

struct Metrics::Impl {
  prometheus::Registry registry;
  Family<Counter>& http_requests = prometheus::BuildCounter()
      .Name("orderflow_http_requests_total").Help("HTTP requests answered, by route and status code")
      .Register(registry);
  Family<Histogram>& http_duration = prometheus::BuildHistogram()
      .Name("orderflow_http_request_duration_seconds").Help("Time from request read to response handed to the socket, by route")
      .Register(registry);
  Family<Counter>& rejected = prometheus::BuildCounter()
      .Name("orderflow_rejected_requests_total").Help("Requests refused, by reason: overload, auth, validation")
      .Register(registry);
  Family<Counter>& transitions = prometheus::BuildCounter()
      .Name("orderflow_order_transitions_total").Help("Order status changes committed, by from and to")
      .Register(registry);
  Family<Counter>& attempts = prometheus::BuildCounter()
      .Name("orderflow_effect_attempts_total").Help("Effect attempts requested, by stage and action")
      .Register(registry);
  Family<Counter>& retries = prometheus::BuildCounter()
      .Name("orderflow_effect_retries_total").Help("Effect attempts after the first, by stage and action")
      .Register(registry);
  Family<Counter>& failures = prometheus::BuildCounter()
      .Name("orderflow_effect_failures_total").Help("Effect failures, by stage, action, code and kind (transient, permanent)")
      .Register(registry);
  Family<Histogram>& stage_duration = prometheus::BuildHistogram()
      .Name("orderflow_stage_duration_seconds").Help("Time from an effect attempt's request to its result, by stage and action")
      .Register(registry);
  Family<Histogram>& batch_size = prometheus::BuildHistogram()
      .Name("orderflow_partition_batch_commands").Help("Commands applied per durable write, by partition")
      .Register(registry);
  Family<Histogram>& commit = prometheus::BuildHistogram()
      .Name("orderflow_log_commit_seconds").Help("Time of one batch commit (order log append and fdatasync; the RocksDB write is encoded and queued for the settling thread), by partition")
      .Register(registry);
  Family<Gauge>& orders = prometheus::BuildGauge()
      .Name("orderflow_orders").Help("Orders in progress, by status (terminal orders are counted by orderflow_order_transitions_total)")
      .Register(registry);
  Family<Gauge>& in_flight = prometheus::BuildGauge()
      .Name("orderflow_orders_in_flight").Help("Orders not yet delivered, cancelled or failed")
      .Register(registry);
  Family<Gauge>& dead_letters = prometheus::BuildGauge()
      .Name("orderflow_dead_letters").Help("Orders parked in needs_attention")
      .Register(registry);
  Family<Gauge>& queue_depth = prometheus::BuildGauge()
      .Name("orderflow_partition_queue_depth").Help("Commands waiting, by partition")
      .Register(registry);
  Family<Gauge>& disk_free = prometheus::BuildGauge()
      .Name("orderflow_data_dir_free_bytes").Help("Bytes available to orderflow on the data directory's file system")
      .Register(registry);
  Family<Gauge>& disk_capacity = prometheus::BuildGauge()
      .Name("orderflow_data_dir_capacity_bytes").Help("Size of the data directory's file system")
      .Register(registry);
  Family<Histogram>& fsync = prometheus::BuildHistogram()
      .Name("orderflow_log_fsync_seconds").Help("Each fdatasync of an order log segment")
      .Register(registry);
  Histogram* fsync_series = &fsync.Add({}, kLatencyBuckets);
  Gauge* settle_queue = &prometheus::BuildGauge()
      .Name("orderflow_log_settle_queue").Help("Batches in the order log whose RocksDB writes wait for the settling thread")
      .Register(registry).Add({});
  Counter* settle_waits = &prometheus::BuildCounter()
      .Name("orderflow_log_settle_waits_total").Help("Times a partition writer waited because the settling queue was full")
      .Register(registry).Add({});
  Counter* sim_batches = &prometheus::BuildCounter()
      .Name("orderflow_sim_ledger_batches_total").Help("Batches the built-in simulators wrote to their ledger")
      .Register(registry).Add({});
  Counter* sim_syncs = &prometheus::BuildCounter()
      .Name("orderflow_sim_ledger_syncs_total").Help("Simulator ledger batches synced before their answers (--sim-durability fsync)")
      .Register(registry).Add({});
  Family<Gauge>& stuck = prometheus::BuildGauge()
      .Name("orderflow_orders_stuck").Help("Orders in a stage longer than its SLA, by stage")
      .Register(registry);

  std::mutex mu;  // guards the lazily created series below and the sampler
  std::map<std::pair<std::string, int>, std::pair<Counter*, Histogram*>> http_series;
  std::array<std::array<Counter*, kOrderStatusCount>, kOrderStatusCount> transition_series{};
  std::array<std::pair<Counter*, Counter*>, kActionCount> attempt_series{};
  std::array<Histogram*, kActionCount> stage_series{};
  std::map<std::tuple<int, std::string, bool>, Counter*> failure_series;
  std::map<uint32_t, std::pair<Histogram*, Histogram*>> batch_series;
  std::array<Counter*, 3> rejected_series{};
  Sampler sampler;
  // Held while the sampler runs: counters that follow running totals (follow()) read, then
  // add; two scrapes sampling at once would both add the same difference.
  std::mutex sampling;
};

Metrics::Metrics() : impl_(std::make_unique<Impl>()) {
  const char* reasons[] = {"overload", "auth", "validation"};
  for (int i = 0; i < 3; ++i) impl_->rejected_series[i] = &impl_->rejected.Add({{"reason", reasons[i]}});
  impl_->in_flight.Add({});
  impl_->dead_letters.Add({});
}

Metrics::~Metrics() = default;

void Metrics::http_request(std::string_view route, int status, double seconds) {
  std::pair<Counter*, Histogram*> s;
  {
    std::lock_guard lock(impl_->mu);
    auto key = std::make_pair(std::string(route), status);
    auto it = impl_->http_series.find(key);
    if (it == impl_->http_series.end()) {
      Counter* c = &impl_->http_requests.Add({{"route", key.first}, {"code", std::to_string(status)}});
      Histogram* h = &impl_->http_duration.Add({{"route", key.first}}, kLatencyBuckets);
      it = impl_->http_series.emplace(key, std::make_pair(c, h)).first;
    }
    s = it->second;
  }
  s.first->Increment();
  s.second->Observe(seconds);
}

void Metrics::rejected(Rejection reason) { impl_->rejected_series[static_cast<int>(reason)]->Increment(); }

void Metrics::transition(OrderStatus from, OrderStatus to) {
  Counter* c;
  {
    std::lock_guard lock(impl_->mu);
    auto& slot = impl_->transition_series[static_cast<int>(from)][static_cast<int>(to)];
    if (!slot) slot = &impl_->transitions.Add({{"from", status_name(from)}, {"to", status_name(to)}});
    c = slot;
  }
  c->Increment();
}

void Metrics::effect_requested(Stage stage, Action action, uint32_t attempt) {
  std::pair<Counter*, Counter*> s;
  {
    std::lock_guard lock(impl_->mu);
    auto& slot = impl_->attempt_series[static_cast<int>(action)];
    if (!slot.first) {
      prometheus::Labels l{{"stage", stage_name(stage)}, {"action", action_name(action)}};
      slot = {&impl_->attempts.Add(l), &impl_->retries.Add(l)};
    }
    s = slot;
  }
  s.first->Increment();
  if (attempt > 1) s.second->Increment();
}

void Metrics::effect_result(Stage stage, Action action, EffectOutcome outcome,
                            std::string_view code, double seconds) {
  Histogram* h;
  Counter* f = nullptr;
  {
    std::lock_guard lock(impl_->mu);
    auto& slot = impl_->stage_series[static_cast<int>(action)];
    if (!slot) {
      slot = &impl_->stage_duration.Add({{"stage", stage_name(stage)}, {"action", action_name(action)}},
                                        kLatencyBuckets);
    }
    h = slot;
    if (outcome != EffectOutcome::success) {
      bool permanent = outcome == EffectOutcome::permanent;
      auto key = std::make_tuple(static_cast<int>(action), std::string(code), permanent);
      auto it = impl_->failure_series.find(key);
      if (it == impl_->failure_series.end() && impl_->failure_series.size() < 1000) {
        Counter* c = &impl_->failures.Add({{"stage", stage_name(stage)},
                                           {"action", action_name(action)},
                                           {"code", std::string(code)},
                                           {"kind", permanent ? "permanent" : "transient"}});
        it = impl_->failure_series.emplace(key, c).first;
      }
      if (it != impl_->failure_series.end()) f = it->second;
    }
  }
  h->Observe(seconds);
  if (f) f->Increment();
}

void Metrics::batch(uint32_t partition, size_t commands, double commit_seconds) {
  std::pair<Histogram*, Histogram*> s;
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->batch_series.find(partition);
    if (it == impl_->batch_series.end()) {
      prometheus::Labels l{{"partition", std::to_string(partition)}};
      it = impl_->batch_series
               .emplace(partition, std::make_pair(&impl_->batch_size.Add(l, kBatchBuckets),
                                                  &impl_->commit.Add(l, kLatencyBuckets)))
               .first;
    }
    s = it->second;
  }
  s.first->Observe(static_cast<double>(commands));
  s.second->Observe(commit_seconds);
}

void Metrics::set_sampler(Sampler sampler) {
  std::lock_guard lock(impl_->mu);
  impl_->sampler = std::move(sampler);
}

void Metrics::set_orders(OrderStatus status, double n) {
  impl_->orders.Add({{"status", status_name(status)}}).Set(n);
  if (status == OrderStatus::needs_attention) impl_->dead_letters.Add({}).Set(n);
}
void Metrics::set_in_flight(double n) { impl_->in_flight.Add({}).Set(n); }
void Metrics::set_queue_depth(uint32_t partition, double n) {
  impl_->queue_depth.Add({{"partition", std::to_string(partition)}}).Set(n);
}
void Metrics::set_stuck(Stage stage, double n) {
  impl_->stuck.Add({{"stage", stage_name(stage)}}).Set(n);
}

void Metrics::set_disk(double free_bytes, double capacity_bytes) {
  impl_->disk_free.Add({}).Set(free_bytes);
  impl_->disk_capacity.Add({}).Set(capacity_bytes);
}

void Metrics::wal_sync(double seconds) { impl_->fsync_series->Observe(seconds); }

void Metrics::set_settling(double queued, uint64_t waits_total) {
  impl_->settle_queue->Set(queued);
  follow(impl_->settle_waits, waits_total);
}

void Metrics::set_sim_ledger(uint64_t batches_total, uint64_t syncs_total) {
  follow(impl_->sim_batches, batches_total);
  follow(impl_->sim_syncs, syncs_total);
}

std::string Metrics::render() {
  Sampler sampler;
  {
    std::lock_guard lock(impl_->mu);
    sampler = impl_->sampler;
  }
  if (sampler) {
    std::lock_guard lock(impl_->sampling);
    sampler(*this);
  }
  return prometheus::TextSerializer().Serialize(impl_->registry.Collect());
}

}  // namespace orderflow
