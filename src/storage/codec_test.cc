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

TEST(Codec, AnOrderIsItsFixedPartThenItsState) {
  Order o = sample_order();
  std::string fixed, state, whole;
  codec::encode_order_fixed(o, fixed);
  codec::encode_order_state(o, state);
  codec::encode_order(o, whole);
  EXPECT_EQ(whole, fixed + state);
  EXPECT_EQ(*codec::order_state_offset(whole), fixed.size());
  // A later state joins the same fixed part: the order as it is now.
  Order later = o;
  later.status = OrderStatus::delivered;
  later.version += 4;
  later.courier_id = "courier-2";
  later.pipeline.effect.reset();
  std::string later_state;
  codec::encode_order_state(later, later_state);
  EXPECT_EQ(*codec::decode_order(fixed + later_state), later);
  // The fixed part cut short is no order.
  for (size_t n = 0; n < fixed.size(); ++n) {
    EXPECT_FALSE(codec::order_state_offset(std::string_view(fixed).substr(0, n)).ok()) << n;
  }
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
  // One event of each type, every field that type keeps set (times need not increase).
  std::vector<Event> run = {
      {.order_id = id, .seq = 7, .type = EventType::order_placed, .at_ms = 1764395000123},
      {.order_id = id, .seq = 8, .type = EventType::status_changed, .at_ms = 1764395000125,
       .from = OrderStatus::pending, .to = OrderStatus::needs_attention},
      {.order_id = id, .seq = 9, .type = EventType::cancel_requested, .at_ms = 1764395000124,
       .reason = "changed my mind"},
      {.order_id = id, .seq = 10, .type = EventType::effect_requested, .at_ms = 1764395000124,
       .stage = Stage::delivery, .action = Action::deliver, .attempt = 4000000000u},
      {.order_id = id, .seq = 11, .type = EventType::effect_succeeded, .at_ms = 1764395100000,
       .stage = Stage::dispatch, .action = Action::assign, .attempt = 2, .courier_id = "c-1"},
      {.order_id = id, .seq = 12, .type = EventType::effect_failed, .at_ms = 1764395100001,
       .stage = Stage::payment, .action = Action::void_, .attempt = 1, .retryable = true,
       .code = "timeout", .message = "no answer"},
      {.order_id = id, .seq = 13, .type = EventType::redriven, .at_ms = 1764395100002,
       .stage = Stage::payment, .action = Action::capture},
      // Read from format 2 earlier and written again: kept as it was.
      {.order_id = id, .seq = 14, .type = EventType::status_changed, .at_ms = 1764395100003,
       .legacy_data_json = R"({"from":"pending","to":"cancelled"})"},
  };
  std::vector<const Event*> refs;
  for (const Event& e : run) refs.push_back(&e);
  std::string bytes;
  codec::encode_events(refs, bytes);
  std::vector<Event> back;
  ASSERT_TRUE(codec::decode_events(id, 7, bytes, back).ok());
  EXPECT_EQ(back, run);
  // An order's usual history — placed, then six steps requested and done and five status
  // changes, milliseconds apart — takes a few bytes per event: typed, times as differences.
  std::vector<Event> usual;
  uint64_t ms = 1764395000123;
  auto add = [&](Event e) {
    e.order_id = id;
    e.seq = static_cast<uint32_t>(usual.size() + 1);
    e.at_ms = ms += 3;
    usual.push_back(std::move(e));
  };
  add({.type = EventType::order_placed});
  for (int step = 0; step < 6; ++step) {
    add({.type = EventType::effect_requested, .stage = Stage::payment, .action = Action::capture,
         .attempt = 1});
    add({.type = EventType::effect_succeeded, .stage = Stage::payment, .action = Action::capture,
         .attempt = 1});
    if (step < 5) {
      add({.type = EventType::status_changed, .from = OrderStatus::pending,
           .to = OrderStatus::inventory_reserved});
    }
  }
  refs.clear();
  for (const Event& e : usual) refs.push_back(&e);
  bytes.clear();
  codec::encode_events(refs, bytes);
  EXPECT_EQ(usual.size(), 18u);
  EXPECT_LE(bytes.size(), 100u);  // their JSON data: 1,751 bytes for a one-item order
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

TEST(Codec, EventRunsOfTheJsonFormatStillRead) {
  // Format 2: each event's type, absolute time and its data object as JSON text.
  OrderId id = OrderId::make(5, PartitionId{1}, 2);
  std::string bytes;
  bytes.push_back(static_cast<char>(codec::kEventFormatJson));
  codec::put_varint(bytes, 2);
  bytes.push_back(static_cast<char>(EventType::order_placed));
  codec::put_varint(bytes, 123456);
  codec::put_bytes(bytes, R"({"customer_id":"c"})");
  bytes.push_back(static_cast<char>(EventType::status_changed));
  codec::put_varint(bytes, 123457);
  codec::put_bytes(bytes, "");
  std::vector<Event> back;
  ASSERT_TRUE(codec::decode_events(id, 1, bytes, back).ok());
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(back[0].type, EventType::order_placed);
  EXPECT_EQ(back[0].at_ms, 123456u);
  EXPECT_EQ(back[0].legacy_data_json, R"({"customer_id":"c"})");
  EXPECT_EQ(back[1].seq, 2u);
  EXPECT_EQ(back[1].legacy_data_json, "{}");
  // Written again (an order that ends after the upgrade), they read back the same.
  std::string again;
  codec::encode_events({&back[0], &back[1]}, again);
  std::vector<Event> back2;
  ASSERT_TRUE(codec::decode_events(id, 1, again, back2).ok());
  EXPECT_EQ(back2, back);
}

TEST(Codec, ARunListReadsAsItsRunsInOrder) {
  OrderId id = OrderId::make(5, PartitionId{1}, 2);
  std::vector<Event> all;
  for (uint32_t seq = 1; seq <= 5; ++seq) {
    all.push_back({.order_id = id, .seq = seq, .type = EventType::status_changed,
                   .at_ms = 1000 + seq, .from = OrderStatus::pending,
                   .to = static_cast<OrderStatus>(seq)});
  }
  // Runs of 2, 1 and 2 events, as three batches would have logged them.
  std::string a, b, c;
  codec::encode_events({&all[0], &all[1]}, a);
  codec::encode_events({&all[2]}, b);
  codec::encode_events({&all[3], &all[4]}, c);
  std::string list;
  codec::encode_run_list({a, b, c}, list);
  std::vector<Event> back;
  ASSERT_TRUE(codec::decode_events(id, 1, list, back).ok());
  EXPECT_EQ(back, all);
  for (size_t n = 0; n < list.size(); ++n) {
    std::vector<Event> partial;
    EXPECT_FALSE(codec::decode_events(id, 1, std::string_view(list).substr(0, n), partial).ok()) << n;
  }
  std::vector<Event> ignored;
  EXPECT_FALSE(codec::decode_events(id, 1, list + "x", ignored).ok());
  // A run list inside a run list is not something this codec writes.
  std::string nested;
  nested.push_back(static_cast<char>(codec::kEventRunsFormat));
  codec::put_varint(nested, 1);
  codec::put_bytes(nested, list);
  EXPECT_FALSE(codec::decode_events(id, 1, nested, ignored).ok());
}

// Damaged history bytes (any one byte flipped, in a typed run, a legacy run or a run list)
// decode to an error or to some events, never to a crash (ASan/UBSan builds check the reads).
TEST(Codec, EveryFlippedByteOfAHistoryIsSurvived) {
  OrderId id = OrderId::make(5, PartitionId{1}, 2);
  std::vector<Event> run = {
      {.order_id = id, .seq = 1, .type = EventType::order_placed, .at_ms = 1764395000123},
      {.order_id = id, .seq = 2, .type = EventType::effect_failed, .at_ms = 1764395000125,
       .stage = Stage::payment, .action = Action::authorize, .attempt = 2, .retryable = true,
       .code = "timeout", .message = "no answer"},
      {.order_id = id, .seq = 3, .type = EventType::cancel_requested, .at_ms = 1764395000126,
       .reason = "late"},
      {.order_id = id, .seq = 4, .type = EventType::status_changed, .at_ms = 1764395000127,
       .legacy_data_json = R"({"from":"pending","to":"cancelling"})"},
  };
  std::string first, second, list;
  codec::encode_events({&run[0], &run[1]}, first);
  codec::encode_events({&run[2], &run[3]}, second);
  codec::encode_run_list({first, second}, list);
  for (const std::string& bytes : {first, list}) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      for (uint8_t mask : {0xffu, 0x80u, 0x01u}) {
        std::string x = bytes;
        x[i] = static_cast<char>(x[i] ^ mask);
        std::vector<Event> out;
        (void)codec::decode_events(id, 1, x, out);
      }
    }
  }
}

