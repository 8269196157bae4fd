#include "core/clock.h"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace orderflow {

uint64_t SystemClock::now_ms() const {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string format_rfc3339_ms(uint64_t ms) {
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        static_cast<int>(ms % 1000));
  return std::string(buf, static_cast<size_t>(n));
}

std::optional<uint64_t> parse_rfc3339_ms(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SSZ or YYYY-MM-DDTHH:MM:SS.mmmZ
  const bool with_ms = s.size() == 24;
  if ((s.size() != 20 && !with_ms) || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
      s[13] != ':' || s[16] != ':' || (with_ms && s[19] != '.') || s.back() != 'Z') {
    return std::nullopt;
  }
  auto num = [&](size_t at, size_t len) -> int {
    int v = 0;
    for (size_t i = at; i < at + len; ++i) {
      if (s[i] < '0' || s[i] > '9') return -1;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  const int year = num(0, 4), mon = num(5, 2), day = num(8, 2), hour = num(11, 2),
            min = num(14, 2), sec = num(17, 2), ms = with_ms ? num(20, 3) : 0;
  // (num gives -1 for a field with a non-digit: every field is checked for it.)
  if (year < 1970 || mon < 1 || mon > 12 || day < 1 || hour < 0 || hour > 23 || min < 0 ||
      min > 59 || sec < 0 || sec > 59 || ms < 0) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const std::time_t secs = timegm(&tm);
  // timegm normalizes a day past the month's end (Feb 30 → Mar 2): refuse those.
  std::tm back{};
  gmtime_r(&secs, &back);
  if (secs < 0 || back.tm_mday != day || back.tm_mon != mon - 1) return std::nullopt;
  return static_cast<uint64_t>(secs) * 1000 + static_cast<uint64_t>(ms);
}

}  // namespace orderflow
