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

// The partition count a new data directory gets without --partitions: one writer per CPU core
// but one (which the HTTP threads, the simulators and RocksDB's background work share), at
// least 1, at most 8. `cores` is std::thread::hardware_concurrency() (0 when unknown).
// Measured on 2 cores only (docs/performance.md, eleventh session): 1 partition instead of 2
// cut the server's CPU per delivered order by ~14% (one writer syncs half as often, with
// fuller batches, and the cores are less oversubscribed).
inline uint32_t default_partitions(uint32_t cores) {
  return cores <= 2 ? 1 : (cores - 1 > 8 ? 8 : cores - 1);
}

}  // namespace orderflow
