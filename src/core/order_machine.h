// The order state machine: commands in, new state and events out. Pure and deterministic:
// the caller supplies the id and the time; nothing here touches storage, sockets or threads.
//
// Invariant (checked by OF_ASSERT on every transition): order.version == seq of the last event,
// events are numbered from 1 without gaps.
#pragma once

#include <string_view>
#include <vector>

#include "core/order.h"
#include "core/result.h"

namespace orderflow {

struct Placed {
  Order order;
  std::vector<Event> events;
};

// A new order from a validated request. Never fails: validation happened before.
Placed place_order(OrderId id, std::string tenant, std::string idempotency_key,
                   OrderRequest request, uint64_t now_ms);

// Cancels `order` in place and returns the events appended. A terminal order (delivered,
// cancelled, failed) → failed_precondition, and `order` is unchanged.
Result<std::vector<Event>> cancel_order(Order& order, std::string_view reason, uint64_t now_ms);

}  // namespace orderflow
