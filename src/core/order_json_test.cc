#include "core/order_json.h"

#include <gtest/gtest.h>

#include <map>

namespace orderflow {
namespace {

// A valid body, with fields replaced (raw JSON) or removed (nullopt).
std::string body(std::map<std::string, std::optional<std::string>> changes = {}) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"customer_id", R"("c-1")"},
      {"merchant_id", R"("m-7")"},
      {"items", R"([{"sku":"burger","quantity":2,"unit_price_cents":899}])"},
      {"currency", R"("USD")"},
      {"payment_method", R"("tok_visa")"},
      {"delivery_address", R"("1 Main St, Springfield")"},
      {"tip_cents", "200"},
      {"metadata", R"({"channel":"ios"})"},
  };
  for (auto& [k, v] : changes) {
    bool found = false;
    for (auto& f : fields) {
      if (f.first == k) {
        found = true;
        if (v) f.second = *v;
      }
    }
    if (!found && v) fields.emplace_back(k, *v);
  }
  std::string out = "{";
  for (auto& [k, v] : fields) {
    if (changes.count(k) && !changes[k]) continue;
    if (out.size() > 1) out += ",";
    out += "\"" + k + "\":" + v;
  }
  return out + "}";
}

std::string str(const std::string& s) { return "\"" + s + "\""; }
std::string item(const std::string& sku, const std::string& qty, const std::string& price) {
  return R"({"sku":)" + sku + R"(,"quantity":)" + qty + R"(,"unit_price_cents":)" + price + "}";
}
std::string items(size_t n) {
  std::string out = "[";
  for (size_t i = 0; i < n; ++i) out += (i ? "," : "") + item(str("s" + std::to_string(i)), "1", "1");
  return out + "]";
}
std::string utf8_chars(size_t n) {  // n code points, 2 bytes each
  std::string s;
  for (size_t i = 0; i < n; ++i) s += "\xc3\xa9";
  return s;
}
std::string metadata(size_t n) {
  std::string out = "{";
  for (size_t i = 0; i < n; ++i) out += (i ? "," : "") + str("k" + std::to_string(i)) + ":\"v\"";
  return out + "}";
}

// Expects exactly one violation, at `field`.
void expect_violation(const std::string& b, const std::string& field) {
  auto r = parse_order_request(b);
  ASSERT_FALSE(r.ok()) << b;
  EXPECT_EQ(r.error().code, Errc::invalid_argument) << b;
  ASSERT_EQ(r.error().details.size(), 1u) << r.error().message;
  EXPECT_EQ(r.error().details[0].field, field) << b;
}
void expect_ok(const std::string& b) {
  auto r = parse_order_request(b);
  EXPECT_TRUE(r.ok()) << b << " → " << (r.ok() ? "" : r.error().message);
}

TEST(OrderRequest, ParsesTheDocumentedExample) {
  auto r = parse_order_request(body());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->customer_id, "c-1");
  EXPECT_EQ(r->merchant_id, "m-7");
  ASSERT_EQ(r->items.size(), 1u);
  EXPECT_EQ(r->items[0], (LineItem{"burger", 2, 899}));
  EXPECT_EQ(r->currency, "USD");
  EXPECT_EQ(r->tip_cents, 200);
  ASSERT_EQ(r->metadata.size(), 1u);
  EXPECT_EQ(r->metadata[0].first, "channel");
}

TEST(OrderRequest, DefaultsAndCanonicalEquality) {
  auto a = parse_order_request(body({{"tip_cents", std::nullopt}, {"metadata", std::nullopt}}));
  auto b = parse_order_request(body({{"tip_cents", "0"}, {"metadata", "{}"}}));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->tip_cents, 0);
  EXPECT_EQ(*a, *b);
  auto c = parse_order_request(body({{"metadata", R"({"x":"1","a":"2"})"}}));
  auto d = parse_order_request(body({{"metadata", R"( { "a" : "2" , "x" : "1" } )"}}));
  ASSERT_TRUE(c.ok() && d.ok());
  EXPECT_EQ(*c, *d);
  auto e = parse_order_request(body({{"tip_cents", "1"}}));
  EXPECT_FALSE(*e == *b);
}

