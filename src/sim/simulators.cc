#include "sim/simulators.h"

#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <array>
#include <deque>
#include <thread>
#include <unordered_map>

#include "core/routing.h"
#include "core/thread_name.h"
#include "metrics/log.h"
#include "storage/codec.h"

namespace orderflow {
namespace {

uint64_t steady_ms() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

// Key spaces of the ledger database: "o" + order id + action → Entry; "s" + SKU → stock.
std::string entry_key(OrderId id, Action a) {
  auto b = id.bytes();
  std::string k = "o";
  k.append(b.data(), b.size());
  k.push_back(static_cast<char>(a));
  return k;
}
std::string stock_key(const std::string& sku) { return "s" + sku; }

// Everything known about one (order, action): one read and one write per request.
struct Entry {
  std::string key;            // the idempotency key the outcome is recorded under
  uint32_t requests = 0;
  uint32_t applied = 0;
  bool final = false;         // an outcome to answer repeats of `key` with
  EffectOutcome outcome = EffectOutcome::success;
  std::string code;           // last failure code, "" for success
  std::string courier_id;
};

std::string encode_entry(const Entry& e) {
  std::string s;
  codec::put_bytes(s, e.key);
  codec::put_varint(s, e.requests);
  codec::put_varint(s, e.applied);
  s.push_back(static_cast<char>(e.final ? 1 : 0));
  s.push_back(static_cast<char>(e.outcome));
  codec::put_bytes(s, e.code);
  codec::put_bytes(s, e.courier_id);
  return s;
}

bool decode_entry(std::string_view v, Entry& e) {
  codec::Reader r(v);
  uint64_t req, app;
  uint8_t fin, out;
  if (!r.bytes(e.key) || !r.varint(req) || !r.varint(app) || !r.byte(fin) || fin > 1 ||
      !r.byte(out) || out > 2 || !r.bytes(e.code) || !r.bytes(e.courier_id) || !r.done()) {
    return false;
  }
  e.requests = static_cast<uint32_t>(req);
  e.applied = static_cast<uint32_t>(app);
  e.final = fin == 1;
  e.outcome = static_cast<EffectOutcome>(out);
  return true;
}

}  // namespace

// What the simulators read of an order: only the action's own inputs are copied.
struct SimInput {
  std::vector<LineItem> items;  // reserve, release
  std::string payment_method;   // authorize
  std::string merchant_id;      // confirm

  static SimInput of(Action a, const Order& o) {
    SimInput in;
    switch (a) {
      case Action::reserve:
      case Action::release: in.items = o.request.items; break;
      case Action::authorize: in.payment_method = o.request.payment_method; break;
      case Action::confirm: in.merchant_id = o.request.merchant_id; break;
      default: break;
    }
    return in;
  }
};

struct Simulators::Impl {
  struct Pending {
    uint64_t due_ms;
    uint64_t seq;
    EffectRequest request;
    SimInput input;
    EffectDone done;
  };

  SimOptions options;
  std::unique_ptr<rocksdb::DB> db;
  std::mutex mu;
  std::condition_variable cv;
  // Requests waiting for their time, one queue per stage: a stage's latency is fixed, so its
  // requests come due in the order they arrive and each queue is sorted by due time already.
  std::array<std::deque<Pending>, kStageCount> queues;

  // The queue whose first request is due first (ties: the earlier request); null if all are
  // empty.
  std::deque<Pending>* earliest() {
    std::deque<Pending>* best = nullptr;
    for (auto& q : queues) {
      if (q.empty()) continue;
      if (!best || q.front().due_ms < best->front().due_ms ||
          (q.front().due_ms == best->front().due_ms && q.front().seq < best->front().seq)) {
        best = &q;
      }
    }
    return best;
  }
  uint64_t seq = 0;
  bool stopping = false;
  std::thread thread;
  std::atomic<uint64_t> batches_written{0};
  std::atomic<uint64_t> batches_synced{0};

  // A write batch's view: values written earlier in the same batch shadow the database.
  std::unordered_map<std::string, std::optional<std::string>> overlay;
  rocksdb::WriteBatch wb;

  std::optional<std::string> get(const std::string& key) {
    if (auto it = overlay.find(key); it != overlay.end()) return it->second;
    std::string v;
    if (db->Get({}, key, &v).ok()) return v;
    return std::nullopt;
  }
  // Reads the ledger entries a batch will look at in one MultiGet (sorted keys: RocksDB
  // probes each level's filters for all of them together) into the batch's view, where
  // get() finds them. Keys it could not read are left for get() to read one by one.
  void prefetch(const std::vector<Pending>& batch) {
    std::vector<std::string> keys;
    keys.reserve(batch.size() + 8);
    for (const Pending& p : batch) {
      keys.push_back(entry_key(p.request.call.order_id, p.request.call.action));
      if (p.request.call.action == Action::release) {
        keys.push_back(entry_key(p.request.call.order_id, Action::reserve));
      }
    }
    std::sort(keys.begin(), keys.end());
    keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    std::vector<rocksdb::Slice> slices(keys.begin(), keys.end());
    std::vector<rocksdb::PinnableSlice> values(keys.size());
    std::vector<rocksdb::Status> statuses(keys.size());
    db->MultiGet({}, db->DefaultColumnFamily(), keys.size(), slices.data(), values.data(),
                 statuses.data(), /*sorted_input=*/true);
    for (size_t i = 0; i < keys.size(); ++i) {
      if (statuses[i].ok()) {
        overlay.emplace(std::move(keys[i]), values[i].ToString());
      } else if (statuses[i].IsNotFound()) {
        overlay.emplace(std::move(keys[i]), std::nullopt);
      }
    }
  }
  void put(const std::string& key, std::string value) {
    wb.Put(key, value);
    overlay[key] = std::move(value);
  }

