#include "core/order_json.h"

#include <simdjson.h>

#include <algorithm>
#include <optional>

#include "core/clock.h"
#include "core/json_writer.h"
#include "core/order_machine.h"

namespace orderflow {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

// A field's path (`tip_cents`, `items[3].sku`, `metadata.channel`), put together only when a
// violation names it: validating a valid order builds no strings (it did, for every field,
// and that was most of the parse's time: docs/performance.md).
struct Path {
  std::string_view head;                // a top-level field
  int64_t index = -1;                   // then [index], for an element of an array
  std::optional<std::string_view> key;  // then .key, for a member of an object

  std::string str() const {
    std::string s(head);
    if (index >= 0) s.append("[").append(std::to_string(index)).append("]");
    if (key) s.append(".").append(*key);
    return s;
  }
};

// Collects violations while walking a document.
class Violations {
 public:
  void add(const Path& field, std::string reason) { add(field.str(), std::move(reason)); }
  void add(std::string field, std::string reason) {
    // Bound the error report itself: a 64 KiB body can hold thousands of bad fields.
    if (list_.size() < kMax) list_.push_back({std::move(field), std::move(reason)});
  }
  bool empty() const { return list_.empty(); }
  Error to_error() && {
    std::string msg = list_.size() == 1 ? list_[0].field + ": " + list_[0].reason
                                        : std::to_string(list_.size()) + " invalid fields";
    return Error{Errc::invalid_argument, "request is invalid: " + msg, std::move(list_)};
  }

 private:
  static constexpr size_t kMax = 100;
  std::vector<FieldViolation> list_;
};

bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == ':' || c == '-';
}

const char* kTokenRule = "must be 1-64 characters of [A-Za-z0-9._:-]";

// Reads an integer field strictly: JSON integers only (no 1.5, 1e3 or "2").
bool read_int(element e, const Path& path, int64_t lo, int64_t hi, Violations& v,
              int64_t& out) {
  // A UINT64 is larger than INT64_MAX: out of range like any other number outside [lo, hi].
  if (e.type() == element_type::INT64) {
    out = int64_t(e);
    if (out >= lo && out <= hi) return true;
  }
  v.add(path, "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
  return false;
}

bool read_string(element e, const Path& path, Violations& v, std::string_view& out) {
  if (e.type() != element_type::STRING) {
    v.add(path, "must be a string");
    return false;
  }
  out = std::string_view(e);
  return true;
}

void read_token(element e, const Path& path, Violations& v, std::string& out) {
  std::string_view s;
  if (!read_string(e, path, v, s)) return;
  if (!is_valid_token(s, OrderLimits::id_chars_max)) {
    v.add(path, kTokenRule);
    return;
  }
  out.assign(s);
}

void read_text(element e, const Path& path, size_t min_chars, size_t max_chars,
               Violations& v, std::string& out) {
  std::string_view s;
  if (!read_string(e, path, v, s)) return;
  size_t n = utf8_length(s);
  if (n < min_chars || n > max_chars) {
    v.add(path, "must be " + std::to_string(min_chars) + "-" + std::to_string(max_chars) +
                    " characters");
    return;
  }
  out.assign(s);
}

Error json_error(simdjson::error_code code) {
  if (code == simdjson::NUMBER_ERROR || code == simdjson::NUMBER_OUT_OF_RANGE) {
    // simdjson 3.0 reports a malformed number and one beyond 64 bits alike.
    return make_error(Errc::invalid_json,
                      "body is not valid JSON: a number is malformed or outside the 64-bit range");
  }
  return make_error(Errc::invalid_json,
                    std::string("body is not valid JSON: ") + simdjson::error_message(code));
}

simdjson::dom::parser& thread_parser() {
  // One parser per thread: it reuses its buffers across requests. Bodies are at most 64 KiB
  // (enforced by the HTTP layer), so its capacity stays bounded.
  thread_local simdjson::dom::parser parser;
  return parser;
}

void parse_item(element e, int64_t index, Violations& v, LineItem& item) {
  simdjson::dom::object obj;
  if (e.get_object().get(obj)) {
    v.add(Path{"items", index}, "must be an object");
    return;
  }
  bool has_sku = false, has_qty = false, has_price = false;
  for (auto field : obj) {
    std::string_view k = field.key;
    Path p{"items", index, k};
    if (k == "sku") {
      if (has_sku) { v.add(p, "duplicate field"); continue; }
      has_sku = true;
      read_token(field.value, p, v, item.sku);
    } else if (k == "quantity") {
      if (has_qty) { v.add(p, "duplicate field"); continue; }
      has_qty = true;
      read_int(field.value, p, OrderLimits::quantity_min, OrderLimits::quantity_max, v,
               item.quantity);
    } else if (k == "unit_price_cents") {
      if (has_price) { v.add(p, "duplicate field"); continue; }
      has_price = true;
      read_int(field.value, p, 0, OrderLimits::cents_max, v, item.unit_price_cents);
    } else {
      v.add(p, "unknown field");
    }
  }
  if (!has_sku) v.add(Path{"items", index, "sku"}, "is required");
  if (!has_qty) v.add(Path{"items", index, "quantity"}, "is required");
  if (!has_price) v.add(Path{"items", index, "unit_price_cents"}, "is required");
}

}  // namespace

