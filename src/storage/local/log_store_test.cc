#include "storage/local/log_store.h"

#include <signal.h>
#include <zlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>

#include "core/order_machine.h"
#include "storage/codec.h"
#include "testing/orders.h"
#include "testing/temp_dir.h"

namespace orderflow {
namespace {

namespace fs = std::filesystem;


// Orders and their events as a partition writer would hold them.
struct Book {
  std::map<OrderId, Order> orders;
  std::map<OrderId, std::vector<Event>> events;

  // A batch creating order n of partition p.
  CommitBatch create(uint16_t p, uint64_t ms) {
    OrderId id = OrderId::make(ms, PartitionId{p}, 0);
    Placed placed = place_order(id, "acme", "key-" + id.str(), testing::sample_request("c-" + id.str(), "m-1"), ms);
    orders[id] = placed.order;
    events[id] = placed.events;
    CommitBatch b;
    b.partition = PartitionId{p};
    b.events = placed.events;
    b.idempotency.push_back({"acme", placed.order.idempotency_key, id, ms});
    b.orders.push_back({&orders[id], std::nullopt});
    b.id_clock = id.clock();
    return b;
  }

  // A batch moving order `id` to `status` with one event.
  CommitBatch step(OrderId id, OrderStatus status) {
    Order& o = orders.at(id);
    OrderStatus before = o.status;
    o.status = status;
    ++o.version;
    Event e;
    e.order_id = id;
    e.seq = static_cast<uint32_t>(events[id].size() + 1);
    e.type = EventType::status_changed;
    e.at_ms = 5000 + e.seq;
    e.from = before;
    e.to = status;
    events[id].push_back(e);
    CommitBatch b;
    b.partition = id.partition();
    b.events = {e};
    b.orders.push_back({&o, before});
    return b;
  }
};

struct Opened {
  std::unique_ptr<LogStore> store;
  RocksStore* inner = nullptr;  // owned by `store`

