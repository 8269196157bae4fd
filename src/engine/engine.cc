#include "engine/engine.h"

#include <unordered_map>

#include "core/order_machine.h"
#include "core/routing.h"

namespace orderflow {

struct Command {
  std::variant<PlaceCommand, CancelCommand> body;
  Completion done;
};

// One partition: a bounded queue and the single thread that writes the partition.
class Partition {
 public:
  Partition(PartitionId id, OrderStore& store, const Clock& clock, IdClock& ids,
            const EngineOptions& options)
      : id_(id), store_(store), clock_(clock), ids_(ids), options_(options) {}

  ~Partition() { stop(); }

  // Recovers the partition's state; every partition loads before any starts minting ids.
  Status load() {
    auto state = store_.load_partition(id_);
    if (!state) return state.take_error();
    last_id_clock_ = state->id_clock;
    ids_.observe(last_id_clock_);
    return Status::ok_status();
  }

  void start() { thread_ = std::thread([this] { run(); }); }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Enqueues, or answers at once: `overloaded` when the queue is full, `unavailable` when
  // stopping. Never blocks on the writer.
  void submit(Command&& cmd) {
    Errc rejected;
    {
      std::lock_guard lock(mu_);
      if (!stopping_ && queue_.size() < options_.queue_depth_max) {
        queue_.push_back(std::move(cmd));
        if (queue_.size() == 1) cv_.notify_one();
        return;
      }
      rejected = stopping_ ? Errc::unavailable : Errc::overloaded;
    }
    cmd.done(rejected == Errc::unavailable
                 ? make_error(Errc::unavailable, "the server is shutting down")
                 : make_error(Errc::overloaded, "partition queue is full; retry later"));
  }

  size_t queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
  }

