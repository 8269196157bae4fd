#include "storage/codec.h"

#include <gtest/gtest.h>

namespace orderflow {
namespace {

Order sample_order() {
  Order o;
  o.id = OrderId::make(1764395000123, PartitionId{5}, 42);
  o.tenant = "acme";
  o.idempotency_key = "key:1";
  o.request.customer_id = "c-1";
  o.request.merchant_id = "m-7";
  o.request.items = {{"burger", 2, 899}, {"fries", 1000, 10000000}};
  o.request.currency = "USD";
  o.request.payment_method = "tok_visa";
  o.request.delivery_address = "1 Main St, Springfield \xc3\xa9";
  o.request.tip_cents = 200;
  o.request.metadata = {{"a", ""}, {"channel", "ios"}};
  o.subtotal_cents = 10001798;
  o.total_cents = 10001998;
  o.status = OrderStatus::failed;
  o.version = 9;
  o.created_at_ms = 1764395000123;
  o.updated_at_ms = 1764395009999;
  o.failure = Failure{"payment", "payment_declined", "card declined"};
  o.payment = Payment{PaymentStatus::voided, 10001998, 0};
  o.courier_id = "courier-17";
  o.pipeline.progress = 3;
  o.pipeline.cancel_requested = true;
  o.pipeline.maybe_done = true;
  o.pipeline.compensate_below = 2;
  o.pipeline.parked_from = OrderStatus::cancelling;
  o.pipeline.effect = EffectState{Stage::payment, Action::void_, 4, EffectPhase::waiting,
                                  1764395001000, 1764395060000, 1764395000500, 1764395000900};
  o.attention = Failure{"payment", "processor_down", "void failed"};
  return o;
}

TEST(Codec, OrderRoundTrip) {
  Order o = sample_order();
  std::string bytes;
  codec::encode_order(o, bytes);
  auto back = codec::decode_order(bytes);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, o);

  o.failure.reset();
  o.attention.reset();
  o.pipeline = PipelineState{};
  o.request.metadata.clear();
  o.status = OrderStatus::pending;
  bytes.clear();
  codec::encode_order(o, bytes);
  EXPECT_EQ(*codec::decode_order(bytes), o);
}

TEST(Codec, EveryTruncationIsRejectedNotCrashed) {
  std::string bytes;
  codec::encode_order(sample_order(), bytes);
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto r = codec::decode_order(std::string_view(bytes).substr(0, n));
    ASSERT_FALSE(r.ok()) << "prefix " << n;
    EXPECT_EQ(r.error().code, Errc::internal);
  }
  bytes.push_back('\0');
  EXPECT_FALSE(codec::decode_order(bytes).ok());  // trailing bytes
}

TEST(Codec, UnknownFormatAndBadFieldsAreRejected) {
  std::string bytes;
  codec::encode_order(sample_order(), bytes);
  std::string v2 = bytes;
  v2[0] = 2;
  EXPECT_FALSE(codec::decode_order(v2).ok());
  // Flip every byte in turn: decode either fails cleanly or yields some order; never crashes.
  for (size_t i = 0; i < bytes.size(); ++i) {
    std::string x = bytes;
    x[i] = static_cast<char>(~x[i]);
    (void)codec::decode_order(x);
  }
}

TEST(Codec, EventRunRoundTrip) {
  OrderId id = OrderId::make(5, PartitionId{1}, 2);
  Event a{id, 7, EventType::effect_succeeded, 123456, R"({"stage":"payment"})"};
  Event b{id, 8, EventType::status_changed, 123457, R"({"from":"pending","to":"cancelled"})"};
  std::string bytes;
  codec::encode_events({&a, &b}, bytes);
  std::vector<Event> back;
  ASSERT_TRUE(codec::decode_events(id, 7, bytes, back).ok());
  EXPECT_EQ(back, (std::vector<Event>{a, b}));
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::vector<Event> partial;
    EXPECT_FALSE(codec::decode_events(id, 7, std::string_view(bytes).substr(0, n), partial).ok()) << n;
  }
  std::string bad_type = bytes;
  bad_type[2] = 99;  // the first event's type
  std::vector<Event> ignored;
  EXPECT_FALSE(codec::decode_events(id, 7, bad_type, ignored).ok());
  std::string trailing = bytes + "x";
  EXPECT_FALSE(codec::decode_events(id, 7, trailing, ignored).ok());
}

TEST(Codec, VarintBounds) {
  for (uint64_t v : {0ull, 127ull, 128ull, 16383ull, 16384ull, ~0ull}) {
    std::string s;
    codec::put_varint(s, v);
    codec::Reader r(s);
    uint64_t out;
    ASSERT_TRUE(r.varint(out));
    EXPECT_EQ(out, v);
    EXPECT_TRUE(r.done());
  }
  std::string overlong(11, '\x80');
  codec::Reader r(overlong);
  uint64_t out;
  EXPECT_FALSE(r.varint(out));
}

}  // namespace
}  // namespace orderflow
