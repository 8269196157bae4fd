#include "storage/local/rocks_store.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <unordered_map>

#include "storage/codec.h"

namespace orderflow {
namespace {

// Column families, in handle order.
enum Cf { kCfMeta = 0, kCfOrders, kCfEvents, kCfIdempotency, kCfIndexes, kCfActive, kCfCount };
constexpr const char* kCfNames[kCfCount] = {"default", "orders",  "events", "idempotency",
                                             "indexes", "active"};

constexpr char kMetaPartitions[] = "partitions";
constexpr char kMetaFormat[] = "format";
constexpr char kFormatVersion[] = "orderflow-local-1";

Error io_error(const char* what, const rocksdb::Status& s) {
  return make_error(Errc::internal, std::string(what) + ": " + s.ToString());
}

void put_u32_be(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t get_u32_be(std::string_view s) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = v << 8 | static_cast<uint8_t>(s[i]);
  return v;
}
void put_u64_be(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>(v >> (8 * i)));
}
uint64_t get_u64_be(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = v << 8 | static_cast<uint8_t>(s[i]);
  return v;
}

std::string order_key(OrderId id) {
  auto b = id.bytes();
  return std::string(b.data(), b.size());
}

std::string event_key(OrderId id, uint32_t seq) {
  std::string k = order_key(id);
  put_u32_be(k, seq);
  return k;
}

// Non-terminal orders by partition: u16 BE partition + id bytes.
std::string active_key(OrderId id) {
  std::string k;
  k.push_back(static_cast<char>(id.partition().value >> 8));
  k.push_back(static_cast<char>(id.partition().value & 0xff));
  auto b = id.bytes();
  k.append(b.data(), b.size());
  return k;
}

std::string clock_key(PartitionId p) {
  std::string k = "clock/";
  put_u32_be(k, p.value);
  return k;
}

// Index keys: tenant \0 kind \0 [value \0]* ~id — the id's bytes complemented so that a
// forward scan yields newest first. Tenants, customer and merchant ids cannot contain \0
// (validated token charset), so the prefix is unambiguous.
enum class IndexKind : char {
  all = 'a',
  customer = 'c',
  merchant = 'm',
  status = 's',
  merchant_status = 'M',  // merchants have many orders; a customer's few are filtered instead
};

std::string index_prefix(const std::string& tenant, IndexKind kind, std::string_view v1 = {},
                         std::string_view v2 = {}) {
  std::string k = tenant;
  k.push_back('\0');
  k.push_back(static_cast<char>(kind));
  k.push_back('\0');
  if (!v1.empty()) {
    k.append(v1);
    k.push_back('\0');
  }
  if (!v2.empty()) {
    k.append(v2);
    k.push_back('\0');
  }
  return k;
}

void append_desc_id(std::string& k, OrderId id) {
  for (char c : id.bytes()) k.push_back(static_cast<char>(~static_cast<uint8_t>(c)));
}

// Index keys share a prefix per (tenant, kind, value) and new entries of a prefix arrive in
// roughly descending order of their (complemented) id suffix, i.e. each next to the previous
// one: the prefix lets the memtable remember the last insert position per index. Not per
// customer: a memtable holds about one order of each, so the remembered position is never
// used again, and the memtable's map of positions grows by an entry per order. (At 12,000
// orders/s: memtable inserts, the map included, 8.4 → 7.6 µs of the partition writers' CPU
// per order; at saturation the server's CPU per order 68.1 → 63.7 µs; docs/performance.md.)
class IndexPrefix final : public rocksdb::SliceTransform {
 public:
  const char* Name() const override { return "orderflow.IndexPrefix"; }
  rocksdb::Slice Transform(const rocksdb::Slice& key) const override {
    return rocksdb::Slice(key.data(), key.size() - OrderId::kByteLength);
  }
  bool InDomain(const rocksdb::Slice& key) const override {
    if (key.size() <= OrderId::kByteLength) return false;
    // tenant \0 kind \0 ...: the kind follows the first \0 (tenants cannot contain one).
    const void* end_of_tenant = std::memchr(key.data(), '\0', key.size());
    if (end_of_tenant == nullptr) return false;
    const char* kind = static_cast<const char*>(end_of_tenant) + 1;
    return kind < key.data() + key.size() && *kind != static_cast<char>(IndexKind::customer);
  }
};

std::optional<OrderId> desc_id_from_key(std::string_view key) {
  if (key.size() < OrderId::kByteLength) return std::nullopt;
  char b[OrderId::kByteLength];
  std::string_view tail = key.substr(key.size() - OrderId::kByteLength);
  for (size_t i = 0; i < OrderId::kByteLength; ++i) {
    b[i] = static_cast<char>(~static_cast<uint8_t>(tail[i]));
  }
  return OrderId::from_bytes(std::string_view(b, OrderId::kByteLength));
}

// The index entries that depend on status (the others never change after creation).
std::vector<std::string> status_index_keys(const Order& o, OrderStatus status) {
  const char* s = status_name(status);
  std::vector<std::string> keys = {
      index_prefix(o.tenant, IndexKind::status, s),
      index_prefix(o.tenant, IndexKind::merchant_status, o.request.merchant_id, s)};
  for (auto& k : keys) append_desc_id(k, o.id);
  return keys;
}

std::vector<std::string> static_index_keys(const Order& o) {
  std::vector<std::string> keys = {index_prefix(o.tenant, IndexKind::all),
                                   index_prefix(o.tenant, IndexKind::customer, o.request.customer_id),
                                   index_prefix(o.tenant, IndexKind::merchant, o.request.merchant_id)};
  for (auto& k : keys) append_desc_id(k, o.id);
  return keys;
}

}  // namespace