bool is_valid_token(std::string_view s, size_t max_chars) {
  if (s.empty() || s.size() > max_chars) return false;
  return std::all_of(s.begin(), s.end(), token_char);
}

namespace {
Result<OrderRequest> parse_order_element(element doc, const std::string& prefix);
}  // namespace

Result<OrderRequest> parse_order_request(std::string_view body) {
  element doc;
  if (auto err = thread_parser().parse(body.data(), body.size()).get(doc)) return json_error(err);
  return parse_order_element(doc, "");
}

Result<std::vector<BatchItem>> parse_order_batch(std::string_view body) {
  element doc;
  if (auto err = thread_parser().parse(body.data(), body.size()).get(doc)) return json_error(err);
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) return make_error(Errc::invalid_argument, "body must be a JSON object");
  simdjson::dom::array orders;
  bool seen = false;
  for (auto field : obj) {
    std::string_view k = field.key;
    if (k != "orders") {
      return Error{Errc::invalid_argument, std::string(k) + ": unknown field",
                   {{std::string(k), "unknown field"}}};
    }
    if (seen || field.value.get_array().get(orders)) {
      return Error{Errc::invalid_argument, "orders: must be one array",
                   {{"orders", "must be an array of {idempotency_key, order}"}}};
    }
    seen = true;
  }
  if (!seen) return Error{Errc::invalid_argument, "orders: is required", {{"orders", "is required"}}};
  size_t n = orders.size();
  if (n < 1 || n > kBatchOrdersMax) {
    return Error{Errc::invalid_argument, "orders: must have 1-1000 entries",
                 {{"orders", "must have 1-1000 entries"}}};
  }
  std::vector<BatchItem> items;
  items.reserve(n);
  size_t i = 0;
  for (element entry : orders) {
    std::string path = "orders[" + std::to_string(i++) + "]";
    BatchItem item{{}, make_error(Errc::invalid_argument, "")};
    simdjson::dom::object eo;
    if (entry.get_object().get(eo)) {
      item.request = Error{Errc::invalid_argument, path + ": must be an object",
                           {{path, "must be {idempotency_key, order}"}}};
      items.push_back(std::move(item));
      continue;
    }
    std::vector<FieldViolation> bad;
    std::optional<element> order;
    for (auto field : eo) {
      std::string_view k = field.key;
      std::string_view v;
      if (k == "idempotency_key") {
        if (field.value.get_string().get(v) || !is_valid_idempotency_key(v)) {
          bad.push_back({path + ".idempotency_key", "must be 1-128 characters of [A-Za-z0-9._:-]"});
        } else {
          item.idempotency_key.assign(v);
        }
      } else if (k == "order") {
        order = field.value;
      } else {
        bad.push_back({path + "." + std::string(k), "unknown field"});
      }
    }
    if (item.idempotency_key.empty() && bad.empty()) {
      bad.push_back({path + ".idempotency_key", "is required"});
    }
    if (!order) bad.push_back({path + ".order", "is required"});
    if (!bad.empty()) {
      std::string msg = bad.front().field + ": " + bad.front().reason;
      item.request = Error{Errc::invalid_argument, std::move(msg), std::move(bad)};
    } else {
      item.request = parse_order_element(*order, path + ".order.");
    }
    items.push_back(std::move(item));
  }
  return items;
}