TEST(Codec, EventFieldsOutOfRangeAreCorrupt) {
  OrderId id = OrderId::make(5, PartitionId{1}, 2);
  Event e{.order_id = id, .seq = 1, .type = EventType::effect_failed, .at_ms = 9,
          .stage = Stage::payment, .action = Action::capture, .attempt = 1};
  std::string good;
  codec::encode_events({&e}, good);
  std::vector<Event> out;
  ASSERT_TRUE(codec::decode_events(id, 1, good, out).ok());
  // Bytes: format, count, type, time, stage, action, attempt, code, message, retryable.
  const size_t stage_at = 4, action_at = 5, retryable_at = good.size() - 1;
  for (auto [at, value] : {std::pair<size_t, int>{stage_at, kStageCount},
                           {action_at, kActionCount}, {retryable_at, 2}}) {
    std::string bad = good;
    bad[at] = static_cast<char>(value);
    out.clear();
    EXPECT_FALSE(codec::decode_events(id, 1, bad, out).ok()) << at;
  }
  Event s{.order_id = id, .seq = 1, .type = EventType::status_changed, .at_ms = 9};
  std::string status;
  codec::encode_events({&s}, status);
  status[5] = static_cast<char>(kOrderStatusCount);  // `to`
  out.clear();
  EXPECT_FALSE(codec::decode_events(id, 1, status, out).ok());
  std::string unknown = good;
  unknown[0] = 4;
  EXPECT_FALSE(codec::decode_events(id, 1, unknown, out).ok());
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
