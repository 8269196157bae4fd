#include "engine/engine.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <algorithm>
#include <tuple>
#include <queue>
#include <thread>
#include <unordered_map>

#include "core/routing.h"
#include "core/thread_name.h"

namespace orderflow {

struct StuckQuery {
  std::string tenant;
  size_t limit;
  std::function<void(std::vector<StuckOrder>)> done;
};

struct ListInProgress {
  ListQuery query;
  std::function<void(std::vector<Order>)> done;  // up to limit + 1 matches, newest first
};

struct Command {
  std::variant<PlaceCommand, CancelCommand, RedriveCommand, ResultCommand, StuckQuery,
               ListInProgress>
      body;
  Completion done;  // null for results nobody waits on
};

// One partition: a bounded queue, its active orders, its timers, and the single thread that
// writes them.
class Partition {
 public:
  Partition(PartitionId id, Engine& engine, OrderStore& store, const Clock& clock, IdClock& ids,
            const EngineOptions& options, const PipelinePolicy& policy,
            const std::array<StageService*, kStageCount>& services, ChangeFeed& changes)
      : id_(id), engine_(engine), store_(store), clock_(clock), ids_(ids), options_(options),
        policy_(policy), services_(services), changes_(changes) {}

  ~Partition() { stop(); }

  // Recovers the partition's clock and active orders; all partitions load before any starts.
  Status load() {
    auto state = store_.load_partition(id_);
    if (!state) return state.take_error();
    last_id_clock_ = state->id_clock;
    ids_.observe(last_id_clock_);
    auto active = store_.list_active(id_);
    if (!active) return active.take_error();
    for (Order& o : *active) {
      OrderId id = o.id;
      Live& live = active_.emplace(id, Live{std::move(o), {}}).first->second;
      count_status(live.order.status, +1);
      index_status(live, std::nullopt);
      index_stage(live);
    }
    active_count_.store(active_.size(), std::memory_order_relaxed);
    return Status::ok_status();
  }

  void start() {
    thread_ = std::thread([this] {
      name_this_thread("of-part-" + std::to_string(id_.value));
      run();
    });
  }

  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  // Enqueues, or answers at once: `overloaded` when the queue is full, `unavailable` when
  // stopping. Never blocks on the writer. Results bypass the bound (see Engine::submit_result).
  void submit(Command&& cmd, bool bounded) {
    Errc rejected;
    {
      std::lock_guard lock(mu_);
      if (!stopping_ && (!bounded || client_queued_ < options_.queue_depth_max)) {
        client_queued_ += bounded;
        queue_.push_back(std::move(cmd));
        if (queue_.size() == 1) cv_.notify_one();
        return;
      }
      rejected = stopping_ ? Errc::unavailable : Errc::overloaded;
    }
    if (!cmd.done) return;  // a result while stopping: re-issued after the restart
    cmd.done(rejected == Errc::unavailable
                 ? make_error(Errc::unavailable, "the server is shutting down")
                 : make_error(Errc::overloaded, "partition queue is full; retry later"));
  }

  size_t queued() const {
    std::lock_guard lock(mu_);
    return queue_.size();
  }
  size_t active() const { return active_count_.load(std::memory_order_relaxed); }
  int64_t in_status(OrderStatus s) const {
    return status_counts_[static_cast<int>(s)].load(std::memory_order_relaxed);
  }
  int64_t stuck(Stage s) const { return stuck_counts_[static_cast<int>(s)].load(std::memory_order_relaxed); }

 private:
  struct Live;
  // The status index's lists of one tenant, one per status. The id is kept beside the entry
  // so that a query's selection and sort read the list alone.
  struct Listed {
    OrderId id;
    Live* live;
  };
  using StatusLists = std::array<std::vector<Listed>, kOrderStatusCount>;