TEST(OrderRequest, TokenFieldsBothSides) {
  for (const char* f : {"customer_id", "merchant_id"}) {
    expect_ok(body({{f, str(std::string(64, 'a'))}}));
    expect_ok(body({{f, str("aZ09._:-")}}));
    expect_violation(body({{f, str(std::string(65, 'a'))}}), f);
    expect_violation(body({{f, str("")}}), f);
    expect_violation(body({{f, str("a b")}}), f);
    expect_violation(body({{f, str("a/b")}}), f);
    expect_violation(body({{f, "7"}}), f);
    expect_violation(body({{f, std::nullopt}}), f);
  }
  expect_ok(body({{"items", "[" + item(str(std::string(64, 's')), "1", "1") + "]"}}));
  expect_violation(body({{"items", "[" + item(str(std::string(65, 's')), "1", "1") + "]"}}),
                   "items[0].sku");
  expect_violation(body({{"items", "[" + item(str(""), "1", "1") + "]"}}), "items[0].sku");
}

TEST(OrderRequest, ItemsCountBothSides) {
  expect_ok(body({{"items", items(1)}}));
  expect_ok(body({{"items", items(100)}}));
  expect_violation(body({{"items", items(0)}}), "items");
  expect_violation(body({{"items", items(101)}}), "items");
  expect_violation(body({{"items", "{}"}}), "items");
  expect_violation(body({{"items", std::nullopt}}), "items");
}

TEST(OrderRequest, QuantityBothSides) {
  expect_ok(body({{"items", "[" + item(str("a"), "1", "1") + "]"}}));
  expect_ok(body({{"items", "[" + item(str("a"), "1000", "1") + "]"}}));
  expect_violation(body({{"items", "[" + item(str("a"), "0", "1") + "]"}}), "items[0].quantity");
  expect_violation(body({{"items", "[" + item(str("a"), "1001", "1") + "]"}}), "items[0].quantity");
  expect_violation(body({{"items", "[" + item(str("a"), "-1", "1") + "]"}}), "items[0].quantity");
}

TEST(OrderRequest, CentsBothSides) {
  expect_ok(body({{"items", "[" + item(str("a"), "1", "0") + "]"}}));
  expect_ok(body({{"items", "[" + item(str("a"), "1", "10000000") + "]"}}));
  expect_violation(body({{"items", "[" + item(str("a"), "1", "10000001") + "]"}}),
                   "items[0].unit_price_cents");
  expect_violation(body({{"items", "[" + item(str("a"), "1", "-1") + "]"}}),
                   "items[0].unit_price_cents");
  expect_ok(body({{"tip_cents", "0"}}));
  expect_ok(body({{"tip_cents", "10000000"}}));
  expect_violation(body({{"tip_cents", "10000001"}}), "tip_cents");
  expect_violation(body({{"tip_cents", "-1"}}), "tip_cents");
}

TEST(OrderRequest, NumbersMustBeJsonIntegers) {
  for (const char* bad : {"1.5", "1e3", "1.0", "\"2\"", "true", "null", "18446744073709551615"}) {
    expect_violation(body({{"tip_cents", bad}}), "tip_cents");
    expect_violation(body({{"items", "[" + item(str("a"), bad, "1") + "]"}}), "items[0].quantity");
  }
}

TEST(OrderRequest, NumbersBeyond64BitsAreRejectedAsMalformed) {
  // simdjson 3.0 cannot tell these from malformed numbers; docs/api.md says so.
  for (const char* huge : {"99999999999999999999999", "-99999999999999999999", "1e999"}) {
    auto r = parse_order_request(body({{"tip_cents", huge}}));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::invalid_json);
  }
}

TEST(OrderRequest, ItemPathsNameTheEntry) {
  std::string list = "[" + item(str("a"), "1", "1") + "," + item(str("b"), "1", "1") + "," +
                     item(str("c"), "1", "1") + "," + item(str("bad sku"), "1", "1") + "]";
  expect_violation(body({{"items", list}}), "items[3].sku");
  expect_violation(body({{"items", R"([{"sku":"a","quantity":1}])"}}), "items[0].unit_price_cents");
  expect_violation(body({{"items", R"([{"sku":"a","quantity":1,"unit_price_cents":1,"x":1}])"}}),
                   "items[0].x");
  expect_violation(body({{"items", R"([7])"}}), "items[0]");
}

TEST(OrderRequest, CurrencyBothSides) {
  expect_ok(body({{"currency", str("EUR")}}));
  for (const char* bad : {"usd", "US", "USDX", "U5D", ""}) {
    expect_violation(body({{"currency", str(bad)}}), "currency");
  }
}

TEST(OrderRequest, PaymentMethodBothSides) {
  expect_ok(body({{"payment_method", str(std::string(64, 'p'))}}));
  expect_ok(body({{"payment_method", str(utf8_chars(64))}}));
  expect_violation(body({{"payment_method", str(std::string(65, 'p'))}}), "payment_method");
  expect_violation(body({{"payment_method", str("")}}), "payment_method");
}