Result<std::unique_ptr<RocksStore>> RocksStore::open(const RocksStoreOptions& options) {
  OF_ASSERT(options.partitions <= 65536);
  OF_ASSERT(options.partitions >= 1 || (options.partitions_if_new >= 1 && options.partitions_if_new <= 65536));
  rocksdb::Options db_opts;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.max_background_jobs = 2;
  db_opts.db_write_buffer_size = options.memtable_bytes_max;
  db_opts.keep_log_file_num = 3;
  db_opts.max_log_file_size = 8 << 20;
  // Concurrent partition writers: write-group batching syncs the WAL once for a whole group.
  db_opts.enable_pipelined_write = true;
  db_opts.allow_concurrent_memtable_write = false;

  auto cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  for (int i = 0; i < kCfCount; ++i) {
    rocksdb::ColumnFamilyOptions cf;
    cf.write_buffer_size = options.memtable_bytes_max / 8;
    cf.max_write_buffer_number = 3;
    // Compaction was ~12% of all CPU under load. Records and histories are keyed by order id,
    // which grows with time: with small files an L0 → L1 compaction rewrites only the few L1
    // files at the tail of the id range instead of all of L1 (64 MB files by default), and
    // more L0 files per compaction rewrite L1 less often. Under the order log every segment
    // checkpoint flushes (RocksStore::sync), so L0 files are small and come every second or so.
    cf.target_file_size_base = 4 << 20;
    cf.level0_file_num_compaction_trigger = 8;
    if (i == kCfIndexes) {
      // Index keys start with their customer, merchant or status, so every flushed file spans
      // the whole key space and each L0 -> L1 compaction rewrites all of L1, which grows with
      // the orders stored. Three times as many L0 files per compaction: its CPU over 1.47 M
      // orders 4.87 -> 2.03 s (1.9 us per order); a list reads more files (customer p50
      // 0.20 -> 0.27 ms). Lists are its only reads, and they are rare; no creates wait on it.
      cf.level0_file_num_compaction_trigger = 24;
      cf.level0_slowdown_writes_trigger = 48;
      cf.level0_stop_writes_trigger = 72;
    }
    rocksdb::BlockBasedTableOptions table;
    table.block_cache = cache;
    if (i == kCfOrders || i == kCfIdempotency) {
      // Point lookups, most of them misses for idempotency keys: a bloom filter answers those.
      table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
    }
    if (i == kCfIdempotency) {
      // Every create looks its key up, and it is almost never there: a bloom filter over the
      // memtables' whole keys answers that without a skiplist search (0.8 MiB a memtable).
      cf.memtable_whole_key_filtering = true;
      cf.memtable_prefix_bloom_size_ratio = 0.05;
    }
    cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    // LZ4 rather than the default Snappy: the compaction threads' CPU per order 3.52 / 3.78 ->
    // 2.93 / 3.24 us in two pairs of 30 s runs (docs/performance.md, ninth session).
    cf.compression = rocksdb::kLZ4Compression;
    if (i == kCfEvents && !options.beneath_order_log) {
      // An order's events are appended in seq order: remember the insert position per order
      // (the 10-byte id prefix) so the next event's memtable insert starts there. (Under the
      // order log an order's events arrive once, when it ends: a hint would never be used
      // again, and the memtable keeps one per order.)
      cf.memtable_insert_with_hint_prefix_extractor.reset(
          rocksdb::NewFixedPrefixTransform(OrderId::kByteLength));
    } else if (i == kCfIndexes) {
      cf.memtable_insert_with_hint_prefix_extractor = std::make_shared<IndexPrefix>();
    }
    descs.emplace_back(kCfNames[i], cf);
  }

  std::unique_ptr<RocksStore> store(new RocksStore());
  store->options_ = options;

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(rocksdb::DBOptions(db_opts), options.path, descs,
                                        &store->cfs_, &raw);
  if (!s.ok()) return io_error("cannot open the store", s);
  store->db_.reset(raw);

  // Fix the partition count on first open; check it on every later one.
  std::string value;
  rocksdb::WriteOptions sync_write;
  sync_write.sync = true;
  s = raw->Get({}, store->cfs_[kCfMeta], kMetaPartitions, &value);
  if (s.IsNotFound()) {
    if (store->options_.partitions == 0) store->options_.partitions = options.partitions_if_new;
    std::string v;
    put_u32_be(v, store->options_.partitions);
    rocksdb::WriteBatch wb;
    wb.Put(store->cfs_[kCfMeta], kMetaPartitions, v);
    wb.Put(store->cfs_[kCfMeta], kMetaFormat, kFormatVersion);
    s = raw->Write(sync_write, &wb);
    if (!s.ok()) return io_error("cannot initialize the store", s);
  } else if (!s.ok()) {
    return io_error("cannot read the store's metadata", s);
  } else {
    if (value.size() != 4) return make_error(Errc::internal, "corrupt partition count");
    uint32_t stored = get_u32_be(value);
    if (options.partitions == 0) store->options_.partitions = stored;
    if (stored != store->options_.partitions) {
      return make_error(Errc::invalid_argument,
                        "the data directory was created with " + std::to_string(stored) +
                            " partitions; start with --partitions " + std::to_string(stored));
    }
  }
  return store;
}