  // An order in progress, and its places in the stage and status indexes.
  struct Live {
    Order order;
    std::optional<std::pair<Stage, uint64_t>> staged;  // (stage, entered at) in by_stage_
    uint32_t stage_pos = 0;                // its entry in by_stage_[stage], while staged
    StatusLists* status_lists = nullptr;   // its tenant's lists in by_status_, once indexed
    uint32_t status_pos = 0;               // its entry in the list of its status
  };

  // An order changed in a batch, and its status before the batch (nullopt: created). Live
  // entries stay put until the batch ends: nodes of active_ move only when erased.
  struct Touched {
    Live* live;
    std::optional<OrderStatus> before;
  };

  // One batch's work; kept between batches so that its containers keep their capacity.
  struct Batch {
    CommitBatch commit;
    std::unordered_map<OrderId, Touched, OrderIdHash> touched;
    std::unordered_map<std::string, OrderId> created_keys;  // tenant\0key → id
    std::vector<std::pair<EffectCall, Live*>> issues;
    std::vector<std::pair<uint64_t, OrderId>> wakes;
    std::vector<std::pair<OrderStatus, OrderStatus>> status_changes;

    void clear() {
      commit.orders.clear();
      commit.events.clear();
      commit.idempotency.clear();
      touched.clear();
      created_keys.clear();
      issues.clear();
      wakes.clear();
      status_changes.clear();
    }
  };

  using Timer = std::pair<uint64_t, OrderId>;

