#include "http/api.h"

#include "http/errors.h"

namespace orderflow::http {
namespace {

Response method_not_allowed(const char* allow) {
  Response r = error_response(Errc::method_not_allowed,
                              std::string("method not allowed; allowed: ") + allow);
  r.headers.emplace_back("Allow", allow);
  return r;
}

// Splits "/prefix/{id}/sub" into id and "/sub" ("" when absent).
bool split_resource(std::string_view path, std::string_view prefix, std::string_view& id,
                    std::string_view& sub) {
  if (path.substr(0, prefix.size()) != prefix) return false;
  std::string_view rest = path.substr(prefix.size());
  size_t slash = rest.find('/');
  id = rest.substr(0, slash);
  sub = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  return true;
}

}  // namespace

Response json_response(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void Api::handle(Request& req, Respond respond) {
  std::string_view path = req.path;
  const Backend* backend = backend_.load(std::memory_order_acquire);

  if (path == "/healthz") {
    if (req.method != Method::get) return respond(method_not_allowed("GET"));
    return respond(json_response(200, R"({"status":"ok"})"));
  }
  if (path == "/readyz") {
    if (req.method != Method::get) return respond(method_not_allowed("GET"));
    if (backend == nullptr) return respond(error_response(Errc::unavailable, "recovering"));
    if (!backend->engine->store().healthy()) {
      return respond(error_response(Errc::unavailable, "storage has failed a write"));
    }
    return respond(json_response(200, R"({"status":"ready"})"));
  }
  if (path.substr(0, 4) != "/v1/") {
    return respond(error_response(Errc::not_found, "no such resource"));
  }

  // Everything under /v1 needs a key.
  if (req.authorization.empty()) {
    return respond(error_response(Errc::unauthenticated, "missing Authorization: Bearer <key>"));
  }
  const Principal* who = keys_.find(bearer_token(req.authorization));
  if (who == nullptr) return respond(error_response(Errc::unauthenticated, "unknown API key"));
  if (backend == nullptr) {
    return respond(error_response(Errc::unavailable, "recovering; retry shortly"));
  }
  const Backend& b = *backend;

  // Method check, then role check; false when answered.
  auto allow = [&](Method m, const char* allowed, uint8_t roles) {
    if (req.method != m) {
      respond(method_not_allowed(allowed));
      return false;
    }
    if (!(who->roles & roles)) {
      respond(error_response(Errc::permission_denied, "this key's roles do not allow this call"));
      return false;
    }
    return true;
  };
  constexpr uint8_t kReaders = kRoleClient | kRoleAdmin;
  auto not_found = [&] { respond(error_response(Errc::not_found, "no such resource")); };
  auto order_id = [&](std::string_view text) {
    auto id = OrderId::parse(text);
    if (!id) respond(error_response(Errc::not_found, "order not found"));
    return id;
  };

  std::string_view id_text, sub;
  if (path == "/v1/orders") {
    if (req.method == Method::post) {
      if (allow(Method::post, "GET, POST", kRoleClient)) create_order(b, *who, req, respond);
    } else if (allow(Method::get, "GET, POST", kReaders)) {
      list_orders(b, *who, req, respond);
    }
    return;
  }
  if (path == "/v1/orders:batch") {
    if (allow(Method::post, "POST", kRoleClient)) create_batch(b, *who, req, respond);
    return;
  }
  if (split_resource(path, "/v1/orders/", id_text, sub)) {
    if (id_text.empty()) return not_found();
    if (sub.empty() || sub == "/events" || sub == "/stream") {
      if (!allow(Method::get, "GET", kReaders)) return;
      auto id = order_id(id_text);
      if (!id) return;
      if (sub.empty()) return get_order(b, *who, *id, respond);
      if (sub == "/events") return get_events(b, *who, *id, respond);
      return stream_order(b, *who, *id, respond);
    }
    if (sub == "/cancel") {
      if (!allow(Method::post, "POST", kReaders)) return;
      auto id = order_id(id_text);
      if (id) cancel_order(b, *who, *id, req, respond);
      return;
    }
    return not_found();
  }
  if (path == "/v1/tasks/poll") {
    if (allow(Method::post, "POST", kRoleWorker)) poll_tasks(b, *who, req, respond);
    return;
  }
  if (split_resource(path, "/v1/tasks/", id_text, sub)) {
    if (id_text.empty() || (sub != "/complete" && sub != "/fail")) return not_found();
    if (allow(Method::post, "POST", kRoleWorker)) {
      finish_task(b, *who, id_text, sub == "/complete", req, respond);
    }
    return;
  }
  if (path == "/v1/admin/dead-letters") {
    if (allow(Method::get, "GET", kRoleAdmin)) {
      list_orders(b, *who, req, respond, OrderStatus::needs_attention);
    }
    return;
  }
  if (split_resource(path, "/v1/admin/orders/", id_text, sub)) {
    if (id_text.empty() || sub != "/redrive") return not_found();
    if (!allow(Method::post, "POST", kRoleAdmin)) return;
    auto id = order_id(id_text);
    if (id) redrive(b, *who, *id, respond);
    return;
  }
  if (path == "/v1/admin/sim/ledger") {
    if (allow(Method::get, "GET", kRoleAdmin)) sim_ledger(b, *who, req, respond);
    return;
  }
  if (path == "/v1/admin/sim/stock") {
    if (allow(Method::get, "GET", kRoleAdmin)) sim_stock(b, respond);
    return;
  }
  not_found();
}

}  // namespace orderflow::http