  bool closed(const std::string& merchant) const {
    return std::find(options.closed_merchants.begin(), options.closed_merchants.end(), merchant) !=
           options.closed_merchants.end();
  }

  // Stock by SKU as last written (nullopt: none kept, i.e. unlimited), so that a reservation
  // does not search the ledger for each of its SKUs twice. Only this thread writes the ledger,
  // so it is exact; a failed batch write clears it, and so does reaching its bound
  // (options.stock_cache_max).
  std::unordered_map<std::string, std::optional<int64_t>> stock_cache;

  std::optional<int64_t> stock_of(const std::string& sku) {
    if (auto it = stock_cache.find(sku); it != stock_cache.end()) return it->second;
    std::optional<int64_t> n;
    if (auto v = get(stock_key(sku)); v && v->size() == 8) {
      int64_t units;
      std::memcpy(&units, v->data(), 8);
      n = units;
    }
    remember_stock(sku, n);
    return n;
  }
  void remember_stock(const std::string& sku, std::optional<int64_t> n) {
    if (stock_cache.size() >= options.stock_cache_max && !stock_cache.contains(sku)) stock_cache.clear();
    stock_cache.insert_or_assign(sku, n);
  }
  void set_stock(const std::string& sku, int64_t n) {
    std::string v(8, '\0');
    std::memcpy(v.data(), &n, 8);
    put(stock_key(sku), std::move(v));
    remember_stock(sku, n);
  }

  Entry load(OrderId id, Action a) {
    Entry e;
    if (auto v = get(entry_key(id, a))) {
      if (!decode_entry(*v, e)) log::error("corrupt simulator ledger entry");
    }
    return e;
  }

  // Applies one request against the ledger; returns its result.
  EffectResult process(const EffectRequest& req, const SimInput& order) {
    const EffectCall& call = req.call;
    EffectResult r;
    r.order_id = call.order_id;
    r.stage = call.stage;
    r.action = call.action;
    r.attempt = call.attempt;

    Entry e = load(call.order_id, call.action);
    ++e.requests;
    if (e.final && e.key == req.idempotency_key) {
      // A repeated key: answer what was answered, change nothing.
      r.outcome = e.outcome;
      r.code = e.code;
      r.message = e.code.empty() ? "" : "recorded outcome of an earlier request";
      r.courier_id = e.courier_id;
      put(entry_key(call.order_id, call.action), encode_entry(e));
      return r;
    }
    // A new key for this (order, action): it executes. (A correct engine never sends a
    // second key; if it did, `applied` would show it.)
    e.key = req.idempotency_key;
    e.final = true;
    e.outcome = EffectOutcome::success;
    e.code.clear();
    switch (call.action) {
      case Action::reserve: {
        std::map<std::string, int64_t> need;
        for (const LineItem& it : order.items) need[it.sku] += it.quantity;
        std::string short_sku;
        for (auto& [sku, qty] : need) {
          auto have = stock_of(sku);
          if (have && *have < qty) short_sku = sku;
        }
        if (!short_sku.empty()) {
          e.outcome = EffectOutcome::permanent;
          e.code = "out_of_stock";
          r.message = "not enough stock of " + short_sku;
        } else {
          for (auto& [sku, qty] : need) {
            if (auto have = stock_of(sku)) set_stock(sku, *have - qty);
          }
        }
        break;
      }
      case Action::release: {
        Entry reserved = load(call.order_id, Action::reserve);
        bool was_reserved = reserved.applied > 0 && reserved.outcome == EffectOutcome::success;
        if (was_reserved && e.applied == 0) {
          for (const LineItem& it : order.items) {
            if (auto have = stock_of(it.sku)) set_stock(it.sku, *have + it.quantity);
          }
        }
        break;
      }
      case Action::authorize: {
        const std::string& token = order.payment_method;
        if (token == "tok_declined") {
          e.outcome = EffectOutcome::permanent;
          e.code = "payment_declined";
          r.message = "the card was declined";
        } else if (token == "tok_insufficient_funds") {
          e.outcome = EffectOutcome::permanent;
          e.code = "insufficient_funds";
          r.message = "insufficient funds";
        } else if (token == "tok_flaky" && e.requests <= 2) {
          e.final = false;  // a transient failure is not an outcome to repeat
          e.outcome = EffectOutcome::transient;
          e.code = "processor_unavailable";
          r.message = "the payment processor is temporarily unavailable";
        }
        break;
      }
      case Action::confirm:
        if (closed(order.merchant_id)) {
          e.outcome = EffectOutcome::permanent;
          e.code = "merchant_rejected";
          r.message = "merchant " + order.merchant_id + " is closed";
        }
        break;
      case Action::assign:
        e.courier_id = "courier-" + std::to_string(fnv1a64(call.order_id.str()) % 10000);
        break;
      default:
        break;  // void, capture, notify_cancel, unassign, deliver: always succeed
    }
    if (e.outcome == EffectOutcome::success) ++e.applied;
    put(entry_key(call.order_id, call.action), encode_entry(e));
    r.outcome = e.outcome;
    r.code = e.code;
    r.courier_id = e.courier_id;
    return r;
  }

