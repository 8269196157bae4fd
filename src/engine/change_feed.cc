#include "engine/change_feed.h"

namespace orderflow {

Result<uint64_t> ChangeFeed::subscribe(OrderId id, Listener listener) {
  std::lock_guard lock(mu_);
  if (by_token_.size() >= listeners_max_) {
    return make_error(Errc::overloaded, "too many live streams; retry later");
  }
  uint64_t token = next_token_++;
  by_order_.emplace(id, std::make_pair(token, std::move(listener)));
  by_token_.emplace(token, id);
  count_.store(by_token_.size(), std::memory_order_relaxed);
  return token;
}

void ChangeFeed::unsubscribe(uint64_t token) {
  std::lock_guard lock(mu_);
  auto it = by_token_.find(token);
  if (it == by_token_.end()) return;
  auto range = by_order_.equal_range(it->second);
  for (auto o = range.first; o != range.second; ++o) {
    if (o->second.first == token) {
      by_order_.erase(o);
      break;
    }
  }
  by_token_.erase(it);
  count_.store(by_token_.size(), std::memory_order_relaxed);
}

void ChangeFeed::publish(const Order& order) {
  std::lock_guard lock(mu_);
  auto range = by_order_.equal_range(order.id);
  for (auto it = range.first; it != range.second; ++it) it->second.second(order);
}

}  // namespace orderflow
