#include "http/errors.h"

#include "core/json_writer.h"

namespace orderflow {

const char* errc_name(Errc code) {
  switch (code) {
    case Errc::invalid_json: return "invalid_json";
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::unauthenticated: return "unauthenticated";
    case Errc::permission_denied: return "permission_denied";
    case Errc::not_found: return "not_found";
    case Errc::method_not_allowed: return "method_not_allowed";
    case Errc::conflict: return "conflict";
    case Errc::failed_precondition: return "failed_precondition";
    case Errc::payload_too_large: return "payload_too_large";
    case Errc::unsupported_media_type: return "unsupported_media_type";
    case Errc::idempotency_key_reuse: return "idempotency_key_reuse";
    case Errc::overloaded: return "overloaded";
    case Errc::unavailable: return "unavailable";
    case Errc::internal: return "internal";
  }
  return "internal";
}

namespace http {

int http_status(Errc code) {
  switch (code) {
    case Errc::invalid_json: return 400;
    case Errc::invalid_argument: return 400;
    case Errc::unauthenticated: return 401;
    case Errc::permission_denied: return 403;
    case Errc::not_found: return 404;
    case Errc::method_not_allowed: return 405;
    case Errc::conflict: return 409;
    case Errc::failed_precondition: return 409;
    case Errc::payload_too_large: return 413;
    case Errc::unsupported_media_type: return 415;
    case Errc::idempotency_key_reuse: return 422;
    case Errc::overloaded: return 503;
    case Errc::unavailable: return 503;
    case Errc::internal: return 500;
  }
  return 500;
}

Response error_response(const Error& error) {
  Response r;
  r.status = http_status(error.code);
  JsonWriter w(r.body);
  w.begin_object().key("error").begin_object();
  w.field("code", errc_name(error.code)).field("message", error.message);
  if (!error.details.empty()) {
    w.key("details").begin_array();
    for (const FieldViolation& v : error.details) {
      w.begin_object().field("field", v.field).field("reason", v.reason).end_object();
    }
    w.end_array();
  }
  w.end_object().end_object();
  if (error.code == Errc::overloaded || error.code == Errc::unavailable) {
    r.headers.emplace_back("Retry-After", "1");
  }
  if (error.code == Errc::unauthenticated) {
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
  }
  return r;
}

}  // namespace http
}  // namespace orderflow
