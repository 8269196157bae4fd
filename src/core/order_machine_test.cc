#include "core/order_machine.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>

namespace orderflow {
namespace {

OrderRequest sample_request() {
  OrderRequest r;
  r.customer_id = "c-1";
  r.merchant_id = "m-7";
  r.items = {{"burger", 2, 899}, {"fries", 3, 250}};
  r.currency = "USD";
  r.payment_method = "tok_visa";
  r.delivery_address = "1 Main St";
  r.tip_cents = 200;
  return r;
}

const OrderId kId = OrderId::make(1000, PartitionId{0}, 0);
const PipelinePolicy kPolicy{};

// Drives one order through the machine with scripted service answers, checking the event
// invariants after every step.
class Saga {
 public:
  using Script = std::function<EffectResult(const EffectCall&)>;

  Saga() {
    Placed p = place_order(kId, "acme", "key-1", sample_request(), now);
    order = p.order;
    record(p.events);
    take(start_pipeline(order, now, kPolicy));
  }

  void take(const Transition& t) {
    record(t.events);
    if (t.issue) pending.push_back(*t.issue);
    if (t.wake_at_ms) wake = t.wake_at_ms;
  }

  void record(const std::vector<Event>& evs) {
    for (const Event& e : evs) {
      ASSERT_EQ(e.seq, events.size() + 1) << "gap or repeat in seq";
      events.push_back(e);
    }
    ASSERT_EQ(order.version, events.size());
  }

  // Answers issued effects (and fires due timers) until nothing is outstanding.
  void run(const Script& script, int steps_max = 200) {
    for (int i = 0; i < steps_max; ++i) {
      if (!pending.empty()) {
        answer_next(script(pending.front()));
      } else if (wake) {
        now = std::max(now, *wake);
        wake.reset();
        take(on_timer(order, now, kPolicy));
      } else {
        return;
      }
    }
    FAIL() << "did not settle";
  }

  // Answers the oldest issued effect with `r` (its identity filled in from the call).
  void answer_next(EffectResult r) {
    EffectCall c = pending.front();
    pending.pop_front();
    calls.push_back(c);
    r.order_id = c.order_id;
    r.stage = c.stage;
    r.action = c.action;
    r.attempt = c.attempt;
    take(apply_effect_result(order, r, ++now, kPolicy));
  }

  std::vector<std::string> actions() const {
    std::vector<std::string> out;
    for (const auto& c : calls) out.push_back(action_name(c.action));
    return out;
  }
  std::vector<std::string> statuses() const {
    std::vector<std::string> out = {"pending"};
    for (const auto& e : events) {
      if (e.type == EventType::status_changed) out.push_back(status_name(e.to));
    }
    return out;
  }
  int count(EventType t, Action a) const {
    int n = 0;
    for (const auto& e : events) {
      n += e.type == t && e.action == a;
    }
    return n;
  }

