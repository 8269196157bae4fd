// Identifiers: distinct types for distinct ids.
//
// An OrderId is 80 bits: 48 bits of milliseconds since the Unix epoch, 16 bits of sequence
// within that millisecond (together: a hybrid logical clock reading, unique per process), and
// 16 bits of the partition that minted it. Its text form is 16 characters of lowercase
// Crockford base32, URL-safe, and sorts like the id itself, so ids order by creation.
// Routing an order to its partition is a decode, not a lookup.
#pragma once

#include <array>
#include <atomic>
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

  uint64_t ms() const { return time_ >> 16; }
  uint16_t seq() const { return static_cast<uint16_t>(time_ & 0xffff); }
  // The hybrid clock reading: ms << 16 | seq.
  uint64_t clock() const { return time_; }
  PartitionId partition() const { return PartitionId{partition_}; }

  std::string str() const;
  // Big-endian bytes: byte order equals id order.
  std::array<char, kByteLength> bytes() const;

  friend bool operator==(const OrderId&, const OrderId&) = default;
  friend auto operator<=>(const OrderId& a, const OrderId& b) = default;

 private:
  uint64_t time_ = 0;  // ms << 16 | seq
  uint16_t partition_ = 0;
};

// A hybrid logical clock shared by the partitions of one process: readings are strictly
// increasing even when the wall clock stalls or steps back, so ids minted one after another
// sort one after another whatever partition minted them. Thread-safe (one atomic).
class IdClock {
 public:
  // Never mint at or below `reading` (the high-water mark persisted before a restart).
  void observe(uint64_t reading);
  // The next reading: (now_ms << 16) when the clock moved on, else the last reading + 1
  // (borrowing the next millisecond after 65536 ids in one).
  uint64_t next(uint64_t now_ms);
  OrderId mint(uint64_t now_ms, PartitionId partition) {
    uint64_t r = next(now_ms);
    return OrderId::make(r >> 16, partition, static_cast<uint16_t>(r & 0xffff));
  }

 private:
  std::atomic<uint64_t> last_{0};
};

struct OrderIdHash {
  size_t operator()(const OrderId& id) const {
    return std::hash<uint64_t>()(id.clock() * 0x9E3779B97F4A7C15ull ^ id.partition().value);
  }
};

}  // namespace orderflow
