#include "engine/task_queue.h"

#include <algorithm>

#include "core/thread_name.h"

namespace orderflow {

namespace {
// A result for the effect `call` names; the outcome is the caller's to fill in.
EffectResult result_for(const EffectCall& c) {
  EffectResult r;
  r.order_id = c.order_id;
  r.stage = c.stage;
  r.action = c.action;
  r.attempt = c.attempt;
  return r;
}
}  // namespace

TaskQueue::TaskQueue(const Clock& clock, TaskOptions options)
    : clock_(clock), options_(options), rng_(std::random_device{}()) {
  thread_ = std::thread([this] {
    name_this_thread("of-tasks");
    run();
  });
}

TaskQueue::~TaskQueue() { stop(); }

std::string TaskQueue::new_task_id() {
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t a = rng_(), b = rng_();
  std::string id = "t_";
  for (int i = 0; i < 16; ++i) id.push_back(kHex[(a >> (4 * i)) & 15]);
  for (int i = 0; i < 8; ++i) id.push_back(kHex[(b >> (4 * i)) & 15]);
  return id;
}

std::vector<LeasedTask> TaskQueue::lease_locked(const QueueKey& key, size_t n, uint64_t now) {
  std::vector<LeasedTask> out;
  auto it = ready_.find(key);
  if (it == ready_.end()) return out;
  while (!it->second.empty() && out.size() < n) {
    Ready r = std::move(it->second.front());
    it->second.pop_front();
    std::string id = new_task_id();
    uint64_t expires = now + options_.lease_ms;
    out.push_back(LeasedTask{id, r.request, std::move(r.order), expires});
    leases_.emplace(std::move(id), Lease{key.second, std::move(r.request), std::move(r.done), expires});
  }
  if (it->second.empty()) ready_.erase(it);
  if (!out.empty()) cv_.notify_all();  // a new lease expiry to watch
  return out;
}

void TaskQueue::execute(EffectRequest request, const Order& order, EffectDone done) {
  auto copy = std::make_shared<const Order>(order);  // the service's copy (see StageService)
  PollDone wake;
  std::vector<LeasedTask> leased;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    QueueKey key{static_cast<int>(request.call.stage), order.tenant};
    ready_[key].push_back(Ready{std::move(request), std::move(copy), std::move(done)});
    // Hand it to the oldest poll waiting for this stage and tenant.
    for (auto w = waiters_.begin(); w != waiters_.end(); ++w) {
      if (static_cast<int>(w->stage) == key.first && w->tenant == key.second) {
        leased = lease_locked(key, w->max_tasks, clock_.now_ms());
        wake = std::move(w->done);
        waiters_.erase(w);
        break;
      }
    }
  }
  if (wake) wake(std::move(leased));
}

Status TaskQueue::poll(const std::string& tenant, Stage stage, size_t max_tasks, uint64_t wait_ms,
                       PollDone done) {
  std::vector<LeasedTask> leased;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return make_error(Errc::unavailable, "the server is shutting down");
    uint64_t now = clock_.now_ms();
    leased = lease_locked({static_cast<int>(stage), tenant}, max_tasks, now);
    if (leased.empty() && wait_ms > 0) {
      if (waiters_.size() >= options_.waiters_max) {
        return make_error(Errc::overloaded, "too many polls waiting; retry later");
      }
      waiters_.push_back(Waiter{tenant, stage, max_tasks, now + wait_ms, std::move(done)});
      cv_.notify_all();
      return Status::ok_status();
    }
  }
  done(std::move(leased));
  return Status::ok_status();
}

Result<EffectResult> TaskQueue::take_lease(const std::string& tenant, const std::string& task_id) {
  std::lock_guard lock(mu_);
  auto it = leases_.find(task_id);
  if (it == leases_.end() || it->second.tenant != tenant ||
      it->second.expires_at_ms <= clock_.now_ms()) {
    return make_error(Errc::conflict,
                      "task " + task_id + " is unknown, expired or superseded; poll for a new one");
  }
  EffectResult r = result_for(it->second.request.call);
  leases_.erase(it);
  return r;
}

void TaskQueue::run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    uint64_t now = clock_.now_ms();
    uint64_t next = now + 1000;
    std::vector<std::pair<EffectDone, EffectResult>> expired;
    for (auto it = leases_.begin(); it != leases_.end();) {
      if (it->second.expires_at_ms <= now) {
        EffectResult r = result_for(it->second.request.call);
        r.outcome = EffectOutcome::transient;
        r.code = "lease_expired";
        r.message = "no result within the task lease";
        r.outcome_unknown = true;
        expired.emplace_back(std::move(it->second.done), std::move(r));
        it = leases_.erase(it);
      } else {
        next = std::min(next, it->second.expires_at_ms);
        ++it;
      }
    }
    std::vector<PollDone> timed_out;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->deadline_ms <= now) {
        timed_out.push_back(std::move(it->done));
        it = waiters_.erase(it);
      } else {
        next = std::min(next, it->deadline_ms);
        ++it;
      }
    }
    if (!expired.empty() || !timed_out.empty()) {
      lock.unlock();
      for (auto& [done, r] : expired) done(std::move(r));
      for (auto& done : timed_out) done({});
      lock.lock();
      continue;
    }
    cv_.wait_for(lock, std::chrono::milliseconds(std::max<uint64_t>(next - now, 1)));
  }
}

void TaskQueue::stop() {
  std::vector<PollDone> waiting;
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
    for (auto& w : waiters_) waiting.push_back(std::move(w.done));
    waiters_.clear();
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  for (auto& done : waiting) done({});
}

}  // namespace orderflow
