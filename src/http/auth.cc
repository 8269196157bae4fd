#include "http/auth.h"

#include <algorithm>

namespace orderflow::http {
namespace {

bool key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

bool all_key_chars(std::string_view s) { return std::all_of(s.begin(), s.end(), key_char); }

}  // namespace

Result<ApiKey> parse_api_key_spec(std::string_view spec) {
  auto bad = [&](const std::string& why) {
    return make_error(Errc::invalid_argument, "api key spec (KEY:TENANT:ROLE[+ROLE...]): " + why);
  };
  size_t c1 = spec.find(':');
  size_t c2 = c1 == std::string_view::npos ? c1 : spec.find(':', c1 + 1);
  if (c2 == std::string_view::npos) return bad("expected three ':'-separated parts");
  std::string_view key = spec.substr(0, c1);
  std::string_view tenant = spec.substr(c1 + 1, c2 - c1 - 1);
  std::string_view roles = spec.substr(c2 + 1);
  if (key.size() < 16 || key.size() > 256 || !all_key_chars(key)) {
    return bad("KEY must be 16-256 characters of [A-Za-z0-9._-]");
  }
  if (tenant.empty() || tenant.size() > 64 || !all_key_chars(tenant)) {
    return bad("TENANT must be 1-64 characters of [A-Za-z0-9._-]");
  }
  ApiKey out{std::string(key), Principal{std::string(tenant), 0}};
  while (true) {
    size_t plus = roles.find('+');
    std::string_view r = roles.substr(0, plus);
    if (r == "client") out.principal.roles |= kRoleClient;
    else if (r == "worker") out.principal.roles |= kRoleWorker;
    else if (r == "admin") out.principal.roles |= kRoleAdmin;
    else return bad("unknown role '" + std::string(r) + "' (client, worker, admin)");
    if (plus == std::string_view::npos) break;
    roles.remove_prefix(plus + 1);
  }
  return out;
}

std::string format_api_key_spec(const ApiKey& k) {
  std::string s = k.key + ":" + k.principal.tenant + ":";
  bool first = true;
  for (auto [role, name] : {std::pair{kRoleClient, "client"}, std::pair{kRoleWorker, "worker"},
                            std::pair{kRoleAdmin, "admin"}}) {
    if (!k.principal.has(role)) continue;
    if (!first) s += "+";
    s += name;
    first = false;
  }
  return s;
}

Status ApiKeys::add(ApiKey key) {
  auto [it, inserted] = keys_.emplace(std::move(key.key), std::move(key.principal));
  if (!inserted) return make_error(Errc::invalid_argument, "duplicate API key");
  return Status::ok_status();
}

const Principal* ApiKeys::find(std::string_view key) const {
  auto it = keys_.find(std::string(key));
  return it == keys_.end() ? nullptr : &it->second;
}

std::string_view bearer_token(std::string_view auth) {
  // RFC 6750: the scheme is case-insensitive.
  if (auth.size() < 7) return {};
  static constexpr std::string_view kScheme = "bearer ";
  for (size_t i = 0; i < kScheme.size(); ++i) {
    char c = auth[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kScheme[i]) return {};
  }
  auth.remove_prefix(kScheme.size());
  while (!auth.empty() && auth.front() == ' ') auth.remove_prefix(1);
  while (!auth.empty() && auth.back() == ' ') auth.remove_suffix(1);
  return auth;
}

}  // namespace orderflow::http