TEST(OrderRequest, AddressCountsCodePoints) {
  expect_ok(body({{"delivery_address", str(utf8_chars(512))}}));  // 1024 bytes, 512 chars
  expect_ok(body({{"delivery_address", str(std::string(512, 'a'))}}));
  expect_violation(body({{"delivery_address", str(utf8_chars(513))}}), "delivery_address");
  expect_violation(body({{"delivery_address", str(std::string(513, 'a'))}}), "delivery_address");
  expect_violation(body({{"delivery_address", str("")}}), "delivery_address");
  // Invalid UTF-8 anywhere makes the document malformed.
  auto r = parse_order_request(body({{"delivery_address", "\"\xff\xfe\""}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, Errc::invalid_json);
}

TEST(OrderRequest, MetadataBothSides) {
  expect_ok(body({{"metadata", metadata(16)}}));
  expect_violation(body({{"metadata", metadata(17)}}), "metadata");
  expect_ok(body({{"metadata", "{" + str(std::string(64, 'k')) + ":\"v\"}"}}));
  expect_violation(body({{"metadata", "{" + str(std::string(65, 'k')) + ":\"v\"}"}}),
                   "metadata." + std::string(65, 'k'));
  expect_violation(body({{"metadata", R"({"":"v"})"}}), "metadata.");
  expect_ok(body({{"metadata", "{\"k\":" + str(std::string(256, 'v')) + "}"}}));
  expect_ok(body({{"metadata", R"({"k":""})"}}));
  expect_violation(body({{"metadata", "{\"k\":" + str(std::string(257, 'v')) + "}"}}),
                   "metadata.k");
  expect_violation(body({{"metadata", R"({"k":1})"}}), "metadata.k");
  expect_violation(body({{"metadata", R"({"k":"a","k":"b"})"}}), "metadata.k");
  expect_violation(body({{"metadata", "[]"}}), "metadata");
}

TEST(OrderRequest, UnknownDuplicateAndMissingFields) {
  expect_violation(body({{"coupon", str("FREE")}}), "coupon");
  auto r = parse_order_request(R"({"customer_id":"c","customer_id":"d"})");
  ASSERT_FALSE(r.ok());
  bool dup = false;
  for (auto& d : r.error().details) dup |= d.field == "customer_id" && d.reason == "duplicate field";
  EXPECT_TRUE(dup);
  auto empty = parse_order_request("{}");
  ASSERT_FALSE(empty.ok());
  EXPECT_EQ(empty.error().details.size(), 6u);  // every required field, each listed
}

TEST(OrderRequest, EveryViolationIsListed) {
  auto r = parse_order_request(body({{"customer_id", str("")}, {"currency", str("us")},
                                     {"tip_cents", "1.5"}}));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().details.size(), 3u);
}

TEST(OrderRequest, MalformedJsonAndWrongShapes) {
  for (const char* bad : {"", "{", "{\"a\":}", "nul", "{\"customer_id\":\"c\",}", "\x01"}) {
    auto r = parse_order_request(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().code, Errc::invalid_json) << bad;
  }
  for (const char* shape : {"[]", "7", "\"order\"", "null"}) {
    auto r = parse_order_request(shape);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::invalid_argument) << shape;
  }
}

TEST(IdempotencyKey, Bounds) {
  EXPECT_TRUE(is_valid_idempotency_key("a"));
  EXPECT_TRUE(is_valid_idempotency_key(std::string(128, 'k')));
  EXPECT_FALSE(is_valid_idempotency_key(std::string(129, 'k')));
  EXPECT_FALSE(is_valid_idempotency_key(""));
  EXPECT_FALSE(is_valid_idempotency_key("a b"));
  EXPECT_TRUE(is_valid_idempotency_key("Az09._:-"));
}

TEST(CancelRequest, ReasonIsOptionalAndBounded) {
  EXPECT_EQ(*parse_cancel_request(""), "");
  EXPECT_EQ(*parse_cancel_request("  \n"), "");
  EXPECT_EQ(*parse_cancel_request("{}"), "");
  EXPECT_EQ(*parse_cancel_request(R"({"reason":"changed my mind"})"), "changed my mind");
  EXPECT_TRUE(parse_cancel_request("{\"reason\":" + str(std::string(512, 'r')) + "}").ok());
  EXPECT_EQ(parse_cancel_request("{\"reason\":" + str(std::string(513, 'r')) + "}").error().code,
            Errc::invalid_argument);
  EXPECT_EQ(parse_cancel_request(R"({"why":"x"})").error().code, Errc::invalid_argument);
  EXPECT_EQ(parse_cancel_request(R"({"reason":5})").error().code, Errc::invalid_argument);
  EXPECT_EQ(parse_cancel_request("{").error().code, Errc::invalid_json);
}

