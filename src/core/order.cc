#include "core/order.h"

namespace orderflow {
namespace {
constexpr const char* kStatusNames[kOrderStatusCount] = {
    "pending",    "inventory_reserved", "payment_authorized", "merchant_confirmed",
    "courier_assigned", "delivered",    "cancelling",         "cancelled",
    "compensating",     "failed",       "needs_attention"};
constexpr const char* kEventNames[kEventTypeCount] = {"order_placed", "status_changed",
                                                      "cancel_requested"};
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

size_t utf8_length(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

}  // namespace orderflow
