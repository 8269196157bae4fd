// Time, injected: the core never reads the wall clock itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace orderflow {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual uint64_t now_ms() const = 0;  // milliseconds since the Unix epoch
};

class SystemClock final : public Clock {
 public:
  uint64_t now_ms() const override;
};

// RFC 3339 UTC with milliseconds: 2026-11-29T05:41:59.123Z
std::string format_rfc3339_ms(uint64_t ms);
// The inverse, for that form or the same without milliseconds (2026-11-29T05:41:59Z);
// nullopt for anything else, including dates that do not exist.
std::optional<uint64_t> parse_rfc3339_ms(std::string_view s);

}  // namespace orderflow
