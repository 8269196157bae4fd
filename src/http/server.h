// The HTTP/1.1 server: keep-alive, bounded connections, bodies and headers; every request goes
// to one Handler.
//
// Transports (http/transport.h): io_uring where the kernel allows it — each I/O thread submits
// its connections' sends and reads and collects what completed in one system call per turn —
// and Asio's epoll reactor otherwise (`io_engine`; docs/performance.md). Both behave the same
// to clients and handlers.
//
// Threads: `io_threads` threads; connections are handed to the threads in turn as they are
// accepted, and each is served by its thread only, one request at a time (pipelined requests
// wait their turn). A handler may answer from any thread: the response is posted back to the
// connection's thread.
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
  // "auto": io_uring where it can be used, else epoll; "io_uring": io_uring or start() fails;
  // "epoll": Asio's reactor.
  std::string io_engine = "auto";
};

class Transport;

class HttpServer {
 public:
  HttpServer(ServerOptions options, Handler& handler);
  ~HttpServer();

  // Binds and starts serving. Errors: the address cannot be bound; an unknown io_engine;
  // io_engine "io_uring" where io_uring cannot be used.
  Status start();
  uint16_t port() const;
  // The transport serving: "io_uring" or "epoll" (after start()).
  const char* io_engine() const;
  // Why io_uring is not serving when io_engine is "auto" and it could not be used; else empty.
  const std::string& io_engine_note() const { return engine_note_; }
  // Stops accepting new connections; established ones keep being served.
  void stop_accepting();
  // Waits until no request is being handled, at most `timeout_ms`. True when idle.
  bool wait_idle(int timeout_ms);
  // Closes everything and joins the threads.
  void stop();

 private:
  ServerOptions options_;
  Handler& handler_;
  std::string engine_note_;
  std::unique_ptr<Transport> transport_;
};

}  // namespace orderflow::http
