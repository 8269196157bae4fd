#include "storage/local/rocks_store.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "core/order_machine.h"
#include "testing/orders.h"
#include "testing/temp_dir.h"

namespace orderflow {
namespace {


// A batch that creates one order (kept in `order`, which the batch points at); its id encodes
// `n` so tests can check ordering.
struct Created {
  std::unique_ptr<Order> order;
  CommitBatch batch;
  operator const CommitBatch&() const { return batch; }
};
Created create_batch(uint16_t partition, uint64_t ms, const std::string& tenant,
                         const std::string& customer, const std::string& merchant) {
  OrderId id = OrderId::make(ms, PartitionId{partition}, 0);
  Placed p = place_order(id, tenant, "key-" + id.str(), testing::sample_request(customer, merchant), ms);
  CommitBatch b;
  b.partition = PartitionId{partition};
  b.events = p.events;
  b.idempotency.push_back({tenant, p.order.idempotency_key, id, ms});
  auto order = std::make_unique<Order>(std::move(p.order));
  b.orders.push_back({order.get(), std::nullopt});
  b.id_clock = id.clock();
  return Created{std::move(order), std::move(b)};
}

// A batch that moves `o` (in partition 0) from `before` to its current state with `events`.
CommitBatch step_batch(const Order& o, OrderStatus before, const std::vector<Event>& events) {
  CommitBatch c;
  c.partition = PartitionId{0};
  c.orders.push_back({&o, before});
  c.events = events;
  c.id_clock = o.id.clock();
  return c;
}

std::unique_ptr<RocksStore> open_store(const std::string& path, uint32_t partitions = 4,
                                       Durability d = Durability::fsync) {
  RocksStoreOptions o;
  o.path = path;
  o.partitions = partitions;
  o.durability = d;
  auto s = RocksStore::open(o);
  if (!s) ADD_FAILURE() << s.error().message;
  return s ? std::move(*s) : nullptr;
}

TEST(RocksStore, CommitThenReadEverything) {
  testing::TempDir dir;
  auto store = open_store(dir.sub("db"));
  auto b = create_batch(1, 1000, "acme", "c-1", "m-1");
  ASSERT_TRUE(store->commit(b).ok());
  OrderId id = b.order->id;

  auto order = store->get_order(id);
  ASSERT_TRUE(order.ok() && order->has_value());
  EXPECT_EQ(**order, *b.order);
  auto events = store->get_events(id);
  ASSERT_TRUE(events.ok());
  EXPECT_EQ(*events, b.batch.events);
  auto idem = store->find_idempotency("acme", b.order->idempotency_key);
  ASSERT_TRUE(idem.ok() && idem->has_value());
  EXPECT_EQ((*idem)->order_id, id);
  EXPECT_FALSE(store->find_idempotency("other", b.order->idempotency_key)->has_value());
  EXPECT_FALSE(store->get_order(OrderId::make(1, PartitionId{1}, 0))->has_value());
  EXPECT_EQ(store->load_partition(PartitionId{1})->id_clock, id.clock());
  EXPECT_EQ(store->load_partition(PartitionId{2})->id_clock, 0u);
}

TEST(RocksStore, PartitionCountIsFixedAtCreation) {
  testing::TempDir dir;
  { ASSERT_NE(open_store(dir.sub("db"), 4), nullptr); }
  RocksStoreOptions o;
  o.path = dir.sub("db");
  o.partitions = 8;
  auto reopened = RocksStore::open(o);
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message.find("--partitions 4"), std::string::npos);
  o.partitions = 4;
  EXPECT_TRUE(RocksStore::open(o).ok());
}

TEST(RocksStore, WithoutACountTheStoredOneOrTheNewDirectoryDefaultIsUsed) {
  testing::TempDir dir;
  RocksStoreOptions o;
  o.path = dir.sub("db");
  o.partitions = 0;
  o.partitions_if_new = 3;
  {
    auto fresh = RocksStore::open(o);
    ASSERT_TRUE(fresh.ok());
    EXPECT_EQ((*fresh)->partitions(), 3u);
  }
  o.partitions_if_new = 5;  // a directory keeps its count
  auto again = RocksStore::open(o);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->partitions(), 3u);
}

