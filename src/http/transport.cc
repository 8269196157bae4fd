#include "http/transport.h"

#include <algorithm>
#include <boost/beast/core.hpp>

#include "http/errors.h"

namespace orderflow::http::wire {
namespace {

namespace beast = boost::beast;

Method to_method(bhttp::verb v) {
  switch (v) {
    case bhttp::verb::get: return Method::get;
    case bhttp::verb::post: return Method::post;
    case bhttp::verb::put: return Method::put;
    case bhttp::verb::patch: return Method::patch;
    case bhttp::verb::delete_: return Method::del;
    case bhttp::verb::head: return Method::head;
    case bhttp::verb::options: return Method::options;
    default: return Method::other;
  }
}

std::string_view sv(beast::string_view s) { return std::string_view(s.data(), s.size()); }

std::optional<Response> answer_body_too_large(size_t body_limit) {
  return error_response(Errc::payload_too_large,
                        "request body exceeds " + std::to_string(body_limit) + " bytes");
}

std::string_view reason(int status) {
  return sv(bhttp::obsolete_reason(static_cast<bhttp::status>(status)));
}

}  // namespace

void fresh_parser(std::optional<RequestParser>& parser, const ServerOptions& options) {
  parser.emplace();
  parser->body_limit(std::max(options.body_bytes_max, options.large_body_paths.empty()
                                                          ? size_t{0}
                                                          : options.large_body_bytes_max));
  parser->header_limit(static_cast<uint32_t>(options.header_bytes_max));
}

size_t body_limit_for(std::string_view target, const ServerOptions& options) {
  std::string_view path = target.substr(0, target.find('?'));
  for (const auto& p : options.large_body_paths) {
    if (path == p) return options.large_body_bytes_max;
  }
  return options.body_bytes_max;
}

std::optional<Response> answer_read_error(beast::error_code ec, size_t body_limit) {
  if (ec == bhttp::error::body_limit) return answer_body_too_large(body_limit);
  if (ec == bhttp::error::header_limit) {
    Response r = error_response(Errc::invalid_argument, "request headers are too large");
    r.status = 431;
    return r;
  }
  if (ec.category() == bhttp::make_error_code(bhttp::error::bad_method).category() &&
      ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message) {
    return error_response(Errc::invalid_argument, "malformed HTTP request: " + ec.message());
  }
  return std::nullopt;
}

Request make_request(BeastRequest& req) {
  beast::string_view target = req.target();
  size_t q = target.find('?');
  Request request{
      to_method(req.method()),
      sv(target.substr(0, q)),
      q == beast::string_view::npos ? std::string_view() : sv(target.substr(q + 1)),
      sv(req[bhttp::field::authorization]),
      sv(req[bhttp::field::content_type]),
      {},
      false,
      req.body(),
  };
  if (auto it = req.find("X-Request-Id"); it != req.end()) request.request_id = sv(it->value());
  if (auto it = req.find("Idempotency-Key"); it != req.end()) {
    request.idempotency_key = sv(it->value());
    request.has_idempotency_key = true;
  }
  return request;
}

void response_head(std::string& head, const Response& r, unsigned version, bool close) {
  head.assign(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
  head += std::to_string(r.status);
  head += ' ';
  head += reason(r.status);
  head += "\r\n";
  bool typed = false;
  for (const auto& [name, value] : r.headers) {
    typed = typed || beast::iequals(name, "Content-Type");
    head.append(name).append(": ").append(value).append("\r\n");
  }
  if (!typed) head += "Content-Type: application/json\r\n";
  head += "Content-Length: ";
  head += std::to_string(r.body.size());
  head += "\r\n";
  if (close && version == 11) head += "Connection: close\r\n";
  if (!close && version == 10) head += "Connection: keep-alive\r\n";
  head += "\r\n";
}

std::string stream_head(const Response& r) {
  std::string head = "HTTP/1.1 " + std::to_string(r.status) + " ";
  head += reason(r.status);
  head += "\r\n";
  for (const auto& [name, value] : r.headers) head += name + ": " + value + "\r\n";
  head += "Connection: close\r\n\r\n";
  return head;
}

}  // namespace orderflow::http::wire
