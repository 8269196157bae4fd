#include "storage/codec.h"

namespace orderflow::codec {
namespace {

Error corrupt(const char* what) {
  return make_error(Errc::internal, std::string("corrupt record: ") + what);
}

// Zig-zag keeps small negative numbers small; amounts are never negative today, but the
// format should not assume it.
uint64_t zigzag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t unzigzag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

void put_failure(std::string& out, const std::optional<Failure>& f);

bool read_failure(Reader& rd, uint8_t present, std::optional<Failure>& out) {
  if (!present) return true;
  Failure f;
  if (!rd.bytes(f.stage) || !rd.bytes(f.code) || !rd.bytes(f.message)) return false;
  out = std::move(f);
  return true;
}

}  // namespace

namespace {
void put_failure(std::string& out, const std::optional<Failure>& f) {
  out.push_back(f ? 1 : 0);
  if (f) {
    put_bytes(out, f->stage);
    put_bytes(out, f->code);
    put_bytes(out, f->message);
  }
}
}  // namespace

void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void put_bytes(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

bool Reader::varint(uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in_.empty()) return false;
    uint8_t b = static_cast<uint8_t>(in_[0]);
    in_.remove_prefix(1);
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;  // more than 10 bytes: not a varint we wrote
}

bool Reader::bytes(std::string& s) {
  std::string_view v;
  if (!view(v)) return false;
  s.assign(v);
  return true;
}

bool Reader::view(std::string_view& s) {
  uint64_t n;
  if (!varint(n) || n > in_.size()) return false;
  s = in_.substr(0, n);
  in_.remove_prefix(n);
  return true;
}

bool Reader::byte(uint8_t& b) {
  if (in_.empty()) return false;
  b = static_cast<uint8_t>(in_[0]);
  in_.remove_prefix(1);
  return true;
}

void encode_order(const Order& o, std::string& out) {
  encode_order_fixed(o, out);
  encode_order_state(o, out);
}

void encode_order_fixed(const Order& o, std::string& out) {
  out.push_back(static_cast<char>(kOrderFormat));
  auto id = o.id.bytes();
  out.append(id.data(), id.size());
  put_bytes(out, o.tenant);
  put_bytes(out, o.idempotency_key);
  const OrderRequest& r = o.request;
  put_bytes(out, r.customer_id);
  put_bytes(out, r.merchant_id);
  put_varint(out, r.items.size());
  for (const LineItem& it : r.items) {
    put_bytes(out, it.sku);
    put_varint(out, zigzag(it.quantity));
    put_varint(out, zigzag(it.unit_price_cents));
  }
  put_bytes(out, r.currency);
  put_bytes(out, r.payment_method);
  put_bytes(out, r.delivery_address);
  put_varint(out, zigzag(r.tip_cents));
  put_varint(out, r.metadata.size());
  for (const auto& [k, v] : r.metadata) {
    put_bytes(out, k);
    put_bytes(out, v);
  }
  put_varint(out, zigzag(o.subtotal_cents));
  put_varint(out, zigzag(o.total_cents));
}

void encode_order_state(const Order& o, std::string& out) {
  out.push_back(static_cast<char>(o.status));
  put_varint(out, o.version);
  put_varint(out, o.created_at_ms);
  put_varint(out, o.updated_at_ms);
  put_failure(out, o.failure);
  out.push_back(static_cast<char>(o.payment.status));
  put_varint(out, zigzag(o.payment.authorized_cents));
  put_varint(out, zigzag(o.payment.captured_cents));
  put_bytes(out, o.courier_id);
  const PipelineState& p = o.pipeline;
  out.push_back(static_cast<char>(p.progress));
  out.push_back(static_cast<char>((p.cancel_requested ? 1 : 0) | (p.maybe_done ? 2 : 0)));
  out.push_back(static_cast<char>(p.compensate_below));
  out.push_back(static_cast<char>(p.parked_from));
  out.push_back(p.effect ? 1 : 0);
  if (p.effect) {
    out.push_back(static_cast<char>(p.effect->stage));
    out.push_back(static_cast<char>(p.effect->action));
    put_varint(out, p.effect->attempt);
    out.push_back(static_cast<char>(p.effect->phase));
    put_varint(out, p.effect->not_before_ms);
    put_varint(out, p.effect->deadline_ms);
    put_varint(out, p.effect->started_ms);
    put_varint(out, p.effect->requested_ms);
  }
  put_failure(out, o.attention);
}

Result<OrderId> order_id_of(std::string_view bytes) {
  if (bytes.empty() || static_cast<uint8_t>(bytes[0]) != kOrderFormat) {
    return corrupt("unknown order format");
  }
  if (bytes.size() < 1 + OrderId::kByteLength) return corrupt("truncated order id");
  return *OrderId::from_bytes(bytes.substr(1, OrderId::kByteLength));
}

namespace {

// The fixed part after the format byte and id (see encode_order_fixed).
Status decode_fixed(Reader& rd, Order& o) {
  OrderRequest& r = o.request;
  uint64_t n, v;
  bool ok = rd.bytes(o.tenant) && rd.bytes(o.idempotency_key) && rd.bytes(r.customer_id) &&
            rd.bytes(r.merchant_id) && rd.varint(n);
  if (!ok || n > OrderLimits::items_max) return corrupt("order header");
  r.items.resize(n);
  for (LineItem& it : r.items) {
    uint64_t q, p;
    if (!rd.bytes(it.sku) || !rd.varint(q) || !rd.varint(p)) return corrupt("line item");
    it.quantity = unzigzag(q);
    it.unit_price_cents = unzigzag(p);
  }
  ok = rd.bytes(r.currency) && rd.bytes(r.payment_method) && rd.bytes(r.delivery_address) &&
       rd.varint(v);
  if (!ok) return corrupt("order fields");
  r.tip_cents = unzigzag(v);
  if (!rd.varint(n) || n > OrderLimits::metadata_entries_max) return corrupt("metadata count");
  r.metadata.resize(n);
  for (auto& [k, val] : r.metadata) {
    if (!rd.bytes(k) || !rd.bytes(val)) return corrupt("metadata entry");
  }
  uint64_t sub, tot;
  if (!rd.varint(sub) || !rd.varint(tot)) return corrupt("order amounts");
  o.subtotal_cents = unzigzag(sub);
  o.total_cents = unzigzag(tot);
  return Status::ok_status();
}

Status decode_state(Reader& rd, Order& o) {
  uint64_t ver;
  uint8_t status, has_failure;
  bool ok = rd.byte(status) && rd.varint(ver) && rd.varint(o.created_at_ms) &&
            rd.varint(o.updated_at_ms) && rd.byte(has_failure);
  if (!ok || status >= kOrderStatusCount || ver > UINT32_MAX || has_failure > 1) {
    return corrupt("order state");
  }
  o.status = static_cast<OrderStatus>(status);
  o.version = static_cast<uint32_t>(ver);
  if (!read_failure(rd, has_failure, o.failure)) return corrupt("failure");
  uint8_t pay, progress, flags, below, parked, has_effect;
  uint64_t authorized, captured;
  ok = rd.byte(pay) && rd.varint(authorized) && rd.varint(captured) && rd.bytes(o.courier_id) &&
       rd.byte(progress) && rd.byte(flags) && rd.byte(below) && rd.byte(parked) &&
       rd.byte(has_effect);
  if (!ok || pay >= kPaymentStatusCount || progress > 6 || flags > 3 || below > 6 ||
      parked >= kOrderStatusCount || has_effect > 1) {
    return corrupt("pipeline state");
  }
  o.payment = Payment{static_cast<PaymentStatus>(pay), unzigzag(authorized), unzigzag(captured)};
  PipelineState& p = o.pipeline;
  p.progress = progress;
  p.cancel_requested = flags & 1;
  p.maybe_done = flags & 2;
  p.compensate_below = below;
  p.parked_from = static_cast<OrderStatus>(parked);
  if (has_effect) {
    EffectState e;
    uint8_t stage, action, phase;
    uint64_t attempt;
    ok = rd.byte(stage) && rd.byte(action) && rd.varint(attempt) && rd.byte(phase) &&
         rd.varint(e.not_before_ms) && rd.varint(e.deadline_ms) && rd.varint(e.started_ms) &&
         rd.varint(e.requested_ms);
    if (!ok || stage >= kStageCount || action >= kActionCount || phase > 1 ||
        attempt > UINT32_MAX) {
      return corrupt("effect state");
    }
    e.stage = static_cast<Stage>(stage);
    e.action = static_cast<Action>(action);
    e.attempt = static_cast<uint32_t>(attempt);
    e.phase = static_cast<EffectPhase>(phase);
    p.effect = e;
  }
  uint8_t has_attention;
  if (!rd.byte(has_attention) || has_attention > 1 || !read_failure(rd, has_attention, o.attention)) {
    return corrupt("attention");
  }
  if (!rd.done()) return corrupt("trailing bytes after order");
  return Status::ok_status();
}

}  // namespace

Result<Order> decode_order(std::string_view bytes) {
  auto id = order_id_of(bytes);
  if (!id) return id.take_error();
  Order o;
  o.id = *id;
  Reader rd(bytes.substr(1 + OrderId::kByteLength));
  Status st = decode_fixed(rd, o);
  if (st.ok()) st = decode_state(rd, o);
  if (!st.ok()) return st.error();
  return o;
}

Result<size_t> order_state_offset(std::string_view bytes) {
  if (auto id = order_id_of(bytes); !id) return id.take_error();
  Order scratch;
  Reader rd(bytes.substr(1 + OrderId::kByteLength));
  if (Status st = decode_fixed(rd, scratch); !st.ok()) return st.error();
  return bytes.size() - rd.remaining();
}

namespace {

// In the type byte of an event of format 3: the event is one read from format 2, and its JSON
// data object follows instead of typed fields.
constexpr uint8_t kLegacyData = 0x80;

bool read_enum(Reader& rd, int count, uint8_t& out) { return rd.byte(out) && out < count; }

bool read_u32(Reader& rd, uint32_t& out) {
  uint64_t v;
  if (!rd.varint(v) || v > UINT32_MAX) return false;
  out = static_cast<uint32_t>(v);
  return true;
}

bool read_typed_fields(Reader& rd, Event& e) {
  uint8_t a, b;
  switch (e.type) {
    case EventType::order_placed:
      return true;
    case EventType::status_changed:
      if (!read_enum(rd, kOrderStatusCount, a) || !read_enum(rd, kOrderStatusCount, b)) return false;
      e.from = static_cast<OrderStatus>(a);
      e.to = static_cast<OrderStatus>(b);
      return true;
    case EventType::cancel_requested:
      return rd.bytes(e.reason);
    case EventType::effect_requested:
    case EventType::effect_succeeded:
    case EventType::effect_failed:
    case EventType::redriven:
      if (!read_enum(rd, kStageCount, a) || !read_enum(rd, kActionCount, b)) return false;
      e.stage = static_cast<Stage>(a);
      e.action = static_cast<Action>(b);
      if (e.type == EventType::redriven) return true;
      if (!read_u32(rd, e.attempt)) return false;
      if (e.type == EventType::effect_succeeded) return rd.bytes(e.courier_id);
      if (e.type == EventType::effect_failed) {
        if (!rd.bytes(e.code) || !rd.bytes(e.message) || !read_enum(rd, 2, a)) return false;
        e.retryable = a == 1;
      }
      return true;
  }
  return false;
}

}  // namespace

void encode_events(const std::vector<const Event*>& run, std::string& out) {
  OF_ASSERT(!run.empty());
  out.push_back(static_cast<char>(kEventFormat));
  put_varint(out, run.size());
  uint64_t previous_ms = 0;
  for (size_t i = 0; i < run.size(); ++i) {
    const Event& e = *run[i];
    OF_ASSERT(e.seq == run[0]->seq + i && e.order_id == run[0]->order_id);
    const bool legacy = !e.legacy_data_json.empty();
    out.push_back(static_cast<char>(static_cast<uint8_t>(e.type) | (legacy ? kLegacyData : 0)));
    // An order's events are (nearly always) in time order: the difference is a byte or two.
    put_varint(out, zigzag(static_cast<int64_t>(e.at_ms - previous_ms)));
    previous_ms = e.at_ms;
    if (legacy) {
      put_bytes(out, e.legacy_data_json);
      continue;
    }
    switch (e.type) {
      case EventType::order_placed:
        break;
      case EventType::status_changed:
        out.push_back(static_cast<char>(e.from));
        out.push_back(static_cast<char>(e.to));
        break;
      case EventType::cancel_requested:
        put_bytes(out, e.reason);
        break;
      case EventType::effect_requested:
      case EventType::effect_succeeded:
      case EventType::effect_failed:
      case EventType::redriven:
        out.push_back(static_cast<char>(e.stage));
        out.push_back(static_cast<char>(e.action));
        if (e.type == EventType::redriven) break;
        put_varint(out, e.attempt);
        if (e.type == EventType::effect_succeeded) put_bytes(out, e.courier_id);
        if (e.type == EventType::effect_failed) {
          put_bytes(out, e.code);
          put_bytes(out, e.message);
          out.push_back(e.retryable ? 1 : 0);
        }
        break;
    }
  }
}

void encode_run_list(const std::vector<std::string_view>& runs, std::string& out) {
  OF_ASSERT(!runs.empty());
  out.push_back(static_cast<char>(kEventRunsFormat));
  put_varint(out, runs.size());
  for (std::string_view run : runs) {
    OF_ASSERT(!run.empty() && static_cast<uint8_t>(run[0]) != kEventRunsFormat);
    put_bytes(out, run);
  }
}

Status decode_events(OrderId order_id, uint32_t first_seq, std::string_view bytes,
                     std::vector<Event>& out) {
  if (!bytes.empty() && static_cast<uint8_t>(bytes[0]) == kEventRunsFormat) {
    Reader rd(bytes.substr(1));
    uint64_t n;
    if (!rd.varint(n) || n == 0 || n > 1000000) return corrupt("run count");
    uint32_t seq = first_seq;
    for (uint64_t i = 0; i < n; ++i) {
      std::string_view run;
      if (!rd.view(run) || run.empty() || static_cast<uint8_t>(run[0]) == kEventRunsFormat) {
        return corrupt("run in a run list");
      }
      const size_t before = out.size();
      if (Status st = decode_events(order_id, seq, run, out); !st.ok()) return st;
      seq += static_cast<uint32_t>(out.size() - before);
    }
    if (!rd.done()) return corrupt("trailing bytes after runs");
    return Status::ok_status();
  }
  Reader rd(bytes);
  uint8_t format;
  uint64_t count;
  if (!rd.byte(format) || (format != kEventFormat && format != kEventFormatJson)) {
    return corrupt("unknown event format");
  }
  if (!rd.varint(count) || count == 0 || count > 1000000) return corrupt("event count");
  uint64_t previous_ms = 0;
  for (uint64_t i = 0; i < count; ++i) {
    Event e;
    uint8_t type;
    e.order_id = order_id;
    e.seq = first_seq + static_cast<uint32_t>(i);
    if (!rd.byte(type)) return corrupt("event type");
    const bool legacy = format == kEventFormatJson || (type & kLegacyData);
    if (format == kEventFormat) type &= static_cast<uint8_t>(~kLegacyData);
    if (type >= kEventTypeCount) return corrupt("event type");
    e.type = static_cast<EventType>(type);
    uint64_t at;
    if (!rd.varint(at)) return corrupt("event time");
    e.at_ms = format == kEventFormatJson ? at : previous_ms + static_cast<uint64_t>(unzigzag(at));
    previous_ms = e.at_ms;
    if (legacy) {
      // Format 2 wrote "{}" as an empty string; an empty legacy object would read as typed.
      if (!rd.bytes(e.legacy_data_json)) return corrupt("event data");
      if (e.legacy_data_json.empty()) e.legacy_data_json = "{}";
    } else if (!read_typed_fields(rd, e)) {
      return corrupt("event fields");
    }
    out.push_back(std::move(e));
  }
  if (!rd.done()) return corrupt("trailing bytes after events");
  return Status::ok_status();
}

}  // namespace orderflow::codec
