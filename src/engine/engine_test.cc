#include "engine/engine.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <thread>

#include "core/routing.h"
#include "storage/local/rocks_store.h"
#include "testing/temp_dir.h"

namespace orderflow {
namespace {

class FakeClock final : public Clock {
 public:
  uint64_t now_ms() const override { return now.load(); }
  std::atomic<uint64_t> now{1764395000000};
};

// Decorates a store: commits can be held until released, or made to fail.
class ControlledStore final : public OrderStore {
 public:
  explicit ControlledStore(OrderStore& inner) : inner_(inner) {}
  Status commit(const CommitBatch& b) override {
    commits.fetch_add(1);
    if (hold) {
      entered.count_down();
      release.wait();
    }
    if (fail) return make_error(Errc::internal, "injected write failure");
    return inner_.commit(b);
  }
  Result<std::optional<Order>> get_order(OrderId id) override { return inner_.get_order(id); }
  Result<std::vector<Event>> get_events(OrderId id) override { return inner_.get_events(id); }
  Result<std::optional<IdempotencyEntry>> find_idempotency(const std::string& t,
                                                           const std::string& k) override {
    return inner_.find_idempotency(t, k);
  }
  Result<ListPage> list_orders(const ListQuery& q) override { return inner_.list_orders(q); }
  Result<PartitionState> load_partition(PartitionId p) override { return inner_.load_partition(p); }
  Result<std::vector<Order>> list_active(PartitionId p) override { return inner_.list_active(p); }
  bool healthy() const override { return inner_.healthy(); }

  std::atomic<int> commits{0};
  bool hold = false;
  bool fail = false;
  std::latch entered{1};
  std::latch release{1};

 private:
  OrderStore& inner_;
};

// A stage service that records what it is asked and answers only when the test says so.
class RecordingService final : public StageService {
 public:
  void execute(EffectRequest request, const Order& order, EffectDone done) override {
    (void)order;
    std::lock_guard lock(mu);
    calls.push_back({std::move(request), std::move(done)});
    cv.notify_all();
  }
  // Waits for the n-th call (0-based) and returns its request.
  EffectRequest wait_call(size_t n) {
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return calls.size() > n; }))
        << "no effect call #" << n;
    return calls.size() > n ? calls[n].first : EffectRequest{};
  }
  void answer(size_t n, EffectOutcome outcome = EffectOutcome::success, std::string code = "") {
    EffectDone done;
    EffectResult r;
    {
      std::lock_guard lock(mu);
      const EffectCall& c = calls.at(n).first.call;
      r.order_id = c.order_id;
      r.stage = c.stage;
      r.action = c.action;
      r.attempt = c.attempt;
      r.outcome = outcome;
      r.code = std::move(code);
      done = calls.at(n).second;
    }
    done(r);
  }
  size_t count() {
    std::lock_guard lock(mu);
    return calls.size();
  }

  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::pair<EffectRequest, EffectDone>> calls;
};

OrderRequest request(int64_t tip = 0) {
  OrderRequest r;
  r.customer_id = "c-1";
  r.merchant_id = "m-1";
  r.items = {{"sku", 1, 500}};
  r.currency = "USD";
  r.payment_method = "tok_visa";
  r.delivery_address = "1 Main St";
  r.tip_cents = tip;
  return r;
}

