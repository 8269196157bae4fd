// The storage seam. The engine talks to storage only through OrderStore; the local adapter
// (storage/local, RocksDB) and a replicated one (NATS JetStream, later) implement it.
//
// Thread safety: commit() for one partition is called by that partition's writer only, but
// different partitions commit concurrently; reads may come from any thread at any time.
// Durability: commit() returns OK only once the batch is durable to the level chosen when the
// store was opened (Durability::fsync → on disk, fdatasync'd; none → handed to the OS).
// A failed commit latches the store failed: every later commit fails, nothing more is
// acknowledged, and /readyz reports it (fsyncgate: a failed sync cannot be retried safely).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/ids.h"
#include "core/order.h"
#include "core/result.h"

namespace orderflow {

enum class Durability { fsync, none };

// The full new state of an order, and its status before this batch (nullopt when the order
// is new), so the store can move its secondary index entries.
struct OrderWrite {
  const Order* order;  // not owned: valid until commit() returns
  std::optional<OrderStatus> previous_status;
};

struct IdempotencyEntry {
  std::string tenant;
  std::string key;
  OrderId order_id;
  uint64_t created_at_ms = 0;
};

// One string for a (tenant, idempotency key) pair: tenant \0 key (tenants cannot contain \0).
inline std::string scoped_idempotency_key(const std::string& tenant, const std::string& key) {
  std::string k = tenant;
  k.push_back('\0');
  k.append(key);
  return k;
}

// Everything one partition writer applies at once: one atomic, durable write.
struct CommitBatch {
  PartitionId partition;
  std::vector<OrderWrite> orders;
  std::vector<Event> events;
  std::vector<IdempotencyEntry> idempotency;
  uint64_t id_clock = 0;  // the highest id clock reading (OrderId::clock) the partition minted
};

struct PartitionState {
  uint64_t id_clock = 0;
};

struct ListQuery {
  std::string tenant;
  std::optional<std::string> customer_id;
  std::optional<std::string> merchant_id;
  std::optional<OrderStatus> status;
  size_t limit = 50;
  std::optional<OrderId> after;  // exclusive cursor: the last id of the previous page
};

struct ListPage {
  std::vector<Order> orders;        // newest first
  std::optional<OrderId> next_after;  // set when more may follow
};

class OrderStore {
 public:
  virtual ~OrderStore() = default;

  [[nodiscard]] virtual Status commit(const CommitBatch& batch) = 0;

  virtual Result<std::optional<Order>> get_order(OrderId id) = 0;
  // All events of an order, in seq order.
  virtual Result<std::vector<Event>> get_events(OrderId id) = 0;
  virtual Result<std::optional<IdempotencyEntry>> find_idempotency(const std::string& tenant,
                                                                   const std::string& key) = 0;
  // Consistent: one snapshot answers the whole page. A status filter must be a terminal
  // status (invalid_argument otherwise): the store indexes an order's status only once it has
  // ended; the engine answers for orders in progress (Engine::list_in_progress).
  virtual Result<ListPage> list_orders(const ListQuery& query) = 0;
  virtual Result<PartitionState> load_partition(PartitionId partition) = 0;
  // Every non-terminal order of the partition (the engine holds these in memory).
  virtual Result<std::vector<Order>> list_active(PartitionId partition) = 0;

  // False once a commit has failed (the latch above).
  virtual bool healthy() const = 0;
};

}  // namespace orderflow
