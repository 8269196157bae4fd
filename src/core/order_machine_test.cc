#include "core/order_machine.h"

#include <gtest/gtest.h>

namespace orderflow {
namespace {

OrderRequest sample_request() {
  OrderRequest r;
  r.customer_id = "c-1";
  r.merchant_id = "m-7";
  r.items = {{"burger", 2, 899}, {"fries", 3, 250}};
  r.currency = "USD";
  r.payment_method = "tok_visa";
  r.delivery_address = "1 Main St";
  r.tip_cents = 200;
  return r;
}

const OrderId kId = OrderId::make(1000, PartitionId{0}, 0);

TEST(OrderMachine, PlaceComputesTotalsAndFirstEvent) {
  Placed p = place_order(kId, "acme", "key-1", sample_request(), 1000);
  EXPECT_EQ(p.order.subtotal_cents, 2 * 899 + 3 * 250);
  EXPECT_EQ(p.order.total_cents, 2 * 899 + 3 * 250 + 200);
  EXPECT_EQ(p.order.status, OrderStatus::pending);
  EXPECT_EQ(p.order.version, 1u);
  EXPECT_EQ(p.order.created_at_ms, 1000u);
  EXPECT_EQ(p.order.tenant, "acme");
  ASSERT_EQ(p.events.size(), 1u);
  EXPECT_EQ(p.events[0].seq, 1u);
  EXPECT_EQ(p.events[0].type, EventType::order_placed);
  EXPECT_NE(p.events[0].data_json.find("\"customer_id\":\"c-1\""), std::string::npos);
}

TEST(OrderMachine, CancelPendingAppendsTwoEvents) {
  Placed p = place_order(kId, "acme", "key-1", sample_request(), 1000);
  auto events = cancel_order(p.order, "changed my mind", 1500);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].type, EventType::cancel_requested);
  EXPECT_EQ((*events)[0].seq, 2u);
  EXPECT_EQ((*events)[0].data_json, R"({"reason":"changed my mind"})");
  EXPECT_EQ((*events)[1].type, EventType::status_changed);
  EXPECT_EQ((*events)[1].seq, 3u);
  EXPECT_EQ((*events)[1].data_json, R"({"from":"pending","to":"cancelled"})");
  EXPECT_EQ(p.order.status, OrderStatus::cancelled);
  EXPECT_EQ(p.order.version, 3u);
  EXPECT_EQ(p.order.updated_at_ms, 1500u);
}

TEST(OrderMachine, UpdatedAtNeverGoesBackwards) {
  Placed p = place_order(kId, "acme", "key-1", sample_request(), 1000);
  ASSERT_TRUE(cancel_order(p.order, "", 900).ok());  // clock stepped back
  EXPECT_EQ(p.order.updated_at_ms, 1000u);
}

TEST(OrderMachine, TerminalOrdersCannotBeCancelled) {
  for (OrderStatus s : {OrderStatus::delivered, OrderStatus::cancelled, OrderStatus::failed}) {
    Placed p = place_order(kId, "acme", "key-1", sample_request(), 1000);
    p.order.status = s;
    Order before = p.order;
    auto events = cancel_order(p.order, "", 2000);
    ASSERT_FALSE(events.ok());
    EXPECT_EQ(events.error().code, Errc::failed_precondition);
    EXPECT_EQ(p.order, before);  // unchanged
  }
}

TEST(OrderStatus, NamesRoundTrip) {
  for (int i = 0; i < kOrderStatusCount; ++i) {
    auto s = static_cast<OrderStatus>(i);
    EXPECT_EQ(parse_status(status_name(s)), s);
  }
  EXPECT_FALSE(parse_status("shipped"));
  EXPECT_FALSE(parse_status(""));
}

}  // namespace
}  // namespace orderflow
