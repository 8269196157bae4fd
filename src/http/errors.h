// Rendering of API errors: {"error":{"code","message","details":[{"field","reason"}]}}.
#pragma once

#include "core/result.h"
#include "http/message.h"

namespace orderflow::http {

int http_status(Errc code);
Response error_response(const Error& error);
inline Response error_response(Errc code, std::string message) {
  return error_response(make_error(code, std::move(message)));
}

}  // namespace orderflow::http