  // Creates an order of partition p and commits it; returns its id.
  OrderId create(Book& book, uint16_t p, uint64_t ms) {
    auto b = book.create(p, ms);
    EXPECT_TRUE(store->commit(b).ok());
    return b.orders[0].order->id;
  }
};

// The log store over RocksDB as `serve` opens them, in `base`/db and `base`/log.
RocksStoreOptions inner_options(const std::string& base) {
  RocksStoreOptions ro;
  ro.path = base + "/db";
  ro.partitions = 2;
  ro.beneath_order_log = true;
  return ro;
}

LogStoreOptions log_options(const std::string& base, uint64_t segment_bytes_max = 64 << 20) {
  LogStoreOptions lo;
  lo.dir = base + "/log";
  lo.partitions = 2;
  lo.segment_bytes_max = segment_bytes_max;
  return lo;
}

Opened open_log_with(const std::string& base, const LogStoreOptions& options) {
  auto inner = RocksStore::open(inner_options(base));
  if (!inner) {
    ADD_FAILURE() << inner.error().message;
    return {};
  }
  Opened out;
  out.inner = inner->get();
  auto s = LogStore::open(options, std::move(*inner));
  if (!s) {
    ADD_FAILURE() << s.error().message;
    return {};
  }
  out.store = std::move(*s);
  return out;
}

Opened open_log_at(const std::string& base, uint64_t segment_bytes_max = 64 << 20) {
  return open_log_with(base, log_options(base, segment_bytes_max));
}

Opened open_log(const testing::TempDir& dir, uint64_t segment_bytes_max = 64 << 20) {
  return open_log_at(dir.path(), segment_bytes_max);
}

std::vector<std::string> segments_at(const std::string& base) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(base + "/log")) out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> segments(const testing::TempDir& dir) { return segments_at(dir.path()); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A segment's seq, from its file name (pNNNNN-SSSSSSSSSSSS.log).
uint64_t seq_of(const std::string& path) {
  return std::stoull(fs::path(path).filename().string().substr(7, 12));
}

// The path of the segment `ahead` seqs past `path`'s, in the same partition.
std::string segment_after(const std::string& path, uint64_t ahead) {
  char name[32];
  std::snprintf(name, sizeof name, "-%012llu.log", static_cast<unsigned long long>(seq_of(path) + ahead));
  const fs::path p(path);
  return (p.parent_path() / (p.filename().string().substr(0, 6) + name)).string();
}

// The part of a segment its records fill: a recycled file (a retired segment overwritten
// from the start) still holds its earlier records after them, under an older seq.
std::string read_segment(const std::string& path) {
  std::string bytes = read_file(path);
  const uint64_t seq = seq_of(path);
  size_t end = 8;
  while (end + 16 <= bytes.size()) {
    uint32_t len = 0;
    uint64_t rseq = 0;
    std::memcpy(&len, bytes.data() + end, 4);
    std::memcpy(&rseq, bytes.data() + end + 8, 8);
    if (rseq != seq || end + 16 + len > bytes.size()) break;
    end += 16 + len;
  }
  bytes.resize(std::min(end, bytes.size()));
  return bytes;
}

// An order's record in the log's two parts (see codec::encode_order).
struct RecordParts {
  std::string fixed, state;
};
RecordParts record_parts(const Order& o) {
  std::string whole;
  codec::encode_order(o, whole);
  const size_t at = *codec::order_state_offset(whole);
  return {whole.substr(0, at), whole.substr(at)};
}

// How a segment names an order whose state alone follows: byte 'S' and its id.
std::string state_entry_of(OrderId id) {
  const auto b = id.bytes();
  return 'S' + std::string(b.data(), b.size());
}

// The newest segment of partition p.
std::string newest_segment(const testing::TempDir& dir, uint16_t p) {
  std::string newest;
  const std::string prefix = "p0000" + std::to_string(p) + "-";
  for (const auto& f : segments(dir)) {
    const std::string name = fs::path(f).filename().string();
    if (name.rfind(prefix, 0) == 0 && name.ends_with(".log")) newest = f;
  }
  return newest;
}

uint32_t get_u32_le(const std::string& b, size_t at) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(b[at + i]);
  return v;
}

TEST(LogStore, OrdersInProgressAreReadFromTheLogAndSurviveAReopen) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    auto s = open_log(dir);
    id = s.create(book, 1, 1000);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());

    EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
    EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
    // RocksDB has the order's index entries and idempotency key, not its record.
    EXPECT_FALSE(s.inner->get_order(id)->has_value());
    EXPECT_EQ((*s.store->find_idempotency("acme", "key-" + id.str()))->order_id, id);
    // A list finds it through those entries and shows its current state.
    ListQuery q;
    q.tenant = "acme";
    auto page = s.store->list_orders(q);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ASSERT_EQ(page->orders.size(), 1u);
    EXPECT_EQ(page->orders[0].status, OrderStatus::inventory_reserved);
    q.customer_id = book.orders.at(id).request.customer_id;
    page = s.store->list_orders(q);
    ASSERT_TRUE(page.ok()) << page.error().message;
    ASSERT_EQ(page->orders.size(), 1u);
    EXPECT_EQ(page->orders[0], book.orders.at(id));
    // Without the log's help RocksDB alone cannot answer: its entry names no record.
    EXPECT_FALSE(s.inner->list_orders(q).ok());
    EXPECT_EQ(s.store->held(PartitionId{1}), 1u);
  }
  auto s = open_log(dir);
  auto active = s.store->list_active(PartitionId{1});
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0], book.orders.at(id));
  EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
  EXPECT_EQ(s.store->load_partition(PartitionId{1})->id_clock, id.clock());
  EXPECT_TRUE(s.store->list_active(PartitionId{0})->empty());
}

TEST(LogStore, AFinishedOrderLeavesTheLogForRocksDbWhole) {
  testing::TempDir dir;
  Book book;
  auto s = open_log(dir);
  auto b = book.create(0, 1000);
  OrderId id = b.orders[0].order->id;
  ASSERT_TRUE(s.store->commit(b).ok());
  ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
  ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::cancelled)).ok());

  EXPECT_EQ(s.store->held(PartitionId{0}), 0u);
  // Read back from memory until its batch has settled, then from RocksDB.
  EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
  EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
  s.store->settle();
  EXPECT_EQ(**s.inner->get_order(id), book.orders.at(id));
  EXPECT_EQ(*s.inner->get_events(id), book.events.at(id));
  ListQuery q;
  q.tenant = "acme";
  q.status = OrderStatus::cancelled;
  auto page = s.store->list_orders(q);
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->orders.size(), 1u);
  EXPECT_EQ(page->orders[0].id, id);
  EXPECT_TRUE(s.store->list_active(PartitionId{0})->empty());
}

