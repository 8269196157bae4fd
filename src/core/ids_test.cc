#include "core/ids.h"

#include <gtest/gtest.h>

#include <random>

namespace orderflow {
namespace {

TEST(OrderId, TextRoundTripAndOrdering) {
  uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed=" + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int i = 0; i < 2000; ++i) {
    OrderId a = OrderId::make(rng() >> 16, PartitionId{static_cast<uint16_t>(rng())},
                              static_cast<uint16_t>(rng()));
    OrderId b = OrderId::make(rng() >> 16, PartitionId{static_cast<uint16_t>(rng())},
                              static_cast<uint16_t>(rng()));
    ASSERT_EQ(OrderId::parse(a.str()), a);
    ASSERT_EQ(a.str().size(), OrderId::kTextLength);
    auto ab = a.bytes();
    ASSERT_EQ(OrderId::from_bytes(std::string_view(ab.data(), ab.size())), a);
    // Text order, byte order and id order agree.
    ASSERT_EQ(a < b, a.str() < b.str());
    auto bb = b.bytes();
    ASSERT_EQ(a < b, std::string_view(ab.data(), 10) < std::string_view(bb.data(), 10));
  }
}

TEST(OrderId, FieldsSurvive) {
  OrderId id = OrderId::make(1764395000123, PartitionId{7}, 65535);
  EXPECT_EQ(id.ms(), 1764395000123u);
  EXPECT_EQ(id.partition().value, 7);
  EXPECT_EQ(id.seq(), 65535);
}

TEST(OrderId, ParseRejectsAnythingElse) {
  EXPECT_FALSE(OrderId::parse(""));
  EXPECT_FALSE(OrderId::parse("06h2bq468400600"));    // 15 chars
  EXPECT_FALSE(OrderId::parse("06h2bq46840060000"));  // 17 chars
  EXPECT_FALSE(OrderId::parse("06h2bq468400600u"));   // 'u' is not Crockford base32
  EXPECT_FALSE(OrderId::parse("06H2BQ4684006000"));   // upper case is not what we issue
  EXPECT_FALSE(OrderId::parse("06h2bq46840060/0"));
  EXPECT_TRUE(OrderId::parse("06h2bq4684006000"));
}

TEST(IdMinter, StrictlyIncreasingWhenTheClockStallsOrStepsBack) {
  IdMinter m(PartitionId{3}, 1000);
  // Clock behind the persisted high-water mark: any seq of ms 1000 may have been used before
  // the restart, so the first id takes the next millisecond.
  OrderId prev = m.next(900);
  EXPECT_EQ(prev.ms(), 1001u);
  EXPECT_EQ(prev.seq(), 0);
  for (int i = 0; i < 200000; ++i) {  // more than 65536 in one millisecond
    OrderId id = m.next(1000);
    ASSERT_LT(prev, id);
    ASSERT_EQ(id.partition().value, 3);
    prev = id;
  }
  EXPECT_GT(prev.ms(), 1003u);  // borrowed later milliseconds
  OrderId later = m.next(prev.ms() + 5);
  EXPECT_EQ(later.ms(), prev.ms() + 5);
  EXPECT_EQ(later.seq(), 0);
}

}  // namespace
}  // namespace orderflow