RocksStore::~RocksStore() {
  if (db_) {
    for (auto* h : cfs_) db_->DestroyColumnFamilyHandle(h);
    db_->Close().PermitUncheckedError();
  }
}

struct RocksStore::Prepared {
  rocksdb::WriteBatch wb;
};

void RocksStore::PreparedDeleter::operator()(Prepared* p) const { delete p; }

Status RocksStore::commit(const CommitBatch& batch, const std::vector<History>& histories) {
  PreparedWrite prepared = prepare(batch, histories);
  return write(*prepared);
}

RocksStore::PreparedWrite RocksStore::prepare(const CommitBatch& batch,
                                              const std::vector<History>& histories) {
  PreparedWrite prepared(new Prepared);
  rocksdb::WriteBatch& wb = prepared->wb;
  std::string buf;
  for (const OrderWrite& w : batch.orders) {
    const Order& o = *w.order;
    if (!options_.beneath_order_log || is_terminal(o.status)) {
      buf.clear();
      codec::encode_order(o, buf);
      wb.Put(cfs_[kCfOrders], order_key(o.id), buf);
    }
    const bool was_active = w.previous_status && !is_terminal(*w.previous_status);
    const bool now_active = !is_terminal(o.status);
    const bool track_active = !options_.beneath_order_log;
    if (track_active && now_active && !was_active) wb.Put(cfs_[kCfActive], active_key(o.id), {});
    if (track_active && !now_active && was_active) wb.Delete(cfs_[kCfActive], active_key(o.id));
    if (!w.previous_status) {
      for (const auto& k : static_index_keys(o)) wb.Put(cfs_[kCfIndexes], k, {});
    }
    // Status index entries exist for terminal statuses only (orders in progress are indexed
    // by the engine, in memory): written once, when the order ends.
    const bool ended_now = !now_active && (!w.previous_status || !is_terminal(*w.previous_status));
    if (ended_now) {
      for (const auto& k : status_index_keys(o, o.status)) wb.Put(cfs_[kCfIndexes], k, {});
    }
  }
  // One write per order: its events of this batch are consecutive (one writer per order).
  std::unordered_map<OrderId, std::vector<const Event*>, OrderIdHash> runs;
  for (const Event& e : batch.events) runs[e.order_id].push_back(&e);
  for (const auto& [id, run] : runs) {
    buf.clear();
    codec::encode_events(run, buf);
    wb.Put(cfs_[kCfEvents], event_key(id, run.front()->seq), buf);
  }
  for (const History& h : histories) wb.Put(cfs_[kCfEvents], event_key(h.id, h.first_seq), h.events);
  for (const IdempotencyEntry& ie : batch.idempotency) {
    buf = order_key(ie.order_id);
    put_u64_be(buf, ie.created_at_ms);
    wb.Put(cfs_[kCfIdempotency], scoped_idempotency_key(ie.tenant, ie.key), buf);
  }
  buf.clear();
  put_u64_be(buf, batch.id_clock);
  wb.Put(cfs_[kCfMeta], clock_key(batch.partition), buf);
  return prepared;
}