namespace {
Result<OrderRequest> parse_order_element(element doc, const std::string& prefix) {
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) {
    return make_error(Errc::invalid_argument,
                      prefix.empty() ? "body must be a JSON object" : prefix + ": must be an object");
  }

  OrderRequest req;
  Violations v;
  enum Field { kCustomer, kMerchant, kItems, kCurrency, kPayment, kAddress, kTip, kMetadata, kN };
  static constexpr const char* kNames[kN] = {"customer_id",    "merchant_id",      "items",
                                             "currency",       "payment_method",   "delivery_address",
                                             "tip_cents",      "metadata"};
  bool seen[kN] = {};
  for (auto field : obj) {
    std::string_view k = field.key;
    int f = -1;
    for (int i = 0; i < kN; ++i) {
      if (k == kNames[i]) f = i;
    }
    Path path{k};
    if (f < 0) {
      v.add(path, "unknown field");
      continue;
    }
    if (seen[f]) {
      v.add(path, "duplicate field");
      continue;
    }
    seen[f] = true;
    element e = field.value;
    switch (f) {
      case kCustomer: read_token(e, path, v, req.customer_id); break;
      case kMerchant: read_token(e, path, v, req.merchant_id); break;
      case kCurrency: {
        std::string_view s;
        if (!read_string(e, path, v, s)) break;
        if (s.size() != 3 || !std::all_of(s.begin(), s.end(), [](char c) {
              return c >= 'A' && c <= 'Z';
            })) {
          v.add(path, "must be three uppercase letters (ISO 4217)");
          break;
        }
        req.currency.assign(s);
        break;
      }
      case kPayment:
        read_text(e, path, 1, OrderLimits::payment_method_chars_max, v, req.payment_method);
        break;
      case kAddress:
        read_text(e, path, 1, OrderLimits::address_chars_max, v, req.delivery_address);
        break;
      case kTip: read_int(e, path, 0, OrderLimits::cents_max, v, req.tip_cents); break;
      case kItems: {
        simdjson::dom::array arr;
        if (e.get_array().get(arr)) {
          v.add(path, "must be an array");
          break;
        }
        size_t n = arr.size();
        if (n < 1 || n > OrderLimits::items_max) {
          v.add(path, "must have 1-100 entries");
          break;
        }
        req.items.resize(n);
        size_t i = 0;
        for (element item : arr) {
          parse_item(item, static_cast<int64_t>(i), v, req.items[i]);
          ++i;
        }
        break;
      }
      case kMetadata: {
        simdjson::dom::object m;
        if (e.get_object().get(m)) {
          v.add(path, "must be an object of string values");
          break;
        }
        if (m.size() > OrderLimits::metadata_entries_max) {
          v.add(path, "must have at most 16 entries");
          break;
        }
        for (auto entry : m) {
          std::string_view mk = entry.key;
          Path p{"metadata", -1, mk};
          size_t kn = utf8_length(mk);
          if (kn < 1 || kn > OrderLimits::metadata_key_chars_max) {
            v.add(p, "key must be 1-64 characters");
            continue;
          }
          std::string value;
          read_text(entry.value, p, 0, OrderLimits::metadata_value_chars_max, v, value);
          req.metadata.emplace_back(std::string(mk), std::move(value));
        }
        std::sort(req.metadata.begin(), req.metadata.end());
        for (size_t i = 1; i < req.metadata.size(); ++i) {
          if (req.metadata[i].first == req.metadata[i - 1].first) {
            v.add("metadata." + req.metadata[i].first, "duplicate key");
          }
        }
        break;
      }
    }
  }
  for (int f : {kCustomer, kMerchant, kItems, kCurrency, kPayment, kAddress}) {
    if (!seen[f]) v.add(kNames[f], "is required");
  }
  if (!v.empty()) {
    Error e = std::move(v).to_error();
    if (!prefix.empty()) {
      for (auto& d : e.details) d.field = prefix + d.field;
      e.message = "request is invalid: " + (e.details.size() == 1
                                                ? e.details[0].field + ": " + e.details[0].reason
                                                : std::to_string(e.details.size()) + " invalid fields");
    }
    return e;
  }
  return req;
}
}  // namespace

