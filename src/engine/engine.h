// The engine: partitions, each with one writer thread that applies commands in batches.
//
// A command is enqueued (bounded queue per partition; a full queue is answered `overloaded`
// at once), applied in order by its partition's writer through the pure state machine, and
// committed with the rest of its batch in one durable write. Only then is its completion
// called, on the writer thread: "acknowledged" always means "durable".
//
// Thread safety: submit methods may be called from any thread. Completions run on partition
// threads and must not block (post the result to the caller's executor).
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "core/clock.h"
#include "core/ids.h"
#include "core/order.h"
#include "core/result.h"
#include "storage/store.h"

namespace orderflow {

struct PlaceCommand {
  std::string tenant;
  std::string idempotency_key;
  OrderRequest request;
};

struct CancelCommand {
  std::string tenant;
  OrderId order_id;
  std::string reason;
};

enum class Outcome { created, replayed, updated };

struct CommandResult {
  Outcome outcome;
  Order order;  // the order's state right after the command
};

using Completion = std::function<void(Result<CommandResult>)>;

struct EngineOptions {
  uint32_t partitions = 8;
  size_t queue_depth_max = 4096;  // commands waiting per partition
  size_t batch_max = 1024;        // commands applied and committed together
};

class Partition;

class Engine {
 public:
  Engine(OrderStore& store, const Clock& clock, EngineOptions options);
  ~Engine();

  // Loads each partition's state and starts the writers.
  Status start();
  // Stops accepting, applies and commits everything already enqueued, joins the writers.
  void stop();

  void place(PlaceCommand command, Completion done);
  void cancel(CancelCommand command, Completion done);

  OrderStore& store() { return store_; }
  const EngineOptions& options() const { return options_; }
  size_t queued() const;

 private:
  OrderStore& store_;
  const Clock& clock_;
  EngineOptions options_;
  IdClock ids_;  // shared by the partitions: ids sort by creation across partitions
  std::vector<std::unique_ptr<Partition>> partitions_;
};

}  // namespace orderflow
