// API keys: each key belongs to one tenant and carries a set of roles.
//
// Thread safety: built once at start-up, then read-only (find() from any thread).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/result.h"

namespace orderflow::http {

enum Role : uint8_t { kRoleClient = 1, kRoleWorker = 2, kRoleAdmin = 4 };
inline constexpr uint8_t kAllRoles = kRoleClient | kRoleWorker | kRoleAdmin;

struct Principal {
  std::string tenant;
  uint8_t roles = 0;
  bool has(Role r) const { return (roles & r) != 0; }
};

struct ApiKey {
  std::string key;
  Principal principal;
};

// Parses KEY:TENANT:ROLE[+ROLE...]. KEY: 16-256 characters of [A-Za-z0-9._-];
// TENANT: 1-64 characters of [A-Za-z0-9._-]; ROLE: client, worker or admin.
Result<ApiKey> parse_api_key_spec(std::string_view spec);
std::string format_api_key_spec(const ApiKey& key);

class ApiKeys {
 public:
  // invalid_argument when the key is already present.
  Status add(ApiKey key);
  const Principal* find(std::string_view key) const;
  size_t size() const { return keys_.size(); }

 private:
  std::unordered_map<std::string, Principal> keys_;
};

// The bearer token of an Authorization header value, or empty.
std::string_view bearer_token(std::string_view authorization);

}  // namespace orderflow::http