TEST(LogStore, RecoveryWritesWhatRocksDbLostFromTheLog) {
  testing::TempDir dir;
  Book book;
  OrderId done, open;
  {
    auto s = open_log(dir);
    auto a = book.create(0, 1000);
    auto b = book.create(0, 1001);
    done = a.orders[0].order->id;
    open = b.orders[0].order->id;
    ASSERT_TRUE(s.store->commit(a).ok());
    ASSERT_TRUE(s.store->commit(b).ok());
    ASSERT_TRUE(s.store->commit(book.step(done, OrderStatus::cancelled)).ok());
  }
  // RocksDB loses everything (as if its unsynced writes had not reached the disk).
  fs::remove_all(dir.sub("db"));
  auto s = open_log(dir);
  // Every batch since the last checkpoint is still in the newest segment, so both orders come
  // back: the one in progress with its creation-time entries, the finished one whole. (What
  // came before that checkpoint RocksDB had synced.)
  EXPECT_EQ(**s.store->get_order(open), book.orders.at(open));
  EXPECT_EQ((*s.store->find_idempotency("acme", "key-" + open.str()))->order_id, open);
  ListQuery q;
  q.tenant = "acme";
  auto page = s.store->list_orders(q);
  ASSERT_TRUE(page.ok()) << page.error().message;
  ASSERT_EQ(page->orders.size(), 2u);
  EXPECT_EQ(page->orders[0], book.orders.at(open));  // newest first
  EXPECT_EQ(page->orders[1], book.orders.at(done));
  EXPECT_EQ(**s.inner->get_order(done), book.orders.at(done));
  EXPECT_EQ(*s.inner->get_events(done), book.events.at(done));
}

TEST(LogStore, ATornLastRecordIsIgnoredDamageElsewhereIsAnError) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    auto s = open_log(dir);
    id = s.create(book, 1, 1000);
  }
  Order created = book.orders.at(id);
  {
    auto s = open_log(dir);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
  }
  // The last record (the step) is cut short, as a crash in the middle of its write leaves it.
  const std::string newest = newest_segment(dir, 1);
  ASSERT_FALSE(newest.empty());
  fs::resize_file(newest, read_segment(newest).size() - 3);
  {
    auto s = open_log(dir);
    EXPECT_EQ(**s.store->get_order(id), created);  // the step was never acknowledged
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
  }
  // A damaged record in a segment that is not the newest is not a crash artefact: a newer
  // segment (created, never written) follows the one damaged here.
  std::string older;
  for (const auto& f : segments(dir)) {
    if (fs::path(f).filename().string().rfind("p00001-0", 0) == 0) older = f;
  }
  ASSERT_FALSE(older.empty());
  std::string bytes;
  {
    std::ifstream in(older, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bytes[8 + 16 + 2] ^= 0x55;  // inside the first record's payload
  {
    std::ofstream out(older, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  {
    // The next seq: a segment before a gap in the seqs is superseded and not read at all.
    std::ofstream newer(segment_after(older, 1), std::ios::binary);
    newer << "OFLOG001";
  }
  auto reopened =
      LogStore::open(log_options(dir.path()), std::move(*RocksStore::open(inner_options(dir.path()))));
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message.find("not the newest"), std::string::npos)
      << reopened.error().message;
}

TEST(LogStore, AStepOfAHeldOrderLogsItsStateAloneAndReplaysOntoItsRecord) {
  testing::TempDir dir;
  Book book;
  OrderId id, other;
  {
    auto s = open_log(dir);
    id = s.create(book, 0, 1000);
    other = s.create(book, 0, 1001);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::payment_authorized)).ok());
  }
  // The segment has the order's fixed part once (from its creation) and its state three times.
  const RecordParts parts = record_parts(book.orders.at(id));
  const std::string segment = read_segment(newest_segment(dir, 0));
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = segment.find(what); at != std::string::npos; at = segment.find(what, at + 1)) ++n;
    return n;
  };
  EXPECT_EQ(count(parts.fixed), 1u);
  const std::string entry = state_entry_of(id);
  EXPECT_EQ(count(entry), 2u);
  EXPECT_EQ(count(entry + parts.state), 1u);  // the latest state, after its id
  {
    auto s = open_log(dir);  // replays the creation and both states
    EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
    EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
    EXPECT_EQ(**s.store->get_order(other), book.orders.at(other));
  }

  // A state entry of an order the log never held is damage, even under a valid checksum.
  {
    auto s = open_log(dir);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::merchant_confirmed)).ok());
  }
  const std::string path = newest_segment(dir, 0);
  std::string bytes = read_segment(path);
  const size_t at = bytes.rfind(entry);
  ASSERT_NE(at, std::string::npos);
  const auto stranger = OrderId::make(7777, PartitionId{0}, 0).bytes();
  bytes.replace(at + 1, stranger.size(), stranger.data(), stranger.size());
  // Re-seal the record that holds it: walk the records (u32 length, u32 CRC, u64 seq, payload).
  size_t rec = 8;
  while (rec + 16 + get_u32_le(bytes, rec) < at) rec += 16 + get_u32_le(bytes, rec);
  const uint32_t len = get_u32_le(bytes, rec);
  uLong c = crc32(0, reinterpret_cast<const Bytef*>(bytes.data() + rec + 8), 8);
  c = crc32(c, reinterpret_cast<const Bytef*>(bytes.data() + rec + 16), len);
  for (int i = 0; i < 4; ++i) bytes[rec + 4 + i] = static_cast<char>(c >> (8 * i));
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  auto reopened =
      LogStore::open(log_options(dir.path()), std::move(*RocksStore::open(inner_options(dir.path()))));
  ASSERT_FALSE(reopened.ok());
  EXPECT_NE(reopened.error().message.find("not held"), std::string::npos) << reopened.error().message;
}