Status RocksStore::write(Prepared& prepared) {
  if (failed_.load(std::memory_order_acquire)) {
    return make_error(Errc::unavailable, "the store has failed a write and accepts no more");
  }
  rocksdb::WriteBatch& wb = prepared.wb;
  rocksdb::WriteOptions wo;
  wo.sync = options_.durability == Durability::fsync && !options_.beneath_order_log;
  wo.disableWAL = options_.beneath_order_log;
  rocksdb::Status s = db_->Write(wo, &wb);
  if (!s.ok()) {
    failed_.store(true, std::memory_order_release);
    return io_error("write failed; the store is now read-only", s);
  }
  return Status::ok_status();
}

Status RocksStore::sync() {
  rocksdb::Status s;
  if (options_.beneath_order_log) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    fo.allow_write_stall = true;
    s = db_->Flush(fo, cfs_);
  } else {
    s = db_->SyncWAL();
  }
  if (!s.ok()) {
    failed_.store(true, std::memory_order_release);
    return io_error("making the writes durable failed; the store is now read-only", s);
  }
  return Status::ok_status();
}

Result<std::optional<Order>> RocksStore::get_order(OrderId id) {
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get({}, cfs_[kCfOrders], order_key(id), &value);
  if (s.IsNotFound()) return std::optional<Order>();
  if (!s.ok()) return io_error("read failed", s);
  auto order = codec::decode_order(value.ToStringView());
  if (!order) return order.take_error();
  return std::optional<Order>(std::move(*order));
}

Result<std::vector<Event>> RocksStore::get_events(OrderId id) {
  std::string prefix = order_key(id);
  std::string upper = prefix;
  upper.append(4, '\xff');
  upper.push_back('\xff');
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kCfEvents]));
  std::vector<Event> events;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    std::string_view k = it->key().ToStringView();
    if (k.size() != prefix.size() + 4 || k.substr(0, prefix.size()) != prefix) break;
    uint32_t first = get_u32_be(k.substr(prefix.size()));
    if (first > events.size() + 1) return make_error(Errc::internal, "gap in an order's events");
    if (first == events.size() + 1) {
      Status s = codec::decode_events(id, first, it->value().ToStringView(), events);
      if (!s.ok()) return s.error();
      continue;
    }
    // A run that repeats events already read: the order log rewrote the order's history as
    // one run from seq 1 over runs written before it existed (LogStore). Take what is new.
    std::vector<Event> run;
    Status s = codec::decode_events(id, first, it->value().ToStringView(), run);
    if (!s.ok()) return s.error();
    for (Event& e : run) {
      if (e.seq == events.size() + 1) events.push_back(std::move(e));
    }
  }
  if (!it->status().ok()) return io_error("read failed", it->status());
  return events;
}

Result<std::optional<IdempotencyEntry>> RocksStore::find_idempotency(const std::string& tenant,
                                                                     const std::string& key) {
  rocksdb::PinnableSlice value;
  rocksdb::Status s = db_->Get({}, cfs_[kCfIdempotency], scoped_idempotency_key(tenant, key), &value);
  if (s.IsNotFound()) return std::optional<IdempotencyEntry>();
  if (!s.ok()) return io_error("read failed", s);
  std::string_view v = value.ToStringView();
  if (v.size() != OrderId::kByteLength + 8) return make_error(Errc::internal, "corrupt idempotency entry");
  IdempotencyEntry e{tenant, key, *OrderId::from_bytes(v.substr(0, OrderId::kByteLength)),
                     get_u64_be(v.substr(OrderId::kByteLength))};
  return std::optional<IdempotencyEntry>(std::move(e));
}

Result<ListPage> RocksStore::list_orders(const ListQuery& q) { return list_orders(q, nullptr); }