TEST(RocksStore, ListFiltersNewestFirstAndPagesWithoutGapsOrRepeats) {
  testing::TempDir dir;
  auto store = open_store(dir.sub("db"));
  // 30 orders: customers c-0..c-2, merchants m-0..m-1, across partitions; one other tenant.
  std::vector<Order> all;
  for (int i = 0; i < 30; ++i) {
    auto b = create_batch(static_cast<uint16_t>(i % 4), 1000 + i, "acme",
                          "c-" + std::to_string(i % 3), "m-" + std::to_string(i % 2));
    ASSERT_TRUE(store->commit(b).ok());
    Order o = *b.order;
    if (i % 5 == 0) {  // every fifth order ends cancelled: the status index holds those
      auto t = cancel_order(o, "test", 2000 + i, PipelinePolicy{});
      ASSERT_TRUE(t.ok() && o.status == OrderStatus::cancelled);
      CommitBatch c;
      c.partition = o.id.partition();
      c.orders.push_back({&o, OrderStatus::pending});
      c.events = t->events;
      c.id_clock = o.id.clock();
      ASSERT_TRUE(store->commit(c).ok());
    }
    all.push_back(o);
  }
  ASSERT_TRUE(store->commit(create_batch(0, 5000, "other", "c-0", "m-0")).ok());

  auto collect = [&](ListQuery q) {
    std::vector<OrderId> ids;
    for (int pages = 0; pages < 100; ++pages) {
      auto page = store->list_orders(q);
      EXPECT_TRUE(page.ok());
      for (auto& o : page->orders) ids.push_back(o.id);
      if (!page->next_after) break;
      q.after = page->next_after;
    }
    return ids;
  };
  auto expected = [&](auto pred) {
    std::vector<OrderId> ids;
    for (auto it = all.rbegin(); it != all.rend(); ++it) {
      if (pred(*it)) ids.push_back(it->id);
    }
    return ids;
  };

  for (size_t limit : {1, 7, 30, 500}) {
    ListQuery q;
    q.tenant = "acme";
    q.limit = limit;
    EXPECT_EQ(collect(q), expected([](const Order&) { return true; })) << limit;
    q.customer_id = "c-1";
    EXPECT_EQ(collect(q), expected([](const Order& o) { return o.request.customer_id == "c-1"; }));
    q.merchant_id = "m-0";
    EXPECT_EQ(collect(q), expected([](const Order& o) {
                return o.request.customer_id == "c-1" && o.request.merchant_id == "m-0";
              }));
    q.customer_id.reset();
    EXPECT_EQ(collect(q), expected([](const Order& o) { return o.request.merchant_id == "m-0"; }));
    q.status = OrderStatus::cancelled;
    EXPECT_EQ(collect(q), expected([](const Order& o) {
                return o.request.merchant_id == "m-0" && o.status == OrderStatus::cancelled;
              }));
    q.merchant_id.reset();
    EXPECT_EQ(collect(q), expected([](const Order& o) { return o.status == OrderStatus::cancelled; }));
    q.customer_id = "c-2";
    EXPECT_EQ(collect(q), expected([](const Order& o) {
                return o.request.customer_id == "c-2" && o.status == OrderStatus::cancelled;
              }));
    q.status = OrderStatus::failed;
    EXPECT_TRUE(collect(q).empty());
  }
  ListQuery other;
  other.tenant = "other";
  EXPECT_EQ(collect(other).size(), 1u);
}

