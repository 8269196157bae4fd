// The order log: orders in progress live in an append-only log per partition; the RocksDB
// store (RocksStore) gets an order twice — when it is created (its index entries and
// idempotency key, not its record) and when it ends (its record, every event, its status
// entries).
//
// Why: an order takes ~7 durable steps from creation to delivery. Written to RocksDB, each
// step is a memtable insert of the whole record and one of its events, which dominated the
// server's CPU (docs/performance.md). Here a step is bytes appended to a file that one
// partition writer owns, made durable by one fdatasync per batch (group commit per partition).
//
// Durability: commit() returns once the batch is in the log (fdatasync'd under
// Durability::fsync). The RocksDB writes that follow skip RocksDB's write-ahead log and stay
// in its memtables: after a crash, recovery replays the log and writes again whatever RocksDB
// lost (the writes are puts of whole values, so repeating them is harmless). A segment is
// retired only after RocksDB's memtables have been flushed (RocksStore::sync).
//
// Settling: the partition writer encodes a batch's RocksDB write (RocksStore::prepare) and
// hands it to the settling thread, which applies the writes in order while the writer goes on
// to its next batch (the memtable inserts were ~20% of a writer's time, on the path of every
// answer). Until its batch has settled, an order that ended stays in memory (reads find it
// here) and a new order's idempotency key is answered from memory; lists wait for every batch
// committed before them to settle, so a list sees every order created before it was asked;
// a segment is retired only after the batches it holds have settled. At most
// `settle_queue_max` batches wait to settle: a writer that finds the queue full waits.
//
// Checkpoints: when a partition's segment has grown past its snapshot by its limit
// (`segment_bytes_max`, less a share per partition so that partitions do not checkpoint
// together) and by at least the snapshot's size, the partition writer writes a new segment
// that starts with a snapshot of every order it holds in progress and syncs it. A background
// thread flushes RocksDB (a flush takes tens of milliseconds: not the writer's job), then
// retires the old segment: it becomes the
// partition's spare, which the next checkpoint overwrites from the start (an fdatasync of
// allocated blocks needs no file-system journal commit), or is deleted if a spare exists.
// Records carry their segment's seq, so what a recycled file held before ends the segment.
// Recovery reads the segments oldest first; a torn record at the end of the newest is the
// batch that was being written when the process died (it was never acknowledged): it is cut
// off the file, durably, before the recovery's checkpoint makes that segment an older one, in
// which a bad record is damage (the process may die again before the segment is retired).
//
// Reads: orders in progress are answered from memory (their latest committed record and
// events, encoded as in the log); everything else from RocksDB.
//
// Thread safety: commit() for one partition is called by that partition's writer only;
// reads may come from any thread (a mutex per partition guards the orders in memory).
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <memory>
#include <string>
#include <vector>

#include "storage/local/rocks_store.h"
#include "storage/store.h"

namespace orderflow {

struct LogStoreOptions {
  std::string dir;  // the log's directory (created if missing)
  uint32_t partitions = 8;
  Durability durability = Durability::fsync;
  // A partition checkpoints (new segment, old one retired) when its segment passes this. It
  // bounds what a start after a crash replays: with steps logged as states alone, replaying
  // two nearly full 64 MiB segments after a kill -9 took 2.9 s; 16 MiB keeps that to about a
  // quarter, and checkpoints about as often as 64 MiB did with whole records.
  uint64_t segment_bytes_max = 16ull << 20;
  // Called with the duration of every fdatasync of a log segment (for metrics). May be empty.
  std::function<void(double seconds)> on_sync;
  // Batches committed to the log whose RocksDB writes have not been applied yet, at most.
  size_t settle_queue_max = 64;
  // Called by the settling thread before it applies each batch (tests hold it there). May be
  // empty.
  std::function<void()> before_settle;
  // Called by the retiring thread before it retires each old segment (tests hold it there).
  // May be empty.
  std::function<void()> before_retire;
};

class LogStore final : public OrderStore {
 public:
  // Recovers the log over `inner` (opened with beneath_order_log): replays every segment,
  // writes finished orders into `inner`, syncs it and starts each partition on a fresh
  // segment. A data directory written before
  // the log existed has no segments: its orders in progress are taken from `inner`.
  static Result<std::unique_ptr<LogStore>> open(const LogStoreOptions& options,
                                                std::unique_ptr<RocksStore> inner);
  // Without close(), what the next open replays is each partition's whole current segment
  // (as after a crash).
  ~LogStore() override;