  uint64_t now = 1000;
  Order order;
  std::vector<Event> events;
  std::deque<EffectCall> pending;
  std::vector<EffectCall> calls;
  std::optional<uint64_t> wake;
};

EffectResult ok() { return EffectResult{}; }
EffectResult permanent(const char* code) {
  EffectResult r;
  r.outcome = EffectOutcome::permanent;
  r.code = code;
  r.message = code;
  return r;
}
EffectResult transient(const char* code) {
  EffectResult r = permanent(code);
  r.outcome = EffectOutcome::transient;
  return r;
}

TEST(Pipeline, HappyPathRunsEveryStageAndCapturesOnce) {
  Saga s;
  s.run([](const EffectCall& c) {
    EffectResult r = ok();
    if (c.action == Action::assign) r.courier_id = "courier-9";
    return r;
  });
  EXPECT_EQ(s.order.status, OrderStatus::delivered);
  EXPECT_EQ(s.actions(), (std::vector<std::string>{"reserve", "authorize", "confirm", "assign",
                                                   "deliver", "capture"}));
  EXPECT_EQ(s.statuses(), (std::vector<std::string>{"pending", "inventory_reserved",
                                                    "payment_authorized", "merchant_confirmed",
                                                    "courier_assigned", "delivered"}));
  EXPECT_EQ(s.order.payment.status, PaymentStatus::captured);
  EXPECT_EQ(s.order.payment.captured_cents, s.order.total_cents);
  EXPECT_EQ(s.order.payment.authorized_cents, s.order.total_cents);
  EXPECT_EQ(s.order.courier_id, "courier-9");
  EXPECT_EQ(s.count(EventType::effect_succeeded, Action::capture), 1);
  EXPECT_FALSE(s.order.pipeline.effect);
  EXPECT_FALSE(s.order.failure);
  // Every effect event names its step and attempt (rendered with its idempotency key,
  // order:stage:action — see Render.EveryEventTypeRendersItsData).
  EXPECT_EQ(s.events[1].type, EventType::effect_requested);
  EXPECT_EQ(s.events[1].stage, Stage::inventory);
  EXPECT_EQ(s.events[1].action, Action::reserve);
  EXPECT_EQ(s.events[1].attempt, 1u);
  // The courier comes with the assign step's success.
  int assigned = 0;
  for (const Event& e : s.events) {
    if (e.type == EventType::effect_succeeded && e.action == Action::assign) {
      EXPECT_EQ(e.courier_id, "courier-9");
      ++assigned;
    }
  }
  EXPECT_EQ(assigned, 1);
}

// Table: a permanent failure at each forward step compensates exactly the completed steps.
struct FailCase {
  Action fails;
  const char* code;
  std::vector<std::string> expected_actions;
  PaymentStatus payment;
};

class PermanentFailure : public ::testing::TestWithParam<FailCase> {};

TEST_P(PermanentFailure, CompensatesCompletedStepsInReverse) {
  const FailCase& fc = GetParam();
  Saga s;
  s.run([&](const EffectCall& c) { return c.action == fc.fails ? permanent(fc.code) : ok(); });
  EXPECT_EQ(s.order.status, OrderStatus::failed);
  EXPECT_EQ(s.actions(), fc.expected_actions);
  ASSERT_TRUE(s.order.failure);
  EXPECT_EQ(s.order.failure->code, fc.code);
  EXPECT_EQ(s.order.failure->stage, stage_name(s.calls.empty() ? Stage::inventory : [&] {
              for (auto& c : s.calls) if (c.action == fc.fails) return c.stage;
              return Stage::inventory;
            }()));
  EXPECT_EQ(s.order.payment.status, fc.payment);
  EXPECT_EQ(s.statuses().back(), "failed");
  EXPECT_EQ(s.statuses()[s.statuses().size() - 2], "compensating");
  EXPECT_EQ(s.order.pipeline.compensate_below, 0);
  EXPECT_TRUE(s.order.courier_id.empty());
}

INSTANTIATE_TEST_SUITE_P(
    Steps, PermanentFailure,
    ::testing::Values(
        FailCase{Action::reserve, "out_of_stock", {"reserve"}, PaymentStatus::none},
        FailCase{Action::authorize, "payment_declined", {"reserve", "authorize", "release"},
                 PaymentStatus::declined},
        FailCase{Action::confirm,
                 "merchant_rejected",
                 {"reserve", "authorize", "confirm", "void", "release"},
                 PaymentStatus::voided},
        FailCase{Action::assign,
                 "no_courier",
                 {"reserve", "authorize", "confirm", "assign", "notify_cancel", "void", "release"},
                 PaymentStatus::voided},
        FailCase{Action::deliver,
                 "undeliverable",
                 {"reserve", "authorize", "confirm", "assign", "deliver", "unassign",
                  "notify_cancel", "void", "release"},
                 PaymentStatus::voided}));

TEST(Pipeline, TransientFailuresRetryWithBackoffThenSucceed) {
  Saga s;
  int authorize_calls = 0;
  s.run([&](const EffectCall& c) {
    if (c.action == Action::authorize && ++authorize_calls <= 2) return transient("flaky");
    return ok();
  });
  EXPECT_EQ(s.order.status, OrderStatus::delivered);
  EXPECT_EQ(authorize_calls, 3);
  EXPECT_EQ(s.count(EventType::effect_requested, Action::authorize), 3);
  EXPECT_EQ(s.count(EventType::effect_failed, Action::authorize), 2);
  EXPECT_EQ(s.count(EventType::effect_succeeded, Action::authorize), 1);
  std::vector<uint32_t> attempts;
  for (auto& c : s.calls) {
    if (c.action == Action::authorize) attempts.push_back(c.attempt);
  }
  EXPECT_EQ(attempts, (std::vector<uint32_t>{1, 2, 3}));
}

TEST(Pipeline, AttemptsAreBoundedBothSides) {
  for (uint32_t failures : {kPolicy.of(Stage::merchant).attempts_max - 1,
                            kPolicy.of(Stage::merchant).attempts_max}) {
    Saga s;
    uint32_t n = 0;
    s.run([&](const EffectCall& c) {
      if (c.action == Action::confirm && n++ < failures) return transient("busy");
      return ok();
    });
    if (failures < kPolicy.of(Stage::merchant).attempts_max) {
      EXPECT_EQ(s.order.status, OrderStatus::delivered) << failures;
    } else {
      EXPECT_EQ(s.order.status, OrderStatus::failed) << failures;
      EXPECT_EQ(s.order.failure->code, "attempts_exhausted");
    }
  }
}

TEST(Pipeline, BackoffGrowsIsCappedAndJittered) {
  StagePolicy p;
  for (uint32_t a = 1; a < 30; ++a) {
    uint64_t b = retry_backoff_ms(kId, a, p);
    uint64_t full = std::min(p.backoff_max_ms, p.backoff_base_ms << std::min(a - 1, 20u));
    EXPECT_GE(b, full / 2);
    EXPECT_LT(b, full);
  }
  EXPECT_EQ(retry_backoff_ms(kId, 3, p), retry_backoff_ms(kId, 3, p));  // deterministic
}

TEST(Pipeline, DeadlineStopsRetries) {
  PipelinePolicy tight;
  tight.stages[static_cast<int>(Stage::inventory)].deadline_ms = 150;
  tight.stages[static_cast<int>(Stage::inventory)].attempts_max = 100;
  Order o = place_order(kId, "acme", "key-1", sample_request(), 1000).order;
  Transition t = start_pipeline(o, 1000, tight);
  uint64_t now = 1000;
  for (int i = 0; i < 100 && o.status == OrderStatus::pending; ++i) {
    if (o.pipeline.effect->phase == EffectPhase::waiting) {
      now = o.pipeline.effect->not_before_ms;
      t = on_timer(o, now, tight);
      continue;
    }
    EffectResult r = transient("busy");
    r.stage = o.pipeline.effect->stage;
    r.action = o.pipeline.effect->action;
    r.attempt = o.pipeline.effect->attempt;
    t = apply_effect_result(o, r, ++now, tight);
  }
  EXPECT_EQ(o.status, OrderStatus::failed);  // nothing was reserved: nothing to undo
  EXPECT_EQ(o.failure->code, "deadline_exceeded");
  EXPECT_LE(now, 1000u + 150u);
}

TEST(Pipeline, StaleResultsChangeNothing) {
  Saga s;
  Order before = s.order;
  EffectResult r = ok();
  r.order_id = kId;
  r.stage = Stage::inventory;
  r.action = Action::reserve;
  r.attempt = 2;  // not the outstanding attempt
  Transition t = apply_effect_result(s.order, r, 2000, kPolicy);
  EXPECT_TRUE(t.stale);
  EXPECT_TRUE(t.events.empty());
  EXPECT_EQ(s.order, before);
  r.attempt = 1;
  r.action = Action::authorize;
  r.stage = Stage::payment;
  EXPECT_TRUE(apply_effect_result(s.order, r, 2000, kPolicy).stale);
}

// Cancel at each cancellable status, with the effect of that status in flight.
struct CancelCase {
  int steps_done;  // forward steps completed before the cancel
  std::vector<std::string> undo_expected;
};

class CancelAt : public ::testing::TestWithParam<CancelCase> {};

TEST_P(CancelAt, CompensatesAndEndsCancelled) {
  const CancelCase& cc = GetParam();
  Saga s;
  // Complete `steps_done` forward steps; the next one stays in flight.
  for (int i = 0; i < cc.steps_done; ++i) s.answer_next(ok());
  ASSERT_EQ(s.order.status, cc.steps_done == 0 ? OrderStatus::pending : kSteps[cc.steps_done - 1].reached);
  auto t = cancel_order(s.order, "changed my mind", ++s.now, kPolicy);
  ASSERT_TRUE(t.ok());
  s.take(*t);
  EXPECT_EQ(s.order.status, OrderStatus::cancelling);
  // Repeating the cancel is harmless.
  auto again = cancel_order(s.order, "again", ++s.now, kPolicy);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->events.empty());
  size_t before = s.calls.size();
  s.run([](const EffectCall&) { return ok(); });  // the in-flight step succeeds, then undo
  EXPECT_EQ(s.order.status, OrderStatus::cancelled);
  const std::vector<std::string> all = s.actions();
  std::vector<std::string> after(all.begin() + static_cast<std::ptrdiff_t>(before), all.end());
  EXPECT_EQ(after, cc.undo_expected);
  EXPECT_FALSE(s.order.failure);
  EXPECT_NE(s.order.payment.status, PaymentStatus::authorized);
}

INSTANTIATE_TEST_SUITE_P(
    Statuses, CancelAt,
    ::testing::Values(
        CancelCase{0, {"reserve", "release"}},                            // pending
        CancelCase{1, {"authorize", "void", "release"}},                  // inventory_reserved
        CancelCase{2, {"confirm", "notify_cancel", "void", "release"}},   // payment_authorized
        CancelCase{3, {"assign", "unassign", "notify_cancel", "void", "release"}}));

TEST(Pipeline, CancelWhileBackingOffAbandonsTheRetry) {
  Saga s;
  s.answer_next(transient("busy"));
  ASSERT_EQ(s.order.pipeline.effect->phase, EffectPhase::waiting);
  auto t = cancel_order(s.order, "", ++s.now, kPolicy);
  ASSERT_TRUE(t.ok());
  s.take(*t);
  EXPECT_EQ(s.order.status, OrderStatus::cancelled);  // nothing was reserved: nothing to undo
  s.wake.reset();
  EXPECT_TRUE(on_timer(s.order, s.now + 100000, kPolicy).events.empty());
}

TEST(Pipeline, CancelRejectedFromCourierAssignedOn) {
  Saga s;
  for (int i = 0; i < 4; ++i) s.answer_next(ok());  // reserve, authorize, confirm, assign
  ASSERT_EQ(s.order.status, OrderStatus::courier_assigned);  // deliver in flight
  Order before = s.order;
  auto t = cancel_order(s.order, "", s.now, kPolicy);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, Errc::failed_precondition);
  EXPECT_EQ(s.order, before);
  for (OrderStatus st : {OrderStatus::delivered, OrderStatus::cancelled, OrderStatus::failed,
                         OrderStatus::compensating, OrderStatus::needs_attention}) {
    Order o = before;
    o.status = st;
    EXPECT_FALSE(cancel_order(o, "", s.now, kPolicy).ok()) << status_name(st);
  }
}