class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RocksStoreOptions o;
    o.path = dir_.sub("db");
    o.partitions = 4;
    o.durability = Durability::none;
    auto s = RocksStore::open(o);
    ASSERT_TRUE(s.ok()) << s.error().message;
    rocks_ = std::move(*s);
    store_ = std::make_unique<ControlledStore>(*rocks_);
  }
  void start(EngineOptions opts = {}) {
    opts.partitions = 4;
    service_ = std::make_unique<RecordingService>();
    std::array<StageService*, kStageCount> services;
    services.fill(service_.get());
    engine_ = std::make_unique<Engine>(*store_, clock_, opts, PipelinePolicy{}, services);
    ASSERT_TRUE(engine_->start().ok());
  }
  void restart() {
    engine_->stop();
    engine_.reset();
    start();
  }
  // Waits until the stored order has `status`.
  Order wait_status(OrderId id, OrderStatus status) {
    for (int i = 0; i < 1000; ++i) {
      auto o = rocks_->get_order(id);
      if (o.ok() && o->has_value() && (*o)->status == status) return **o;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ADD_FAILURE() << "order never reached " << status_name(status);
    return {};
  }
  Result<CommandResult> place(const std::string& tenant, const std::string& key,
                              OrderRequest r = request()) {
    std::promise<Result<CommandResult>> p;
    auto f = p.get_future();
    engine_->place(PlaceCommand{tenant, key, std::move(r)},
                   [&p](Result<CommandResult> res) { p.set_value(std::move(res)); });
    return f.get();
  }
  Result<CommandResult> cancel(const std::string& tenant, OrderId id) {
    std::promise<Result<CommandResult>> p;
    auto f = p.get_future();
    engine_->cancel(CancelCommand{tenant, id, "test"},
                    [&p](Result<CommandResult> res) { p.set_value(std::move(res)); });
    return f.get();
  }

  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<RocksStore> rocks_;
  std::unique_ptr<ControlledStore> store_;
  std::unique_ptr<RecordingService> service_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(EngineTest, PlaceIsDurableBeforeItCompletes) {
  start();
  auto r = place("acme", "k1");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->outcome, Outcome::created);
  EXPECT_EQ(r->order.status, OrderStatus::pending);
  EXPECT_EQ(r->order.version, 1u);  // as placed
  auto stored = rocks_->get_order(r->order.id);
  ASSERT_TRUE(stored->has_value());
  EXPECT_EQ((*stored)->request, r->order.request);
  EXPECT_EQ((*stored)->version, 2u);  // order_placed, effect_requested: the pipeline started
  EXPECT_EQ(rocks_->get_events(r->order.id)->size(), 2u);
}

TEST_F(EngineTest, EffectLeavesOnlyAfterItsRequestIsDurable) {
  store_->hold = true;
  start();
  std::promise<void> placed;
  engine_->place(PlaceCommand{"acme", "k1", request()},
                 [&](Result<CommandResult>) { placed.set_value(); });
  store_->entered.wait();  // the batch is being committed
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(service_->count(), 0u);  // nothing issued before the commit returns
  store_->hold = false;
  store_->release.count_down();
  placed.get_future().wait();
  EffectRequest req = service_->wait_call(0);
  EXPECT_EQ(req.call.action, Action::reserve);
  EXPECT_EQ(req.idempotency_key, req.call.order_id.str() + ":inventory:reserve");
}

TEST_F(EngineTest, DrivesAnOrderToDeliveredWithOneEffectAtATime) {
  start();
  auto r = place("acme", "k1");
  ASSERT_TRUE(r.ok());
  std::vector<Action> seen;
  for (size_t n = 0; n < 6; ++n) {
    EffectRequest req = service_->wait_call(n);
    seen.push_back(req.call.action);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_EQ(service_->count(), n + 1) << "a second effect while one is outstanding";
    service_->answer(n);
  }
  EXPECT_EQ(seen, (std::vector<Action>{Action::reserve, Action::authorize, Action::confirm,
                                       Action::assign, Action::deliver, Action::capture}));
  Order o = wait_status(r->order.id, OrderStatus::delivered);
  EXPECT_EQ(o.payment.captured_cents, o.total_cents);
  EXPECT_EQ(engine_->active_orders(), 0u);  // terminal orders leave memory
}

TEST_F(EngineTest, RestartReissuesInFlightEffectsWithTheSameKey) {
  start();
  auto r = place("acme", "k1");
  ASSERT_TRUE(r.ok());
  EffectRequest first = service_->wait_call(0);
  service_->answer(0);
  EffectRequest second = service_->wait_call(1);  // authorize, in flight
  ASSERT_EQ(second.call.action, Action::authorize);
  restart();  // the answer never came
  EffectRequest again = service_->wait_call(0);
  EXPECT_EQ(again.call.action, Action::authorize);
  EXPECT_EQ(again.call.attempt, second.call.attempt);
  EXPECT_EQ(again.idempotency_key, second.idempotency_key);
  EXPECT_EQ(engine_->active_orders(), 1u);
  service_->answer(0);
  EXPECT_EQ(service_->wait_call(1).call.action, Action::confirm);
}

