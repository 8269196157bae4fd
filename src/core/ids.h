// Identifiers: distinct types for distinct ids.
//
// An OrderId is 80 bits: 48 bits of milliseconds since the Unix epoch, 16 bits of the
// partition that minted it, 16 bits of sequence within that millisecond. Its text form is
// 16 characters of lowercase Crockford base32, URL-safe, and sorts like the id itself, so
// ids order by creation time. Routing an order to its partition is a decode, not a lookup.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace orderflow {

struct PartitionId {
  uint16_t value = 0;
  friend bool operator==(PartitionId, PartitionId) = default;
};

class OrderId {
 public:
  static constexpr size_t kTextLength = 16;
  static constexpr size_t kByteLength = 10;

  OrderId() = default;
  static OrderId make(uint64_t ms, PartitionId partition, uint16_t seq);
  // Parses the text form; nullopt for anything that is not exactly a valid id.
  static std::optional<OrderId> parse(std::string_view text);
  static std::optional<OrderId> from_bytes(std::string_view bytes);

  uint64_t ms() const { return hi_ >> 16; }
  PartitionId partition() const { return PartitionId{static_cast<uint16_t>(hi_ & 0xffff)}; }
  uint16_t seq() const { return seq_; }

  std::string str() const;
  // Big-endian bytes: byte order equals id order.
  std::array<char, kByteLength> bytes() const;

  friend bool operator==(const OrderId&, const OrderId&) = default;
  friend auto operator<=>(const OrderId& a, const OrderId& b) = default;

 private:
  uint64_t hi_ = 0;  // ms << 16 | partition
  uint16_t seq_ = 0;
};

// Mints strictly increasing (ms, seq) pairs for one partition, even when the wall clock stalls
// or steps back: a hybrid logical clock. Not thread-safe: owned by the partition's writer.
class IdMinter {
 public:
  explicit IdMinter(PartitionId partition, uint64_t last_ms = 0)
      : partition_(partition), last_ms_(last_ms), seq_(0xffff) {}
  OrderId next(uint64_t now_ms);
  uint64_t last_ms() const { return last_ms_; }

 private:
  PartitionId partition_;
  uint64_t last_ms_;
  uint32_t seq_;
};

struct OrderIdHash {
  size_t operator()(const OrderId& id) const {
    return std::hash<uint64_t>()(id.ms() * 0x9E3779B97F4A7C15ull ^
                                 (uint64_t{id.partition().value} << 16 | id.seq()));
  }
};

}  // namespace orderflow
