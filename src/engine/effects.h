// Where a stage's effects go: the built-in simulators, or the external task queue.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/order.h"
#include "core/order_machine.h"

namespace orderflow {

struct EffectRequest {
  EffectCall call;
  std::string idempotency_key;  // effect_idempotency_key(order, stage, action)
};

using EffectDone = std::function<void(EffectResult)>;

class StageService {
 public:
  virtual ~StageService() = default;
  // Starts the effect and returns at once. `order` is the order as it is when the effect is
  // requested, valid during the call only: a service copies what it keeps. `done` is called exactly once, from any thread,
  // unless the process stops first; the engine re-issues unanswered effects after a restart
  // under the same idempotency key, so a service must apply each key at most once.
  virtual void execute(EffectRequest request, const Order& order, EffectDone done) = 0;

  // One of several effects handed over together.
  struct Issued {
    EffectRequest request;
    const Order* order;  // valid during the call only, as for execute
    EffectDone done;
  };
  // Starts several effects (a partition's batch): the same as execute for each in turn, which
  // is what this does unless a service takes them more cheaply together. Moves from them.
  virtual void execute_all(std::vector<Issued>& effects) {
    for (Issued& e : effects) execute(std::move(e.request), *e.order, std::move(e.done));
  }
};

}  // namespace orderflow