TEST(LogStore, ACleanCloseLeavesEachPartitionASnapshotOfItsOrdersInProgress) {
  testing::TempDir dir;
  Book book;
  OrderId done, going;
  {
    auto s = open_log(dir);
    done = s.create(book, 0, 1000);
    going = s.create(book, 0, 1001);
    ASSERT_TRUE(s.store->commit(book.step(going, OrderStatus::inventory_reserved)).ok());
    ASSERT_TRUE(s.store->commit(book.step(done, OrderStatus::inventory_reserved)).ok());
    ASSERT_TRUE(s.store->commit(book.step(done, OrderStatus::delivered)).ok());
    const uint64_t before = s.store->checkpoints();
    ASSERT_TRUE(s.store->close().ok());
    EXPECT_EQ(s.store->checkpoints(), before + 1);  // partition 1 had nothing to shorten
    auto late = s.store->commit(book.step(going, OrderStatus::payment_authorized));
    ASSERT_FALSE(late.ok());
    EXPECT_EQ(late.error().code, Errc::unavailable);
    book.orders.at(going).status = OrderStatus::inventory_reserved;  // that step never happened
    book.orders.at(going).version -= 1;
    book.events.at(going).pop_back();
    // Reads still work.
    EXPECT_EQ(**s.store->get_order(going), book.orders.at(going));
  }
  // Partition 0's segment is the snapshot alone: the order in progress whole, once, and no
  // step of either order; the order that ended is in RocksDB's tables.
  const RecordParts in_progress = record_parts(book.orders.at(going));
  const std::string segment = read_segment(newest_segment(dir, 0));
  EXPECT_NE(segment.find(in_progress.fixed + in_progress.state), std::string::npos);
  EXPECT_EQ(segment.find(record_parts(book.orders.at(done)).fixed), std::string::npos);
  for (OrderId id : {done, going}) EXPECT_EQ(segment.find(state_entry_of(id)), std::string::npos);
  auto s = open_log(dir);
  EXPECT_EQ(**s.store->get_order(going), book.orders.at(going));
  EXPECT_EQ(*s.store->get_events(going), book.events.at(going));
  EXPECT_EQ(**s.inner->get_order(done), book.orders.at(done));
  EXPECT_EQ(*s.store->get_events(done), book.events.at(done));
}

