// Order change notifications for live tracking (SSE): partitions publish every committed
// order state; listeners registered for that order id are called.
//
// Thread safety: all methods from any thread. Listeners run on the publishing partition's
// thread under the feed's lock: they must only hand the order off (post), never block.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <unordered_map>

#include "core/order.h"
#include "core/result.h"

namespace orderflow {

class ChangeFeed {
 public:
  using Listener = std::function<void(const Order&)>;

  explicit ChangeFeed(size_t listeners_max) : listeners_max_(listeners_max) {}

  // overloaded when listeners_max are registered already.
  Result<uint64_t> subscribe(OrderId id, Listener listener);
  void unsubscribe(uint64_t token);
  bool active() const { return count_.load(std::memory_order_relaxed) > 0; }
  void publish(const Order& order);

 private:
  const size_t listeners_max_;
  std::atomic<size_t> count_{0};
  std::mutex mu_;
  uint64_t next_token_ = 1;
  std::unordered_multimap<OrderId, std::pair<uint64_t, Listener>, OrderIdHash> by_order_;
  std::unordered_map<uint64_t, OrderId> by_token_;
};

}  // namespace orderflow
