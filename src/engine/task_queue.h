// The external task queue: a StageService that hands a stage's effects to outside workers
// through the task API (poll / complete / fail) instead of running them in process.
//
// Every offer is a lease with its own task_id. Completing or failing a task whose lease
// expired or was superseded is refused (conflict) and changes nothing. An expired lease is
// reported to the engine as a transient failure `lease_expired` whose outcome is unknown:
// the engine requests the next attempt (offered under a new task_id) or, past the attempt
// limit or deadline, compensates the step as possibly done.
//
// Leases live in memory: after a restart the engine re-issues every in-flight effect, so each
// is offered again under a new task_id, and completions of pre-restart task_ids get conflict.
// Workers must therefore apply each task's idempotency_key at most once on their side.
//
// Thread safety: all methods from any thread. Poll callbacks run on the calling thread or on
// the queue's own thread and must not block.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/clock.h"
#include "engine/effects.h"

namespace orderflow {

struct TaskOptions {
  uint64_t lease_ms = 30000;
  size_t waiters_max = 1000;        // concurrent long polls
  size_t tasks_per_poll_max = 100;
  uint64_t wait_ms_max = 30000;
};

struct LeasedTask {
  std::string task_id;
  EffectRequest request;
  std::shared_ptr<const Order> order;  // as it was when the effect was requested
  uint64_t lease_expires_at_ms = 0;
};

class TaskQueue final : public StageService {
 public:
  using PollDone = std::function<void(std::vector<LeasedTask>)>;

  TaskQueue(const Clock& clock, TaskOptions options);
  ~TaskQueue() override;

  void execute(EffectRequest request, const Order& order, EffectDone done) override;

  // Leases up to `max_tasks` ready tasks of `tenant` in `stage`; when none is ready, waits up
  // to `wait_ms` for one. overloaded when waiters_max polls are already waiting.
  Status poll(const std::string& tenant, Stage stage, size_t max_tasks, uint64_t wait_ms,
              PollDone done);
  // Ends a lease. The caller submits the returned result (with the worker's outcome filled
  // in) to the engine. conflict: unknown, expired or superseded task_id.
  Result<EffectResult> take_lease(const std::string& tenant, const std::string& task_id);

  void stop();
  const TaskOptions& options() const { return options_; }

 private:
  struct Ready {
    EffectRequest request;
    std::shared_ptr<const Order> order;  // rendered to the worker that leases it
    EffectDone done;
  };
  struct Lease {
    std::string tenant;
    EffectRequest request;
    EffectDone done;
    uint64_t expires_at_ms;
  };
  struct Waiter {
    std::string tenant;
    Stage stage;
    size_t max_tasks;
    uint64_t deadline_ms;
    PollDone done;
  };
  using QueueKey = std::pair<int, std::string>;  // (stage, tenant)

  // Leases up to n ready tasks of the key; mu_ held.
  std::vector<LeasedTask> lease_locked(const QueueKey& key, size_t n, uint64_t now);
  std::string new_task_id();
  void run();

  const Clock& clock_;
  const TaskOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<QueueKey, std::deque<Ready>> ready_;
  std::unordered_map<std::string, Lease> leases_;
  std::vector<Waiter> waiters_;
  std::mt19937_64 rng_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace orderflow