  // A clean close, once nothing commits any more: each partition checkpoints — a fresh
  // segment holding its orders in progress alone — and the old segments are retired (RocksDB
  // flushed first), so that the next open replays snapshots instead of segments of history.
  // Commits fail from here on. An error leaves the segments for the next open to replay.
  Status close();

  Status commit(const CommitBatch& batch) override;
  Result<std::optional<Order>> get_order(OrderId id) override;
  Result<std::vector<Event>> get_events(OrderId id) override;
  Result<std::optional<IdempotencyEntry>> find_idempotency(const std::string& tenant,
                                                           const std::string& key) override;
  Result<ListPage> list_orders(const ListQuery& query) override;
  Result<PartitionState> load_partition(PartitionId partition) override;
  Result<std::vector<Order>> list_active(PartitionId partition) override;
  bool healthy() const override;

  // Waits until every batch committed so far has settled into the inner store.
  void settle();

  // Figures for tests and metrics. held(): orders in progress in memory (not those that ended
  // and wait for their batch to settle).
  uint64_t checkpoints() const { return checkpoints_.load(std::memory_order_relaxed); }
  size_t held(PartitionId partition) const;
  uint64_t settle_waits() const { return settle_waits_.load(std::memory_order_relaxed); }
  // Batches waiting for the settling thread now.
  size_t settle_queued() const;

 private:
  struct Part;
  LogStore() = default;
  Status recover(Part& p);
  // The order if this store holds it (in progress), else nullopt.
  Result<std::optional<Order>> held_order(OrderId id) const;
  Status checkpoint(Part& p);
  Status write_all(int fd, const std::string& bytes);
  Status sync(int fd);
  // Truncates a segment file to `length` bytes (synced under Durability::fsync).
  Status cut_segment(const std::string& path, uint64_t length);
  Status fail(const std::string& what);
  void delete_segments();  // the deleter thread
  void stop_retiring();    // lets the deleter thread finish what is queued, then joins it
  void settle_batches();   // the settling thread
  void stop_settling();    // lets the settling thread apply what is queued, then joins it
  // Forgets what the writer kept in memory for batches that have settled (writer only).
  void reap(Part& p);
  // Waits until partition p's batches up to `seq` have settled.
  void wait_settled(const Part& p, uint64_t seq);

  LogStoreOptions options_;
  std::unique_ptr<RocksStore> inner_;
  std::vector<std::unique_ptr<Part>> parts_;
  std::atomic<bool> failed_{false};
  std::atomic<bool> closed_{false};
  std::atomic<uint64_t> checkpoints_{0};
  // Old segments (their fds still open) for the deleter thread to close and unlink.
  std::mutex deleter_mu_;
  std::condition_variable deleter_cv_;
  struct Doomed {
    Part* part;
    int fd;
    std::string path;
    uint64_t settle_upto;  // the last batch the segment holds
  };
  std::deque<Doomed> doomed_;
  bool stopping_ = false;
  std::thread deleter_;
  // Batches' RocksDB writes for the settling thread, in commit order.
  mutable std::mutex settle_mu_;
  std::condition_variable settle_cv_;    // work for the settling thread, or room in the queue
  std::condition_variable settled_cv_;   // a batch settled
  struct Settling {
    Part* part;
    uint64_t seq;
    RocksStore::PreparedWrite write;
  };
  std::deque<Settling> settling_;
  bool settle_stopping_ = false;
  std::atomic<uint64_t> settle_waits_{0};
  std::thread settler_;
};

}  // namespace orderflow
