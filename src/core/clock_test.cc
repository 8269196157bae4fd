#include "core/clock.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

namespace orderflow {
namespace {

TEST(Rfc3339Test, ParsesWhatItFormats) {
  for (uint64_t ms : {0ull, 1ull, 999ull, 1000ull, 951782400000ull /* 2000-02-29 */,
                      1795967664137ull, 4102444799999ull /* 2099-12-31T23:59:59.999 */}) {
    auto back = parse_rfc3339_ms(format_rfc3339_ms(ms));
    ASSERT_TRUE(back.has_value()) << format_rfc3339_ms(ms);
    EXPECT_EQ(*back, ms);
  }
  EXPECT_EQ(parse_rfc3339_ms("2026-11-29T05:41:59.123Z"), 1795930919123ull);
  EXPECT_EQ(parse_rfc3339_ms("2026-11-29T05:41:59Z"), 1795930919000ull);  // no milliseconds
}

// The formatter computes the civil date itself; the C library's gmtime_r is the reference.
TEST(Rfc3339Test, FormatsAsGmtimeDoes) {
  auto reference = [](uint64_t ms) {
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                          tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                          static_cast<int>(ms % 1000));
    return std::string(buf, static_cast<size_t>(n));
  };
  std::vector<uint64_t> samples = {0, 999, 86399999, 86400000, 951782400000 /* 2000-02-29 */,
                                   951868800000 /* 2000-03-01 */, 4107542400000 /* 2100-03-01 */,
                                   253402300799999 /* 9999-12-31T23:59:59.999 */,
                                   (1ull << 48) - 1 /* the largest id clock reading */};
  uint64_t x = 88172645463325252ull;  // xorshift: days and times spread over the id clock's range
  for (int i = 0; i < 20000; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    samples.push_back(x % (1ull << 48));
  }
  for (uint64_t ms : samples) EXPECT_EQ(format_rfc3339_ms(ms), reference(ms)) << ms;
}

TEST(Rfc3339Test, RefusesAnythingElse) {
  for (const char* s : {"", "2026-11-29T05:41:59.12Z", "2026-11-29T05:41:59.1234Z",
                        "2026-11-29T05:41:59", "2026-11-29T05:41:59.123", "2026-11-29T05:41:59+1", "2026-11-29 05:41:59.123Z",
                        "2026-11-29T05:41:59.123+00:00", "2026-13-01T00:00:00.000Z",
                        "2026-00-01T00:00:00.000Z", "2026-02-30T00:00:00.000Z",
                        "2025-02-29T00:00:00.000Z", "2026-11-29T24:00:00.000Z",
                        "2026-11-29T05:60:00.000Z", "2026-11-29T05:41:60.000Z",
                        "1969-12-31T23:59:59.999Z", "2026-11-2xT05:41:59.123Z",
                        "2026-11-29T05:41:59.12aZ", "+026-11-29T05:41:59.123Z",
                        " 2026-11-29T05:41:59Z", "2026-11-29T05:41:59.123z",
                        "2026-11-29T0x:41:59Z", "2026-11-29T05:4x:59Z", "2026-11-29T05:41:5xZ"}) {
    EXPECT_FALSE(parse_rfc3339_ms(s).has_value()) << s;
  }
}

}  // namespace
}  // namespace orderflow
