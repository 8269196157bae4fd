#include "http/api.h"

#include <chrono>
#include <cstdio>
#include <random>

#include "core/order_json.h"
#include "http/dashboard_html.h"
#include "http/errors.h"
#include "metrics/log.h"

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

namespace {

// The route pattern of a path: the metrics label (bounded: ids never appear in it).
std::string_view route_label(std::string_view path) {
  static constexpr std::string_view kFixed[] = {
      "/", "/healthz", "/readyz", "/metrics", "/v1/orders", "/v1/orders:batch", "/v1/tasks/poll",
      "/v1/admin/dead-letters", "/v1/admin/orders/stuck", "/v1/admin/redrive",
      "/v1/admin/sim/ledger", "/v1/admin/sim/stock"};
  for (auto f : kFixed) {
    if (path == f) return f;
  }
  auto tail_is = [&](std::string_view prefix, std::string_view suffix) {
    return path.size() > prefix.size() + suffix.size() && path.substr(0, prefix.size()) == prefix &&
           path.substr(path.size() - suffix.size()) == suffix &&
           path.substr(prefix.size(), path.size() - prefix.size() - suffix.size()).find('/') ==
               std::string_view::npos;
  };
  if (tail_is("/v1/orders/", "/events")) return "/v1/orders/{id}/events";
  if (tail_is("/v1/orders/", "/stream")) return "/v1/orders/{id}/stream";
  if (tail_is("/v1/orders/", "/cancel")) return "/v1/orders/{id}/cancel";
  if (tail_is("/v1/orders/", "")) return "/v1/orders/{id}";
  if (tail_is("/v1/tasks/", "/complete")) return "/v1/tasks/{id}/complete";
  if (tail_is("/v1/tasks/", "/fail")) return "/v1/tasks/{id}/fail";
  if (tail_is("/v1/admin/orders/", "/redrive")) return "/v1/admin/orders/{id}/redrive";
  return "other";
}

std::atomic<uint64_t> g_request_seq{0};

std::string new_request_id() {
  static const uint64_t kBoot = std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32);
  char buf[40];
  std::snprintf(buf, sizeof buf, "req-%08llx-%llu", static_cast<unsigned long long>(kBoot & 0xffffffff),
                static_cast<unsigned long long>(g_request_seq.fetch_add(1, std::memory_order_relaxed)));
  return buf;
}

}  // namespace

void Api::handle(Request& req, Respond respond) {
  const std::string_view label = route_label(req.path);
  // The order a request is about, for the log line: from the path, or a created order's Location.
  std::string order_id;
  for (std::string_view prefix : {"/v1/orders/", "/v1/admin/orders/"}) {
    if (req.path.substr(0, prefix.size()) == prefix) {
      std::string_view rest = req.path.substr(prefix.size());
      order_id = std::string(rest.substr(0, rest.find('/')));
      if (!OrderId::parse(order_id)) order_id.clear();
    }
  }
  std::string id = is_valid_token(req.request_id, 128) ? std::string(req.request_id) : new_request_id();
  const auto start = std::chrono::steady_clock::now();
  Metrics* metrics = metrics_;
  const char* method = req.method == Method::get ? "GET" : req.method == Method::post ? "POST" : "OTHER";
  route(req, [respond = std::move(respond), label, id = std::move(id), start, metrics,
              method, order_id = std::move(order_id)](Response r) mutable {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (metrics != nullptr) {
      metrics->http_request(label, r.status, secs);
      if (r.status == 401 || r.status == 403) {
        metrics->rejected(Rejection::auth);
      } else if (r.status == 400 || r.status == 413 || r.status == 415 || r.status == 422 ||
                 r.status == 431) {
        metrics->rejected(Rejection::validation);
      } else if (r.status == 429 || (r.status == 503 && r.body.find("\"overloaded\"") != std::string::npos)) {
        metrics->rejected(Rejection::overload);
      }
    }
    log::Level level = r.status >= 500 ? log::Level::warn : log::Level::debug;
    if (log::enabled(level)) {
      std::string status = std::to_string(r.status);
      std::string ms = std::to_string(secs * 1000.0);
      if (order_id.empty()) {
        for (const auto& [name, value] : r.headers) {
          if (name == "Location" && value.size() > 11) order_id = value.substr(11);
        }
      }
      log::write(level, "request", {{"request_id", id}, {"method", method}, {"route", label},
                                    {"status", status}, {"duration_ms", ms}, {"order_id", order_id}});
    }
    r.headers.emplace_back("X-Request-Id", id);
    respond(std::move(r));
  });
}

void Api::route(Request& req, Respond respond) {
  std::string_view path = req.path;
  const Backend* backend = backend_.load(std::memory_order_acquire);

  if (path == "/" && operator_pages_) {
    if (req.method != Method::get) return respond(method_not_allowed("GET"));
    Response r;
    r.body = kDashboardHtml;
    r.headers.emplace_back("Content-Type", "text/html; charset=utf-8");
    r.headers.emplace_back("Cache-Control", "no-cache");
    return respond(std::move(r));
  }
  if (path == "/metrics" && operator_pages_) {
    if (req.method != Method::get) return respond(method_not_allowed("GET"));
    if (metrics_ == nullptr) return respond(error_response(Errc::not_found, "metrics are off"));
    Response r;
    r.body = metrics_->render();
    r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    return respond(std::move(r));
  }
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
  if (path == "/v1/admin/orders/stuck") {
    if (allow(Method::get, "GET", kRoleAdmin)) stuck(b, *who, req, respond);
    return;
  }
  if (split_resource(path, "/v1/admin/orders/", id_text, sub)) {
    if (id_text.empty() || sub != "/redrive") return not_found();
    if (!allow(Method::post, "POST", kRoleAdmin)) return;
    auto id = order_id(id_text);
    if (id) redrive(b, *who, *id, respond);
    return;
  }
  if (path == "/v1/admin/redrive") {
    if (allow(Method::post, "POST", kRoleAdmin)) bulk_redrive(b, *who, req, respond);
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
