// Admin handlers: redrive, and the built-in simulators' ledgers (for audits and tests).
#include "core/json_writer.h"
#include "http/api.h"
#include "http/errors.h"
#include "http/query.h"
#include "sim/simulators.h"

namespace orderflow::http {

void Api::redrive(const Backend& b, const Principal& who, OrderId id, Respond& respond) {
  b.engine->redrive(RedriveCommand{who.tenant, id},
                    [respond = std::move(respond)](Result<CommandResult> result) {
                      if (!result) return respond(error_response(result.error()));
                      respond(order_response(202, result->order));
                    });
}

void Api::sim_ledger(const Backend& b, const Principal& who, Request& req, Respond& respond) {
  auto params = parse_query(req.query);
  if (!params) return respond(error_response(params.error()));
  std::optional<OrderId> id;
  for (auto& [name, value] : *params) {
    if (name != "order_id") {
      return respond(error_response(Error{Errc::invalid_argument, name + ": unknown query parameter",
                                          {{name, "unknown query parameter"}}}));
    }
    id = OrderId::parse(value);
  }
  if (!id) {
    return respond(error_response(Error{Errc::invalid_argument, "order_id: a valid order id is required",
                                        {{"order_id", "a valid order id is required"}}}));
  }
  auto order = b.engine->store().get_order(*id);
  if (!order) return respond(error_response(order.error()));
  if (!order->has_value() || (*order)->tenant != who.tenant) {
    return respond(error_response(Errc::not_found, "order not found"));
  }
  auto entries = b.simulators->ledger(*id);
  if (!entries) return respond(error_response(entries.error()));
  Response r;
  JsonWriter w(r.body);
  w.begin_object().field("order_id", id->str()).key("entries").begin_array();
  for (const LedgerEntry& e : *entries) {
    w.begin_object()
        .field("action", action_name(e.action))
        .field("idempotency_key", e.idempotency_key)
        .field("requests", e.requests)
        .field("applied", e.applied)
        .field("outcome", e.outcome)
        .end_object();
  }
  w.end_array().end_object();
  respond(std::move(r));
}

void Api::sim_stock(const Backend& b, Respond& respond) {
  auto stock = b.simulators->stock();
  if (!stock) return respond(error_response(stock.error()));
  Response r;
  JsonWriter w(r.body);
  w.begin_object().key("stock").begin_object();
  for (const auto& [sku, units] : *stock) w.field(sku, units);
  w.end_object().end_object();
  respond(std::move(r));
}

}  // namespace orderflow::http