Result<std::string> parse_cancel_request(std::string_view body) {
  if (std::all_of(body.begin(), body.end(), [](char c) {
        return c == ' ' || c == '\n' || c == '\r' || c == '\t';
      })) {
    return std::string();
  }
  element doc;
  if (auto err = thread_parser().parse(body.data(), body.size()).get(doc)) return json_error(err);
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) {
    return make_error(Errc::invalid_argument, "body must be a JSON object");
  }
  Violations v;
  std::string reason;
  bool seen = false;
  for (auto field : obj) {
    std::string_view k = field.key;
    if (k != "reason") {
      v.add(std::string(k), "unknown field");
    } else if (seen) {
      v.add("reason", "duplicate field");
    } else {
      seen = true;
      read_text(field.value, Path{"reason"}, 0, OrderLimits::cancel_reason_chars_max, v, reason);
    }
  }
  if (!v.empty()) return std::move(v).to_error();
  return reason;
}

namespace {
void write_request_fields(JsonWriter& w, const OrderRequest& r) {
  w.field("customer_id", r.customer_id).field("merchant_id", r.merchant_id);
  w.key("items").begin_array();
  for (const LineItem& it : r.items) {
    w.begin_object()
        .field("sku", it.sku)
        .field("quantity", it.quantity)
        .field("unit_price_cents", it.unit_price_cents)
        .end_object();
  }
  w.end_array();
  w.field("currency", r.currency)
      .field("payment_method", r.payment_method)
      .field("delivery_address", r.delivery_address)
      .field("tip_cents", r.tip_cents);
  w.key("metadata").begin_object();
  for (const auto& [k, val] : r.metadata) w.field(k, val);
  w.end_object();
}
}  // namespace

void render_order(const Order& o, std::string& out) {
  JsonWriter w(out);
  w.begin_object();
  w.field("id", o.id.str());
  write_request_fields(w, o.request);
  w.field("subtotal_cents", o.subtotal_cents)
      .field("total_cents", o.total_cents)
      .field("status", status_name(o.status))
      .field("version", o.version)
      .field("created_at", format_rfc3339_ms(o.created_at_ms))
      .field("updated_at", format_rfc3339_ms(o.updated_at_ms));
  auto write_failure = [&w](const std::optional<Failure>& f) {
    if (!f) {
      w.null();
      return;
    }
    w.begin_object().field("stage", f->stage).field("code", f->code).field("message", f->message)
        .end_object();
  };
  w.key("failure");
  write_failure(o.failure);
  w.key("payment")
      .begin_object()
      .field("status", payment_status_name(o.payment.status))
      .field("authorized_cents", o.payment.authorized_cents)
      .field("captured_cents", o.payment.captured_cents)
      .end_object();
  w.key("courier_id");
  if (o.courier_id.empty()) {
    w.null();
  } else {
    w.value(o.courier_id);
  }
  w.key("attention");
  write_failure(o.attention);
  w.end_object();
}

void render_event(const Event& e, const OrderRequest& placed, std::string& out) {
  JsonWriter w(out);
  w.begin_object()
      .field("seq", e.seq)
      .field("type", event_type_name(e.type))
      .field("at", format_rfc3339_ms(e.at_ms));
  w.key("data");
  if (!e.legacy_data_json.empty()) {
    w.raw(e.legacy_data_json);
    w.end_object();
    return;
  }
  w.begin_object();
  auto step_fields = [&] { w.field("stage", stage_name(e.stage)).field("action", action_name(e.action)); };
  auto effect_fields = [&] {
    step_fields();
    w.field("attempt", e.attempt)
        .field("idempotency_key", effect_idempotency_key(e.order_id, e.stage, e.action));
  };
  switch (e.type) {
    case EventType::order_placed:
      write_request_fields(w, placed);
      break;
    case EventType::status_changed:
      w.field("from", status_name(e.from)).field("to", status_name(e.to));
      break;
    case EventType::cancel_requested:
      w.field("reason", e.reason);
      break;
    case EventType::effect_requested:
      effect_fields();
      break;
    case EventType::effect_succeeded:
      effect_fields();
      if (!e.courier_id.empty()) w.field("courier_id", e.courier_id);
      break;
    case EventType::effect_failed:
      effect_fields();
      w.field("code", e.code).field("message", e.message).field("retryable", e.retryable);
      break;
    case EventType::redriven:
      step_fields();
      break;
  }
  w.end_object();
  w.end_object();
}

}  // namespace orderflow
