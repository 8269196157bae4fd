// The HTTP API v1 (docs/api.md): authentication, routing and the handlers.
//
// Before recovery finishes (set_ready), /healthz answers and everything under /v1 is 503.
// Thread safety: handle() is called concurrently from the server's I/O threads.
#pragma once

#include <atomic>

#include "engine/engine.h"
#include "http/auth.h"
#include "http/message.h"

namespace orderflow::http {

class Api final : public Handler {
 public:
  explicit Api(const ApiKeys& keys) : keys_(keys) {}

  void set_ready(Engine* engine) { engine_.store(engine, std::memory_order_release); }
  void handle(Request& request, Respond respond) override;

 private:
  // orders.cc
  void create_order(Engine& engine, const Principal& who, Request& req, Respond& respond);
  void list_orders(Engine& engine, const Principal& who, Request& req, Respond& respond);
  void get_order(Engine& engine, const Principal& who, OrderId id, Respond& respond);
  void get_events(Engine& engine, const Principal& who, OrderId id, Respond& respond);
  void cancel_order(Engine& engine, const Principal& who, OrderId id, Request& req,
                    Respond& respond);

  const ApiKeys& keys_;
  std::atomic<Engine*> engine_{nullptr};
};

// {"status":...}-style small bodies and JSON responses.
Response json_response(int status, std::string body);

}  // namespace orderflow::http
