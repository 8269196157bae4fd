#include "app/histogram.h"

#include <gtest/gtest.h>

#include <random>

namespace orderflow::app {
namespace {

TEST(LatencyHistogram, ExactBelow2048AndWithin0_1PercentAbove) {
  for (uint64_t v : {0ull, 1ull, 2047ull}) {
    EXPECT_EQ(LatencyHistogram::value_of(LatencyHistogram::index_of(v)), v);
  }
  for (uint64_t v = 2048; v < (uint64_t{1} << 40); v = v * 3 / 2 + 7) {
    uint64_t back = LatencyHistogram::value_of(LatencyHistogram::index_of(v));
    ASSERT_GE(back, v) << v;
    ASSERT_LE(back - v, v / 1000 + 1) << v;
  }
}

TEST(LatencyHistogram, QuantilesOfAKnownDistribution) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 100000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_NEAR(static_cast<double>(h.quantile(0.5)), 50000, 50);
  EXPECT_NEAR(static_cast<double>(h.quantile(0.99)), 99000, 100);
  EXPECT_NEAR(static_cast<double>(h.quantile(0.999)), 99900, 100);
  EXPECT_EQ(h.quantile(1.0), 100000u);
  EXPECT_EQ(h.max(), 100000u);
  EXPECT_EQ(h.min(), 1u);
  EXPECT_NEAR(h.mean(), 50000.5, 0.01);
}

TEST(LatencyHistogram, MergeAndReset) {
  LatencyHistogram a, b;
  a.record(10);
  b.record(5000000);
  a.merge(b);
  EXPECT_EQ(a.count(), 2u);
  EXPECT_EQ(a.quantile(1.0), 5000000u);
  EXPECT_EQ(a.quantile(0.5), 10u);
  a.reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.quantile(0.99), 0u);
}

}  // namespace
}  // namespace orderflow::app
