// Binary encodings of stored records (docs/architecture.md, "On-disk format").
//
// Every record starts with a format version byte; decoders reject unknown versions,
// truncated input and trailing bytes with Errc::internal ("corrupt record"), never crash.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/order.h"
#include "core/result.h"

namespace orderflow::codec {

inline constexpr uint8_t kOrderFormat = 1;
// A run of consecutive events of one order, each with its typed fields.
inline constexpr uint8_t kEventFormat = 3;
// The same, as written before: each event's data a serialized JSON object. Still read.
inline constexpr uint8_t kEventFormatJson = 2;
// Consecutive runs (of format 3 or 2) of one order, as they were written one batch at a time,
// kept whole: how the order log hands RocksDB an order's history when it ends, without
// decoding and re-encoding it.
inline constexpr uint8_t kEventRunsFormat = 4;

// An order record is its fixed part — what never changes after placement: the format byte,
// id, tenant, idempotency key, request and amounts — followed by its state (status, version,
// times, failure, payment, courier, pipeline, attention). encode_order writes both; the
// order log writes the state alone for an order it already holds.
void encode_order(const Order& order, std::string& out);
void encode_order_fixed(const Order& order, std::string& out);
void encode_order_state(const Order& order, std::string& out);
Result<Order> decode_order(std::string_view bytes);
// The length of an encoded order's fixed part: where its state begins.
Result<size_t> order_state_offset(std::string_view bytes);
// The id of an encoded order, without decoding the rest.
Result<OrderId> order_id_of(std::string_view bytes);

// A run of consecutive events of one order, stored under one key (order id, first seq): the
// events one batch appended to an order cost one write. The key holds the order id and the
// first seq; the value holds the rest. `run` must be non-empty with consecutive seqs.
void encode_events(const std::vector<const Event*>& run, std::string& out);
// Appends the run's events to `out`.
Status decode_events(OrderId order_id, uint32_t first_seq, std::string_view bytes,
                     std::vector<Event>& out);
// Runs of one order (each from encode_events, the next starting where the one before ends) as
// one value of kEventRunsFormat, which decode_events reads like a single run.
void encode_run_list(const std::vector<std::string_view>& runs, std::string& out);

void put_varint(std::string& out, uint64_t v);
void put_bytes(std::string& out, std::string_view s);

// Reads what put_* wrote; every read checks bounds.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool varint(uint64_t& v);
  bool bytes(std::string& s);
  bool view(std::string_view& s);  // like bytes(), without a copy: valid while the input is
  bool byte(uint8_t& b);
  bool done() const { return in_.empty(); }
  size_t remaining() const { return in_.size(); }

 private:
  std::string_view in_;
};

}  // namespace orderflow::codec