TEST_F(EngineTest, BackoffTimerSurvivesRestart) {
  start();
  auto r = place("acme", "k1");
  ASSERT_TRUE(r.ok());
  service_->wait_call(0);
  service_->answer(0, EffectOutcome::transient, "busy");
  Order waiting;
  for (int i = 0; i < 200; ++i) {
    auto o = rocks_->get_order(r->order.id);
    if ((*o)->pipeline.effect && (*o)->pipeline.effect->phase == EffectPhase::waiting) {
      waiting = **o;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(waiting.pipeline.effect);
  restart();
  EXPECT_EQ(service_->count(), 0u);  // not due yet (the fake clock stands still)
  clock_.now = waiting.pipeline.effect->not_before_ms;
  EffectRequest retry = service_->wait_call(0);
  EXPECT_EQ(retry.call.action, Action::reserve);
  EXPECT_EQ(retry.call.attempt, 2u);
}

TEST_F(EngineTest, IdempotencyReplayAndReuse) {
  start();
  auto first = place("acme", "k1");
  ASSERT_TRUE(first.ok());
  auto again = place("acme", "k1");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->outcome, Outcome::replayed);
  EXPECT_EQ(again->order.id, first->order.id);
  auto different = place("acme", "k1", request(/*tip=*/1));
  ASSERT_FALSE(different.ok());
  EXPECT_EQ(different.error().code, Errc::idempotency_key_reuse);
  // Keys are per tenant.
  auto other = place("globex", "k1");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->outcome, Outcome::created);
  EXPECT_NE(other->order.id, first->order.id);
}

TEST_F(EngineTest, ConcurrentRequestsWithOneKeyCreateOneOrder) {
  start();
  constexpr int kThreads = 16;
  std::vector<std::future<Result<CommandResult>>> results;
  for (int i = 0; i < kThreads; ++i) {
    results.push_back(std::async(std::launch::async, [this] { return place("acme", "same"); }));
  }
  int created = 0;
  std::optional<OrderId> id;
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_TRUE(r.ok()) << r.error().message;
    created += r->outcome == Outcome::created;
    if (id) {
      EXPECT_EQ(*id, r->order.id);
    }
    id = r->order.id;
  }
  EXPECT_EQ(created, 1);
}

TEST_F(EngineTest, CancelAndTenantIsolation) {
  start();
  auto placed = place("acme", "k1");
  ASSERT_TRUE(placed.ok());
  auto foreign = cancel("globex", placed->order.id);
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.error().code, Errc::not_found);
  auto c = cancel("acme", placed->order.id);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->order.status, OrderStatus::cancelling);  // reserve is in flight
  auto repeat = cancel("acme", placed->order.id);
  ASSERT_TRUE(repeat.ok());
  EXPECT_EQ(repeat->order.version, c->order.version);  // harmless
  service_->wait_call(0);
  service_->answer(0);  // the reservation happened: it must be released
  EXPECT_EQ(service_->wait_call(1).call.action, Action::release);
  service_->answer(1);
  wait_status(placed->order.id, OrderStatus::cancelled);
  auto again = cancel("acme", placed->order.id);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Errc::failed_precondition);
  EXPECT_EQ(cancel("acme", OrderId::make(1, PartitionId{1}, 0)).error().code, Errc::not_found);
  EXPECT_EQ(cancel("acme", OrderId::make(1, PartitionId{9}, 0)).error().code, Errc::not_found);
}

TEST_F(EngineTest, ManyCommandsShareOneCommit) {
  store_->hold = true;
  start();
  // The first command is taken by its partition's writer and held in commit; the next ones
  // queue behind it and must all land in the one following commit.
  std::string key0 = "k-0";
  std::promise<void> first_done;
  engine_->place(PlaceCommand{"acme", key0, request()},
                 [&](Result<CommandResult>) { first_done.set_value(); });
  store_->entered.wait();
  // Keys that route to the same partition as key0.
  std::vector<std::future<Result<CommandResult>>> rest;
  int queued = 0;
  for (int i = 1; queued < 50 && i < 10000; ++i) {
    std::string k = "k-" + std::to_string(i);
    if (partition_for_key("acme", k, 4).value != partition_for_key("acme", key0, 4).value) continue;
    ++queued;
    rest.push_back(std::async(std::launch::async, [this, k] { return place("acme", k); }));
  }
  while (engine_->queued() < 50) std::this_thread::yield();
  int commits_before = store_->commits.load();
  store_->hold = false;
  store_->release.count_down();
  first_done.get_future().wait();
  for (auto& f : rest) ASSERT_TRUE(f.get().ok());
  EXPECT_EQ(store_->commits.load() - commits_before, 1);
}

