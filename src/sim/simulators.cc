#include "sim/simulators.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <queue>
#include <thread>
#include <unordered_map>

#include "core/routing.h"
#include "storage/codec.h"

namespace orderflow {
namespace {

uint64_t steady_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Key spaces of the ledger database.
std::string final_key(const std::string& idempotency_key) { return "k" + idempotency_key; }
std::string counter_key(OrderId id, Action a) {
  auto b = id.bytes();
  std::string k = "o";
  k.append(b.data(), b.size());
  k.push_back(static_cast<char>(a));
  return k;
}
std::string stock_key(const std::string& sku) { return "s" + sku; }

// A final outcome: what a repeated key answers.
struct Final {
  EffectOutcome outcome = EffectOutcome::success;
  std::string code;
  std::string courier_id;
};

std::string encode_final(const Final& f) {
  std::string s;
  s.push_back(static_cast<char>(f.outcome));
  codec::put_bytes(s, f.code);
  codec::put_bytes(s, f.courier_id);
  return s;
}
bool decode_final(std::string_view v, Final& f) {
  codec::Reader r(v);
  uint8_t o;
  if (!r.byte(o) || o > 2 || !r.bytes(f.code) || !r.bytes(f.courier_id) || !r.done()) return false;
  f.outcome = static_cast<EffectOutcome>(o);
  return true;
}

struct Counter {
  std::string key;
  uint32_t requests = 0;
  uint32_t applied = 0;
  std::string outcome;
};
std::string encode_counter(const Counter& c) {
  std::string s;
  codec::put_bytes(s, c.key);
  codec::put_varint(s, c.requests);
  codec::put_varint(s, c.applied);
  codec::put_bytes(s, c.outcome);
  return s;
}
bool decode_counter(std::string_view v, Counter& c) {
  codec::Reader r(v);
  uint64_t req, app;
  if (!r.bytes(c.key) || !r.varint(req) || !r.varint(app) || !r.bytes(c.outcome) || !r.done()) {
    return false;
  }
  c.requests = static_cast<uint32_t>(req);
  c.applied = static_cast<uint32_t>(app);
  return true;
}

}  // namespace

struct Simulators::Impl {
  struct Pending {
    uint64_t due_ms;
    uint64_t seq;
    EffectRequest request;
    EffectDone done;
    bool operator>(const Pending& o) const {
      return due_ms != o.due_ms ? due_ms > o.due_ms : seq > o.seq;
    }
  };

  SimOptions options;
  std::unique_ptr<rocksdb::DB> db;
  std::mutex mu;
  std::condition_variable cv;
  std::priority_queue<Pending, std::vector<Pending>, std::greater<Pending>> queue;
  uint64_t seq = 0;
  bool stopping = false;
  std::thread thread;

  // A write batch's view: values written earlier in the same batch shadow the database.
  std::unordered_map<std::string, std::optional<std::string>> overlay;
  rocksdb::WriteBatch wb;

  std::optional<std::string> get(const std::string& key) {
    if (auto it = overlay.find(key); it != overlay.end()) return it->second;
    std::string v;
    if (db->Get({}, key, &v).ok()) return v;
    return std::nullopt;
  }
  void put(const std::string& key, std::string value) {
    wb.Put(key, value);
    overlay[key] = std::move(value);
  }

  bool closed(const std::string& merchant) const {
    return std::find(options.closed_merchants.begin(), options.closed_merchants.end(), merchant) !=
           options.closed_merchants.end();
  }

  std::optional<int64_t> stock_of(const std::string& sku) {
    auto v = get(stock_key(sku));
    if (!v || v->size() != 8) return std::nullopt;
    int64_t n;
    std::memcpy(&n, v->data(), 8);
    return n;
  }
  void set_stock(const std::string& sku, int64_t n) {
    std::string v(8, '\0');
    std::memcpy(v.data(), &n, 8);
    put(stock_key(sku), std::move(v));
  }