TEST(LogStore, ASegmentPastItsLimitIsCheckpointedBelowItIsNot) {
  testing::TempDir dir;
  Book book;
  std::vector<OrderId> ids;
  {
    auto s = open_log(dir, /*segment_bytes_max=*/16 << 10);
    const uint64_t at_open = s.store->checkpoints();  // one per partition at open
    for (int i = 0; i < 20; ++i) {
      auto b = book.create(0, 1000 + i);
      ids.push_back(b.orders[0].order->id);
      ASSERT_TRUE(s.store->commit(b).ok());
    }
    EXPECT_EQ(s.store->checkpoints(), at_open);  // ~20 small records: under 16 KiB
    for (int round = 0; round < 80; ++round) {
      for (OrderId id : ids) {
        OrderStatus st = round % 2 ? OrderStatus::inventory_reserved : OrderStatus::payment_authorized;
        ASSERT_TRUE(s.store->commit(book.step(id, st)).ok());
      }
    }
    EXPECT_GT(s.store->checkpoints(), at_open + 1);
  }
  // Old segments are retired in the background (one kept as the spare to overwrite next,
  // the others deleted); closing the store finishes that.
  size_t p0 = 0;
  for (const auto& f : segments(dir)) {
    const std::string name = fs::path(f).filename().string();
    p0 += name.rfind("p00000-0", 0) == 0;
  }
  EXPECT_EQ(p0, 1u);
  EXPECT_TRUE(fs::exists(dir.sub("log/p00000-spare")));
  EXPECT_LT(fs::file_size(segments(dir)[0]), size_t{2 * (16 << 10)});
  auto s = open_log(dir);
  ASSERT_EQ(s.store->list_active(PartitionId{0})->size(), ids.size());
  for (OrderId id : ids) {
    EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
    EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
  }
}

TEST(LogStore, ASnapshotLargerThanTheLimitDoesNotCheckpointEveryBatch) {
  testing::TempDir dir;
  Book book;
  auto s = open_log(dir, /*segment_bytes_max=*/1024);  // far below one snapshot
  std::vector<OrderId> ids;
  for (int i = 0; i < 200; ++i) ids.push_back(s.create(book, 0, 1000 + i));
  const uint64_t before = s.store->checkpoints();
  EXPECT_GE(before, 3u);  // the open, and the first checkpoints of a growing set
  // 1,200 more batches of one step each: each appends ~50 bytes (the order's state and one
  // event) to a ~30 KiB snapshot, so a checkpoint is due about every 600 batches, not after
  // each.
  for (int round = 0; round < 6; ++round) {
    for (OrderId id : ids) {
      OrderStatus st = round % 2 ? OrderStatus::payment_authorized : OrderStatus::inventory_reserved;
      ASSERT_TRUE(s.store->commit(book.step(id, st)).ok());
    }
  }
  const uint64_t during = s.store->checkpoints() - before;
  EXPECT_GE(during, 1u);
  EXPECT_LE(during, 4u);
}

TEST(LogStore, AFailedAppendLatchesTheStoreAndAcknowledgesNothingMore) {
  testing::TempDir dir;
  Book book;
  OrderId first, second;
  {
    auto s = open_log(dir);
    first = s.create(book, 0, 1000);
    // Appends fail from here on (EFBIG, as a full disk would give ENOSPC): no file of this
    // process may grow past its current size.
    struct sigaction ignore {}, old_action {};
    ignore.sa_handler = SIG_IGN;
    ASSERT_EQ(::sigaction(SIGXFSZ, &ignore, &old_action), 0);
    struct rlimit old_limit {};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old_limit), 0);
    uint64_t largest = 0;
    for (const auto& f : segments(dir)) largest = std::max<uint64_t>(largest, fs::file_size(f));
    struct rlimit tight = old_limit;
    tight.rlim_cur = largest;
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &tight), 0);
    auto b = book.create(0, 2000);
    second = b.orders[0].order->id;
    Status failed = s.store->commit(b);
    ::setrlimit(RLIMIT_FSIZE, &old_limit);
    ::sigaction(SIGXFSZ, &old_action, nullptr);

    ASSERT_FALSE(failed.ok());
    EXPECT_NE(failed.error().message.find("order log: write"), std::string::npos)
        << failed.error().message;
    EXPECT_FALSE(s.store->healthy());
    // Latched: nothing more is accepted, though the file could grow again.
    Status after = s.store->commit(book.step(first, OrderStatus::inventory_reserved));
    ASSERT_FALSE(after.ok());
    EXPECT_EQ(after.error().code, Errc::unavailable);
  }
  // What was acknowledged is there; what failed is not.
  auto s = open_log(dir);
  EXPECT_EQ((*s.store->get_order(first))->status, OrderStatus::pending);
  EXPECT_FALSE(s.store->get_order(second)->has_value());
  EXPECT_TRUE(s.store->healthy());
}

