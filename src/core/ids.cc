#include "core/ids.h"

#include "core/result.h"

namespace orderflow {
namespace {
constexpr char kAlphabet[] = "0123456789abcdefghjkmnpqrstvwxyz";

int decode_char(char c) {
  for (int i = 0; i < 32; ++i) {
    if (kAlphabet[i] == c) return i;
  }
  return -1;
}
}  // namespace

OrderId OrderId::make(uint64_t ms, PartitionId partition, uint16_t seq) {
  OF_ASSERT(ms < (uint64_t{1} << 48));
  OrderId id;
  id.time_ = ms << 16 | seq;
  id.partition_ = partition.value;
  return id;
}

std::string OrderId::str() const {
  // 80 bits = 16 groups of 5, most significant first.
  std::string out(kTextLength, '0');
  uint64_t hi = time_;
  uint64_t lo = partition_;
  for (int i = kTextLength - 1; i >= 0; --i) {
    out[i] = kAlphabet[lo & 31];
    lo = (lo >> 5) | ((hi & 31) << 11);
    hi >>= 5;
  }
  return out;
}

std::optional<OrderId> OrderId::parse(std::string_view text) {
  if (text.size() != kTextLength) return std::nullopt;
  // Accumulate into a 128-bit value: 80 bits fit.
  unsigned __int128 v = 0;
  for (char c : text) {
    int d = decode_char(c);
    if (d < 0) return std::nullopt;
    v = (v << 5) | static_cast<unsigned>(d);
  }
  OrderId id;
  id.partition_ = static_cast<uint16_t>(v & 0xffff);
  id.time_ = static_cast<uint64_t>(v >> 16);
  return id;
}

std::array<char, OrderId::kByteLength> OrderId::bytes() const {
  std::array<char, kByteLength> b{};
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(time_ >> (56 - 8 * i));
  b[8] = static_cast<char>(partition_ >> 8);
  b[9] = static_cast<char>(partition_ & 0xff);
  return b;
}

std::optional<OrderId> OrderId::from_bytes(std::string_view b) {
  if (b.size() != kByteLength) return std::nullopt;
  OrderId id;
  for (int i = 0; i < 8; ++i) id.time_ = id.time_ << 8 | static_cast<uint8_t>(b[i]);
  id.partition_ =
      static_cast<uint16_t>(static_cast<uint8_t>(b[8]) << 8 | static_cast<uint8_t>(b[9]));
  return id;
}

void IdClock::observe(uint64_t reading) {
  uint64_t last = last_.load(std::memory_order_relaxed);
  while (reading > last && !last_.compare_exchange_weak(last, reading)) {
  }
}

uint64_t IdClock::next(uint64_t now_ms) {
  OF_ASSERT(now_ms < (uint64_t{1} << 48));
  const uint64_t wall = now_ms << 16;
  uint64_t last = last_.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = wall > last ? wall : last + 1;
  } while (!last_.compare_exchange_weak(last, next));
  return next;
}

}  // namespace orderflow
