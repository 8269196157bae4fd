// Admin handlers: redrive, and the built-in simulators' ledgers (for audits and tests).
#include <simdjson.h>

#include <charconv>
#include <future>
#include <thread>

#include "core/clock.h"
#include "core/json_writer.h"
#include "core/order_json.h"
#include "metrics/log.h"
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

namespace {

Error bad(const std::string& field, const std::string& reason) {
  return Error{Errc::invalid_argument, field + ": " + reason, {{field, reason}}};
}

std::atomic<bool> g_bulk_redrive_running{false};
std::atomic<bool> g_bulk_redrive_stop{false};

}  // namespace

void Api::shutdown() {
  g_bulk_redrive_stop.store(true);
  for (int i = 0; i < 500 && g_bulk_redrive_running.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

void Api::stuck(const Backend& b, const Principal& who, Request& req, Respond& respond) {
  auto params = parse_query(req.query);
  if (!params) return respond(error_response(params.error()));
  size_t limit = 100;
  for (auto& [name, value] : *params) {
    if (name != "limit") return respond(error_response(bad(name, "unknown query parameter")));
    auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), limit);
    if (ec != std::errc() || end != value.data() + value.size() || limit < 1 || limit > 1000) {
      return respond(error_response(bad("limit", "must be an integer from 1 to 1000")));
    }
  }
  b.engine->stuck_orders(who.tenant, limit, [respond](Result<std::vector<StuckOrder>> r) {
    if (!r) return respond(error_response(r.error()));
    Response out;
    JsonWriter w(out.body);
    w.begin_object().key("orders").begin_array();
    for (const StuckOrder& s : *r) {
      w.element_separator();
      std::string one;
      render_order(s.order, one);
      one.pop_back();  // reopen the object to add where the order waits
      one += ",\"stage\":\"";
      one += stage_name(s.stage);
      one += "\",\"in_stage_ms\":" + std::to_string(s.in_stage_ms) + "}";
      out.body += one;
    }
    w.end_array().end_object();
    respond(std::move(out));
  });
}

void Api::bulk_redrive(const Backend& b, const Principal& who, Request& req, Respond& respond) {
  if (!is_json_media_type(req.content_type)) {
    return respond(error_response(Errc::unsupported_media_type, "Content-Type must be application/json"));
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (auto err = parser.parse(req.body).get(doc)) {
    return respond(error_response(make_error(Errc::invalid_json,
                                             std::string("body is not valid JSON: ") + simdjson::error_message(err))));
  }
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) return respond(error_response(Errc::invalid_argument, "body must be a JSON object"));
  std::optional<uint64_t> since;
  uint64_t limit = 100, rate = 50;
  bool has_status = false;
  for (auto f : obj) {
    std::string_view k = f.key, v;
    if (k == "status") {
      if (f.value.get_string().get(v) || v != "needs_attention") {
        return respond(error_response(bad("status", "must be \"needs_attention\" (the only redrivable status)")));
      }
      has_status = true;
    } else if (k == "since") {
      if (f.value.get_string().get(v) || !(since = parse_rfc3339_ms(v))) {
        return respond(error_response(bad("since", "must be an RFC 3339 UTC time, e.g. 2026-11-29T05:00:00Z")));
      }
    } else if (k == "limit" || k == "rate_per_s") {
      int64_t n;
      uint64_t hi = k == "limit" ? 1000 : 1000;
      if (f.value.get_int64().get(n) || n < 1 || static_cast<uint64_t>(n) > hi) {
        return respond(error_response(bad(std::string(k), "must be an integer from 1 to 1000")));
      }
      (k == "limit" ? limit : rate) = static_cast<uint64_t>(n);
    } else {
      return respond(error_response(bad(std::string(k), "unknown field")));
    }
  }
  if (!has_status) return respond(error_response(bad("status", "is required")));

  // The parked orders to redrive, oldest parked first, from the status index.
  ListQuery q;
  q.tenant = who.tenant;
  q.status = OrderStatus::needs_attention;
  q.limit = 500;
  std::vector<OrderId> ids;
  for (int pages = 0; pages < 100 && ids.size() < 100000; ++pages) {
    std::promise<Result<ListPage>> listed;
    b.engine->list_in_progress(q, [&](Result<ListPage> r) { listed.set_value(std::move(r)); });
    auto page = listed.get_future().get();  // answered by the partitions within a batch
    if (!page) return respond(error_response(page.error()));
    for (const Order& o : page->orders) {
      if (!since || o.updated_at_ms >= *since) ids.push_back(o.id);
    }
    if (!page->next_after) break;
    q.after = page->next_after;
  }
  std::reverse(ids.begin(), ids.end());
  if (ids.size() > limit) ids.resize(limit);

  bool expected = false;
  if (!g_bulk_redrive_running.compare_exchange_strong(expected, true)) {
    return respond(error_response(Errc::conflict, "a bulk redrive is already running; retry when it ends"));
  }
  // A paced driver: one redrive every 1/rate s, then one answer with what happened.
  Engine* engine = b.engine;
  std::string tenant = who.tenant;
  std::thread([engine, tenant, ids = std::move(ids), rate, respond]() mutable {
    struct Tally {
      std::mutex mu;
      std::condition_variable cv;
      size_t done = 0, ok = 0;
      std::vector<std::pair<std::string, std::string>> failed;
    };
    auto tally = std::make_shared<Tally>();
    auto start = std::chrono::steady_clock::now();
    auto reported = start;
    log::info("bulk redrive started", {{"tenant", tenant}, {"matched", std::to_string(ids.size())}});
    size_t issued = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(i * 1000000 / rate));
      if (g_bulk_redrive_stop.load()) break;  // shutting down: answer with what was done
      ++issued;
      if (std::chrono::steady_clock::now() - reported >= std::chrono::seconds(1)) {
        reported = std::chrono::steady_clock::now();
        log::info("bulk redrive progress", {{"tenant", tenant}, {"issued", std::to_string(i)},
                                             {"matched", std::to_string(ids.size())}});
      }
      OrderId id = ids[i];
      engine->redrive(RedriveCommand{tenant, id}, [tally, id](Result<CommandResult> r) {
        std::lock_guard lock(tally->mu);
        ++tally->done;
        if (r.ok()) {
          ++tally->ok;
        } else if (tally->failed.size() < 100) {
          tally->failed.emplace_back(id.str(), errc_name(r.error().code));
        }
        tally->cv.notify_all();
      });
    }
    std::unique_lock lock(tally->mu);
    tally->cv.wait_for(lock, std::chrono::seconds(60), [&] { return tally->done == issued; });
    Response r;
    JsonWriter w(r.body);
    w.begin_object()
        .field("matched", static_cast<uint64_t>(ids.size()))
        .field("redriven", static_cast<uint64_t>(tally->ok))
        .field("failed_count", static_cast<uint64_t>(tally->done - tally->ok));
    w.key("failed").begin_array();
    for (auto& [id, code] : tally->failed) w.begin_object().field("id", id).field("code", code).end_object();
    w.end_array().end_object();
    log::info("bulk redrive done", {{"tenant", tenant}, {"redriven", std::to_string(tally->ok)},
                                    {"failed", std::to_string(tally->done - tally->ok)}});
    lock.unlock();
    g_bulk_redrive_running.store(false);
    respond(std::move(r));
  }).detach();
}

}  // namespace orderflow::http
