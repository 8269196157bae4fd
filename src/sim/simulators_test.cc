#include "sim/simulators.h"

#include <gtest/gtest.h>

#include <future>

#include "testing/temp_dir.h"

namespace orderflow {
namespace {

std::shared_ptr<Order> order_with(const std::string& token, const std::string& merchant,
                                  int64_t qty = 1, uint16_t n = 0) {
  auto o = std::make_shared<Order>();
  o->id = OrderId::make(5000 + n, PartitionId{0}, 0);
  o->tenant = "acme";
  o->request.items = {{"pizza", qty, 1000}};
  o->request.payment_method = token;
  o->request.merchant_id = merchant;
  o->total_cents = 1000 * qty;
  return o;
}

class SimTest : public ::testing::Test {
 protected:
  std::unique_ptr<Simulators> open(std::vector<std::pair<std::string, int64_t>> stock = {},
                                   size_t stock_cache_max = 65536) {
    SimOptions o;
    o.stock_cache_max = stock_cache_max;
    o.path = dir_.sub("sim");
    o.durability = Durability::none;
    o.stock = std::move(stock);
    o.closed_merchants = {"m-closed"};
    auto s = Simulators::open(o);
    EXPECT_TRUE(s.ok());
    return std::move(*s);
  }
  EffectResult call(Simulators& s, std::shared_ptr<Order> o, Stage st, Action a,
                    uint32_t attempt = 1, std::string key = "") {
    EffectRequest r;
    r.call = EffectCall{o->id, st, a, attempt};
    r.idempotency_key = key.empty() ? effect_idempotency_key(o->id, st, a) : key;
    std::promise<EffectResult> p;
    s.execute(std::move(r), *o, [&](EffectResult res) { p.set_value(std::move(res)); });
    return p.get_future().get();
  }
  int64_t stock_of(Simulators& s, const std::string& sku) {
    auto stock = s.stock();  // named: a range-for over *temporary would dangle
    for (auto& [k, v] : *stock) {
      if (k == sku) return v;
    }
    return -1;
  }
  LedgerEntry entry(Simulators& s, OrderId id, Action a) {
    auto ledger = s.ledger(id);
    for (auto& e : *ledger) {
      if (e.action == a) return e;
    }
    return {};
  }
  testing::TempDir dir_;
};

TEST_F(SimTest, ReserveTakesStockOnceAndReleaseReturnsIt) {
  auto s = open({{"pizza", 5}});
  auto o = order_with("tok_visa", "m-1", 3);
  EXPECT_EQ(call(*s, o, Stage::inventory, Action::reserve).outcome, EffectOutcome::success);
  EXPECT_EQ(stock_of(*s, "pizza"), 2);
  // The same key again: the recorded answer, no second reservation.
  EXPECT_EQ(call(*s, o, Stage::inventory, Action::reserve, 2).outcome, EffectOutcome::success);
  EXPECT_EQ(stock_of(*s, "pizza"), 2);
  EXPECT_EQ(entry(*s, o->id, Action::reserve).requests, 2u);
  EXPECT_EQ(entry(*s, o->id, Action::reserve).applied, 1u);

  auto big = order_with("tok_visa", "m-1", 3, 1);  // needs 3, 2 left: out of stock
  EffectResult r = call(*s, big, Stage::inventory, Action::reserve);
  EXPECT_EQ(r.outcome, EffectOutcome::permanent);
  EXPECT_EQ(r.code, "out_of_stock");
  EXPECT_EQ(stock_of(*s, "pizza"), 2);
  // Releasing an order that reserved nothing returns nothing.
  EXPECT_EQ(call(*s, big, Stage::inventory, Action::release).outcome, EffectOutcome::success);
  EXPECT_EQ(stock_of(*s, "pizza"), 2);

  call(*s, o, Stage::inventory, Action::release);
  call(*s, o, Stage::inventory, Action::release);  // repeated: returned once
  EXPECT_EQ(stock_of(*s, "pizza"), 5);
  // Exactly the stock: fits (the other side of the bound).
  auto exact = order_with("tok_visa", "m-1", 5, 2);
  EXPECT_EQ(call(*s, exact, Stage::inventory, Action::reserve).outcome, EffectOutcome::success);
  EXPECT_EQ(stock_of(*s, "pizza"), 0);
}

TEST_F(SimTest, StockStaysExactBelowAndPastTheStockCacheBound) {
  // Two SKUs fit the cache; the third clears it each time it comes in. Either way every
  // reservation takes from the count as last written.
  auto s = open({{"a", 10}, {"b", 10}, {"c", 10}}, 2);
  auto with_sku = [](const std::string& sku, uint16_t n) {
    auto o = order_with("tok_visa", "m-1", 1, n);
    o->request.items = {{sku, 2, 100}};
    return o;
  };
  uint16_t n = 10;
  for (const char* sku : {"a", "b", "a", "b"}) {  // within the bound
    EXPECT_EQ(call(*s, with_sku(sku, n++), Stage::inventory, Action::reserve).outcome,
              EffectOutcome::success);
  }
  EXPECT_EQ(stock_of(*s, "a"), 6);
  EXPECT_EQ(stock_of(*s, "b"), 6);
  for (const char* sku : {"c", "a", "c", "b", "a", "c"}) {  // past it
    EXPECT_EQ(call(*s, with_sku(sku, n++), Stage::inventory, Action::reserve).outcome,
              EffectOutcome::success);
  }
  EXPECT_EQ(stock_of(*s, "a"), 2);
  EXPECT_EQ(stock_of(*s, "b"), 4);
  EXPECT_EQ(stock_of(*s, "c"), 4);
  auto last = with_sku("a", n++);
  last->request.items[0].quantity = 3;  // 2 left: refused, nothing taken
  EXPECT_EQ(call(*s, last, Stage::inventory, Action::reserve).code, "out_of_stock");
  EXPECT_EQ(stock_of(*s, "a"), 2);
  // A SKU with no stock kept is unlimited, remembered as such, and never written.
  EXPECT_EQ(call(*s, with_sku("free", n++), Stage::inventory, Action::reserve).outcome,
            EffectOutcome::success);
  EXPECT_EQ(call(*s, with_sku("free", n++), Stage::inventory, Action::reserve).outcome,
            EffectOutcome::success);
  EXPECT_EQ(stock_of(*s, "free"), -1);
}

TEST_F(SimTest, PaymentSandboxTokens) {
  auto s = open();
  EXPECT_EQ(call(*s, order_with("tok_visa", "m", 1, 1), Stage::payment, Action::authorize).outcome,
            EffectOutcome::success);
  EXPECT_EQ(call(*s, order_with("tok_unknown_x", "m", 1, 2), Stage::payment, Action::authorize).outcome,
            EffectOutcome::success);
  EffectResult d = call(*s, order_with("tok_declined", "m", 1, 3), Stage::payment, Action::authorize);
  EXPECT_EQ(d.outcome, EffectOutcome::permanent);
  EXPECT_EQ(d.code, "payment_declined");
  EffectResult f = call(*s, order_with("tok_insufficient_funds", "m", 1, 4), Stage::payment,
                        Action::authorize);
  EXPECT_EQ(f.code, "insufficient_funds");

  auto flaky = order_with("tok_flaky", "m", 1, 5);
  EXPECT_EQ(call(*s, flaky, Stage::payment, Action::authorize, 1).outcome, EffectOutcome::transient);
  EXPECT_EQ(call(*s, flaky, Stage::payment, Action::authorize, 2).outcome, EffectOutcome::transient);
  EXPECT_EQ(call(*s, flaky, Stage::payment, Action::authorize, 3).outcome, EffectOutcome::success);
  EXPECT_EQ(call(*s, flaky, Stage::payment, Action::authorize, 4).outcome, EffectOutcome::success);
  EXPECT_EQ(entry(*s, flaky->id, Action::authorize).applied, 1u);  // authorized once
  EXPECT_EQ(entry(*s, flaky->id, Action::authorize).requests, 4u);
}

TEST_F(SimTest, AnotherKeyForTheSameEffectShowsAsAppliedTwice) {
  auto s = open();
  auto o = order_with("tok_visa", "m");
  call(*s, o, Stage::payment, Action::capture, 1, "key-a");
  call(*s, o, Stage::payment, Action::capture, 1, "key-b");
  EXPECT_EQ(entry(*s, o->id, Action::capture).applied, 2u);  // what the crash test looks for
}

TEST_F(SimTest, MerchantDispatchDelivery) {
  auto s = open();
  EffectResult closed = call(*s, order_with("tok_visa", "m-closed"), Stage::merchant, Action::confirm);
  EXPECT_EQ(closed.code, "merchant_rejected");
  EXPECT_EQ(call(*s, order_with("tok_visa", "m-open", 1, 1), Stage::merchant, Action::confirm).outcome,
            EffectOutcome::success);
  auto o = order_with("tok_visa", "m", 1, 2);
  EffectResult a = call(*s, o, Stage::dispatch, Action::assign);
  EXPECT_EQ(a.outcome, EffectOutcome::success);
  EXPECT_FALSE(a.courier_id.empty());
  EXPECT_EQ(call(*s, o, Stage::dispatch, Action::assign, 2).courier_id, a.courier_id);
  EXPECT_EQ(call(*s, o, Stage::delivery, Action::deliver).outcome, EffectOutcome::success);
}

TEST_F(SimTest, LedgerAndStockSurviveReopen) {
  auto o = order_with("tok_visa", "m", 2);
  {
    auto s = open({{"pizza", 10}});
    call(*s, o, Stage::inventory, Action::reserve);
  }
  auto s = open({{"pizza", 10}});  // the flag does not reset a known SKU
  EXPECT_EQ(stock_of(*s, "pizza"), 8);
  call(*s, o, Stage::inventory, Action::reserve);
  EXPECT_EQ(stock_of(*s, "pizza"), 8);
  EXPECT_EQ(entry(*s, o->id, Action::reserve).applied, 1u);
  EXPECT_EQ(entry(*s, o->id, Action::reserve).requests, 2u);
}

}  // namespace
}  // namespace orderflow
