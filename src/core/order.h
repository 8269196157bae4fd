// The order model: plain values, no I/O. Shared by the state machine, the storage codecs and
// the HTTP layer's JSON rendering.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/ids.h"

namespace orderflow {

// Limits of an order request (docs/api.md lists them; tests cover both sides of each).
struct OrderLimits {
  static constexpr size_t id_chars_max = 64;          // customer_id, merchant_id, sku
  static constexpr size_t items_max = 100;
  static constexpr int64_t quantity_min = 1;
  static constexpr int64_t quantity_max = 1000;
  static constexpr int64_t cents_max = 10'000'000;    // unit_price_cents, tip_cents
  static constexpr size_t payment_method_chars_max = 64;
  static constexpr size_t address_chars_max = 512;
  static constexpr size_t metadata_entries_max = 16;
  static constexpr size_t metadata_key_chars_max = 64;
  static constexpr size_t metadata_value_chars_max = 256;
  static constexpr size_t cancel_reason_chars_max = 512;
  static constexpr size_t idempotency_key_chars_max = 128;
};

struct LineItem {
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_price_cents = 0;
  friend bool operator==(const LineItem&, const LineItem&) = default;
};

// A validated request with defaults applied. Two requests are "the same" for idempotency
// exactly when they compare equal: metadata is kept sorted by key, so key order is irrelevant.
struct OrderRequest {
  std::string customer_id;
  std::string merchant_id;
  std::vector<LineItem> items;
  std::string currency;
  std::string payment_method;
  std::string delivery_address;
  int64_t tip_cents = 0;
  std::vector<std::pair<std::string, std::string>> metadata;  // sorted by key, unique keys
  friend bool operator==(const OrderRequest&, const OrderRequest&) = default;
};

enum class OrderStatus : uint8_t {
  pending = 0,
  inventory_reserved = 1,
  payment_authorized = 2,
  merchant_confirmed = 3,
  courier_assigned = 4,
  delivered = 5,
  cancelling = 6,
  cancelled = 7,
  compensating = 8,
  failed = 9,
  needs_attention = 10,
};
inline constexpr int kOrderStatusCount = 11;

const char* status_name(OrderStatus s);
std::optional<OrderStatus> parse_status(std::string_view name);
bool is_terminal(OrderStatus s);

// The five stages and the actions that run in them (compensations included).
enum class Stage : uint8_t { inventory = 0, payment, merchant, dispatch, delivery };
inline constexpr int kStageCount = 5;
enum class Action : uint8_t {
  reserve = 0, release, authorize, void_, capture, confirm, notify_cancel, assign, unassign, deliver
};
inline constexpr int kActionCount = 10;
const char* stage_name(Stage s);
std::optional<Stage> parse_stage(std::string_view name);
const char* action_name(Action a);
std::optional<Action> parse_action(std::string_view name);

enum class PaymentStatus : uint8_t { none = 0, authorized, captured, voided, declined };
inline constexpr int kPaymentStatusCount = 5;
const char* payment_status_name(PaymentStatus s);

struct Payment {
  PaymentStatus status = PaymentStatus::none;
  int64_t authorized_cents = 0;
  int64_t captured_cents = 0;
  friend bool operator==(const Payment&, const Payment&) = default;
};

// Where an effect stands. Exactly one effect per order is outstanding at a time.
enum class EffectPhase : uint8_t {
  waiting = 0,   // backing off after a transient failure until not_before_ms
  in_flight = 1, // requested (durably) and issued; awaiting its result
};

struct EffectState {
  Stage stage = Stage::inventory;
  Action action = Action::reserve;
  uint32_t attempt = 1;          // 1-based; attempt N has effect_requested with attempt N
  EffectPhase phase = EffectPhase::in_flight;
  uint64_t not_before_ms = 0;    // waiting: when the next attempt may be requested
  uint64_t deadline_ms = 0;      // no new attempt is requested after this
  uint64_t started_ms = 0;       // the first attempt of this action was requested
  uint64_t requested_ms = 0;     // the current attempt was requested
  friend bool operator==(const EffectState&, const EffectState&) = default;
};

// The saga's position. Forward steps are numbered 0..5 (see pipeline.h).
struct PipelineState {
  uint8_t progress = 0;          // forward steps completed
  bool cancel_requested = false;
  bool maybe_done = false;       // step `progress` may have taken effect (outcome unknown)
  uint8_t compensate_below = 0;  // compensating: steps [0, compensate_below) still to undo
  OrderStatus parked_from = OrderStatus::pending;  // needs_attention: the status to resume
  std::optional<EffectState> effect;
  friend bool operator==(const PipelineState&, const PipelineState&) = default;
};

struct Failure {
  std::string stage;
  std::string code;
  std::string message;
  friend bool operator==(const Failure&, const Failure&) = default;
};

struct Order {
  OrderId id;
  std::string tenant;
  std::string idempotency_key;
  OrderRequest request;
  int64_t subtotal_cents = 0;
  int64_t total_cents = 0;
  OrderStatus status = OrderStatus::pending;
  uint32_t version = 0;  // = seq of the last event
  uint64_t created_at_ms = 0;
  uint64_t updated_at_ms = 0;
  std::optional<Failure> failure;
  Payment payment;
  std::string courier_id;  // empty until assigned (and again after unassign)
  PipelineState pipeline;
  // Set while the order is parked in needs_attention: why (stage, action's code, message).
  std::optional<Failure> attention;
  friend bool operator==(const Order&, const Order&) = default;
};

enum class EventType : uint8_t {
  order_placed = 0,
  status_changed = 1,
  cancel_requested = 2,
  effect_requested = 3,
  effect_succeeded = 4,
  effect_failed = 5,
  redriven = 6,
};
inline constexpr int kEventTypeCount = 7;
const char* event_type_name(EventType t);

// One entry of an order's history. What happened is kept in typed fields — which of them
// apply depends on `type` — and rendered as the API's data object only when read
// (render_event): the history is written for every order and read for few. An order_placed
// event carries nothing: its data is the order's request, which never changes.
struct Event {
  OrderId order_id;
  uint32_t seq = 0;
  EventType type = EventType::order_placed;
  uint64_t at_ms = 0;
  OrderStatus from = OrderStatus::pending;  // status_changed
  OrderStatus to = OrderStatus::pending;    // status_changed
  Stage stage = Stage::inventory;           // effect_*, redriven
  Action action = Action::reserve;          // effect_*, redriven
  uint32_t attempt = 0;                     // effect_*
  bool retryable = false;                   // effect_failed
  std::string code;                         // effect_failed
  std::string message;                      // effect_failed
  std::string courier_id;                   // effect_succeeded of assign, when the courier is known
  std::string reason;                       // cancel_requested
  // An event stored before the typed encoding (event format 2) keeps its data object as it was
  // written, and is rendered from it; empty for every other event.
  std::string legacy_data_json;
  friend bool operator==(const Event&, const Event&) = default;
};

// Counts code points of valid UTF-8 (continuation bytes are not counted).
size_t utf8_length(std::string_view s);

}  // namespace orderflow
