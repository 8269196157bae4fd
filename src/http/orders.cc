// Handlers of the orders resource: create, get, events, list, cancel.
#include <charconv>
#include <mutex>

#include "core/json_writer.h"
#include "core/order_json.h"
#include "http/api.h"
#include "http/errors.h"
#include "http/query.h"

namespace orderflow::http {
namespace {

constexpr size_t kListLimitDefault = 50;
constexpr size_t kListLimitMax = 500;

Error field_error(const char* field, std::string reason) {
  std::string message = std::string(field) + ": " + reason;
  return Error{Errc::invalid_argument, std::move(message), {{field, std::move(reason)}}};
}

std::string sse_event(const Order& order) {
  std::string out = "event: order\ndata: ";
  render_order(order, out);
  out += "\n\n";
  return out;
}

}  // namespace

bool is_json_media_type(std::string_view ct) {
  std::string_view type = ct.substr(0, ct.find(';'));
  while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
  static constexpr std::string_view kJson = "application/json";
  if (type.size() != kJson.size()) return false;
  for (size_t i = 0; i < kJson.size(); ++i) {
    char c = type[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kJson[i]) return false;
  }
  return true;
}

Response order_response(int status, const Order& order) {
  Response r;
  r.status = status;
  r.body.reserve(1024);
  render_order(order, r.body);
  return r;
}

void Api::create_order(const Backend& b, const Principal& who, Request& req, Respond& respond) {
  if (!is_json_media_type(req.content_type)) {
    return respond(error_response(Errc::unsupported_media_type,
                                  "Content-Type must be application/json"));
  }
  if (!req.has_idempotency_key) {
    return respond(error_response(
        field_error("Idempotency-Key", "header is required: 1-128 characters of [A-Za-z0-9._:-]")));
  }
  if (!is_valid_idempotency_key(req.idempotency_key)) {
    return respond(error_response(
        field_error("Idempotency-Key", "must be 1-128 characters of [A-Za-z0-9._:-]")));
  }
  auto request = parse_order_request(req.body);
  if (!request) return respond(error_response(request.error()));

  b.engine->place(
      PlaceCommand{who.tenant, std::string(req.idempotency_key), std::move(*request)},
      [respond = std::move(respond)](Result<CommandResult> result) {
        if (!result) return respond(error_response(result.error()));
        if (result->outcome == Outcome::replayed) {
          Response r = order_response(200, result->order);
          r.headers.emplace_back("Idempotent-Replayed", "true");
          return respond(std::move(r));
        }
        Response r = order_response(201, result->order);
        r.headers.emplace_back("Location", "/v1/orders/" + result->order.id.str());
        respond(std::move(r));
      });
}

void Api::create_batch(const Backend& b, const Principal& who, Request& req, Respond& respond) {
  if (!is_json_media_type(req.content_type)) {
    return respond(error_response(Errc::unsupported_media_type,
                                  "Content-Type must be application/json"));
  }
  auto items = parse_order_batch(req.body);
  if (!items) return respond(error_response(items.error()));

  // Each item is answered as POST /v1/orders would answer it; the call answers once all have.
  struct Batch {
    std::mutex mu;
    std::vector<std::string> results;
    size_t remaining;
    Respond respond;
  };
  auto batch = std::make_shared<Batch>();
  batch->results.resize(items->size());
  batch->remaining = items->size();
  batch->respond = std::move(respond);
  auto finish_one = [batch](size_t i, std::string result) {
    std::lock_guard lock(batch->mu);
    batch->results[i] = std::move(result);
    if (--batch->remaining > 0) return;
    Response r;
    size_t bytes = 16;
    for (const auto& x : batch->results) bytes += x.size() + 1;
    r.body.reserve(bytes);
    r.body = "{\"results\":[";
    for (size_t k = 0; k < batch->results.size(); ++k) {
      if (k) r.body.push_back(',');
      r.body += batch->results[k];
    }
    r.body += "]}";
    batch->respond(std::move(r));
  };
  auto item_json = [](const std::string& key, int status, std::string_view rest) {
    std::string out = "{\"idempotency_key\":\"";
    JsonWriter::escape_into(out, key);
    out += "\",\"status\":" + std::to_string(status) + ",";
    out += rest.substr(1);  // the object's members after its '{'
    return out;
  };
  for (size_t i = 0; i < items->size(); ++i) {
    BatchItem& item = (*items)[i];
    if (!item.request) {
      Response e = error_response(item.request.error());
      finish_one(i, item_json(item.idempotency_key, e.status, e.body));
      continue;
    }
    std::string key = item.idempotency_key;
    b.engine->place(PlaceCommand{who.tenant, item.idempotency_key, std::move(*item.request)},
                    [finish_one, item_json, i, key](Result<CommandResult> result) {
                      if (!result) {
                        Response e = error_response(result.error());
                        return finish_one(i, item_json(key, e.status, e.body));
                      }
                      std::string order = "{\"order\":";
                      render_order(result->order, order);
                      order += "}";
                      int status = result->outcome == Outcome::replayed ? 200 : 201;
                      finish_one(i, item_json(key, status, order));
                    });
  }
}

void Api::get_order(const Backend& b, const Principal& who, OrderId id, Respond& respond) {
  auto order = b.engine->store().get_order(id);
  if (!order) return respond(error_response(order.error()));
  if (!order->has_value() || (*order)->tenant != who.tenant) {
    return respond(error_response(Errc::not_found, "order not found"));
  }
  respond(order_response(200, **order));
}

void Api::get_events(const Backend& b, const Principal& who, OrderId id, Respond& respond) {
  // The order answers the tenant check; its version bounds the events shown, so a reader
  // racing a writer never sees an event beyond the version it was told about.
  auto order = b.engine->store().get_order(id);
  if (!order) return respond(error_response(order.error()));
  if (!order->has_value() || (*order)->tenant != who.tenant) {
    return respond(error_response(Errc::not_found, "order not found"));
  }
  auto events = b.engine->store().get_events(id);
  if (!events) return respond(error_response(events.error()));
  Response r;
  JsonWriter w(r.body);
  w.begin_object().key("events").begin_array();
  for (const Event& e : *events) {
    if (e.seq > (*order)->version) break;
    w.element_separator();
    render_event(e, (*order)->request, r.body);
  }
  w.end_array().end_object();
  respond(std::move(r));
}

void Api::list_orders(const Backend& b, const Principal& who, Request& req, Respond& respond,
                      std::optional<OrderStatus> forced_status) {
  auto params = parse_query(req.query);
  if (!params) return respond(error_response(params.error()));
  ListQuery q;
  q.tenant = who.tenant;
  q.limit = kListLimitDefault;
  q.status = forced_status;
  std::vector<FieldViolation> bad;
  for (auto& [name, value] : *params) {
    if (name == "customer_id" || name == "merchant_id") {
      if (!is_valid_token(value, OrderLimits::id_chars_max)) {
        bad.push_back({name, "must be 1-64 characters of [A-Za-z0-9._:-]"});
      } else {
        (name == "customer_id" ? q.customer_id : q.merchant_id) = std::move(value);
      }
    } else if (name == "status" && !forced_status) {
      q.status = parse_status(value);
      if (!q.status) bad.push_back({name, "is not an order status"});
    } else if (name == "limit") {
      size_t n = 0;
      auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc() || end != value.data() + value.size() || n < 1 || n > kListLimitMax) {
        bad.push_back({name, "must be an integer from 1 to 500"});
      } else {
        q.limit = n;
      }
    } else if (name == "page_token") {
      q.after = OrderId::parse(value);
      if (!q.after) bad.push_back({name, "is not a page token this server issued"});
    } else {
      bad.push_back({name, "unknown query parameter"});
    }
  }
  if (!bad.empty()) {
    std::string msg = bad.front().field + ": " + bad.front().reason;
    return respond(error_response(Error{Errc::invalid_argument, msg, std::move(bad)}));
  }
  auto answer = [respond](Result<ListPage> page) {
    if (!page) return respond(error_response(page.error()));
    Response r;
    r.body.reserve(512 + page->orders.size() * 768);
    JsonWriter w(r.body);
    w.begin_object().key("orders").begin_array();
    for (const Order& o : page->orders) {
      w.element_separator();
      render_order(o, r.body);
    }
    w.end_array().key("next_page_token");
    if (page->next_after) {
      w.value(page->next_after->str());
    } else {
      w.null();
    }
    w.end_object();
    respond(std::move(r));
  };
  // Orders in progress are indexed by status in the engine's memory; ended ones in the store.
  if (q.status && !is_terminal(*q.status)) return b.engine->list_in_progress(std::move(q), answer);
  answer(b.engine->store().list_orders(q));
}

