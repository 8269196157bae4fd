#include "core/order.h"

namespace orderflow {
namespace {
constexpr const char* kStatusNames[kOrderStatusCount] = {
    "pending",    "inventory_reserved", "payment_authorized", "merchant_confirmed",
    "courier_assigned", "delivered",    "cancelling",         "cancelled",
    "compensating",     "failed",       "needs_attention"};
constexpr const char* kEventNames[kEventTypeCount] = {
    "order_placed",     "status_changed",  "cancel_requested", "effect_requested",
    "effect_succeeded", "effect_failed",   "redriven"};
constexpr const char* kStageNames[kStageCount] = {"inventory", "payment", "merchant", "dispatch",
                                                  "delivery"};
constexpr const char* kActionNames[kActionCount] = {"reserve", "release",       "authorize",
                                                    "void",    "capture",       "confirm",
                                                    "notify_cancel", "assign",  "unassign",
                                                    "deliver"};
constexpr const char* kPaymentNames[kPaymentStatusCount] = {"none", "authorized", "captured",
                                                            "voided", "declined"};
}  // namespace

const char* status_name(OrderStatus s) { return kStatusNames[static_cast<int>(s)]; }

std::optional<OrderStatus> parse_status(std::string_view name) {
  for (int i = 0; i < kOrderStatusCount; ++i) {
    if (name == kStatusNames[i]) return static_cast<OrderStatus>(i);
  }
  return std::nullopt;
}

bool is_terminal(OrderStatus s) {
  return s == OrderStatus::delivered || s == OrderStatus::cancelled || s == OrderStatus::failed;
}

const char* event_type_name(EventType t) { return kEventNames[static_cast<int>(t)]; }
const char* stage_name(Stage s) { return kStageNames[static_cast<int>(s)]; }
const char* action_name(Action a) { return kActionNames[static_cast<int>(a)]; }
const char* payment_status_name(PaymentStatus s) { return kPaymentNames[static_cast<int>(s)]; }

std::optional<Stage> parse_stage(std::string_view name) {
  for (int i = 0; i < kStageCount; ++i) {
    if (name == kStageNames[i]) return static_cast<Stage>(i);
  }
  return std::nullopt;
}

std::optional<Action> parse_action(std::string_view name) {
  for (int i = 0; i < kActionCount; ++i) {
    if (name == kActionNames[i]) return static_cast<Action>(i);
  }
  return std::nullopt;
}

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace orderflow
