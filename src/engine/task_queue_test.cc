#include "engine/task_queue.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>

namespace orderflow {
namespace {

class FakeClock final : public Clock {
 public:
  uint64_t now_ms() const override { return now.load(); }
  std::atomic<uint64_t> now{1'000'000};
};

// An effect request and the order it is for.
struct Requested {
  EffectRequest request;
  Order order;
};

Requested request_for(const std::string& tenant, Stage stage, Action action, uint16_t n = 0) {
  Requested r;
  r.order.id = OrderId::make(1000 + n, PartitionId{0}, 0);
  r.order.tenant = tenant;
  r.request.call = EffectCall{r.order.id, stage, action, 1};
  r.request.idempotency_key = effect_idempotency_key(r.order.id, stage, action);
  return r;
}

// Hands a request to the queue as the engine does: the order by reference.
void submit(TaskQueue& q, Requested r, EffectDone done) {
  q.execute(std::move(r.request), r.order, std::move(done));
}

std::vector<LeasedTask> poll_now(TaskQueue& q, const std::string& tenant, Stage s, size_t max) {
  std::promise<std::vector<LeasedTask>> p;
  EXPECT_TRUE(q.poll(tenant, s, max, 0, [&](std::vector<LeasedTask> t) { p.set_value(std::move(t)); })
                  .ok());
  return p.get_future().get();
}

TEST(TaskQueue, LeasesByStageAndTenantInOrder) {
  FakeClock clock;
  TaskQueue q(clock, TaskOptions{});
  submit(q, request_for("acme", Stage::dispatch, Action::assign, 1), [](EffectResult) {});
  submit(q, request_for("acme", Stage::dispatch, Action::assign, 2), [](EffectResult) {});
  submit(q, request_for("globex", Stage::dispatch, Action::assign, 3), [](EffectResult) {});
  submit(q, request_for("acme", Stage::delivery, Action::deliver, 4), [](EffectResult) {});
  auto tasks = poll_now(q, "acme", Stage::dispatch, 10);
  ASSERT_EQ(tasks.size(), 2u);
  EXPECT_EQ(tasks[0].request.call.order_id.ms(), 1001u);
  EXPECT_EQ(tasks[1].request.call.order_id.ms(), 1002u);
  EXPECT_NE(tasks[0].task_id, tasks[1].task_id);
  EXPECT_EQ(tasks[0].lease_expires_at_ms, clock.now + TaskOptions{}.lease_ms);
  EXPECT_TRUE(poll_now(q, "acme", Stage::dispatch, 10).empty());  // leased, not offered again
  EXPECT_EQ(poll_now(q, "globex", Stage::dispatch, 10).size(), 1u);
  EXPECT_EQ(poll_now(q, "acme", Stage::delivery, 1).size(), 1u);
}

TEST(TaskQueue, MaxTasksIsRespected) {
  FakeClock clock;
  TaskQueue q(clock, TaskOptions{});
  for (uint16_t i = 0; i < 5; ++i) {
    submit(q, request_for("acme", Stage::dispatch, Action::assign, i), [](EffectResult) {});
  }
  EXPECT_EQ(poll_now(q, "acme", Stage::dispatch, 2).size(), 2u);
  EXPECT_EQ(poll_now(q, "acme", Stage::dispatch, 10).size(), 3u);
}

TEST(TaskQueue, TakeLeaseOnceAndOnlyByItsTenant) {
  FakeClock clock;
  TaskQueue q(clock, TaskOptions{});
  submit(q, request_for("acme", Stage::dispatch, Action::assign), [](EffectResult) {});
  auto tasks = poll_now(q, "acme", Stage::dispatch, 1);
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(q.take_lease("globex", tasks[0].task_id).error().code, Errc::conflict);
  auto r = q.take_lease("acme", tasks[0].task_id);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->action, Action::assign);
  EXPECT_EQ(q.take_lease("acme", tasks[0].task_id).error().code, Errc::conflict);
  EXPECT_EQ(q.take_lease("acme", "t_unknown").error().code, Errc::conflict);
}

TEST(TaskQueue, ExpiredLeaseIsReportedAndRefused) {
  FakeClock clock;
  TaskOptions opts;
  opts.lease_ms = 1000;
  TaskQueue q(clock, opts);
  std::promise<EffectResult> reported;
  submit(q, request_for("acme", Stage::dispatch, Action::assign),
            [&](EffectResult r) { reported.set_value(std::move(r)); });
  auto tasks = poll_now(q, "acme", Stage::dispatch, 1);
  ASSERT_EQ(tasks.size(), 1u);
  clock.now += 999;  // one millisecond before expiry: still valid
  auto still = q.take_lease("acme", tasks[0].task_id);
  ASSERT_TRUE(still.ok());

  std::promise<EffectResult> reported2;
  submit(q, request_for("acme", Stage::dispatch, Action::assign, 7),
            [&](EffectResult r) { reported2.set_value(std::move(r)); });
  auto t2 = poll_now(q, "acme", Stage::dispatch, 1);
  ASSERT_EQ(t2.size(), 1u);
  clock.now += 1000;  // at expiry
  auto f = reported2.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EffectResult r = f.get();
  EXPECT_EQ(r.outcome, EffectOutcome::transient);
  EXPECT_EQ(r.code, "lease_expired");
  EXPECT_TRUE(r.outcome_unknown);
  EXPECT_EQ(q.take_lease("acme", t2[0].task_id).error().code, Errc::conflict);
}

TEST(TaskQueue, LongPollWakesOnNewTaskOrTimesOut) {
  FakeClock clock;
  TaskQueue q(clock, TaskOptions{});
  std::promise<std::vector<LeasedTask>> p;
  ASSERT_TRUE(q.poll("acme", Stage::dispatch, 5, 30000,
                     [&](std::vector<LeasedTask> t) { p.set_value(std::move(t)); })
                  .ok());
  submit(q, request_for("acme", Stage::dispatch, Action::assign), [](EffectResult) {});
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(f.get().size(), 1u);

  std::promise<std::vector<LeasedTask>> empty;
  ASSERT_TRUE(q.poll("acme", Stage::dispatch, 5, 500,
                     [&](std::vector<LeasedTask> t) { empty.set_value(std::move(t)); })
                  .ok());
  clock.now += 500;
  auto g = empty.get_future();
  ASSERT_EQ(g.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(g.get().empty());
}

TEST(TaskQueue, WaitingPollsAreBoundedBothSides) {
  FakeClock clock;
  TaskOptions opts;
  opts.waiters_max = 2;
  TaskQueue q(clock, opts);
  int answered = 0;
  EXPECT_TRUE(q.poll("acme", Stage::dispatch, 1, 10000, [&](auto) { ++answered; }).ok());
  EXPECT_TRUE(q.poll("acme", Stage::dispatch, 1, 10000, [&](auto) { ++answered; }).ok());
  Status third = q.poll("acme", Stage::dispatch, 1, 10000, [&](auto) { ++answered; });
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, Errc::overloaded);
  q.stop();  // answers the waiting polls
  EXPECT_EQ(answered, 2);
}

}  // namespace
}  // namespace orderflow
