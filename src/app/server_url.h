// Parsing the --server http://HOST:PORT flag of the client subcommands (bench, ctl).
#pragma once

#include <cstdint>
#include <string>

namespace orderflow::app {

// http://HOST:PORT (or HOST:PORT; [v6]:PORT) → host and port 1-65535. False when malformed.
inline bool parse_server_url(const std::string& url, std::string& host, uint16_t& port) {
  std::string rest = url.rfind("http://", 0) == 0 ? url.substr(7) : url;
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) return false;
  host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string digits = rest.substr(colon + 1);
  if (host.empty() || digits.empty() || digits.size() > 5 ||
      digits.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  unsigned long p = std::stoul(digits);
  if (p == 0 || p > 65535) return false;
  port = static_cast<uint16_t>(p);
  return true;
}

}  // namespace orderflow::app