  void run() {
    // Effects that were in flight when the process stopped go out again (same keys), and
    // backoff timers are re-armed from the persisted state.
    for (auto& [id, live] : active_) {
      const Order& o = live.order;
      if (!o.pipeline.effect) continue;
      const EffectState& e = *o.pipeline.effect;
      if (e.phase == EffectPhase::in_flight) {
        queue_effect(o, EffectCall{o.id, e.stage, e.action, e.attempt});
      } else if (o.status != OrderStatus::needs_attention) {
        timers_.push({e.not_before_ms, id});
      }
    }
    hand_over_effects();
    std::vector<Command> batch;
    batch.reserve(options_.batch_max);
    for (;;) {
      {
        std::unique_lock lock(mu_);
        for (;;) {
          if (!queue_.empty() || stopping_) break;
          uint64_t now = clock_.now_ms();
          if (now >= stuck_refreshed_ms_ + 1000) {
            lock.unlock();
            refresh_stuck(now);
            lock.lock();
            continue;
          }
          if (timers_.empty()) {
            cv_.wait_for(lock, std::chrono::milliseconds(1000));
            continue;
          }
          if (timers_.top().first <= now) break;
          uint64_t wait_ms = std::min<uint64_t>(timers_.top().first - now, 50);
          cv_.wait_for(lock, std::chrono::milliseconds(wait_ms));
        }
        if (stopping_ && queue_.empty()) return;  // drained; timers are persisted state
        // From the front only: a backlog longer than one batch is not shifted along.
        const size_t n = std::min(queue_.size(), options_.batch_max);
        for (size_t i = 0; i < n; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        for (const Command& c : batch) client_queued_ -= !std::holds_alternative<ResultCommand>(c.body);
      }
      apply(batch);
      batch.clear();
      if (batch.capacity() > 2 * options_.batch_max) batch.shrink_to_fit();
    }
  }

  // Adds an order's step to the batch; `before` is its status before the step.
  void take(Batch& b, Live& live, OrderStatus before, Transition&& t) {
    b.touched.try_emplace(live.order.id, Touched{&live, before});
    for (auto& change : t.status_changes) b.status_changes.push_back(change);
    for (Event& e : t.events) b.commit.events.push_back(std::move(e));
    if (t.issue) b.issues.emplace_back(*t.issue, &live);
    if (t.wake_at_ms) b.wakes.emplace_back(*t.wake_at_ms, live.order.id);
  }

  // Applies a batch (and due timers) through the state machine, commits it once, then
  // completes commands, issues effects and arms timers.
  void apply(std::vector<Command>& batch) {
    Batch& b = batch_;
    b.clear();
    b.commit.partition = id_;
    std::vector<std::optional<Result<CommandResult>>> results(batch.size());

    uint64_t now = clock_.now_ms();
    // Queries first: they see the state committed so far, never this batch's changes.
    for (Command& c : batch) {
      if (auto* q = std::get_if<StuckQuery>(&c.body)) {
        q->done(find_stuck(q->tenant, q->limit, now));
      } else if (auto* l = std::get_if<ListInProgress>(&c.body)) {
        l->done(find_in_progress(l->query));
      }
    }
    while (!timers_.empty() && timers_.top().first <= now) {
      OrderId id = timers_.top().second;
      timers_.pop();
      auto it = active_.find(id);
      if (it == active_.end()) continue;
      Live& live = it->second;
      const OrderStatus before = live.order.status;
      Transition t = on_timer(live.order, now, policy_);
      if (t.events.empty()) {
        if (t.wake_at_ms) timers_.push({*t.wake_at_ms, id});  // not due yet: re-arm
        continue;
      }
      take(b, live, before, std::move(t));
    }

    for (size_t i = 0; i < batch.size(); ++i) {
      if (std::holds_alternative<StuckQuery>(batch[i].body) ||
          std::holds_alternative<ListInProgress>(batch[i].body)) {
        continue;  // answered above
      }
      if (failed_) {
        results[i] = make_error(Errc::unavailable, "a durable write failed; restart the server");
        continue;
      }
      answering_ = static_cast<bool>(batch[i].done);
      std::visit([&](auto& cmd) { results[i] = apply_one(cmd, b); }, batch[i].body);
    }

    Status committed = Status::ok_status();
    if (!b.touched.empty()) {
      for (auto& [id, t] : b.touched) b.commit.orders.push_back(OrderWrite{&t.live->order, t.before});
      b.commit.id_clock = last_id_clock_;
      auto t0 = std::chrono::steady_clock::now();
      committed = store_.commit(b.commit);
      if (!committed.ok()) failed_ = true;  // memory is now ahead of disk: accept nothing more
      if (options_.metrics != nullptr) {
        double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        options_.metrics->batch(id_.value, batch.size(), secs);
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].done || !results[i]) continue;
      if (!committed.ok() && results[i]->ok()) {
        batch[i].done(make_error(Errc::unavailable, committed.error().message));
      } else {
        batch[i].done(std::move(*results[i]));
      }
    }
    if (!committed.ok()) return;

    for (const auto& [call, live] : b.issues) {
      const auto& e = live->order.pipeline.effect;
      // Only the latest request of an order is live.
      if (e && e->phase == EffectPhase::in_flight && e->attempt == call.attempt &&
          e->action == call.action) {
        queue_effect(live->order, call);
      }
    }
    hand_over_effects();
    for (auto& w : b.wakes) timers_.push(w);
    if (options_.metrics != nullptr) {
      for (auto& [from, to] : b.status_changes) options_.metrics->transition(from, to);
    }
    const bool publish = changes_.active();
    for (auto& [id, t] : b.touched) {
      const Order& o = t.live->order;
      if (publish) changes_.publish(o);
      if (!t.before || *t.before != o.status) {
        if (t.before) count_status(*t.before, -1);
        count_status(o.status, +1);
        index_status(*t.live, t.before);
      }
      index_stage(*t.live);
      if (is_terminal(o.status)) active_.erase(id);
    }
    active_count_.store(active_.size(), std::memory_order_relaxed);
  }

  // Orders in progress by status; terminal orders are not counted (they leave memory).
  void count_status(OrderStatus s, int64_t delta) {
    if (is_terminal(s)) return;
    status_counts_[static_cast<int>(s)].fetch_add(delta, std::memory_order_relaxed);
  }

