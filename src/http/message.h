// The HTTP layer's own request/response types: handlers see these, never Boost.Beast, so the
// server implementation can change without touching them.
#pragma once

#include <functional>
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
};

struct Response {
  int status = 200;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
};

// Answers a request. Callable from any thread, exactly once.
using Respond = std::function<void(Response)>;

class Handler {
 public:
  virtual ~Handler() = default;
  virtual void handle(Request& request, Respond respond) = 0;
};

}  // namespace orderflow::http
