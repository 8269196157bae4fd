// JSON parsing and validation of order requests, and JSON rendering of orders and events.
// Pure functions: no I/O. Parsing uses simdjson; every violation is reported, with its
// field path, in Error::details.
#pragma once

#include <string>
#include <string_view>

#include "core/order.h"
#include "core/result.h"

namespace orderflow {

// True when `s` is 1..max_chars characters of [A-Za-z0-9._:-].
bool is_valid_token(std::string_view s, size_t max_chars);
inline bool is_valid_idempotency_key(std::string_view s) {
  return is_valid_token(s, OrderLimits::idempotency_key_chars_max);
}

// Body of POST /v1/orders. Errors: invalid_json (malformed), invalid_argument (violations).
Result<OrderRequest> parse_order_request(std::string_view body);

// Body of POST /v1/orders:batch: {"orders":[{"idempotency_key":"...","order":{...}}, ...]}.
// The envelope's errors fail the whole call; each item is validated on its own.
inline constexpr size_t kBatchOrdersMax = 1000;
struct BatchItem {
  std::string idempotency_key;
  Result<OrderRequest> request;  // the item's own validation result
};
Result<std::vector<BatchItem>> parse_order_batch(std::string_view body);

// Optional body of POST /v1/orders/{id}/cancel: {"reason":"..."}; empty body → empty reason.
Result<std::string> parse_cancel_request(std::string_view body);

// The order resource as the API returns it.
void render_order(const Order& order, std::string& out);
// One event as it appears in GET /v1/orders/{id}/events. `placed` is the order's request: the
// data of its order_placed event.
void render_event(const Event& event, const OrderRequest& placed, std::string& out);

}  // namespace orderflow