 private:
  void run() {
    std::vector<Command> batch;
    batch.reserve(options_.batch_max);
    for (;;) {
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
        if (queue_.size() <= options_.batch_max) {
          batch.swap(queue_);  // the common case: take everything, no element moves
        } else {
          auto end = queue_.begin() + static_cast<std::ptrdiff_t>(options_.batch_max);
          std::move(queue_.begin(), end, std::back_inserter(batch));
          queue_.erase(queue_.begin(), end);
        }
      }
      apply(batch);
      batch.clear();
      if (batch.capacity() > 2 * options_.batch_max) batch.shrink_to_fit();
    }
  }

  // Applies a batch through the state machine, commits it once, then completes every command.
  void apply(std::vector<Command>& batch) {
    CommitBatch cb;
    cb.partition = id_;
    std::unordered_map<OrderId, size_t, OrderIdHash> touched;  // → index in cb.orders
    std::unordered_map<std::string, size_t> created_keys;      // tenant\0key → index
    std::vector<std::optional<Result<CommandResult>>> results(batch.size());

    for (size_t i = 0; i < batch.size(); ++i) {
      if (auto* place = std::get_if<PlaceCommand>(&batch[i].body)) {
        results[i] = apply_place(*place, cb, touched, created_keys);
      } else {
        results[i] = apply_cancel(std::get<CancelCommand>(batch[i].body), cb, touched);
      }
    }

    Status committed = Status::ok_status();
    if (!cb.orders.empty()) {
      cb.id_clock = last_id_clock_;
      committed = store_.commit(cb);
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!committed.ok() && results[i]->ok()) {
        batch[i].done(make_error(Errc::unavailable, committed.error().message));
      } else {
        batch[i].done(std::move(*results[i]));
      }
    }
  }

  // The current state of an order, from this batch or from the store.
  Result<Order*> load(OrderId id, CommitBatch& cb,
                      std::unordered_map<OrderId, size_t, OrderIdHash>& touched) {
    if (auto it = touched.find(id); it != touched.end()) return &cb.orders[it->second].order;
    auto stored = store_.get_order(id);
    if (!stored) return stored.take_error();
    if (!stored->has_value()) return static_cast<Order*>(nullptr);
    OrderStatus before = (*stored)->status;
    cb.orders.push_back(OrderWrite{std::move(**stored), before});
    touched[id] = cb.orders.size() - 1;
    return &cb.orders.back().order;
  }

  Result<CommandResult> apply_place(PlaceCommand& cmd, CommitBatch& cb,
                                    std::unordered_map<OrderId, size_t, OrderIdHash>& touched,
                                    std::unordered_map<std::string, size_t>& created_keys) {
    std::string scoped = cmd.tenant;
    scoped.push_back('\0');
    scoped.append(cmd.idempotency_key);

    const Order* existing = nullptr;
    if (auto it = created_keys.find(scoped); it != created_keys.end()) {
      existing = &cb.orders[it->second].order;
    } else {
      auto entry = store_.find_idempotency(cmd.tenant, cmd.idempotency_key);
      if (!entry) return entry.take_error();
      if (entry->has_value()) {
        auto order = load((*entry)->order_id, cb, touched);
        if (!order) return order.take_error();
        if (*order == nullptr) {
          return make_error(Errc::internal, "idempotency key points at a missing order");
        }
        existing = *order;
      }
    }
    if (existing != nullptr) {
      if (!(existing->request == cmd.request)) {
        return make_error(Errc::idempotency_key_reuse,
                          "Idempotency-Key was already used with a different request");
      }
      return CommandResult{Outcome::replayed, *existing};
    }

    uint64_t now = clock_.now_ms();
    OrderId id = ids_.mint(now, id_);
    last_id_clock_ = id.clock();
    Placed placed = place_order(id, cmd.tenant, cmd.idempotency_key, std::move(cmd.request),
                                std::max(now, id.ms()));
    for (Event& e : placed.events) cb.events.push_back(std::move(e));
    cb.idempotency.push_back(
        IdempotencyEntry{cmd.tenant, cmd.idempotency_key, id, placed.order.created_at_ms});
    cb.orders.push_back(OrderWrite{placed.order, std::nullopt});
    touched[id] = cb.orders.size() - 1;
    created_keys.emplace(std::move(scoped), cb.orders.size() - 1);
    return CommandResult{Outcome::created, std::move(placed.order)};
  }

  Result<CommandResult> apply_cancel(const CancelCommand& cmd, CommitBatch& cb,
                                     std::unordered_map<OrderId, size_t, OrderIdHash>& touched) {
    auto loaded = load(cmd.order_id, cb, touched);
    if (!loaded) return loaded.take_error();
    Order* order = *loaded;
    // Another tenant's order is answered exactly like a missing one.
    if (order == nullptr || order->tenant != cmd.tenant) {
      return make_error(Errc::not_found, "order not found");
    }
    auto events = cancel_order(*order, cmd.reason, clock_.now_ms());
    if (!events) return events.take_error();
    for (Event& e : *events) cb.events.push_back(std::move(e));
    return CommandResult{Outcome::updated, *order};
  }

  const PartitionId id_;
  OrderStore& store_;
  const Clock& clock_;
  const EngineOptions& options_;
  IdClock& ids_;
  uint64_t last_id_clock_ = 0;  // the highest id clock this partition minted; writer thread

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Command> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

Engine::Engine(OrderStore& store, const Clock& clock, EngineOptions options)
    : store_(store), clock_(clock), options_(options) {
  OF_ASSERT(options_.partitions >= 1);
  for (uint32_t p = 0; p < options_.partitions; ++p) {
    partitions_.push_back(std::make_unique<Partition>(PartitionId{static_cast<uint16_t>(p)},
                                                      store_, clock_, ids_, options_));
  }
}

Engine::~Engine() { stop(); }

Status Engine::start() {
  for (auto& p : partitions_) {
    Status s = p->load();
    if (!s.ok()) return s;
  }
  for (auto& p : partitions_) p->start();
  return Status::ok_status();
}

void Engine::stop() {
  for (auto& p : partitions_) p->stop();
}

void Engine::place(PlaceCommand command, Completion done) {
  PartitionId p = partition_for_key(command.tenant, command.idempotency_key, options_.partitions);
  partitions_[p.value]->submit(Command{std::move(command), std::move(done)});
}

void Engine::cancel(CancelCommand command, Completion done) {
  auto p = partition_for_order(command.order_id, options_.partitions);
  if (!p) {
    done(make_error(Errc::not_found, "order not found"));
    return;
  }
  partitions_[p->value]->submit(Command{std::move(command), std::move(done)});
}

size_t Engine::queued() const {
  size_t n = 0;
  for (const auto& p : partitions_) n += p->queued();
  return n;
}

}  // namespace orderflow