  void run() {
    std::vector<Pending> batch;
    for (;;) {
      {
        std::unique_lock lock(mu);
        for (;;) {
          if (stopping) return;
          if (auto* q = earliest()) {
            uint64_t now = steady_ms();
            if (q->front().due_ms <= now) break;
            cv.wait_for(lock, std::chrono::milliseconds(q->front().due_ms - now));
          } else {
            cv.wait(lock);
          }
        }
        uint64_t now = steady_ms();
        for (auto* q = earliest(); q && q->front().due_ms <= now && batch.size() < options.batch_max;
             q = earliest()) {
          batch.push_back(std::move(q->front()));
          q->pop_front();
        }
      }
      std::vector<EffectResult> results;
      results.reserve(batch.size());
      prefetch(batch);
      for (const Pending& p : batch) results.push_back(process(p.request, p.input));
      rocksdb::WriteOptions wo;
      wo.sync = options.durability == Durability::fsync;
      rocksdb::Status s = db->Write(wo, &wb);
      wb.Clear();
      overlay.clear();
      if (!s.ok()) {
        // Nothing answered: the engine re-issues after a restart. Keep trying new batches.
        log::error("simulator ledger write failed", {{"error", s.ToString()}});
        stock_cache.clear();  // it may hold what the failed batch set
        batch.clear();
        continue;
      }
      batches_written.fetch_add(1, std::memory_order_relaxed);
      if (wo.sync) batches_synced.fetch_add(1, std::memory_order_relaxed);
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
  // Almost every request is the first for its (order, action): its lookup misses, which a
  // bloom filter answers without reading the tables' index blocks.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  o.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // The same for the memtable: a bloom filter over whole keys answers most lookups there
  // without a skiplist search.
  o.memtable_whole_key_filtering = true;
  o.memtable_prefix_bloom_size_ratio = 0.05;
  // Entries are keyed by order id, which grows with time: small files and more L0 files per
  // compaction rewrite less (as for the order store, storage/local/rocks_store.cc).
  o.target_file_size_base = 4 << 20;
  o.level0_file_num_compaction_trigger = 8;
  o.compression = rocksdb::kLZ4Compression;  // as the order store (rocks_store.cc)
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
  impl->thread = std::thread([p] {
    name_this_thread("of-sim");
    p->run();
  });
  return std::unique_ptr<Simulators>(new Simulators(std::move(impl)));
}

void Simulators::execute_all(std::vector<Issued>& effects) {
  std::vector<SimInput> inputs;  // what each keeps of its order, copied outside the lock
  inputs.reserve(effects.size());
  for (const Issued& e : effects) inputs.push_back(SimInput::of(e.request.call.action, *e.order));
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping) return;
    const uint64_t now = steady_ms();  // under the lock: each stage's queue stays in due order
    for (size_t i = 0; i < effects.size(); ++i) {
      const int stage = static_cast<int>(effects[i].request.call.stage);
      impl_->queues[stage].push_back(Impl::Pending{now + impl_->options.latency_ms[stage],
                                                   impl_->seq++, std::move(effects[i].request),
                                                   std::move(inputs[i]), std::move(effects[i].done)});
    }
  }
  impl_->cv.notify_one();
}

void Simulators::execute(EffectRequest request, const Order& order, EffectDone done) {
  std::vector<Issued> one;  // (the engine hands over batches: execute_all)
  one.push_back(Issued{std::move(request), &order, std::move(done)});
  execute_all(one);
}

void Simulators::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

uint64_t Simulators::ledger_batches() const {
  return impl_->batches_written.load(std::memory_order_relaxed);
}

uint64_t Simulators::ledger_syncs() const {
  return impl_->batches_synced.load(std::memory_order_relaxed);
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
    Entry e;
    uint8_t a = static_cast<uint8_t>(k.back());
    if (!decode_entry(it->value().ToStringView(), e) || a >= kActionCount) {
      return make_error(Errc::internal, "corrupt simulator ledger entry");
    }
    std::string outcome = e.outcome == EffectOutcome::success ? "ok" : e.code;
    out.push_back(LedgerEntry{order_id, static_cast<Action>(a), e.key, e.requests, e.applied,
                              std::move(outcome)});
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