TEST(RocksStore, StatusIndexHoldsEndedOrdersOnly) {
  testing::TempDir dir;
  auto store = open_store(dir.sub("db"));
  auto b = create_batch(0, 1000, "acme", "c-1", "m-1");
  ASSERT_TRUE(store->commit(b).ok());
  Order o = *b.order;
  EXPECT_EQ(store->list_active(PartitionId{0})->size(), 1u);
  auto count_cancelled = [&](int variant) {
    ListQuery q;
    q.tenant = "acme";
    q.status = OrderStatus::cancelled;
    if (variant == 1) q.customer_id = "c-1";
    if (variant == 2) q.merchant_id = "m-1";
    auto page = store->list_orders(q);
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->orders.size() : 99u;
  };
  for (int variant = 0; variant < 3; ++variant) EXPECT_EQ(count_cancelled(variant), 0u);
  // A status in progress is the engine's to answer: the store refuses it rather than guess.
  ListQuery pending;
  pending.tenant = "acme";
  pending.status = OrderStatus::pending;
  auto refused = store->list_orders(pending);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Errc::invalid_argument);
  auto t = cancel_order(o, "test", 2000, PipelinePolicy{});
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(o.status, OrderStatus::cancelled);
  ASSERT_TRUE(store->commit(step_batch(o, OrderStatus::pending, t->events)).ok());

  for (int variant = 0; variant < 3; ++variant) EXPECT_EQ(count_cancelled(variant), 1u) << variant;
  EXPECT_EQ(store->get_events(o.id)->size(), 4u);
  EXPECT_TRUE(store->list_active(PartitionId{0})->empty());  // terminal: out of the active set
}

// Beneath the order log an order in progress has index entries but no record: a list
// asks the layer above for it. An order that ends between the list's snapshot and that
// question is no longer held there, and its record is newer than the snapshot: the list still
// shows it.
TEST(RocksStore, ListAsksTheLayerAboveForOrdersInProgressAndFindsOneThatEndedMeanwhile) {
  testing::TempDir dir;
  RocksStoreOptions opts;
  opts.path = dir.sub("db");
  opts.partitions = 1;
  opts.beneath_order_log = true;
  auto store = std::move(*RocksStore::open(opts));
  auto a = create_batch(0, 1000, "acme", "c-1", "m-1");
  auto b = create_batch(0, 1001, "acme", "c-1", "m-1");
  ASSERT_TRUE(store->commit(a).ok());
  ASSERT_TRUE(store->commit(b).ok());
  EXPECT_FALSE(store->get_order(a.order->id)->has_value());  // no record while in progress

  Order ended = *a.order;
  auto t = cancel_order(ended, "test", 2000, PipelinePolicy{});
  ASSERT_TRUE(t.ok());
  ListQuery q;
  q.tenant = "acme";
  std::vector<OrderId> asked;
  auto page = store->list_orders(q, [&](OrderId id) -> Result<std::optional<Order>> {
    asked.push_back(id);
    if (id == b.order->id) return std::optional<Order>(*b.order);  // held above
    // `a` ends now: written here, let go of above.
    EXPECT_TRUE(store->commit(step_batch(ended, OrderStatus::pending, t->events)).ok());
    return std::optional<Order>();
  });
  ASSERT_TRUE(page.ok()) << page.error().message;
  ASSERT_EQ(page->orders.size(), 2u);
  EXPECT_EQ(page->orders[0], *b.order);
  EXPECT_EQ(page->orders[1], ended);
  EXPECT_EQ(asked, (std::vector<OrderId>{b.order->id, a.order->id}));

  // An entry that names an order nobody has is an error, not a silent gap.
  auto c = create_batch(0, 1002, "acme", "c-1", "m-1");
  ASSERT_TRUE(store->commit(c).ok());
  auto broken = store->list_orders(q, [](OrderId) { return Result<std::optional<Order>>(std::optional<Order>()); });
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("missing order"), std::string::npos);
}