  // Applies one request against the ledger; returns its result.
  EffectResult process(const EffectRequest& req) {
    const EffectCall& call = req.call;
    const Order& order = *req.order;
    EffectResult r;
    r.order_id = call.order_id;
    r.stage = call.stage;
    r.action = call.action;
    r.attempt = call.attempt;

    Counter counter;
    const std::string ck = counter_key(call.order_id, call.action);
    if (auto v = get(ck)) decode_counter(*v, counter);
    if (counter.key.empty()) counter.key = req.idempotency_key;
    ++counter.requests;

    Final fin;
    if (auto v = get(final_key(req.idempotency_key)); v && decode_final(*v, fin)) {
      // A repeated key: answer what was answered, change nothing.
      r.outcome = fin.outcome;
      r.code = fin.code;
      r.message = fin.code.empty() ? "" : "recorded outcome of an earlier request";
      r.courier_id = fin.courier_id;
      put(ck, encode_counter(counter));
      return r;
    }

    bool is_final = true;
    switch (call.action) {
      case Action::reserve: {
        std::map<std::string, int64_t> need;
        for (const LineItem& it : order.request.items) need[it.sku] += it.quantity;
        std::string short_sku;
        for (auto& [sku, qty] : need) {
          auto have = stock_of(sku);
          if (have && *have < qty) short_sku = sku;
        }
        if (!short_sku.empty()) {
          fin.outcome = EffectOutcome::permanent;
          fin.code = "out_of_stock";
          r.message = "not enough stock of " + short_sku;
        } else {
          for (auto& [sku, qty] : need) {
            if (auto have = stock_of(sku)) set_stock(sku, *have - qty);
          }
        }
        break;
      }
      case Action::release: {
        Counter reserved;
        auto rv = get(counter_key(call.order_id, Action::reserve));
        Final reserve_fin;
        auto rf = get(final_key(effect_idempotency_key(call.order_id, Stage::inventory, Action::reserve)));
        bool was_reserved = rv && decode_counter(*rv, reserved) && reserved.applied > 0 && rf &&
                            decode_final(*rf, reserve_fin) &&
                            reserve_fin.outcome == EffectOutcome::success;
        if (was_reserved && counter.applied == 0) {
          for (const LineItem& it : order.request.items) {
            if (auto have = stock_of(it.sku)) set_stock(it.sku, *have + it.quantity);
          }
        }
        break;
      }
      case Action::authorize: {
        const std::string& token = order.request.payment_method;
        if (token == "tok_declined") {
          fin.outcome = EffectOutcome::permanent;
          fin.code = "payment_declined";
          r.message = "the card was declined";
        } else if (token == "tok_insufficient_funds") {
          fin.outcome = EffectOutcome::permanent;
          fin.code = "insufficient_funds";
          r.message = "insufficient funds";
        } else if (token == "tok_flaky" && counter.requests <= 2) {
          is_final = false;
          fin.outcome = EffectOutcome::transient;
          fin.code = "processor_unavailable";
          r.message = "the payment processor is temporarily unavailable";
        }
        break;
      }
      case Action::confirm:
        if (closed(order.request.merchant_id)) {
          fin.outcome = EffectOutcome::permanent;
          fin.code = "merchant_rejected";
          r.message = "merchant " + order.request.merchant_id + " is closed";
        }
        break;
      case Action::assign:
        fin.courier_id = "courier-" + std::to_string(fnv1a64(call.order_id.str()) % 10000);
        break;
      default:
        break;  // void, capture, notify_cancel, unassign, deliver: always succeed
    }
    if (fin.outcome == EffectOutcome::success) ++counter.applied;
    counter.outcome = fin.outcome == EffectOutcome::success ? "ok" : fin.code;
    put(ck, encode_counter(counter));
    if (is_final) put(final_key(req.idempotency_key), encode_final(fin));
    r.outcome = fin.outcome;
    r.code = fin.code;
    r.courier_id = fin.courier_id;
    return r;
  }

