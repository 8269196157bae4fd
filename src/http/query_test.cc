#include "http/query.h"

#include <gtest/gtest.h>

namespace orderflow::http {
namespace {

TEST(Query, DecodesPercentAndPlus) {
  auto q = parse_query("customer_id=c%2D1&status=pending&x=a+b&empty=&flag");
  ASSERT_TRUE(q.ok());
  ASSERT_EQ(q->size(), 5u);
  EXPECT_EQ((*q)[0].second, "c-1");
  EXPECT_EQ((*q)[2].second, "a b");
  EXPECT_EQ((*q)[3].second, "");
  EXPECT_EQ((*q)[4].first, "flag");
}

TEST(Query, RejectsBadEscapesAndRepeats) {
  EXPECT_EQ(parse_query("a=%zz").error().code, Errc::invalid_argument);
  EXPECT_EQ(parse_query("a=%4").error().code, Errc::invalid_argument);
  EXPECT_EQ(parse_query("a=%").error().code, Errc::invalid_argument);
  EXPECT_EQ(parse_query("a=1&a=2").error().code, Errc::invalid_argument);
  EXPECT_TRUE(parse_query("").ok());
  EXPECT_TRUE(parse_query("&&").ok());
}

}  // namespace
}  // namespace orderflow::http