TEST_F(EngineTest, ActiveOrdersAreBoundedBothSides) {
  EngineOptions opts;
  opts.active_orders_max = 3;  // per partition
  start(opts);
  // Keys of one partition: three fit, the fourth is refused until one finishes.
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < 4; ++i) {
    std::string k = "a-" + std::to_string(i);
    if (partition_for_key("acme", k, 4).value == 0) keys.push_back(k);
  }
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(place("acme", keys[i]).ok());
  auto refused = place("acme", keys[3]);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::overloaded);
  // A replay of an existing key is still answered.
  EXPECT_TRUE(place("acme", keys[0]).ok());
}

TEST_F(EngineTest, FullQueueIsOverloadedBothSidesOfTheBound) {
  store_->hold = true;
  EngineOptions opts;
  opts.queue_depth_max = 2;
  start(opts);
  std::string key0 = "k-0";
  std::vector<std::future<Result<CommandResult>>> waiting;
  waiting.push_back(std::async(std::launch::async, [&] { return place("acme", key0); }));
  store_->entered.wait();  // the writer holds key0's batch; the queue is empty
  std::vector<std::string> same;
  for (int i = 1; same.size() < 3; ++i) {
    std::string k = "k-" + std::to_string(i);
    if (partition_for_key("acme", k, 4).value == partition_for_key("acme", key0, 4).value) {
      same.push_back(k);
    }
  }
  waiting.push_back(std::async(std::launch::async, [&] { return place("acme", same[0]); }));
  waiting.push_back(std::async(std::launch::async, [&] { return place("acme", same[1]); }));
  while (engine_->queued() < 2) std::this_thread::yield();
  auto rejected = place("acme", same[2]);  // the third in the queue: over the bound
  ASSERT_FALSE(rejected.ok());
  EXPECT_EQ(rejected.error().code, Errc::overloaded);
  store_->hold = false;
  store_->release.count_down();
  for (auto& f : waiting) EXPECT_TRUE(f.get().ok());  // at the bound: accepted
}

TEST_F(EngineTest, FailedCommitAcknowledgesNothing) {
  start();
  store_->fail = true;
  auto r = place("acme", "k1");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::unavailable);
  store_->fail = false;
  EXPECT_FALSE(rocks_->find_idempotency("acme", "k1")->has_value());
}

TEST_F(EngineTest, StopDrainsThenRejects) {
  start();
  std::vector<std::future<Result<CommandResult>>> results;
  for (int i = 0; i < 200; ++i) {
    results.push_back(std::async(std::launch::async,
                                 [this, i] { return place("acme", "k" + std::to_string(i)); }));
  }
  for (auto& f : results) ASSERT_TRUE(f.get().ok());
  engine_->stop();
  auto late = place("acme", "late");
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.error().code, Errc::unavailable);
}

TEST_F(EngineTest, IdsStayUniqueAcrossRestartWithAClockThatStepsBack) {
  start();
  auto a = place("acme", "k1");
  ASSERT_TRUE(a.ok());
  engine_->stop();
  clock_.now -= 60'000;  // the wall clock stepped back a minute
  engine_.reset();
  start();
  for (int i = 0; i < 20; ++i) {
    auto b = place("acme", "r" + std::to_string(i));
    ASSERT_TRUE(b.ok());
    EXPECT_GT(b->order.id, a->order.id);  // whatever partition minted it
  }
}