TEST(Pipeline, FailedCompensationParksThenRedriveResumes) {
  Saga s;
  bool void_broken = true;
  s.run([&](const EffectCall& c) {
    if (c.action == Action::confirm) return permanent("merchant_rejected");
    if (c.action == Action::void_ && void_broken) return permanent("processor_down");
    return ok();
  });
  EXPECT_EQ(s.order.status, OrderStatus::needs_attention);
  ASSERT_TRUE(s.order.attention);
  EXPECT_EQ(s.order.attention->code, "processor_down");
  EXPECT_EQ(s.order.failure->code, "merchant_rejected");
  EXPECT_FALSE(s.wake);
  EXPECT_TRUE(on_timer(s.order, s.now + 1000000, kPolicy).events.empty());  // parked: no timer

  void_broken = false;
  auto t = redrive_order(s.order, ++s.now, kPolicy);
  ASSERT_TRUE(t.ok());
  s.take(*t);
  EXPECT_EQ(s.order.status, OrderStatus::compensating);
  EXPECT_FALSE(s.order.attention);
  s.run([&](const EffectCall&) { return ok(); });
  EXPECT_EQ(s.order.status, OrderStatus::failed);
  EXPECT_EQ(s.order.payment.status, PaymentStatus::voided);
  EXPECT_EQ(s.actions().back(), "release");
  EXPECT_FALSE(redrive_order(s.order, s.now, kPolicy).ok());
}

