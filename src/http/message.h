// The HTTP layer's own request/response types: handlers see these, never Boost.Beast, so the
// server implementation can change without touching them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace orderflow::http {

enum class Method { get, post, put, patch, del, head, options, other };

// Views into the server's buffers: valid until the request is answered.
struct Request {
  Method method = Method::other;
  std::string_view path;   // without the query string
  std::string_view query;  // after '?', undecoded
  std::string_view authorization;
  std::string_view content_type;
  std::string_view idempotency_key;
  bool has_idempotency_key = false;
  std::string& body;       // owned by the server; handlers may move from it
  std::string_view request_id = {};  // X-Request-Id, as sent (validated by the API)
};

// The open end of a streaming response (Server-Sent Events). Thread-safe; every method may
// be called from any thread. Chunks sent after the stream closed are dropped.
class StreamWriter {
 public:
  virtual ~StreamWriter() = default;
  virtual void send(std::string chunk) = 0;
  // Ends the response and closes the connection once everything sent is written.
  virtual void close() = 0;
  // Runs `fn` once when the stream has ended, whoever ended it (at once if it has already).
  virtual void on_closed(std::function<void()> fn) = 0;
};

struct Response {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
  // Set for a streaming response: the server writes the status and headers (no body, no
  // Content-Length, the connection closes at the end), then calls `stream` with the writer.
  // It is always called, with an already-closed writer when the head could not be written.
  std::function<void(std::shared_ptr<StreamWriter>)> stream;
};

// Answers a request. Callable from any thread, exactly once.
using Respond = std::function<void(Response)>;

class Handler {
 public:
  virtual ~Handler() = default;
  virtual void handle(Request& request, Respond respond) = 0;
};

}  // namespace orderflow::http
