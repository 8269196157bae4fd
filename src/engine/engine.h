// The engine: partitions, each with one writer thread that applies commands in batches and
// drives its orders through the pipeline.
//
// A command is enqueued (bounded queue per partition; a full queue is answered `overloaded`
// at once), applied in order by its partition's writer through the pure state machine, and
// committed with the rest of its batch in one durable write. Only then are completions
// called and effects issued (the transition that schedules an effect is durable before the
// effect leaves: an outbox). Effect results come back as commands of their own.
//
// Each partition holds its non-terminal orders in memory (bounded by active_orders_max: a
// full partition answers new orders `overloaded`); terminal orders live only in the store.
// On start, active orders are loaded, in-flight effects re-issued under the same idempotency
// keys, and backoff timers re-armed.
//
// Thread safety: public methods may be called from any thread. Completions run on partition
// threads and must not block (post the result to the caller's executor).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/clock.h"
#include "core/ids.h"
#include "core/order.h"
#include "core/order_machine.h"
#include "core/result.h"
#include "engine/change_feed.h"
#include "engine/effects.h"
#include "metrics/metrics.h"
#include "storage/store.h"

namespace orderflow {

struct PlaceCommand {
  std::string tenant;
  std::string idempotency_key;
  OrderRequest request;
};

struct CancelCommand {
  std::string tenant;
  OrderId order_id;
  std::string reason;
};

struct RedriveCommand {
  std::string tenant;
  OrderId order_id;
};

struct ResultCommand {
  EffectResult result;
};

enum class Outcome { created, replayed, updated };

struct CommandResult {
  Outcome outcome;
  Order order;  // the order's state right after the command
};

using Completion = std::function<void(Result<CommandResult>)>;

// An order that has been in its current stage longer than the stage's SLA.
struct StuckOrder {
  Order order;
  Stage stage;
  uint64_t in_stage_ms;
  uint64_t entered_ms;  // when the order entered the stage
};

struct EngineOptions {
  uint32_t partitions = 8;
  size_t queue_depth_max = 4096;        // client commands waiting per partition
  size_t batch_max = 1024;              // commands applied and committed together
  size_t active_orders_max = 25000;     // non-terminal orders per partition
  size_t stream_listeners_max = 1000;   // live order streams (SSE)
  // How long an order may stay in a stage before it counts as stuck.
  std::array<uint64_t, kStageCount> stage_sla_ms = {30000, 30000, 300000, 600000, 3600000};
  Metrics* metrics = nullptr;           // not owned; may be null
};

class Partition;

class Engine {
 public:
  // `services[stage]` handles that stage's effects; it must outlive the engine.
  Engine(OrderStore& store, const Clock& clock, EngineOptions options, PipelinePolicy policy,
         std::array<StageService*, kStageCount> services);
  ~Engine();

  // Loads each partition's state and active orders, starts the writers, re-issues effects.
  Status start();
  // Stops accepting, applies and commits everything already enqueued, joins the writers.
  void stop();

  void place(PlaceCommand command, Completion done);
  void cancel(CancelCommand command, Completion done);
  void redrive(RedriveCommand command, Completion done);
  // An effect's result. Never refused for a full queue: results are bounded by the effects
  // in flight, which are bounded by the active orders. `done` (optional) hears whether the
  // result was applied (not_found / conflict when it no longer applies).
  void submit_result(EffectResult result, Completion done = nullptr);

  // The tenant's stuck orders, oldest in stage first, at most `limit`; answered from each
  // partition's in-memory stage index (not a scan), on the partitions' threads.
  void stuck_orders(std::string tenant, size_t limit,
                    std::function<void(Result<std::vector<StuckOrder>>)> done);

  // A page of the tenant's orders in progress with status `query.status` (which must not be
  // terminal), newest first, with the query's other filters and cursor. Answered from each
  // partition's in-memory status index (orders in progress are all in memory), on the
  // partitions' threads; each partition contributes its committed state at one moment.
  void list_in_progress(ListQuery query, std::function<void(Result<ListPage>)> done);

  // Live figures for gauges (relaxed reads of per-partition counters).
  int64_t orders_in_status(OrderStatus s) const;
  int64_t stuck_in_stage(Stage s) const;
  std::vector<size_t> queue_depths() const;

  OrderStore& store() { return store_; }
  ChangeFeed& changes() { return changes_; }
  const EngineOptions& options() const { return options_; }
  const PipelinePolicy& policy() const { return policy_; }
  size_t queued() const;
  size_t active_orders() const;

 private:
  OrderStore& store_;
  const Clock& clock_;
  EngineOptions options_;
  PipelinePolicy policy_;
  std::array<StageService*, kStageCount> services_;
  IdClock ids_;  // shared by the partitions: ids sort by creation across partitions
  ChangeFeed changes_;
  std::vector<std::unique_ptr<Partition>> partitions_;
};

}  // namespace orderflow
