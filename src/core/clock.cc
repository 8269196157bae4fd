#include "core/clock.h"

#include <chrono>
#include <ctime>

namespace orderflow {

uint64_t SystemClock::now_ms() const {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

std::string format_rfc3339_ms(uint64_t ms) {
  // The civil date of a day count (proleptic Gregorian; H. Hinnant's civil_from_days), written
  // digit by digit: gmtime_r takes glibc's time-zone lock and snprintf parses its format, on
  // every order rendered (docs/performance.md).
  const uint64_t secs = ms / 1000;
  const int64_t z = static_cast<int64_t>(secs / 86400) + 719468;
  const int64_t era = z / 146097;  // z >= 0: ms is unsigned
  const uint64_t doe = static_cast<uint64_t>(z - era * 146097);
  const uint64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const uint64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const uint64_t mp = (5 * doy + 2) / 153;
  const uint64_t day = doy - (153 * mp + 2) / 5 + 1;
  const uint64_t month = mp < 10 ? mp + 3 : mp - 9;
  const uint64_t year = static_cast<uint64_t>(era) * 400 + yoe + (month <= 2);
  const uint64_t sod = secs % 86400;
  std::string out = std::to_string(year);
  if (out.size() < 4) out.insert(0, 4 - out.size(), '0');
  auto two = [&out](char sep, uint64_t v) {
    out.push_back(sep);
    out.push_back(static_cast<char>('0' + v / 10));
    out.push_back(static_cast<char>('0' + v % 10));
  };
  two('-', month);
  two('-', day);
  two('T', sod / 3600);
  two(':', sod / 60 % 60);
  two(':', sod % 60);
  const uint64_t milli = ms % 1000;
  out.push_back('.');
  out.push_back(static_cast<char>('0' + milli / 100));
  out.push_back(static_cast<char>('0' + milli / 10 % 10));
  out.push_back(static_cast<char>('0' + milli % 10));
  out.push_back('Z');
  return out;
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