void Api::cancel_order(const Backend& b, const Principal& who, OrderId id, Request& req,
                       Respond& respond) {
  bool has_body = req.body.find_first_not_of(" \t\r\n") != std::string::npos;
  if (has_body && !is_json_media_type(req.content_type)) {
    return respond(error_response(Errc::unsupported_media_type,
                                  "Content-Type must be application/json"));
  }
  auto reason = parse_cancel_request(req.body);
  if (!reason) return respond(error_response(reason.error()));
  b.engine->cancel(CancelCommand{who.tenant, id, std::move(*reason)},
                [respond = std::move(respond)](Result<CommandResult> result) {
                  if (!result) return respond(error_response(result.error()));
                  respond(order_response(202, result->order));
                });
}

namespace {

// One live order stream: sends each new version once, in order; closes after a terminal one.
struct OrderStream {
  std::mutex mu;
  std::shared_ptr<StreamWriter> writer;  // set once the response head is out
  std::optional<Order> latest;           // newest state seen before the writer existed
  uint32_t sent_version = 0;
  bool closed = false;

  // mu held.
  void offer(const Order& o) {
    if (closed) return;
    if (!writer) {
      if (!latest || o.version > latest->version) latest = o;
      return;
    }
    if (o.version <= sent_version) return;
    sent_version = o.version;
    writer->send(sse_event(o));
    if (is_terminal(o.status)) {
      closed = true;
      writer->close();
    }
  }
};

}  // namespace