Result<ListPage> list_in_progress(Engine& e, ListQuery q) {
  std::promise<Result<ListPage>> p;
  e.list_in_progress(std::move(q), [&](Result<ListPage> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

TEST_F(EngineTest, ListsOrdersInProgressByStatusAcrossPartitionsNewestFirst) {
  start();
  std::vector<OrderId> pending;  // oldest first
  for (int i = 0; i < 23; ++i) {
    OrderRequest r = request();
    r.customer_id = "c-" + std::to_string(i % 2);
    auto placed = place("acme", "k" + std::to_string(i), r);
    ASSERT_TRUE(placed.ok());
    pending.push_back(placed->order.id);
  }
  ASSERT_TRUE(place("other", "k0").ok());
  ASSERT_TRUE(cancel("acme", pending[5]).ok());  // now cancelling: leaves the pending index
  pending.erase(pending.begin() + 5);
  std::vector<OrderId> expected(pending.rbegin(), pending.rend());

  for (size_t limit : {1, 4, 22, 100}) {
    ListQuery q;
    q.tenant = "acme";
    q.status = OrderStatus::pending;
    q.limit = limit;
    std::vector<OrderId> got;
    for (int pages = 0; pages < 50; ++pages) {
      auto page = list_in_progress(*engine_, q);
      ASSERT_TRUE(page.ok());
      EXPECT_LE(page->orders.size(), limit);
      for (auto& o : page->orders) got.push_back(o.id);
      if (!page->next_after) break;
      q.after = page->next_after;
    }
    EXPECT_EQ(got, expected) << "limit " << limit;
  }
  ListQuery by_customer;
  by_customer.tenant = "acme";
  by_customer.status = OrderStatus::pending;
  by_customer.customer_id = "c-1";
  by_customer.limit = 100;
  auto page = list_in_progress(*engine_, by_customer);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->orders.size(), 10u);  // odd i of 0..22, less i = 5 (cancelling)
  for (auto& o : page->orders) EXPECT_EQ(o.request.customer_id, "c-1");
  by_customer.status = OrderStatus::cancelling;
  by_customer.customer_id = "c-1";
  EXPECT_EQ(list_in_progress(*engine_, by_customer)->orders.size(), 1u);  // i = 5
}

// The stage index keeps no order of its own (an entry leaving a stage is replaced by the
// stage's last): the query must still give, per tenant, the orders longest in their stage
// first, across stages and partitions.
TEST_F(EngineTest, StuckOrdersOldestInStageFirstPerTenant) {
  EngineOptions opts;
  opts.stage_sla_ms.fill(5000);
  start(opts);
  const uint64_t t0 = clock_.now.load();
  std::vector<OrderId> acme;
  for (int i = 0; i < 16; ++i) {
    clock_.now = t0 + 1000 * i;
    auto placed = place("acme", "a" + std::to_string(i));
    ASSERT_TRUE(placed.ok());
    acme.push_back(placed->order.id);
    clock_.now = t0 + 1000 * i + 500;
    ASSERT_TRUE(place("other", "o" + std::to_string(i)).ok());
  }
  service_->wait_call(31);  // every order's first effect (inventory) is out
  // At t0 + 20 s, every `other` order and the oldest `acme` order of each partition move on to
  // payment: in each partition's inventory list the newest entry takes the oldest's place.
  std::set<OrderId> moved;
  std::set<uint16_t> partitions;
  for (OrderId id : acme) {
    if (partitions.insert(id.partition().value).second) moved.insert(id);
  }
  clock_.now = t0 + 20000;
  size_t answered = 0;
  for (size_t n = 0; n < 32; ++n) {
    OrderId id = service_->wait_call(n).call.order_id;
    if (moved.contains(id) || std::find(acme.begin(), acme.end(), id) == acme.end()) {
      service_->answer(n);
      ++answered;
    }
  }
  service_->wait_call(31 + answered);
  clock_.now = t0 + 100000;
  auto stuck = [&](size_t limit) {
    std::promise<Result<std::vector<StuckOrder>>> p;
    engine_->stuck_orders("acme", limit,
                          [&](Result<std::vector<StuckOrder>> r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    EXPECT_TRUE(r.ok());
    std::vector<OrderId> ids;
    for (const auto& s : *r) ids.push_back(s.order.id);
    return ids;
  };
  std::vector<OrderId> expected;  // those left in inventory, oldest first, then those moved on
  for (OrderId id : acme) {
    if (!moved.contains(id)) expected.push_back(id);
  }
  expected.insert(expected.end(), moved.begin(), moved.end());  // same entry time: by id
  for (size_t limit : {1, 2, 5, 100}) {
    std::vector<OrderId> want(expected.begin(), expected.begin() + std::min(limit, expected.size()));
    EXPECT_EQ(stuck(limit), want) << "limit " << limit;
  }
}

// Queries take a queue slot while they wait and give it back: many more queries than the
// queue holds leave room for orders (a leaked slot per query once made a partition refuse
// everything after queue_depth_max dashboard refreshes).
TEST_F(EngineTest, QueriesGiveTheirQueueSlotBack) {
  EngineOptions opts;
  opts.queue_depth_max = 2;
  start(opts);
  for (int i = 0; i < 10; ++i) {
    std::promise<void> answered;
    engine_->stuck_orders("acme", 10, [&](Result<std::vector<StuckOrder>> r) {
      EXPECT_TRUE(r.ok());
      answered.set_value();
    });
    answered.get_future().wait();
    ListQuery q;
    q.tenant = "acme";
    q.status = OrderStatus::pending;
    EXPECT_TRUE(list_in_progress(*engine_, q).ok());
  }
  EXPECT_EQ(engine_->queued(), 0u);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(place("acme", "k" + std::to_string(i)).ok());
}

}  // namespace
}  // namespace orderflow