Result<ListPage> RocksStore::list_orders(const ListQuery& q, const HeldOrderLookup& held) {
  OF_ASSERT(q.limit >= 1);
  if (q.status && !is_terminal(*q.status)) {
    return make_error(Errc::invalid_argument,
                      "the store indexes terminal statuses only; orders in progress are the engine's");
  }
  // Pick the narrowest index. With a customer filter, the customer's orders (few) are scanned
  // and any merchant or status filter is checked on the orders themselves.
  std::string prefix;
  bool filter_on_orders = false;
  const char* st = q.status ? status_name(*q.status) : nullptr;
  if (q.customer_id) {
    prefix = index_prefix(q.tenant, IndexKind::customer, *q.customer_id);
    filter_on_orders = q.merchant_id.has_value() || q.status.has_value();
  } else if (q.merchant_id && st) {
    prefix = index_prefix(q.tenant, IndexKind::merchant_status, *q.merchant_id, st);
  } else if (q.merchant_id) {
    prefix = index_prefix(q.tenant, IndexKind::merchant, *q.merchant_id);
  } else if (st) {
    prefix = index_prefix(q.tenant, IndexKind::status, st);
  } else {
    prefix = index_prefix(q.tenant, IndexKind::all);
  }

  const rocksdb::Snapshot* snap = db_->GetSnapshot();
  struct Release {
    rocksdb::DB* db;
    const rocksdb::Snapshot* s;
    ~Release() { db->ReleaseSnapshot(s); }
  } release{db_.get(), snap};

  std::string upper = prefix;
  upper.back() = '\x01';  // prefixes end in \0: the next possible prefix
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  ro.iterate_upper_bound = &upper_slice;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, cfs_[kCfIndexes]));

  std::string start = prefix;
  if (q.after) append_desc_id(start, *q.after);
  it->Seek(start);
  if (q.after && it->Valid() && it->key().ToStringView() == start) it->Next();

  ListPage page;
  rocksdb::ReadOptions get_ro;
  get_ro.snapshot = snap;
  size_t scanned = 0;
  const size_t scan_max = q.limit + options_.list_scan_extra_max;
  std::optional<OrderId> last_scanned;
  for (; it->Valid(); it->Next()) {
    if (page.orders.size() == q.limit) {
      page.next_after = page.orders.back().id;  // at least one more entry exists
      break;
    }
    if (scanned == scan_max) {
      page.next_after = last_scanned;  // partial page: the cursor resumes the scan
      break;
    }
    ++scanned;
    std::string_view k = it->key().ToStringView();
    if (k.size() != prefix.size() + OrderId::kByteLength) {
      return make_error(Errc::internal, "corrupt index entry");
    }
    OrderId id = *desc_id_from_key(k);
    last_scanned = id;
    std::optional<Order> order;
    if (held) {
      auto h = held(id);
      if (!h) return h.take_error();
      order = std::move(*h);
    }
    if (!order) {
      rocksdb::PinnableSlice value;
      rocksdb::Status s = db_->Get(get_ro, cfs_[kCfOrders], order_key(id), &value);
      // An order the layer above held when asked may have ended since the snapshot was
      // taken: its record is written (before the layer lets go of it) but newer than the page.
      if (s.IsNotFound() && held) s = db_->Get({}, cfs_[kCfOrders], order_key(id), &value);
      if (!s.ok()) return io_error("index points at a missing order", s);
      auto decoded = codec::decode_order(value.ToStringView());
      if (!decoded) return decoded.take_error();
      order = std::move(*decoded);
    }
    if (filter_on_orders && ((q.merchant_id && order->request.merchant_id != *q.merchant_id) ||
                             (q.status && order->status != *q.status))) {
      continue;
    }
    page.orders.push_back(std::move(*order));
  }
  if (!it->status().ok()) return io_error("read failed", it->status());
  return page;
}

Result<PartitionState> RocksStore::load_partition(PartitionId partition) {
  std::string value;
  rocksdb::Status s = db_->Get({}, cfs_[kCfMeta], clock_key(partition), &value);
  PartitionState state;
  if (s.IsNotFound()) return state;
  if (!s.ok()) return io_error("read failed", s);
  if (value.size() != 8) return make_error(Errc::internal, "corrupt partition clock");
  state.id_clock = get_u64_be(value);
  return state;
}

Result<std::vector<Order>> RocksStore::list_active(PartitionId partition) {
  std::string prefix;
  prefix.push_back(static_cast<char>(partition.value >> 8));
  prefix.push_back(static_cast<char>(partition.value & 0xff));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, cfs_[kCfActive]));
  std::vector<Order> out;
  for (it->Seek(prefix); it->Valid(); it->Next()) {
    std::string_view k = it->key().ToStringView();
    if (k.substr(0, 2) != prefix) break;
    auto id = OrderId::from_bytes(k.substr(2));
    if (!id) return make_error(Errc::internal, "corrupt active-order entry");
    auto order = get_order(*id);
    if (!order) return order.take_error();
    if (!order->has_value()) return make_error(Errc::internal, "active entry of a missing order");
    out.push_back(std::move(**order));
  }
  if (!it->status().ok()) return io_error("read failed", it->status());
  return out;
}

}  // namespace orderflow
