// Binary encodings of stored records (docs/architecture.md, "On-disk format").
//
// Every record starts with a format version byte; decoders reject unknown versions,
// truncated input and trailing bytes with Errc::internal ("corrupt record"), never crash.
#pragma once

#include <string>
#include <string_view>

#include "core/order.h"
#include "core/result.h"

namespace orderflow::codec {

inline constexpr uint8_t kOrderFormat = 1;
inline constexpr uint8_t kEventFormat = 1;

void encode_order(const Order& order, std::string& out);
Result<Order> decode_order(std::string_view bytes);

// The event's order id and seq live in the key; the value holds the rest.
void encode_event(const Event& event, std::string& out);
Result<Event> decode_event(OrderId order_id, uint32_t seq, std::string_view bytes);

void put_varint(std::string& out, uint64_t v);
void put_bytes(std::string& out, std::string_view s);

// Reads what put_* wrote; every read checks bounds.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool varint(uint64_t& v);
  bool bytes(std::string& s);
  bool byte(uint8_t& b);
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

}  // namespace orderflow::codec