  // The indexes are unordered lists with each order's position kept in its Live entry: a
  // move is a swap with the last entry and a push, with no search, allocation or rebalancing
  // (ordered sets cost ~4-6% of a writer's time: docs/performance.md). Queries, which are rare,
  // sort what they select.
  template <typename Entry, typename Pos>
  static void remove_at(std::vector<Entry>& list, uint32_t pos, Pos pos_of) {
    list[pos] = list.back();
    pos_of(list[pos]) = pos;
    list.pop_back();
  }

  // Keeps the status index (tenant, status → orders in progress) in step with an order whose
  // status moved from `before` (nullopt: new, or loaded at start).
  void index_status(Live& live, std::optional<OrderStatus> before) {
    const Order& o = live.order;
    if (before && !is_terminal(*before) && live.status_lists != nullptr) {
      remove_at((*live.status_lists)[static_cast<int>(*before)], live.status_pos,
                [](Listed& e) -> uint32_t& { return e.live->status_pos; });
    }
    if (is_terminal(o.status)) return;
    if (live.status_lists == nullptr) live.status_lists = &by_status_[o.tenant];
    auto& list = (*live.status_lists)[static_cast<int>(o.status)];
    live.status_pos = static_cast<uint32_t>(list.size());
    list.push_back(Listed{o.id, &live});
  }

  // Newest first, after the cursor: the first limit + 1 that pass the filters. Without a
  // customer or merchant filter only the limit + 1 newest are sorted; with one, all after the
  // cursor are (at most --active-orders-max entries of 24 bytes), then checked newest first.
  std::vector<Order> find_in_progress(const ListQuery& q) {
    std::vector<Order> out;
    auto it = by_status_.find(q.tenant);
    if (it == by_status_.end() || !q.status || is_terminal(*q.status)) return out;
    std::vector<Listed> picked;
    for (const Listed& e : it->second[static_cast<int>(*q.status)]) {
      if (!q.after || e.id < *q.after) picked.push_back(e);
    }
    const auto newest_first = [](const Listed& a, const Listed& b) { return b.id < a.id; };
    const bool filtered = q.customer_id || q.merchant_id;
    const size_t sorted = filtered ? picked.size() : std::min(picked.size(), q.limit + 1);
    std::partial_sort(picked.begin(), picked.begin() + sorted, picked.end(), newest_first);
    for (size_t i = 0; i < sorted && out.size() <= q.limit; ++i) {
      const Order& o = picked[i].live->order;
      if (q.customer_id && o.request.customer_id != *q.customer_id) continue;
      if (q.merchant_id && o.request.merchant_id != *q.merchant_id) continue;
      out.push_back(o);
    }
    return out;
  }

  // Keeps the stage index in step with an order: (stage, entered at) while it has an
  // outstanding effect and is not parked; nothing otherwise.
  void index_stage(Live& live) {
    const Order& o = live.order;
    std::optional<std::pair<Stage, uint64_t>> now;
    if (!is_terminal(o.status) && o.status != OrderStatus::needs_attention && o.pipeline.effect) {
      now.emplace(o.pipeline.effect->stage, o.pipeline.effect->started_ms);
    }
    if (now == live.staged) return;
    if (live.staged) {
      remove_at(by_stage_[static_cast<int>(live.staged->first)], live.stage_pos,
                [](Staged& e) -> uint32_t& { return e.live->stage_pos; });
    }
    if (now) {
      auto& list = by_stage_[static_cast<int>(now->first)];
      live.stage_pos = static_cast<uint32_t>(list.size());
      list.push_back(Staged{now->second, o.id, &live});
    }
    live.staged = now;
  }

  void refresh_stuck(uint64_t now) {
    stuck_refreshed_ms_ = now;
    for (int s = 0; s < kStageCount; ++s) {
      uint64_t sla = options_.stage_sla_ms[s];
      int64_t n = std::count_if(by_stage_[s].begin(), by_stage_[s].end(),
                                [&](const Staged& e) { return e.since + sla < now; });
      stuck_counts_[s].store(n, std::memory_order_relaxed);
    }
  }