// RocksDB runs without a write-ahead log under the log store: what it is handed stays in
// memtables until a flush, and a segment is retired only after one. A process that dies
// (no destructors, so no flush at close) after segments were retired loses nothing: what
// they held is in RocksDB's table files, the rest is replayed from the newest segment.
TEST(LogStore, NothingIsLostWhenTheProcessDiesAfterSegmentsWereRetired) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");  // the child starts with no threads of ours
  constexpr char kEnv[] = "ORDERFLOW_LOG_RETIRE_TEST_DIR";
  const char* inherited = std::getenv(kEnv);
  testing::TempDir dir;
  const std::string base = inherited != nullptr ? inherited : dir.path();
  if (inherited == nullptr) setenv(kEnv, base.c_str(), 1);
  // The same orders and steps in the child (which commits them) and here (which checks):
  // 60 orders created, every one a step further, every other one cancelled.
  auto play = [](Book& book, const std::function<bool(const CommitBatch&)>& commit) {
    std::vector<OrderId> ids;
    for (int i = 0; i < 60; ++i) {
      auto b = book.create(0, 1000 + i);
      ids.push_back(b.orders[0].order->id);
      if (!commit(b)) return ids;
    }
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!commit(book.step(ids[i], OrderStatus::inventory_reserved))) return ids;
      if (i % 2 == 0 && !commit(book.step(ids[i], OrderStatus::cancelled))) return ids;
    }
    return ids;
  };
  EXPECT_EXIT(
      {
        if (inherited != nullptr) fs::remove_all(dir.path());
        auto s = open_log_at(base, /*segment_bytes_max=*/4096);
        Book book;
        bool ok = true;
        play(book, [&](const CommitBatch& b) { return ok = ok && s.store->commit(b).ok(); });
        if (!ok) _exit(3);
        // Wait until the retiring thread has dealt with every old segment of partition 0.
        for (int i = 0; i < 1000; ++i) {
          size_t logs = 0;
          for (const auto& f : segments_at(base))
            logs += fs::path(f).filename().string().rfind("p00000-0", 0) == 0;
          if (logs == 1 && s.store->checkpoints() >= 4) _exit(0);  // no destructors: as kill -9
          usleep(10000);
        }
        _exit(4);
      },
      ::testing::ExitedWithCode(0), "");
  unsetenv(kEnv);
  if (inherited != nullptr) return;

  Book book;
  auto ids = play(book, [](const CommitBatch&) { return true; });
  auto s = open_log(dir);
  size_t ended = 0;
  for (OrderId id : ids) {
    const Order& want = book.orders.at(id);
    EXPECT_EQ(**s.store->get_order(id), want);
    EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
    if (is_terminal(want.status)) {
      ++ended;
      EXPECT_EQ(**s.inner->get_order(id), want);  // in RocksDB itself, not only in the log
    }
  }
  EXPECT_EQ(ended, 30u);
  EXPECT_EQ(s.store->held(PartitionId{0}), 30u);
}

TEST(LogStore, ADataDirectoryFromBeforeTheLogKeepsItsOrdersInProgress) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    RocksStoreOptions ro;
    ro.path = dir.sub("db");
    ro.partitions = 2;
    auto old = RocksStore::open(ro);  // tracks its orders in progress itself
    ASSERT_TRUE(old.ok());
    auto b = book.create(1, 1000);
    id = b.orders[0].order->id;
    ASSERT_TRUE((*old)->commit(b).ok());
    ASSERT_TRUE((*old)->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
  }
  auto s = open_log(dir);
  auto active = s.store->list_active(PartitionId{1});
  ASSERT_TRUE(active.ok());
  ASSERT_EQ(active->size(), 1u);
  EXPECT_EQ((*active)[0], book.orders.at(id));
  EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
  // From now on the log carries it: it ends normally.
  ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::cancelled)).ok());
  s.store->settle();
  EXPECT_EQ(*s.inner->get_events(id), book.events.at(id));
  EXPECT_EQ(s.store->held(PartitionId{1}), 0u);
}

