#include "core/order_machine.h"

#include "core/json_writer.h"
#include "core/order_json.h"

namespace orderflow {
namespace {

Event append_event(Order& order, EventType type, uint64_t now_ms, std::string data_json) {
  order.version += 1;
  order.updated_at_ms = std::max(order.updated_at_ms, now_ms);
  return Event{order.id, order.version, type, order.updated_at_ms, std::move(data_json)};
}

std::string status_change_data(OrderStatus from, OrderStatus to) {
  std::string out;
  JsonWriter(out).begin_object().field("from", status_name(from)).field("to", status_name(to))
      .end_object();
  return out;
}

}  // namespace

Placed place_order(OrderId id, std::string tenant, std::string idempotency_key,
                   OrderRequest request, uint64_t now_ms) {
  Placed p;
  Order& o = p.order;
  o.id = id;
  o.tenant = std::move(tenant);
  o.idempotency_key = std::move(idempotency_key);
  for (const LineItem& it : request.items) o.subtotal_cents += it.quantity * it.unit_price_cents;
  o.total_cents = o.subtotal_cents + request.tip_cents;
  o.request = std::move(request);
  o.status = OrderStatus::pending;
  o.created_at_ms = now_ms;
  o.updated_at_ms = now_ms;
  p.events.push_back(
      append_event(o, EventType::order_placed, now_ms, render_request_data(o.request)));
  OF_ASSERT(o.version == 1 && p.events.back().seq == 1);
  return p;
}

Result<std::vector<Event>> cancel_order(Order& order, std::string_view reason, uint64_t now_ms) {
  if (is_terminal(order.status)) {
    return make_error(Errc::failed_precondition,
                      std::string("order is ") + status_name(order.status) +
                          " and can no longer be cancelled");
  }
  const uint32_t version_before = order.version;
  std::vector<Event> events;
  std::string data;
  JsonWriter(data).begin_object().field("reason", reason).end_object();
  events.push_back(append_event(order, EventType::cancel_requested, now_ms, std::move(data)));
  // No stage has run yet in this build, so there is nothing to compensate: straight to cancelled.
  OrderStatus from = order.status;
  order.status = OrderStatus::cancelled;
  events.push_back(append_event(order, EventType::status_changed, now_ms,
                                status_change_data(from, OrderStatus::cancelled)));
  OF_ASSERT(order.version == version_before + events.size());
  OF_ASSERT(events.back().seq == order.version);
  return events;
}

}  // namespace orderflow
