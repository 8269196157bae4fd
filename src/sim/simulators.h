// The built-in stage services: inventory, payment, merchant, dispatch and delivery
// simulators that behave like the real services' sandboxes, with durable idempotent ledgers.
//
// They are separate services in spirit: their own RocksDB (DATA_DIR/sim), their own thread.
// Each request is applied at most once per idempotency key: a repeated key answers the
// recorded outcome and changes nothing. The ledger also counts, per (order, action), how many
// requests arrived and how many times the effect took place, so tests can prove that nothing
// happened twice (a second key for the same order and action would show applied = 2).
//
// Rules: inventory has unlimited stock except SKUs given a stock (reserve takes, release
// returns; too little → permanent out_of_stock). Payment sandbox tokens: tok_declined →
// permanent payment_declined; tok_insufficient_funds → permanent insufficient_funds;
// tok_flaky fails its first two authorization requests transiently, then approves; any other
// token approves. Closed merchants → permanent merchant_rejected. Dispatch assigns a courier.
// Delivery delivers. Latency per stage delays the answer (and the effect) by N ms.
//
// Thread safety: execute() and the ledger queries from any thread.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "engine/effects.h"
#include "storage/store.h"

namespace rocksdb {
class DB;
}

namespace orderflow {

struct SimOptions {
  std::string path;
  Durability durability = Durability::fsync;
  std::array<uint32_t, kStageCount> latency_ms{};
  std::vector<std::pair<std::string, int64_t>> stock;  // SKU → initial units
  std::vector<std::string> closed_merchants;
  size_t batch_max = 1024;
  size_t stock_cache_max = 65536;  // SKUs whose stock the thread remembers; cleared when full
};

struct LedgerEntry {
  OrderId order_id;
  Action action = Action::reserve;
  std::string idempotency_key;  // the first key seen for this (order, action)
  uint32_t requests = 0;        // calls received, repeats included
  uint32_t applied = 0;         // times the effect took place
  std::string outcome;          // "ok", or the last failure code
};

class Simulators final : public StageService {
 public:
  static Result<std::unique_ptr<Simulators>> open(SimOptions options);
  ~Simulators() override;

  void execute(EffectRequest request, const Order& order, EffectDone done) override;
  // A partition's batch of effects, queued under one lock with one wake-up.
  void execute_all(std::vector<Issued>& effects) override;
  // Stops the thread; unanswered requests are dropped (the engine re-issues them on restart).
  void stop();

  Result<std::vector<LedgerEntry>> ledger(OrderId order_id);
  // Remaining units of every SKU with a configured stock.
  Result<std::vector<std::pair<std::string, int64_t>>> stock();
  // Ledger batches written so far, and how many of them were synced (--sim-durability).
  uint64_t ledger_batches() const;
  uint64_t ledger_syncs() const;

  struct Impl;

 private:
  explicit Simulators(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace orderflow