// Holds a store's thread at a hook until released (LogStoreOptions::before_settle: the
// settling thread before each batch; before_retire: the retiring thread before each segment).
class SettleGate {
 public:
  std::function<void()> hook() {
    return [this] {
      std::unique_lock lock(mu_);
      ++arrived_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return open_; });
    };
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  // Waits until the thread has reached the gate n times; false after 10 s.
  bool wait_arrived(int n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(10), [&] { return arrived_ >= n; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
  int arrived_ = 0;
};

TEST(LogStore, BeforeItsBatchSettlesAnOrderAndItsKeyAreAnsweredFromMemory) {
  testing::TempDir dir;
  Book book;
  SettleGate gate;
  LogStoreOptions lo = log_options(dir.path());
  lo.before_settle = gate.hook();
  auto s = open_log_with(dir.path(), lo);
  auto b = book.create(0, 1000);
  const OrderId id = b.orders[0].order->id;
  ASSERT_TRUE(s.store->commit(b).ok());
  ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::cancelled)).ok());
  ASSERT_TRUE(gate.wait_arrived(1));
  // Nothing has reached RocksDB: the key, the order that ended and its events come from memory.
  EXPECT_FALSE(s.inner->find_idempotency("acme", "key-" + id.str())->has_value());
  EXPECT_FALSE(s.inner->get_order(id)->has_value());
  auto key = s.store->find_idempotency("acme", "key-" + id.str());
  ASSERT_TRUE(key.ok() && key->has_value());
  EXPECT_EQ((*key)->order_id, id);
  EXPECT_FALSE(s.store->find_idempotency("acme", "key-other")->has_value());
  EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
  EXPECT_EQ(*s.store->get_events(id), book.events.at(id));
  EXPECT_EQ(s.store->held(PartitionId{0}), 0u);  // not in progress any more
  EXPECT_TRUE(s.store->list_active(PartitionId{0})->empty());
  // A list waits until what was committed before it has settled.
  ListQuery q;
  q.tenant = "acme";
  q.status = OrderStatus::cancelled;
  q.limit = 10;
  auto listed = std::async(std::launch::async, [&] { return s.store->list_orders(q); });
  EXPECT_EQ(listed.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  gate.open();
  auto page = listed.get();
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->orders.size(), 1u);
  EXPECT_EQ(page->orders[0].id, id);
  // Settled: RocksDB has it all, and memory lets go at the next commit.
  EXPECT_EQ(**s.inner->get_order(id), book.orders.at(id));
  EXPECT_EQ((*s.inner->find_idempotency("acme", "key-" + id.str()))->order_id, id);
  s.create(book, 0, 2000);
  EXPECT_EQ(s.store->held(PartitionId{0}), 1u);
  EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));  // now from RocksDB
}

TEST(LogStore, AtMostSettleQueueMaxBatchesWaitToSettle) {
  testing::TempDir dir;
  Book book;
  SettleGate gate;
  LogStoreOptions lo = log_options(dir.path());
  lo.settle_queue_max = 2;
  lo.before_settle = gate.hook();
  auto s = open_log_with(dir.path(), lo);
  // The settling thread holds the first batch at the gate; two more fill the queue.
  s.create(book, 0, 1000);
  ASSERT_TRUE(gate.wait_arrived(1));
  s.create(book, 0, 1001);
  s.create(book, 0, 1002);
  EXPECT_EQ(s.store->settle_waits(), 0u);  // at the bound: nobody waited
  EXPECT_EQ(s.store->settle_queued(), 2u);
  // One past it: the writer waits until the queue has room.
  auto past = book.create(0, 1003);
  auto committed = std::async(std::launch::async, [&] { return s.store->commit(past); });
  EXPECT_EQ(committed.wait_for(std::chrono::milliseconds(200)), std::future_status::timeout);
  gate.open();
  EXPECT_TRUE(committed.get().ok());
  EXPECT_EQ(s.store->settle_waits(), 1u);
  s.store->settle();
  EXPECT_EQ(s.store->settle_queued(), 0u);
  // Every batch reached RocksDB, in order (orders in progress: their keys; records come when
  // they end).
  for (const auto& [id, order] : book.orders) {
    auto key = s.inner->find_idempotency("acme", order.idempotency_key);
    ASSERT_TRUE(key.ok() && key->has_value());
    EXPECT_EQ((*key)->order_id, id);
  }
  EXPECT_EQ(book.orders.size(), 4u);
}

// A restart reads the newest segment, then checkpoints into a new one. That segment was left
// on disk for the whole run (nothing retired it), while later checkpoints retired the ones
// after it; the next start read it, then the newest — and an order that had ended in between
// (in neither the newest snapshot nor, as ended, in the old segment) came back in progress.
TEST(LogStore, AnOrderThatEndedStaysEndedAfterRestartsAndCheckpoints) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    auto s = open_log(dir, /*segment_bytes_max=*/4096);
    id = s.create(book, 0, 1000);
  }
  {
    auto s = open_log(dir, 4096);  // recovers, and checkpoints into a new segment
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::cancelled)).ok());
    // Other orders fill segments until a few checkpoints have passed.
    const uint64_t before = s.store->checkpoints();
    for (int i = 0; i < 200 && s.store->checkpoints() < before + 3; ++i) s.create(book, 0, 2000 + i);
    ASSERT_GE(s.store->checkpoints(), before + 3);
  }
  auto s = open_log(dir, 4096);
  EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
  EXPECT_EQ(s.store->held(PartitionId{0}), book.orders.size() - 1);
}