TEST(Render, OrderJsonEscapesAndRoundTrips) {
  auto req = parse_order_request(body({{"delivery_address", R"("line \"1\"\nline\\2 \u0001")"}}));
  ASSERT_TRUE(req.ok());
  Order o;
  o.id = OrderId::make(1764395000123, PartitionId{1}, 2);
  o.request = *req;
  o.version = 1;
  o.created_at_ms = o.updated_at_ms = 1764395000123;
  std::string json;
  render_order(o, json);
  EXPECT_NE(json.find(R"("created_at":"2025-11-29T05:43:20.123Z")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("failure":null)"), std::string::npos);
  // The order_placed event's data is the request: it parses back to the same request.
  Event placed;
  placed.order_id = o.id;
  placed.seq = 1;
  placed.at_ms = o.created_at_ms;
  std::string event;
  render_event(placed, o.request, event);
  const std::string head = R"({"seq":1,"type":"order_placed","at":"2025-11-29T05:43:20.123Z","data":)";
  ASSERT_EQ(event.substr(0, head.size()), head) << event;
  std::string data = event.substr(head.size(), event.size() - head.size() - 1);
  auto back = parse_order_request(data);
  ASSERT_TRUE(back.ok()) << data;
  EXPECT_EQ(*back, o.request);
}

// The data object of every event type, exactly as GET /v1/orders/{id}/events shows it.
TEST(Render, EveryEventTypeRendersItsData) {
  const OrderId id = OrderId::make(1764395000123, PartitionId{1}, 2);
  auto data_of = [&](const Event& e) {
    std::string out;
    render_event(e, OrderRequest{}, out);
    const size_t at = out.find(R"("data":)");
    return out.substr(at + 7, out.size() - at - 8);
  };
  Event e;
  e.order_id = id;
  e.type = EventType::status_changed;
  e.from = OrderStatus::merchant_confirmed;
  e.to = OrderStatus::cancelling;
  EXPECT_EQ(data_of(e), R"({"from":"merchant_confirmed","to":"cancelling"})");

  e = Event{.order_id = id, .type = EventType::cancel_requested, .reason = "said \"no\""};
  EXPECT_EQ(data_of(e), R"({"reason":"said \"no\""})");

  const std::string key = id.str() + ":dispatch:assign";
  e = Event{.order_id = id, .type = EventType::effect_requested, .stage = Stage::dispatch,
            .action = Action::assign, .attempt = 3};
  EXPECT_EQ(data_of(e), R"({"stage":"dispatch","action":"assign","attempt":3,"idempotency_key":")" +
                            key + R"("})");
  e.type = EventType::effect_succeeded;
  EXPECT_EQ(data_of(e), R"({"stage":"dispatch","action":"assign","attempt":3,"idempotency_key":")" +
                            key + R"("})");
  e.courier_id = "courier-7";
  EXPECT_EQ(data_of(e), R"({"stage":"dispatch","action":"assign","attempt":3,"idempotency_key":")" +
                            key + R"(","courier_id":"courier-7"})");
  e = Event{.order_id = id, .type = EventType::effect_failed, .stage = Stage::payment,
            .action = Action::authorize, .attempt = 1, .retryable = true, .code = "timeout",
            .message = "no answer"};
  EXPECT_EQ(data_of(e), R"({"stage":"payment","action":"authorize","attempt":1,"idempotency_key":")" +
                            id.str() +
                            R"(:payment:authorize","code":"timeout","message":"no answer","retryable":true})");

  e = Event{.order_id = id, .type = EventType::redriven, .stage = Stage::payment,
            .action = Action::capture};
  EXPECT_EQ(data_of(e), R"({"stage":"payment","action":"capture"})");

  // An event stored before the typed encoding shows its data as it was written.
  e = Event{.order_id = id, .type = EventType::status_changed,
            .legacy_data_json = R"({"from":"pending","to":"inventory_reserved"})"};
  EXPECT_EQ(data_of(e), R"({"from":"pending","to":"inventory_reserved"})");
}

}  // namespace
}  // namespace orderflow
