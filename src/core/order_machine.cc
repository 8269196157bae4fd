#include "core/order_machine.h"

#include <limits>

#include "core/routing.h"

namespace orderflow {

const StepDef kSteps[kStepCount] = {
    {Stage::inventory, Action::reserve, Action::release, OrderStatus::inventory_reserved},
    {Stage::payment, Action::authorize, Action::void_, OrderStatus::payment_authorized},
    {Stage::merchant, Action::confirm, Action::notify_cancel, OrderStatus::merchant_confirmed},
    {Stage::dispatch, Action::assign, Action::unassign, OrderStatus::courier_assigned},
    {Stage::delivery, Action::deliver, std::nullopt, OrderStatus::courier_assigned},
    {Stage::payment, Action::capture, std::nullopt, OrderStatus::delivered},
};

namespace {

constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();

// Compensations undo a forward step; everything else moves an order forward.
bool is_undo(Action a) {
  return a == Action::release || a == Action::void_ || a == Action::notify_cancel ||
         a == Action::unassign;
}

// Appends the next event of `order` to `t`; the caller fills in what happened through the
// returned reference, which the next append may invalidate.
Event& append(Order& order, Transition& t, EventType type, uint64_t now_ms) {
  order.version += 1;
  order.updated_at_ms = std::max(order.updated_at_ms, now_ms);
  // A step appends 2-4 events (a result, a status change, the next request): room for them at
  // once instead of growing 1 -> 2 -> 4 and moving each event's strings along.
  if (t.events.capacity() == 0) t.events.reserve(4);
  Event& e = t.events.emplace_back();
  e.order_id = order.id;
  e.seq = order.version;
  e.type = type;
  e.at_ms = order.updated_at_ms;
  return e;
}

void set_status(Order& o, OrderStatus to, uint64_t now_ms, Transition& t) {
  if (o.status == to) return;
  t.status_changes.emplace_back(o.status, to);
  const OrderStatus from = o.status;
  o.status = to;
  Event& e = append(o, t, EventType::status_changed, now_ms);
  e.from = from;
  e.to = to;
}

Event& append_effect(Order& o, Transition& t, EventType type, uint64_t now_ms, Stage stage,
                     Action action, uint32_t attempt) {
  Event& e = append(o, t, type, now_ms);
  e.stage = stage;
  e.action = action;
  e.attempt = attempt;
  return e;
}

void request_effect(Order& o, Stage stage, Action action, uint32_t attempt, uint64_t now_ms,
                    const PipelinePolicy& policy, Transition& t) {
  EffectState e;
  e.stage = stage;
  e.action = action;
  e.attempt = attempt;
  e.phase = EffectPhase::in_flight;
  const bool same_action = o.pipeline.effect && o.pipeline.effect->stage == stage &&
                           o.pipeline.effect->action == action && attempt > 1;
  e.deadline_ms = same_action ? o.pipeline.effect->deadline_ms : now_ms + policy.of(stage).deadline_ms;
  e.started_ms = same_action ? o.pipeline.effect->started_ms : now_ms;
  e.requested_ms = now_ms;
  o.pipeline.effect = e;
  append_effect(o, t, EventType::effect_requested, now_ms, stage, action, attempt);
  t.issue = EffectCall{o.id, stage, action, attempt};
}

void finish_compensation(Order& o, uint64_t now_ms, Transition& t) {
  o.pipeline.effect.reset();
  set_status(o, o.pipeline.cancel_requested ? OrderStatus::cancelled : OrderStatus::failed, now_ms,
             t);
}

// Requests the next compensation, or finishes when every completed step is undone.
void next_compensation(Order& o, uint64_t now_ms, const PipelinePolicy& policy, Transition& t) {
  while (o.pipeline.compensate_below > 0) {
    const StepDef& step = kSteps[o.pipeline.compensate_below - 1];
    if (step.undo) {
      request_effect(o, step.stage, *step.undo, 1, now_ms, policy, t);
      return;
    }
    --o.pipeline.compensate_below;
  }
  finish_compensation(o, now_ms, t);
}

void begin_compensation(Order& o, uint64_t now_ms, const PipelinePolicy& policy, Transition& t) {
  o.pipeline.effect.reset();
  o.pipeline.compensate_below =
      static_cast<uint8_t>(o.pipeline.progress + (o.pipeline.maybe_done ? 1 : 0));
  o.pipeline.maybe_done = false;
  next_compensation(o, now_ms, policy, t);
}

// Moves forward from a state with no outstanding effect.
void advance(Order& o, uint64_t now_ms, const PipelinePolicy& policy, Transition& t) {
  if (o.pipeline.progress >= kStepCount) {
    o.pipeline.effect.reset();
    set_status(o, OrderStatus::delivered, now_ms, t);
    return;
  }
  const StepDef& step = kSteps[o.pipeline.progress];
  request_effect(o, step.stage, step.action, 1, now_ms, policy, t);
}

void park(Order& o, const EffectResult& r, uint64_t now_ms, Transition& t) {
  o.attention = Failure{stage_name(r.stage), r.code, r.message};
  o.pipeline.parked_from = o.status;
  // Keep the action so that a redrive resumes it; a waiting effect that never comes due.
  o.pipeline.effect->phase = EffectPhase::waiting;
  o.pipeline.effect->not_before_ms = kNever;
  set_status(o, OrderStatus::needs_attention, now_ms, t);
}

void permanent_failure(Order& o, const EffectResult& r, uint64_t now_ms,
                       const PipelinePolicy& policy, Transition& t) {
  const Action a = r.action;
  if (a == Action::capture || is_undo(a)) {
    park(o, r, now_ms, t);
    return;
  }
  // A forward step failed: undo what was done.
  if (a == Action::authorize && !r.outcome_unknown) o.payment.status = PaymentStatus::declined;
  o.pipeline.maybe_done = r.outcome_unknown;
  if (!o.pipeline.cancel_requested) {
    o.failure = Failure{stage_name(r.stage), r.code, r.message};
    set_status(o, OrderStatus::compensating, now_ms, t);
  }
  begin_compensation(o, now_ms, policy, t);
}

void on_success(Order& o, const EffectResult& r, uint64_t now_ms, const PipelinePolicy& policy,
                Transition& t) {
  switch (r.action) {
    case Action::authorize:
      o.payment.status = PaymentStatus::authorized;
      o.payment.authorized_cents = o.total_cents;
      break;
    case Action::capture:
      o.payment.status = PaymentStatus::captured;
      o.payment.captured_cents = o.total_cents;
      break;
    case Action::void_:
      o.payment.status = PaymentStatus::voided;
      break;
    case Action::assign:
      o.courier_id = r.courier_id.empty() ? "courier-unknown" : r.courier_id;
      break;
    case Action::unassign:
      o.courier_id.clear();
      break;
    default:
      break;
  }
  o.pipeline.effect.reset();
  if (is_undo(r.action)) {
    OF_ASSERT(o.pipeline.compensate_below > 0);
    --o.pipeline.compensate_below;
    next_compensation(o, now_ms, policy, t);
    return;
  }
  // A forward step (possibly finishing while a cancel waited for it).
  OF_ASSERT(o.pipeline.progress < kStepCount && kSteps[o.pipeline.progress].action == r.action);
  const StepDef& step = kSteps[o.pipeline.progress];
  ++o.pipeline.progress;
  o.pipeline.maybe_done = false;
  if (o.pipeline.cancel_requested) {
    begin_compensation(o, now_ms, policy, t);
    return;
  }
  if (step.reached != OrderStatus::delivered) set_status(o, step.reached, now_ms, t);
  advance(o, now_ms, policy, t);
}

}  // namespace

std::string effect_idempotency_key(OrderId id, Stage stage, Action action) {
  std::string k = id.str();
  k.push_back(':');
  k.append(stage_name(stage));
  k.push_back(':');
  k.append(action_name(action));
  return k;
}

uint64_t retry_backoff_ms(OrderId id, uint32_t attempt, const StagePolicy& policy) {
  uint32_t shift = std::min<uint32_t>(attempt > 0 ? attempt - 1 : 0, 20);
  uint64_t backoff = std::min(policy.backoff_max_ms, policy.backoff_base_ms << shift);
  // Jitter in [0.5, 1.0), derived from the order and attempt: deterministic, yet spread.
  std::string seed = id.str();
  seed.push_back(static_cast<char>(attempt));
  uint64_t h = fnv1a64(seed);
  return backoff / 2 + (backoff / 2) * (h % 1000) / 1000;
}

Placed place_order(OrderId id, std::string tenant, std::string idempotency_key,
                   OrderRequest request, uint64_t now_ms) {
  Placed p;
  Order& o = p.order;
  o.id = id;
  o.tenant = std::move(tenant);
  o.idempotency_key = std::move(idempotency_key);
  for (const LineItem& it : request.items) o.subtotal_cents += it.quantity * it.unit_price_cents;
  o.total_cents = o.subtotal_cents + request.tip_cents;
  o.request = std::move(request);
  o.status = OrderStatus::pending;
  o.created_at_ms = now_ms;
  o.updated_at_ms = now_ms;
  Transition t;
  append(o, t, EventType::order_placed, now_ms);
  p.events = std::move(t.events);
  OF_ASSERT(o.version == 1 && p.events.back().seq == 1);
  return p;
}

Transition start_pipeline(Order& order, uint64_t now_ms, const PipelinePolicy& policy) {
  OF_ASSERT(order.status == OrderStatus::pending && order.pipeline.progress == 0 &&
            !order.pipeline.effect);
  Transition t;
  advance(order, now_ms, policy, t);
  return t;
}

Result<Transition> cancel_order(Order& o, std::string_view reason, uint64_t now_ms,
                                const PipelinePolicy& policy) {
  if (o.status == OrderStatus::cancelling) return Transition{};  // already under way
  switch (o.status) {
    case OrderStatus::pending:
    case OrderStatus::inventory_reserved:
    case OrderStatus::payment_authorized:
    case OrderStatus::merchant_confirmed:
      break;
    default:
      return make_error(Errc::failed_precondition,
                        std::string("order is ") + status_name(o.status) +
                            "; it can be cancelled only before a courier is assigned");
  }
  const uint32_t version_before = o.version;
  Transition t;
  append(o, t, EventType::cancel_requested, now_ms).reason = reason;
  o.pipeline.cancel_requested = true;
  set_status(o, OrderStatus::cancelling, now_ms, t);
  // An in-flight effect is never abandoned: its result decides whether its step needs undoing.
  if (!o.pipeline.effect || o.pipeline.effect->phase != EffectPhase::in_flight) {
    begin_compensation(o, now_ms, policy, t);
  }
  OF_ASSERT(o.version == version_before + t.events.size());
  return t;
}

Transition apply_effect_result(Order& o, const EffectResult& r, uint64_t now_ms,
                               const PipelinePolicy& policy) {
  Transition t;
  const auto& e = o.pipeline.effect;
  if (!e || e->phase != EffectPhase::in_flight || e->stage != r.stage || e->action != r.action ||
      e->attempt != r.attempt) {
    t.stale = true;
    return t;
  }
  if (r.outcome == EffectOutcome::success) {
    Event& ev = append_effect(o, t, EventType::effect_succeeded, now_ms, r.stage, r.action,
                              r.attempt);
    if (r.action == Action::assign) ev.courier_id = r.courier_id;
    on_success(o, r, now_ms, policy, t);
    return t;
  }
  const bool transient = r.outcome == EffectOutcome::transient;
  Event& ev = append_effect(o, t, EventType::effect_failed, now_ms, r.stage, r.action, r.attempt);
  ev.code = r.code;
  ev.message = r.message;
  ev.retryable = transient;

  if (transient) {
    const StagePolicy& sp = policy.of(r.stage);
    uint64_t due = now_ms + retry_backoff_ms(o.id, r.attempt, sp);
    if (r.attempt < sp.attempts_max && due <= e->deadline_ms) {
      o.pipeline.effect->phase = EffectPhase::waiting;
      o.pipeline.effect->not_before_ms = due;
      t.wake_at_ms = due;
      return t;
    }
    EffectResult gave_up = r;
    gave_up.code = r.attempt >= sp.attempts_max ? "attempts_exhausted" : "deadline_exceeded";
    gave_up.message = "gave up after attempt " + std::to_string(r.attempt) + " (last: " + r.code +
                      (r.message.empty() ? "" : ": " + r.message) + ")";
    permanent_failure(o, gave_up, now_ms, policy, t);
    return t;
  }
  permanent_failure(o, r, now_ms, policy, t);
  return t;
}

Transition on_timer(Order& o, uint64_t now_ms, const PipelinePolicy& policy) {
  Transition t;
  auto& e = o.pipeline.effect;
  if (!e || e->phase != EffectPhase::waiting || o.status == OrderStatus::needs_attention) return t;
  if (now_ms < e->not_before_ms) {
    t.wake_at_ms = e->not_before_ms;
    return t;
  }
  request_effect(o, e->stage, e->action, e->attempt + 1, now_ms, policy, t);
  return t;
}

Result<Transition> redrive_order(Order& o, uint64_t now_ms, const PipelinePolicy& policy) {
  if (o.status != OrderStatus::needs_attention) {
    return make_error(Errc::failed_precondition,
                      std::string("order is ") + status_name(o.status) +
                          "; only needs_attention orders can be redriven");
  }
  OF_ASSERT(o.pipeline.effect.has_value());
  Transition t;
  Event& ev = append(o, t, EventType::redriven, now_ms);
  ev.stage = o.pipeline.effect->stage;
  ev.action = o.pipeline.effect->action;
  o.attention.reset();
  set_status(o, o.pipeline.parked_from, now_ms, t);
  // A fresh budget of attempts and a fresh deadline for the same action and key.
  EffectState parked = *o.pipeline.effect;
  o.pipeline.effect.reset();
  request_effect(o, parked.stage, parked.action, 1, now_ms, policy, t);
  return t;
}

std::optional<Stage> current_stage(const Order& o) {
  if (o.pipeline.effect) return o.pipeline.effect->stage;
  return std::nullopt;
}

}  // namespace orderflow
