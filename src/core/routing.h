// Routing rules: which partition owns a command. Stable across builds and restarts
// (FNV-1a, not std::hash), because the mapping decides which single writer serializes
// the commands of one idempotency key.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/ids.h"

namespace orderflow {

inline uint64_t fnv1a64(std::string_view s, uint64_t h = 0xcbf29ce484222325ull) {
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

// A new order is created by the partition that owns its (tenant, idempotency key).
inline PartitionId partition_for_key(std::string_view tenant, std::string_view key,
                                     uint32_t partitions) {
  uint64_t h = fnv1a64(key, fnv1a64("\0", fnv1a64(tenant)));
  return PartitionId{static_cast<uint16_t>(h % partitions)};
}

// An existing order belongs to the partition encoded in its id; nullopt when the id names a
// partition that does not exist here (the order cannot exist either).
inline std::optional<PartitionId> partition_for_order(OrderId id, uint32_t partitions) {
  if (id.partition().value >= partitions) return std::nullopt;
  return id.partition();
}

}  // namespace orderflow