void Api::stream_order(const Backend& b, const Principal& who, OrderId id, Respond& respond) {
  auto order = b.engine->store().get_order(id);
  if (!order) return respond(error_response(order.error()));
  if (!order->has_value() || (*order)->tenant != who.tenant) {
    return respond(error_response(Errc::not_found, "order not found"));
  }
  auto st = std::make_shared<OrderStream>();
  st->latest = std::move(**order);
  // Subscribe before the head goes out, so no change between the read and the stream is lost.
  auto token = b.engine->changes().subscribe(id, [st](const Order& o) {
    std::lock_guard lock(st->mu);
    st->offer(o);
  });
  if (!token) return respond(error_response(token.error()));
  Engine* engine = b.engine;
  Response r;
  r.status = 200;
  r.headers = {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache"}};
  r.stream = [st, engine, id, tok = *token](std::shared_ptr<StreamWriter> writer) {
    writer->on_closed([engine, tok] { engine->changes().unsubscribe(tok); });
    // The current state, read after subscribing: newer than anything the feed may have missed.
    auto current = engine->store().get_order(id);
    std::lock_guard lock(st->mu);
    st->writer = std::move(writer);
    std::optional<Order> first = std::move(st->latest);
    st->latest.reset();
    if (current.ok() && current->has_value() && (!first || (*current)->version > first->version)) {
      first = std::move(**current);
    }
    if (first) st->offer(*first);
  };
  respond(std::move(r));
}

}  // namespace orderflow::http
