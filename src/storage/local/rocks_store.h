// The embedded storage adapter: one RocksDB database in the data directory holds orders,
// their events, idempotency keys and the secondary indexes, each in its own column family.
//
// Group commit: every partition writer commits its batch as one WriteBatch. With
// Durability::fsync the write is synced (WriteOptions::sync → fdatasync of the WAL), and
// RocksDB's write group lets the leading writer sync for every writer queued behind it, so
// concurrent partitions share syncs. Orders, events and index entries of a batch land
// atomically: an index never points at an order state that does not exist.
//
// Memory is bounded by the block cache and memtable budget set in RocksStoreOptions; orders
// live on disk, not in RAM.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "storage/store.h"

namespace rocksdb {
class DB;

class ColumnFamilyHandle;
}  // namespace rocksdb

namespace orderflow {

struct RocksStoreOptions {
  std::string path;
  Durability durability = Durability::fsync;
  // 0: the count stored in the directory, or `partitions_if_new` for a new one.
  uint32_t partitions = 8;
  uint32_t partitions_if_new = 8;
  size_t block_cache_bytes = 64 << 20;
  size_t memtable_bytes_max = 128 << 20;  // all column families together
  // A list query with a filter the chosen index cannot serve scans at most this many index
  // entries beyond `limit` before returning a partial page with a cursor.
  size_t list_scan_extra_max = 10000;
  // Opened beneath the order log (LogStore), which holds the orders in progress and makes
  // every batch durable itself. Then this store
  // - writes without a write-ahead log, and `durability` is ignored: what it is handed stays
  //   in memtables until sync() flushes them (until then the log can replay it);
  // - writes an order's record only once the order has ended (its index entries and
  //   idempotency key when it is created); list_orders' `held` lookup answers for the rest;
  // - keeps no set of orders in progress (list_active still reads entries written before).
  bool beneath_order_log = false;
};

// The current state of an order that a store layered over RocksStore holds in memory
// (nullopt: not held, read RocksDB).
using HeldOrderLookup = std::function<Result<std::optional<Order>>(OrderId)>;

class RocksStore final : public OrderStore {
 public:
  // Opens (creating if missing) and recovers the database. The partition count is fixed when
  // the directory is created; opening it with another count is an error (orders are routed
  // by the partition encoded in their id).
  static Result<std::unique_ptr<RocksStore>> open(const RocksStoreOptions& options);
  ~RocksStore() override;

  Status commit(const CommitBatch& batch) override { return commit(batch, {}); }
  // The same, with the histories of orders that end in it as the order log holds them: each
  // one value (codec::encode_run_list of its runs, the first starting at `first_seq`), stored
  // as it is.
  struct History {
    OrderId id;
    uint32_t first_seq = 1;
    std::string_view events;
  };
  Status commit(const CommitBatch& batch, const std::vector<History>& histories);
  // The same in two halves, for a caller that applies the write on another thread: prepare()
  // encodes the batch into a write of its own (the batch and the histories' bytes may change
  // as soon as it returns), write() applies it; writes take effect in the order write() is
  // called.
  struct Prepared;
  struct PreparedDeleter {
    void operator()(Prepared* p) const;
  };
  using PreparedWrite = std::unique_ptr<Prepared, PreparedDeleter>;
  PreparedWrite prepare(const CommitBatch& batch, const std::vector<History>& histories);
  Status write(Prepared& prepared);
  Result<std::optional<Order>> get_order(OrderId id) override;
  Result<std::vector<Event>> get_events(OrderId id) override;
  Result<std::optional<IdempotencyEntry>> find_idempotency(const std::string& tenant,
                                                           const std::string& key) override;
  Result<ListPage> list_orders(const ListQuery& query) override;
  // The same, asking `held` first for each order the index names: beneath the order log
  // RocksDB has no record of an order in progress.
  Result<ListPage> list_orders(const ListQuery& query, const HeldOrderLookup& held);
  Result<PartitionState> load_partition(PartitionId partition) override;
  Result<std::vector<Order>> list_active(PartitionId partition) override;
  bool healthy() const override { return !failed_.load(std::memory_order_acquire); }

  // The partition count the directory was created with.
  uint32_t partitions() const { return options_.partitions; }
  bool beneath_order_log() const { return options_.beneath_order_log; }

  // Makes every write so far durable: fdatasync of the write-ahead log, or, without one, a
  // flush of every memtable to its table file. For a store opened with Durability::none
  // whose writes something else can replay until then (LogStore). Blocks; not for a writer
  // that must stay responsive.
  Status sync();


 private:
  RocksStore() = default;

  RocksStoreOptions options_;
  std::unique_ptr<rocksdb::DB> db_;

  std::vector<rocksdb::ColumnFamilyHandle*> cfs_;  // owned; see kCf* in the .cc
  std::atomic<bool> failed_{false};
};

}  // namespace orderflow
