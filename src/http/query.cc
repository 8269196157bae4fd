#include "http/query.h"

namespace orderflow::http {
namespace {

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool decode(std::string_view in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out.push_back(static_cast<char>(hi << 4 | lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return true;
}

}  // namespace

Result<std::vector<std::pair<std::string, std::string>>> parse_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> params;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (part.empty()) continue;
    size_t eq = part.find('=');
    std::string name, value;
    if (!decode(part.substr(0, eq), name) ||
        !decode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1), value)) {
      return make_error(Errc::invalid_argument, "malformed percent-encoding in the query string");
    }
    for (const auto& p : params) {
      if (p.first == name) {
        return make_error(Errc::invalid_argument, "query parameter '" + name + "' is repeated");
      }
    }
    params.emplace_back(std::move(name), std::move(value));
  }
  return params;
}

}  // namespace orderflow::http