  // Per stage, the tenant's orders past the stage's SLA, oldest first, at most `limit`.
  std::vector<StuckOrder> find_stuck(const std::string& tenant, size_t limit, uint64_t now) {
    std::vector<StuckOrder> out;
    std::vector<const Staged*> picked;
    for (int s = 0; s < kStageCount; ++s) {
      uint64_t sla = options_.stage_sla_ms[s];
      picked.clear();
      for (const Staged& e : by_stage_[s]) {
        if (e.since + sla < now && e.live->order.tenant == tenant) picked.push_back(&e);
      }
      const size_t n = std::min(picked.size(), limit);
      std::partial_sort(picked.begin(), picked.begin() + n, picked.end(),
                        [](const Staged* a, const Staged* b) {
                          return std::pair(a->since, a->id) < std::pair(b->since, b->id);
                        });
      for (size_t i = 0; i < n; ++i) {
        const Staged& e = *picked[i];
        out.push_back(StuckOrder{e.live->order, static_cast<Stage>(s), now - e.since, e.since});
      }
    }
    return out;
  }

  // An effect to start, held until hand_over_effects(); `o` must stay put until then.
  void queue_effect(const Order& o, const EffectCall& call) {
    if (options_.metrics != nullptr) options_.metrics->effect_requested(call.stage, call.action, call.attempt);
    Engine* engine = &engine_;
    issued_[static_cast<int>(call.stage)].push_back(StageService::Issued{
        EffectRequest{call, effect_idempotency_key(o.id, call.stage, call.action)}, &o,
        [engine](EffectResult r) { engine->submit_result(std::move(r)); }});
  }

  // Each stage's service gets the queued effects together (its queue's lock once).
  void hand_over_effects() {
    for (int s = 0; s < kStageCount; ++s) {
      if (issued_[s].empty()) continue;
      services_[s]->execute_all(issued_[s]);
      issued_[s].clear();
    }
  }

  // An order for reading in this batch: active (authoritative) or, if terminal, from the store.
  Result<const Order*> find(OrderId id, std::optional<Order>& holder) {
    if (auto it = active_.find(id); it != active_.end()) return &it->second.order;
    auto stored = store_.get_order(id);
    if (!stored) return stored.take_error();
    if (!stored->has_value()) return static_cast<const Order*>(nullptr);
    holder = std::move(**stored);
    return &*holder;
  }

  Result<CommandResult> apply_one(PlaceCommand& cmd, Batch& b) {
    std::string scoped = scoped_idempotency_key(cmd.tenant, cmd.idempotency_key);

    std::optional<OrderId> existing_id;
    if (auto it = b.created_keys.find(scoped); it != b.created_keys.end()) {
      existing_id = it->second;
    } else {
      auto entry = store_.find_idempotency(cmd.tenant, cmd.idempotency_key);
      if (!entry) return entry.take_error();
      if (entry->has_value()) existing_id = (*entry)->order_id;
    }
    if (existing_id) {
      std::optional<Order> holder;
      auto existing = find(*existing_id, holder);
      if (!existing) return existing.take_error();
      if (*existing == nullptr) {
        return make_error(Errc::internal, "idempotency key points at a missing order");
      }
      if (!((*existing)->request == cmd.request)) {
        return make_error(Errc::idempotency_key_reuse,
                          "Idempotency-Key was already used with a different request");
      }
      return CommandResult{Outcome::replayed, **existing};
    }

    if (active_.size() >= options_.active_orders_max) {
      return make_error(Errc::overloaded, "too many orders in progress; retry later");
    }
    uint64_t now = clock_.now_ms();
    OrderId id = ids_.mint(now, id_);
    last_id_clock_ = id.clock();
    Placed placed = place_order(id, cmd.tenant, cmd.idempotency_key, std::move(cmd.request),
                                std::max(now, id.ms()));
    CommandResult created{Outcome::created, placed.order};  // as placed: version 1, pending
    for (Event& e : placed.events) b.commit.events.push_back(std::move(e));
    b.commit.idempotency.push_back(
        IdempotencyEntry{cmd.tenant, cmd.idempotency_key, id, placed.order.created_at_ms});
    Live& live = active_.emplace(id, Live{std::move(placed.order), {}}).first->second;
    b.touched.emplace(id, Touched{&live, std::nullopt});
    b.created_keys.emplace(std::move(scoped), id);
    take(b, live, live.order.status, start_pipeline(live.order, now, policy_));
    return created;
  }