// A data directory from a build that left that segment behind: the segment before the gap in
// the seqs is not read, and goes.
TEST(LogStore, ASegmentBeforeAGapInTheSeqsIsSupersededAndNotRead) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    auto s = open_log(dir, /*segment_bytes_max=*/4096);
    id = s.create(book, 0, 1000);
  }
  const std::string left = newest_segment(dir, 0);
  const std::string kept = read_file(left);
  {
    auto s = open_log(dir, 4096);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::cancelled)).ok());
    const uint64_t before = s.store->checkpoints();
    for (int i = 0; i < 200 && s.store->checkpoints() < before + 3; ++i) s.create(book, 0, 2000 + i);
    ASSERT_GE(s.store->checkpoints(), before + 3);
  }
  ASSERT_FALSE(fs::exists(left));
  {
    std::ofstream out(left, std::ios::binary);  // as the earlier build left it
    out << kept;
  }
  ASSERT_NE(newest_segment(dir, 0), left);
  auto s = open_log(dir, 4096);
  EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
  EXPECT_EQ(s.store->held(PartitionId{0}), book.orders.size() - 1);
  EXPECT_FALSE(fs::exists(left));
}

// A segment created but never written (the process died right after creating it) holds
// nothing and decides nothing: not even after a gap, which would otherwise make the segment
// before it look superseded.
TEST(LogStore, ASegmentCreatedButNeverWrittenIsRemovedFirst) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    auto s = open_log(dir);
    id = s.create(book, 1, 1000);
  }
  const std::string empty = segment_after(newest_segment(dir, 1), 2);
  { std::ofstream out(empty, std::ios::binary); }
  auto s = open_log(dir);
  ASSERT_TRUE(s.store);
  EXPECT_EQ(**s.store->get_order(id), book.orders.at(id));
  EXPECT_FALSE(fs::exists(empty));
  ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
}

// Found by the crash test: kill -9 in the middle of a batch's write, a restart, and kill -9
// again before the retiring thread had let the old segment go. The restart's checkpoint made
// the torn segment an older one, and the next start refused the log as damaged.
TEST(LogStore, ATornTailIsCutOffBeforeItsSegmentBecomesAnOlderOne) {
  testing::TempDir dir;
  Book book;
  OrderId id;
  {
    auto s = open_log(dir);
    id = s.create(book, 1, 1000);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::inventory_reserved)).ok());
  }
  const Order reserved = book.orders.at(id);
  {
    auto s = open_log(dir);
    ASSERT_TRUE(s.store->commit(book.step(id, OrderStatus::payment_authorized)).ok());
  }
  const std::string torn = newest_segment(dir, 1);
  ASSERT_FALSE(torn.empty());
  const uint64_t size = read_segment(torn).size();
  fs::resize_file(torn, size - 3);  // the last record (the step) cut short, as a crash leaves it

  SettleGate gate;
  LogStoreOptions lo = log_options(dir.path());
  lo.before_retire = gate.hook();
  auto s = open_log_with(dir.path(), lo);
  struct Release {
    SettleGate& gate;
    ~Release() { gate.open(); }  // before `s` closes, also on a failed assertion
  } release{gate};
  ASSERT_TRUE(s.store);
  EXPECT_EQ(**s.store->get_order(id), reserved);  // the torn step was never acknowledged
  ASSERT_TRUE(gate.wait_arrived(1));
  // The retiring thread holds the old segment: a crash now leaves it beside the new one. It no
  // longer ends in the torn record.
  ASSERT_TRUE(fs::exists(torn));
  EXPECT_LT(fs::file_size(torn), size - 3);
  testing::TempDir image;
  fs::create_directories(image.sub("log"));
  for (const auto& f : segments(dir)) fs::copy_file(f, image.sub("log") + "/" + fs::path(f).filename().string());
  auto after = open_log(image);
  ASSERT_TRUE(after.store);
  EXPECT_EQ(**after.store->get_order(id), reserved);
}

}  // namespace
}  // namespace orderflow