  void run() {
    std::vector<Pending> batch;
    for (;;) {
      {
        std::unique_lock lock(mu);
        for (;;) {
          if (stopping) return;
          if (!queue.empty()) {
            uint64_t now = steady_ms();
            if (queue.top().due_ms <= now) break;
            cv.wait_for(lock, std::chrono::milliseconds(queue.top().due_ms - now));
          } else {
            cv.wait(lock);
          }
        }
        uint64_t now = steady_ms();
        while (!queue.empty() && queue.top().due_ms <= now && batch.size() < options.batch_max) {
          batch.push_back(std::move(const_cast<Pending&>(queue.top())));
          queue.pop();
        }
      }
      std::vector<EffectResult> results;
      results.reserve(batch.size());
      for (const Pending& p : batch) results.push_back(process(p.request));
      rocksdb::WriteOptions wo;
      wo.sync = options.durability == Durability::fsync;
      rocksdb::Status s = db->Write(wo, &wb);
      wb.Clear();
      overlay.clear();
      if (!s.ok()) {
        // Nothing answered: the engine re-issues after a restart. Keep trying new batches.
        std::fprintf(stderr, "orderflow: simulator ledger write failed: %s\n", s.ToString().c_str());
        batch.clear();
        continue;
      }
      for (size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
      batch.clear();
    }
  }
};

Simulators::Simulators(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Simulators::~Simulators() { stop(); }

Result<std::unique_ptr<Simulators>> Simulators::open(SimOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  rocksdb::Options o;
  o.create_if_missing = true;
  o.keep_log_file_num = 2;
  o.write_buffer_size = 16 << 20;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, impl->options.path, &raw);
  if (!s.ok()) return make_error(Errc::internal, "cannot open the simulator ledger: " + s.ToString());
  impl->db.reset(raw);
  // Configured stock initializes a SKU once; afterwards the ledger's count is the truth.
  for (auto& [sku, units] : impl->options.stock) {
    if (!impl->stock_of(sku)) impl->set_stock(sku, units);
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  s = raw->Write(wo, &impl->wb);
  impl->wb.Clear();
  impl->overlay.clear();
  if (!s.ok()) return make_error(Errc::internal, "cannot write the simulator ledger: " + s.ToString());
  Impl* p = impl.get();
  impl->thread = std::thread([p] { p->run(); });
  return std::unique_ptr<Simulators>(new Simulators(std::move(impl)));
}

void Simulators::execute(EffectRequest request, EffectDone done) {
  uint64_t due = steady_ms() + impl_->options.latency_ms[static_cast<int>(request.call.stage)];
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    impl_->queue.push(Impl::Pending{due, impl_->seq++, std::move(request), std::move(done)});
  }
  impl_->cv.notify_one();
}

void Simulators::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::vector<LedgerEntry>> Simulators::ledger(OrderId order_id) {
  auto b = order_id.bytes();
  std::string prefix = "o";
  prefix.append(b.data(), b.size());
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}));
  std::vector<LedgerEntry> out;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    std::string_view k = it->key().ToStringView();
    if (k.substr(0, prefix.size()) != prefix || k.size() != prefix.size() + 1) break;
    Counter c;
    if (!decode_counter(it->value().ToStringView(), c)) {
      return make_error(Errc::internal, "corrupt simulator ledger entry");
    }
    uint8_t a = static_cast<uint8_t>(k.back());
    if (a >= kActionCount) return make_error(Errc::internal, "corrupt simulator ledger key");
    out.push_back(LedgerEntry{order_id, static_cast<Action>(a), c.key, c.requests, c.applied,
                              c.outcome});
  }
  return out;
}

Result<std::vector<std::pair<std::string, int64_t>>> Simulators::stock() {
  std::vector<std::pair<std::string, int64_t>> out;
  std::unique_ptr<rocksdb::Iterator> it(impl_->db->NewIterator({}));
  for (it->Seek("s"); it->Valid(); it->Next()) {
    std::string_view k = it->key().ToStringView();
    if (k.empty() || k[0] != 's') break;
    if (it->value().size() != 8) return make_error(Errc::internal, "corrupt stock entry");
    int64_t n;
    std::memcpy(&n, it->value().data(), 8);
    out.emplace_back(std::string(k.substr(1)), n);
  }
  return out;
}

}  // namespace orderflow
