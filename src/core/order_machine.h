// The order state machine and the saga rules: commands and effect results in, new state,
// events and the next effect out. Pure and deterministic: the caller supplies ids, time and
// the policy; nothing here touches storage, sockets, threads or randomness (retry jitter is
// derived from the order id and attempt).
//
// Forward steps, in order (step i done ⇒ status `reached`):
//   0 inventory/reserve   undo release        → inventory_reserved
//   1 payment/authorize   undo void           → payment_authorized
//   2 merchant/confirm    undo notify_cancel  → merchant_confirmed
//   3 dispatch/assign     undo unassign       → courier_assigned
//   4 delivery/deliver    (no undo)           → courier_assigned
//   5 payment/capture     (no undo)           → delivered
// At most one effect per order is outstanding. A permanent failure of a forward step (or a
// cancel) compensates the completed steps in reverse order; a compensation or a capture that
// fails permanently parks the order in needs_attention until redriven.
//
// Invariants (OF_ASSERT on every transition): version == seq of the last event; events are
// numbered from 1 without gaps.
#pragma once

#include <array>
#include <optional>
#include <string_view>
#include <vector>

#include "core/order.h"
#include "core/result.h"

namespace orderflow {

struct StagePolicy {
  uint32_t attempts_max = 5;
  uint64_t backoff_base_ms = 100;  // attempt n waits base·2^(n-1), capped, times [0.5, 1) jitter
  uint64_t backoff_max_ms = 5000;
  uint64_t deadline_ms = 60000;    // from the first attempt of an action; no retry after it
};

struct PipelinePolicy {
  std::array<StagePolicy, kStageCount> stages;
  const StagePolicy& of(Stage s) const { return stages[static_cast<int>(s)]; }
};

struct StepDef {
  Stage stage;
  Action action;
  std::optional<Action> undo;
  OrderStatus reached;
};
inline constexpr int kStepCount = 6;
extern const StepDef kSteps[kStepCount];

// The idempotency key every attempt of (order, stage, action) carries: order:stage:action.
std::string effect_idempotency_key(OrderId id, Stage stage, Action action);

// Backoff before attempt `attempt + 1`, after attempt `attempt` failed transiently.
uint64_t retry_backoff_ms(OrderId id, uint32_t attempt, const StagePolicy& policy);

struct EffectCall {
  OrderId order_id;
  Stage stage;
  Action action;
  uint32_t attempt;
};

enum class EffectOutcome : uint8_t { success, transient, permanent };

struct EffectResult {
  OrderId order_id;
  Stage stage = Stage::inventory;
  Action action = Action::reserve;
  uint32_t attempt = 0;
  EffectOutcome outcome = EffectOutcome::success;
  std::string code;              // failures: a machine-readable reason
  std::string message;
  std::string courier_id;        // dispatch/assign success
  bool outcome_unknown = false;  // nobody knows whether it took effect (a lease expired)
};

// What one command did to one order.
struct Transition {
  std::vector<Event> events;
  std::optional<EffectCall> issue;     // issue after the events are durable
  std::optional<uint64_t> wake_at_ms;  // arm a timer for this order
  bool stale = false;                  // an effect result that no longer applies: ignored
  std::vector<std::pair<OrderStatus, OrderStatus>> status_changes;  // (from, to), in order
};

struct Placed {
  Order order;
  std::vector<Event> events;
};

// A new order from a validated request: order_placed, status pending. Never fails.
Placed place_order(OrderId id, std::string tenant, std::string idempotency_key,
                   OrderRequest request, uint64_t now_ms);

// Requests the first effect of a placed order.
Transition start_pipeline(Order& order, uint64_t now_ms, const PipelinePolicy& policy);

// Cancel: allowed in pending, inventory_reserved, payment_authorized, merchant_confirmed
// (→ cancelling, compensations, cancelled) and harmless while cancelling; otherwise
// failed_precondition and the order is unchanged.
Result<Transition> cancel_order(Order& order, std::string_view reason, uint64_t now_ms,
                                const PipelinePolicy& policy);

// The result of the outstanding effect. A result for anything but the in-flight attempt is
// stale and changes nothing.
Transition apply_effect_result(Order& order, const EffectResult& result, uint64_t now_ms,
                               const PipelinePolicy& policy);

// A timer fired: requests the next attempt of a backed-off effect when it is due.
Transition on_timer(Order& order, uint64_t now_ms, const PipelinePolicy& policy);

// needs_attention → resumes the parked action; otherwise failed_precondition.
Result<Transition> redrive_order(Order& order, uint64_t now_ms, const PipelinePolicy& policy);

// The stage an order is in for operators: the stage of its outstanding effect, if any.
std::optional<Stage> current_stage(const Order& order);

}  // namespace orderflow
