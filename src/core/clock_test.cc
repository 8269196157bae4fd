#include "core/clock.h"

#include <gtest/gtest.h>

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
