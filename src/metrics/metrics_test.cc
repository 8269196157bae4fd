#include "metrics/metrics.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

namespace orderflow {
namespace {

double value_of(const std::string& text, const std::string& name) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return -1;
  return std::stod(m[1]);
}

// Counters that follow running totals kept elsewhere (the simulators' ledger, the settling
// waits) are brought up to date by the sampler at each scrape, by reading the counter and
// adding the difference: scrapes at once must not sample at once, or both add it.
TEST(Metrics, ScrapesAtOnceSampleOneAtATime) {
  Metrics metrics;
  std::atomic<uint64_t> total{0};
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  metrics.set_sampler([&](Metrics& m) {
    if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const uint64_t t = total.fetch_add(1, std::memory_order_relaxed) + 1;
    m.set_sim_ledger(t, t / 2);
    inside.fetch_sub(1);
  });
  std::vector<std::thread> scrapers;
  for (int i = 0; i < 4; ++i) {
    scrapers.emplace_back([&] {
      for (int n = 0; n < 25; ++n) metrics.render();
    });
  }
  for (auto& t : scrapers) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  const std::string text = metrics.render();
  EXPECT_EQ(value_of(text, "orderflow_sim_ledger_batches_total"), static_cast<double>(total.load()));
  EXPECT_EQ(value_of(text, "orderflow_sim_ledger_syncs_total"), static_cast<double>(total.load() / 2));
}

}  // namespace
}  // namespace orderflow
