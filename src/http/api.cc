#include "http/api.h"

#include "http/errors.h"

namespace orderflow::http {
namespace {

const char* method_list(bool get, bool post) {
  if (get && post) return "GET, POST";
  return get ? "GET" : "POST";
}

Response method_not_allowed(const char* allow) {
  Response r = error_response(Errc::method_not_allowed,
                              std::string("method not allowed; allowed: ") + allow);
  r.headers.emplace_back("Allow", allow);
  return r;
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
  Engine* engine = engine_.load(std::memory_order_acquire);

  if (path == "/healthz") {
    if (req.method != Method::get) return respond(method_not_allowed("GET"));
    return respond(json_response(200, R"({"status":"ok"})"));
  }
  if (path == "/readyz") {
    if (req.method != Method::get) return respond(method_not_allowed("GET"));
    if (engine == nullptr) return respond(error_response(Errc::unavailable, "recovering"));
    if (!engine->store().healthy()) {
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
  if (engine == nullptr) {
    return respond(error_response(Errc::unavailable, "recovering; retry shortly"));
  }

  auto need = [&](uint8_t roles) {
    if (who->roles & roles) return true;
    respond(error_response(Errc::permission_denied, "this key's roles do not allow this call"));
    return false;
  };
  constexpr uint8_t kReaders = kRoleClient | kRoleAdmin;

  if (path == "/v1/orders") {
    if (req.method == Method::post) {
      if (need(kRoleClient)) create_order(*engine, *who, req, respond);
    } else if (req.method == Method::get) {
      if (need(kReaders)) list_orders(*engine, *who, req, respond);
    } else {
      respond(method_not_allowed(method_list(true, true)));
    }
    return;
  }
  constexpr std::string_view kOrders = "/v1/orders/";
  if (path.substr(0, kOrders.size()) == kOrders) {
    std::string_view rest = path.substr(kOrders.size());
    size_t slash = rest.find('/');
    std::string_view id_text = rest.substr(0, slash);
    std::string_view sub = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
    bool known = sub.empty() || sub == "/events" || sub == "/cancel";
    if (!known || id_text.empty()) {
      return respond(error_response(Errc::not_found, "no such resource"));
    }
    bool want_post = sub == "/cancel";
    if ((want_post && req.method != Method::post) || (!want_post && req.method != Method::get)) {
      return respond(method_not_allowed(method_list(!want_post, want_post)));
    }
    if (!need(kReaders)) return;
    auto id = OrderId::parse(id_text);
    if (!id) return respond(error_response(Errc::not_found, "order not found"));
    if (sub.empty()) return get_order(*engine, *who, *id, respond);
    if (sub == "/events") return get_events(*engine, *who, *id, respond);
    return cancel_order(*engine, *who, *id, req, respond);
  }
  respond(error_response(Errc::not_found, "no such resource"));
}

}  // namespace orderflow::http