  // The tenant's order: the active one, or a terminal one loaded into `terminal`; not_found
  // for a missing order or another tenant's.
  Result<Live*> active_for(const std::string& tenant, OrderId id, std::optional<Live>& terminal) {
    if (auto it = active_.find(id); it != active_.end()) {
      if (it->second.order.tenant != tenant) return make_error(Errc::not_found, "order not found");
      return &it->second;
    }
    auto stored = store_.get_order(id);
    if (!stored) return stored.take_error();
    // Another tenant's order is answered exactly like a missing one.
    if (!stored->has_value() || (*stored)->tenant != tenant) {
      return make_error(Errc::not_found, "order not found");
    }
    terminal = Live{std::move(**stored), {}};
    return &*terminal;
  }

  // Runs a state-machine step on the tenant's order. A terminal order is not in memory and
  // the machine only ever refuses it, so a copy answers; an active order changes in place and
  // joins the batch when the step appended events.
  template <typename Step>
  Result<CommandResult> step_order(const std::string& tenant, OrderId id, Batch& b, Step step) {
    std::optional<Live> terminal;
    auto found = active_for(tenant, id, terminal);
    if (!found) return found.take_error();
    Live& live = **found;
    const OrderStatus before = live.order.status;
    Result<Transition> t = step(live.order);
    if (!t) return t.take_error();
    OF_ASSERT(!terminal);  // the machine refuses every step on a terminal order
    if (!t->events.empty()) take(b, live, before, std::move(*t));
    return CommandResult{Outcome::updated, live.order};
  }

  Result<CommandResult> apply_one(CancelCommand& cmd, Batch& b) {
    return step_order(cmd.tenant, cmd.order_id, b, [&](Order& o) {
      return cancel_order(o, cmd.reason, clock_.now_ms(), policy_);
    });
  }

  Result<CommandResult> apply_one(RedriveCommand& cmd, Batch& b) {
    return step_order(cmd.tenant, cmd.order_id, b,
                      [&](Order& o) { return redrive_order(o, clock_.now_ms(), policy_); });
  }

  Result<CommandResult> apply_one(StuckQuery&, Batch&) {
    return make_error(Errc::internal, "answered before the batch");  // not reached
  }
  Result<CommandResult> apply_one(ListInProgress&, Batch&) {
    return make_error(Errc::internal, "answered before the batch");  // not reached
  }

  Result<CommandResult> apply_one(ResultCommand& cmd, Batch& b) {
    auto it = active_.find(cmd.result.order_id);
    if (it == active_.end()) {
      return make_error(Errc::conflict, "the order has no such effect outstanding");
    }
    Live& live = it->second;
    Order& o = live.order;
    OrderStatus before = o.status;
    const uint64_t now = clock_.now_ms();
    const uint64_t requested = o.pipeline.effect ? o.pipeline.effect->requested_ms : now;
    Transition t = apply_effect_result(o, cmd.result, now, policy_);
    if (t.stale) return make_error(Errc::conflict, "the order has no such effect outstanding");
    if (options_.metrics != nullptr) {
      const EffectResult& r = cmd.result;
      options_.metrics->effect_result(r.stage, r.action, r.outcome, r.code,
                                      static_cast<double>(now - std::min(now, requested)) / 1000.0);
    }
    take(b, live, before, std::move(t));
    // Most results come from services that do not wait for the answer: no copy for them.
    return CommandResult{Outcome::updated, answering_ ? o : Order{}};
  }

