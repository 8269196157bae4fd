// The HTTP server's transports: how bytes move between sockets and the one Handler. Two
// implement the same contract (http/server.h): io_uring (uring_transport.cc), where one system
// call per loop turn submits every connection's sends and reads and collects what completed,
// and Asio's epoll reactor (server.cc), kept for kernels or sandboxes without io_uring
// (container seccomp profiles often forbid it). What both must agree on — how a request is
// parsed and limited, how a response head is written, what a malformed request gets — lives
// here, once.
//
// Internal to src/http; nothing outside the server includes it.
#pragma once

#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.h"
#include "http/message.h"
#include "http/server.h"

namespace orderflow::http {

class Transport {
 public:
  virtual ~Transport() = default;
  virtual Status start() = 0;
  virtual uint16_t port() const = 0;
  virtual void stop_accepting() = 0;
  virtual size_t in_flight() const = 0;  // requests handed to the handler, not yet answered
  virtual void stop() = 0;
  virtual const char* engine() const = 0;  // "io_uring" or "epoll"
};

std::unique_ptr<Transport> make_asio_transport(const ServerOptions& options, Handler& handler);
// Null when io_uring cannot be used here (no kernel support, or forbidden), with `why` set.
std::unique_ptr<Transport> make_uring_transport(const ServerOptions& options, Handler& handler,
                                                std::string& why);

namespace wire {

namespace bhttp = boost::beast::http;
using RequestParser = bhttp::request_parser<bhttp::string_body>;
using BeastRequest = bhttp::request<bhttp::string_body>;

// A connection's read buffer: reserved per request, and given back after a large request
// (a batch of up to 4 MiB) so that it does not stay that large for the rest of the connection.
// (Beast read max(512, free capacity) at a time: at 512, a 600-byte order took two reads.)
constexpr size_t kReadBufferBytes = 4096;
constexpr size_t kReadBufferKeepMax = 64 * 1024;
// Chunks a stream may have waiting for a client that does not read: beyond, it is closed.
constexpr size_t kStreamBacklogMax = 256;

// A parser for the next request: header limit, and the largest body any route takes (each
// route's own limit is checked once the path is known: body_limit_for).
void fresh_parser(std::optional<RequestParser>& parser, const ServerOptions& options);
size_t body_limit_for(std::string_view target, const ServerOptions& options);

// What a failed read gets: an answer (then the connection closes), or nothing when there is
// nobody to answer (end of stream, reset, timeout).
std::optional<Response> answer_read_error(boost::beast::error_code ec, size_t body_limit);

// The handler's view of a parsed request; views into `req`, which must outlive it.
Request make_request(BeastRequest& req);

// The head of a response with a body (status line, the handler's headers, Content-Type unless
// the handler set one, Content-Length, Connection when it differs from the version's default),
// written by hand into `head`: Beast's serializer walked a buffer sequence per field and
// allocated a node per field (docs/performance.md).
void response_head(std::string& head, const Response& r, unsigned version, bool close);
// The head of a streaming response: no length, the connection closes at its end.
std::string stream_head(const Response& r);

}  // namespace wire
}  // namespace orderflow::http
