// The HTTP API v1 (docs/api.md): authentication, routing and the handlers.
//
// Before recovery finishes (set_ready), /healthz answers and everything under /v1 is 503.
// Thread safety: handle() is called concurrently from the server's I/O threads.
#pragma once

#include <array>
#include <atomic>

#include "engine/engine.h"
#include "engine/task_queue.h"
#include "http/auth.h"
#include "http/message.h"
#include "metrics/metrics.h"

namespace orderflow {
class Simulators;
}

namespace orderflow::http {

// What the API serves from, once recovered. Owned by the caller; outlives the server.
struct Backend {
  Engine* engine = nullptr;
  Simulators* simulators = nullptr;  // the built-in stage services (their ledgers)
  TaskQueue* tasks = nullptr;        // the external stages' task queue
  std::array<bool, kStageCount> external{};
};

class Api final : public Handler {
 public:
  // `operator_pages`: serve GET / (the dashboard) and GET /metrics without a key. Off on the
  // public listener when --admin-listen puts them elsewhere.
  Api(const ApiKeys& keys, Metrics* metrics, bool operator_pages = true)
      : keys_(keys), metrics_(metrics), operator_pages_(operator_pages) {}

  void set_ready(const Backend* backend) { backend_.store(backend, std::memory_order_release); }
  // Every request: an id (X-Request-Id, echoed), metrics by route and status, a debug log line.
  void handle(Request& request, Respond respond) override;
  // Before the engine stops: ends a running bulk redrive (it answers with what it did).
  void shutdown();

 private:
  void route(Request& request, Respond respond);
  // orders.cc
  void create_order(const Backend& b, const Principal& who, Request& req, Respond& respond);
  void create_batch(const Backend& b, const Principal& who, Request& req, Respond& respond);
  void list_orders(const Backend& b, const Principal& who, Request& req, Respond& respond,
                   std::optional<OrderStatus> forced_status = std::nullopt);
  void get_order(const Backend& b, const Principal& who, OrderId id, Respond& respond);
  void get_events(const Backend& b, const Principal& who, OrderId id, Respond& respond);
  void cancel_order(const Backend& b, const Principal& who, OrderId id, Request& req,
                    Respond& respond);
  void stream_order(const Backend& b, const Principal& who, OrderId id, Respond& respond);
  // tasks.cc
  void poll_tasks(const Backend& b, const Principal& who, Request& req, Respond& respond);
  void finish_task(const Backend& b, const Principal& who, std::string_view task_id, bool ok,
                   Request& req, Respond& respond);
  // admin.cc
  void redrive(const Backend& b, const Principal& who, OrderId id, Respond& respond);
  void sim_ledger(const Backend& b, const Principal& who, Request& req, Respond& respond);
  void sim_stock(const Backend& b, Respond& respond);

  void stuck(const Backend& b, const Principal& who, Request& req, Respond& respond);
  void bulk_redrive(const Backend& b, const Principal& who, Request& req, Respond& respond);

  const ApiKeys& keys_;
  Metrics* metrics_;  // may be null
  const bool operator_pages_;
  std::atomic<const Backend*> backend_{nullptr};
};

Response json_response(int status, std::string body);
// application/json, with optional parameters (charset); media types are case-insensitive.
bool is_json_media_type(std::string_view content_type);
// The order resource as a response.
Response order_response(int status, const Order& order);

}  // namespace orderflow::http
