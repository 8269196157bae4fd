#include "core/ids.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <thread>

#include "core/routing.h"

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

TEST(IdClock, StrictlyIncreasingWhenTheWallClockStallsOrStepsBack) {
  IdClock clock;
  clock.observe(uint64_t{1000} << 16 | 7);  // the high-water mark before a restart
  OrderId prev = clock.mint(900, PartitionId{3});  // wall clock behind it
  EXPECT_EQ(prev.ms(), 1000u);
  EXPECT_EQ(prev.seq(), 8);
  for (int i = 0; i < 200000; ++i) {  // more than 65536 in one millisecond
    OrderId id = clock.mint(1000, PartitionId{static_cast<uint16_t>(i % 5)});
    ASSERT_LT(prev.clock(), id.clock());
    prev = id;
  }
  EXPECT_GT(prev.ms(), 1002u);  // borrowed later milliseconds
  OrderId later = clock.mint(prev.ms() + 5, PartitionId{0});
  EXPECT_EQ(later.ms(), prev.ms() + 5);
  EXPECT_EQ(later.seq(), 0);
  clock.observe(0);  // observing an older reading changes nothing
  EXPECT_GT(clock.mint(0, PartitionId{0}).clock(), later.clock());
}

TEST(IdClock, UniqueAcrossThreads) {
  IdClock clock;
  std::vector<uint64_t> seen[4];
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50000; ++i) seen[t].push_back(clock.next(5));
    });
  }
  for (auto& th : threads) th.join();
  std::set<uint64_t> all;
  for (auto& v : seen) {
    EXPECT_TRUE(std::is_sorted(v.begin(), v.end()));
    all.insert(v.begin(), v.end());
  }
  EXPECT_EQ(all.size(), 200000u);
}

TEST(Routing, DefaultPartitionsLeaveACoreForTheRest) {
  EXPECT_EQ(default_partitions(0), 1u);  // unknown
  EXPECT_EQ(default_partitions(1), 1u);
  EXPECT_EQ(default_partitions(2), 1u);
  EXPECT_EQ(default_partitions(3), 2u);
  EXPECT_EQ(default_partitions(9), 8u);  // the bound, reached
  EXPECT_EQ(default_partitions(64), 8u);  // and held
}

}  // namespace
}  // namespace orderflow