  const PartitionId id_;
  Engine& engine_;
  OrderStore& store_;
  const Clock& clock_;
  IdClock& ids_;
  const EngineOptions& options_;
  const PipelinePolicy& policy_;
  const std::array<StageService*, kStageCount>& services_;
  ChangeFeed& changes_;

  // Writer thread only.
  std::unordered_map<OrderId, Live, OrderIdHash> active_;
  Batch batch_;  // the batch being applied
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  uint64_t last_id_clock_ = 0;
  bool failed_ = false;
  bool answering_ = false;  // the command being applied has a completion waiting
  std::atomic<size_t> active_count_{0};
  std::array<std::atomic<int64_t>, kOrderStatusCount> status_counts_{};
  std::array<std::atomic<int64_t>, kStageCount> stuck_counts_{};
  // The stage index: per stage, (entered at, id) of the orders in it, in no order (each Live
  // knows its entry's position).
  struct Staged {
    uint64_t since;
    OrderId id;
    Live* live;
  };
  std::array<std::vector<Staged>, kStageCount> by_stage_;
  // Effects queued for hand_over_effects(), per stage: a batch's, or those re-issued at start.
  std::array<std::vector<StageService::Issued>, kStageCount> issued_;
  // The status index of the orders in progress: tenant → per status, the orders, in no order.
  // (Live entries do not move while in active_, and tenants are never removed: the pointers
  // each way stay valid.)
  std::unordered_map<std::string, StatusLists> by_status_;
  uint64_t stuck_refreshed_ms_ = 0;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Command> queue_;
  size_t client_queued_ = 0;  // commands in queue_ that count against queue_depth_max
  bool stopping_ = false;
  std::thread thread_;
};

Engine::Engine(OrderStore& store, const Clock& clock, EngineOptions options,
               PipelinePolicy policy, std::array<StageService*, kStageCount> services)
    : store_(store), clock_(clock), options_(options), policy_(policy), services_(services),
      changes_(options.stream_listeners_max) {
  OF_ASSERT(options_.partitions >= 1);
  for (auto* s : services_) OF_ASSERT(s != nullptr);
  for (uint32_t p = 0; p < options_.partitions; ++p) {
    partitions_.push_back(std::make_unique<Partition>(PartitionId{static_cast<uint16_t>(p)}, *this,
                                                      store_, clock_, ids_, options_, policy_,
                                                      services_, changes_));
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
  partitions_[p.value]->submit(Command{std::move(command), std::move(done)}, true);
}

void Engine::cancel(CancelCommand command, Completion done) {
  auto p = partition_for_order(command.order_id, options_.partitions);
  if (!p) return done(make_error(Errc::not_found, "order not found"));
  partitions_[p->value]->submit(Command{std::move(command), std::move(done)}, true);
}

void Engine::redrive(RedriveCommand command, Completion done) {
  auto p = partition_for_order(command.order_id, options_.partitions);
  if (!p) return done(make_error(Errc::not_found, "order not found"));
  partitions_[p->value]->submit(Command{std::move(command), std::move(done)}, true);
}

void Engine::submit_result(EffectResult result, Completion done) {
  auto p = partition_for_order(result.order_id, options_.partitions);
  if (!p) {
    if (done) done(make_error(Errc::not_found, "order not found"));
    return;
  }
  partitions_[p->value]->submit(Command{ResultCommand{std::move(result)}, std::move(done)}, false);
}

namespace {

// Asks every partition one query, each answered on its partition's thread with a vector of
// T; once the last has answered, `merge` gets them all, concatenated, and its result goes to
// `done`. A partition that refuses the query (full queue, stopping) answers `done` with the
// error instead, once.
template <typename T, typename Out, typename MakeQuery, typename Merge>
void ask_every_partition(const std::vector<std::unique_ptr<Partition>>& partitions,
                         MakeQuery make_query, Merge merge,
                         std::function<void(Result<Out>)> done) {
  struct Gather {
    std::mutex mu;
    std::vector<T> items;
    size_t remaining;
    bool answered = false;
    std::function<void(Result<Out>)> done;
  };
  auto g = std::make_shared<Gather>();
  g->remaining = partitions.size();
  g->done = std::move(done);
  for (const auto& p : partitions) {
    std::function<void(std::vector<T>)> part_done = [g, merge](std::vector<T> part) {
      std::unique_lock lock(g->mu);
      if (g->answered) return;
      for (T& t : part) g->items.push_back(std::move(t));
      if (--g->remaining > 0) return;
      g->answered = true;
      std::vector<T> all = std::move(g->items);
      lock.unlock();
      g->done(merge(std::move(all)));
    };
    Completion refused = [g](Result<CommandResult> r) {
      std::unique_lock lock(g->mu);
      if (g->answered) return;
      g->answered = true;
      lock.unlock();
      g->done(r.take_error());
    };
    p->submit(Command{make_query(std::move(part_done)), std::move(refused)}, true);
  }
}

}  // namespace

void Engine::stuck_orders(std::string tenant, size_t limit,
                          std::function<void(Result<std::vector<StuckOrder>>)> done) {
  ask_every_partition<StuckOrder, std::vector<StuckOrder>>(
      partitions_,
      [&](std::function<void(std::vector<StuckOrder>)> part_done) {
        return StuckQuery{tenant, limit, std::move(part_done)};
      },
      [limit, this](std::vector<StuckOrder> v) {
        // Oldest in stage first; ties by id, so the order is stable.
        std::sort(v.begin(), v.end(), [](const StuckOrder& a, const StuckOrder& b) {
          return std::tie(a.entered_ms, a.order.id) < std::tie(b.entered_ms, b.order.id);
        });
        if (v.size() > limit) v.resize(limit);
        // One clock reading for all, so in_stage_ms agrees with the order.
        const uint64_t now = clock_.now_ms();
        for (auto& s : v) s.in_stage_ms = now - std::min(now, s.entered_ms);
        return v;
      },
      std::move(done));
}

void Engine::list_in_progress(ListQuery query, std::function<void(Result<ListPage>)> done) {
  OF_ASSERT(query.status && !is_terminal(*query.status) && query.limit >= 1);
  const size_t limit = query.limit;
  ask_every_partition<Order, ListPage>(
      partitions_,
      [&](std::function<void(std::vector<Order>)> part_done) {
        return ListInProgress{query, std::move(part_done)};
      },
      [limit](std::vector<Order> v) {
        std::sort(v.begin(), v.end(), [](const Order& a, const Order& b) { return a.id > b.id; });
        ListPage page;
        if (v.size() > limit) {  // each partition gave up to limit + 1: more follow
          v.resize(limit);
          page.next_after = v.back().id;
        }
        page.orders = std::move(v);
        return page;
      },
      std::move(done));
}

int64_t Engine::orders_in_status(OrderStatus s) const {
  int64_t n = 0;
  for (const auto& p : partitions_) n += p->in_status(s);
  return n;
}

int64_t Engine::stuck_in_stage(Stage s) const {
  int64_t n = 0;
  for (const auto& p : partitions_) n += p->stuck(s);
  return n;
}

std::vector<size_t> Engine::queue_depths() const {
  std::vector<size_t> out;
  for (const auto& p : partitions_) out.push_back(p->queued());
  return out;
}

size_t Engine::queued() const {
  size_t n = 0;
  for (const auto& p : partitions_) n += p->queued();
  return n;
}

size_t Engine::active_orders() const {
  size_t n = 0;
  for (const auto& p : partitions_) n += p->active();
  return n;
}

}  // namespace orderflow