// Recovery cases: a child process commits and dies without closing the database (as kill -9
// would leave it), optionally the WAL's tail is torn, then the store is reopened.
enum class Crash { clean_close, no_close, torn_wal_tail };

class Recovery : public ::testing::TestWithParam<Crash> {};

TEST_P(Recovery, AcknowledgedBatchesSurviveAndBatchesStayAtomic) {
  // The writer runs in a re-executed child (gtest's threadsafe death-test style), so it starts
  // with no RocksDB threads of this process; the parent hands it the directory through env.
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  constexpr char kEnv[] = "ORDERFLOW_RECOVERY_TEST_DIR";
  const char* inherited = std::getenv(kEnv);
  testing::TempDir dir;
  const std::string path = inherited != nullptr ? inherited : dir.sub("db");
  if (inherited == nullptr) setenv(kEnv, path.c_str(), 1);
  const int kBatches = 50;
  EXPECT_EXIT(
      {
        if (inherited != nullptr) std::filesystem::remove_all(dir.path());
        auto store = open_store(path);
        for (int i = 0; i < kBatches; ++i) {
          auto b = create_batch(static_cast<uint16_t>(i % 4), 1000 + i, "acme", "c", "m");
          if (!store || !store->commit(b).ok()) _exit(3);
        }
        if (GetParam() == Crash::clean_close) store.reset();
        _exit(0);  // no destructors: as kill -9 leaves it, memtables never flushed
      },
      ::testing::ExitedWithCode(0), "");
  unsetenv(kEnv);

  if (GetParam() == Crash::torn_wal_tail) {
    std::filesystem::path newest;
    for (auto& f : std::filesystem::directory_iterator(path)) {
      if (f.path().extension() == ".log" &&
          (newest.empty() || f.path().filename() > newest.filename())) {
        newest = f.path();
      }
    }
    ASSERT_FALSE(newest.empty());
    auto size = std::filesystem::file_size(newest);
    ASSERT_GT(size, 7u);
    std::filesystem::resize_file(newest, size - 7);  // the last record loses its tail
  }

  auto store = open_store(path);
  ASSERT_NE(store, nullptr);
  int present = 0;
  for (int i = 0; i < kBatches; ++i) {
    OrderId id = OrderId::make(1000 + i, PartitionId{static_cast<uint16_t>(i % 4)}, 0);
    auto order = store->get_order(id);
    ASSERT_TRUE(order.ok());
    auto events = store->get_events(id);
    ASSERT_TRUE(events.ok());
    auto idem = store->find_idempotency("acme", "key-" + id.str());
    ASSERT_TRUE(idem.ok());
    // Atomic: the order, its event and its key are all there or all absent.
    ASSERT_EQ(order->has_value(), events->size() == 1) << i;
    ASSERT_EQ(order->has_value(), idem->has_value()) << i;
    if (order->has_value()) {
      ASSERT_EQ(present, i) << "a gap: batch " << i << " survived but an earlier one did not";
      ++present;
    }
  }
  if (GetParam() == Crash::torn_wal_tail) {
    EXPECT_EQ(present, kBatches - 1);  // only the torn last batch is lost
  } else {
    EXPECT_EQ(present, kBatches);
  }
  ListQuery q;
  q.tenant = "acme";
  q.limit = 500;
  EXPECT_EQ(store->list_orders(q)->orders.size(), static_cast<size_t>(present));
}

INSTANTIATE_TEST_SUITE_P(Cases, Recovery,
                         ::testing::Values(Crash::clean_close, Crash::no_close,
                                           Crash::torn_wal_tail),
                         [](const ::testing::TestParamInfo<Crash>& info) {
                           switch (info.param) {
                             case Crash::clean_close: return "clean_close";
                             case Crash::no_close: return "no_close";
                             case Crash::torn_wal_tail: return "torn_wal_tail";
                           }
                           return "unknown";
                         });

}  // namespace
}  // namespace orderflow
