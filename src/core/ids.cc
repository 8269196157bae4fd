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
  id.hi_ = ms << 16 | partition.value;
  id.seq_ = seq;
  return id;
}

std::string OrderId::str() const {
  // 80 bits = 16 groups of 5, most significant first.
  std::string out(kTextLength, '0');
  uint64_t hi = hi_;
  uint64_t lo = seq_;
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
  id.seq_ = static_cast<uint16_t>(v & 0xffff);
  id.hi_ = static_cast<uint64_t>(v >> 16);
  return id;
}

std::array<char, OrderId::kByteLength> OrderId::bytes() const {
  std::array<char, kByteLength> b{};
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(hi_ >> (56 - 8 * i));
  b[8] = static_cast<char>(seq_ >> 8);
  b[9] = static_cast<char>(seq_ & 0xff);
  return b;
}

std::optional<OrderId> OrderId::from_bytes(std::string_view b) {
  if (b.size() != kByteLength) return std::nullopt;
  OrderId id;
  for (int i = 0; i < 8; ++i) id.hi_ = id.hi_ << 8 | static_cast<uint8_t>(b[i]);
  id.seq_ = static_cast<uint16_t>(static_cast<uint8_t>(b[8]) << 8 | static_cast<uint8_t>(b[9]));
  return id;
}

OrderId IdMinter::next(uint64_t now_ms) {
  if (now_ms > last_ms_) {
    last_ms_ = now_ms;
    seq_ = 0;
  } else if (++seq_ > 0xffff) {
    // More than 65536 ids in one millisecond of this partition: borrow the next millisecond.
    ++last_ms_;
    seq_ = 0;
  }
  return OrderId::make(last_ms_, partition_, static_cast<uint16_t>(seq_));
}

}  // namespace orderflow
