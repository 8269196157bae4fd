// The HTTP/1.1 server (Boost.Beast over Asio): keep-alive, bounded connections, bodies and
// headers; every request goes to one Handler.
//
// Threads: `io_threads` threads, each running an io_context of its own; connections are
// handed to the threads in turn as they are accepted, and each is served by its thread only,
// one request at a time (pipelined requests wait their turn). A handler may answer from any
// thread: the response is posted back to the connection's thread.
//
// Idle connections: each I/O thread sweeps its connections once a second and closes those
// whose deadline has passed — `idle_timeout_s` after a read for the next request or a write of
// a response began; none while the handler has the request or a stream is open. (Beast's
// tcp_stream armed and cancelled a timer around every read and write instead: ~1 us of CPU
// per request; docs/performance.md.)
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"
#include "http/message.h"

namespace orderflow::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;  // 0: an ephemeral port (see HttpServer::port())
  int io_threads = 2;
  size_t connections_max = 10000;
  size_t body_bytes_max = 64 * 1024;
  // Paths (exact) that accept larger bodies, up to large_body_bytes_max.
  std::vector<std::string> large_body_paths;
  size_t large_body_bytes_max = 4 * 1024 * 1024;
  size_t header_bytes_max = 16 * 1024;
  int idle_timeout_s = 60;  // closed up to a second later (the sweep's period)
  std::string thread_name = "of-io";  // I/O threads are named thread_name-N
};

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler& handler);
  ~HttpServer();

  // Binds and starts serving. Errors: the address cannot be bound.
  Status start();
  uint16_t port() const;
  // Stops accepting new connections; established ones keep being served.
  void stop_accepting();
  // Waits until no request is being handled, at most `timeout_ms`. True when idle.
  bool wait_idle(int timeout_ms);
  // Closes everything and joins the threads.
  void stop();

  struct Impl;  // defined in server.cc; public only so its connection type can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace orderflow::http