TEST(Pipeline, FailedCaptureParksAndRedriveDelivers) {
  Saga s;
  int captures = 0;
  s.run([&](const EffectCall& c) {
    if (c.action == Action::capture && ++captures == 1) return permanent("capture_rejected");
    return ok();
  });
  ASSERT_EQ(s.order.status, OrderStatus::needs_attention);
  auto t = redrive_order(s.order, ++s.now, kPolicy);
  ASSERT_TRUE(t.ok());
  s.take(*t);
  s.run([&](const EffectCall&) { return ok(); });
  EXPECT_EQ(s.order.status, OrderStatus::delivered);
  EXPECT_EQ(s.order.payment.status, PaymentStatus::captured);
  EXPECT_EQ(s.count(EventType::effect_succeeded, Action::capture), 1);
}

TEST(Pipeline, UnknownOutcomeIsCompensatedToo) {
  Saga s;
  s.run([&](const EffectCall& c) {
    if (c.action == Action::authorize) {
      EffectResult r = permanent("lease_expired");
      r.outcome_unknown = true;  // the worker vanished: the authorization may exist
      return r;
    }
    return ok();
  });
  EXPECT_EQ(s.order.status, OrderStatus::failed);
  EXPECT_EQ(s.actions(), (std::vector<std::string>{"reserve", "authorize", "void", "release"}));
}

TEST(Pipeline, RedriveOnlyFromNeedsAttention) {
  Saga s;
  auto t = redrive_order(s.order, s.now, kPolicy);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().code, Errc::failed_precondition);
}

TEST(OrderStatus, NamesRoundTrip) {
  for (int i = 0; i < kOrderStatusCount; ++i) {
    auto st = static_cast<OrderStatus>(i);
    EXPECT_EQ(parse_status(status_name(st)), st);
  }
  for (int i = 0; i < kStageCount; ++i) {
    EXPECT_EQ(parse_stage(stage_name(static_cast<Stage>(i))), static_cast<Stage>(i));
  }
  for (int i = 0; i < kActionCount; ++i) {
    EXPECT_EQ(parse_action(action_name(static_cast<Action>(i))), static_cast<Action>(i));
  }
  EXPECT_FALSE(parse_status("shipped"));
  EXPECT_FALSE(parse_stage("billing"));
}

}  // namespace
}  // namespace orderflow
