#include "storage/local/log_store.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <unordered_map>

#include "core/routing.h"
#include "core/thread_name.h"
#include "metrics/log.h"
#include "storage/codec.h"

namespace orderflow {
namespace {

namespace fs = std::filesystem;

// Segment file: the magic, then records. A record: u32 payload length, u32 CRC-32 of the
// segment seq and the payload, u64 segment seq (all little-endian), the payload:
//   varint id clock, varint entry count, entries;
//   entry: u32 length + order, varint run count, runs;
//   order: an order record (codec::encode_order, first byte codec::kOrderFormat), or, for an
//     order an earlier entry of the segment holds, byte kStateEntry + its 10-byte id + its
//     state alone (codec::encode_order_state; the fixed part is the earlier entry's);
//   run: varint first seq, u32 length + encoded events (codec).
// (Fixed-width lengths let the codecs write straight into the record.)
// A batch's entries carry the events the batch appended; a snapshot's carry every order whole
// with all of its events.
// Segment files are recycled (overwritten from the start, which an fdatasync commits without
// a file-system journal commit): a record whose seq is not its file's is what the file held
// in an earlier life, and marks the end of the segment.
constexpr char kMagic[8] = {'O', 'F', 'L', 'O', 'G', '0', '0', '1'};
constexpr size_t kRecordHeader = 16;
constexpr uint32_t kRecordMax = 1u << 30;
constexpr size_t kSnapshotRecordBytes = 1 << 20;  // snapshot records are cut at about this
constexpr char kStateEntry = 'S';
static_assert(kStateEntry != codec::kOrderFormat);

Error corrupt(const std::string& file, const char* what) {
  return make_error(Errc::internal, "corrupt order log " + file + ": " + what);
}

std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Little-endian fixed-width integers (T: uint32_t or uint64_t).
template <typename T>
void put_le(char* p, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) p[i] = static_cast<char>(v >> (8 * i));
}
template <typename T>
T get_le(const char* p) {
  T v = 0;
  for (size_t i = sizeof(T); i-- > 0;) v = static_cast<T>(v << 8 | static_cast<uint8_t>(p[i]));
  return v;
}

// CRC-32 of a record's seq field (8 bytes at `seq`) and its payload.
uint32_t record_crc(const char* seq, std::string_view payload) {
  uLong c = crc32(0, reinterpret_cast<const Bytef*>(seq), 8);
  c = crc32(c, reinterpret_cast<const Bytef*>(payload.data()), static_cast<uInt>(payload.size()));
  return static_cast<uint32_t>(c);
}

// Starts a record in `out`: room for the header, filled in by end_record.
void begin_record(std::string& out, uint64_t id_clock, size_t entries) {
  out.append(kRecordHeader, '\0');
  codec::put_varint(out, id_clock);
  codec::put_varint(out, entries);
}
void end_record(std::string& out, size_t start, uint64_t segment_seq) {
  char* h = out.data() + start;
  std::string_view payload(h + kRecordHeader, out.size() - start - kRecordHeader);
  put_le<uint32_t>(h, static_cast<uint32_t>(payload.size()));
  put_le<uint64_t>(h + 8, segment_seq);
  put_le<uint32_t>(h + 4, record_crc(h + 8, payload));
}

std::string segment_name(PartitionId p, uint64_t seq) {
  char name[64];
  std::snprintf(name, sizeof name, "p%05u-%012llu.log", static_cast<unsigned>(p.value),
                static_cast<unsigned long long>(seq));
  return name;
}

// A segment replaced by a checkpoint, kept to be overwritten as the partition's next segment.
std::string spare_name(PartitionId p) {
  char name[64];
  std::snprintf(name, sizeof name, "p%05u-spare", static_cast<unsigned>(p.value));
  return name;
}

bool read_varint(std::string_view& in, uint64_t& v) {
  uint64_t n = 0;
  int shift = 0;
  for (;;) {
    if (in.empty() || shift > 63) return false;
    uint8_t b = static_cast<uint8_t>(in[0]);
    in.remove_prefix(1);
    n |= uint64_t{b & 0x7fu} << shift;
    if (!(b & 0x80)) break;
    shift += 7;
  }
  v = n;
  return true;
}

// A u32 length, then that many bytes: returns the bytes.
bool read_sized(std::string_view& in, std::string_view& out) {
  if (in.size() < 4) return false;
  uint32_t n = get_le<uint32_t>(in.data());
  in.remove_prefix(4);
  if (n > in.size()) return false;
  out = in.substr(0, n);
  in.remove_prefix(n);
  return true;
}

// Appends what `write` appends to `out`, preceded by its u32 length; returns where the bytes
// start.
template <typename Write>
size_t put_sized(std::string& out, Write write) {
  const size_t at = out.size();
  out.append(4, '\0');
  write(out);
  put_le<uint32_t>(out.data() + at, static_cast<uint32_t>(out.size() - at - 4));
  return at + 4;
}

}  // namespace

// An order in progress as the log holds it: its latest committed record and its events.
struct Held {
  // Its latest record (codec::encode_order) in two parts: the fixed part, written once, and
  // the state, replaced at every change.
  std::string fixed;
  std::string state;
  std::vector<std::pair<uint32_t, std::string>> runs;  // (first seq, codec::encode_events)
  uint32_t next_seq = 1;                               // the seq its next event will have
  // The inner store has its creation-time record and entries, written with this status.
  std::optional<OrderStatus> in_inner;
  // It has ended: kept until the batch that ended it has settled into the inner store.
  bool ended = false;
};

// The order's whole record (codec::encode_order) as Held keeps it.
std::string record_of(const Held& h) { return h.fixed + h.state; }

// Where one order's parts sit in a batch record being built, and what the log holds of it.
struct Span {
  Held* held = nullptr;  // null: new to the log (its entry is the whole record)
  size_t fixed = 0, state = 0, state_end = 0;  // the whole record: [fixed, state_end)
  size_t run = 0, run_end = 0;                 // the batch's events of the order, if any
  uint32_t run_first = 0, run_next = 0;        // their seqs: [run_first, run_next)
};

struct LogStore::Part {
  PartitionId id;
  mutable std::mutex mu;  // guards `orders` for readers; the writer changes it under mu
  std::unordered_map<OrderId, Held, OrderIdHash> orders;
  uint64_t id_clock = 0;
  uint64_t segment_seq = 0;
  uint64_t segment_bytes = 0;
  // segment_bytes_max, less a share per partition: partitions under even load would all
  // checkpoint at the same moment otherwise.
  uint64_t segment_limit = 0;
  uint64_t snapshot_bytes = 0;  // the current segment's snapshot (its first bytes)
  bool spare_ready = false;  // a spare segment file exists (guarded by deleter_mu_)
  int fd = -1;
  // Writer-only scratch space, kept for its capacity.
  std::string buf;
  std::unordered_map<OrderId, std::vector<const Event*>, OrderIdHash> runs;
  std::vector<Span> spans;
  std::vector<std::string_view> run_views;
  std::vector<std::string> history_values;
  // Settling (log_store.h): batches are numbered from 1; `committed` is the last one handed to
  // the settling thread, `settled` the last one it applied (both written under settle_mu_).
  std::atomic<uint64_t> committed{0};
  std::atomic<uint64_t> settled{0};
  // What memory keeps for each batch that has not settled yet (writer only): the orders that
  // ended in it and its new idempotency keys, forgotten by reap().
  struct Unsettled {
    uint64_t seq;
    std::vector<OrderId> ended;
    std::vector<std::string> keys;
  };
  std::deque<Unsettled> unsettled;
  // The idempotency keys of unsettled batches (tenant \0 key), guarded by mu.
  std::unordered_map<std::string, IdempotencyEntry> pending_keys;
};

Result<std::unique_ptr<LogStore>> LogStore::open(const LogStoreOptions& options,
                                                 std::unique_ptr<RocksStore> inner) {
  OF_ASSERT(inner->beneath_order_log());
  std::unique_ptr<LogStore> s(new LogStore());
  s->options_ = options;
  s->inner_ = std::move(inner);
  std::error_code ec;
  fs::create_directories(options.dir, ec);
  if (ec) return make_error(Errc::internal, "cannot create the order log directory " + options.dir + ": " + ec.message());
  for (uint32_t i = 0; i < options.partitions; ++i) {
    auto p = std::make_unique<Part>();
    p->id = PartitionId{static_cast<uint16_t>(i)};
    p->segment_limit = options.segment_bytes_max -
                       options.segment_bytes_max / 2 * i / std::max<uint32_t>(options.partitions, 1);
    s->parts_.push_back(std::move(p));
  }
  LogStore* raw = s.get();
  s->deleter_ = std::thread([raw] {
    name_this_thread("of-log-retire");
    raw->delete_segments();
  });
  s->settler_ = std::thread([raw] {
    name_this_thread("of-log-settle");
    raw->settle_batches();
  });
  for (auto& p : s->parts_) {
    Status st = s->recover(*p);
    if (!st.ok()) return st.error();
  }
  return s;
}

Status LogStore::close() {
  closed_.store(true, std::memory_order_release);
  Status st = Status::ok_status();
  if (!failed_.load(std::memory_order_acquire)) {
    for (auto& p : parts_) {
      // (A segment that is all snapshot has nothing to shorten.)
      if (p->fd >= 0 && p->segment_bytes > p->snapshot_bytes) st = checkpoint(*p);
      if (!st.ok()) break;
    }
  }
  // The retiring thread finishes what is queued (once it has settled, flushing RocksDB
  // first), then ends; then the settling thread, with nothing left to apply.
  stop_retiring();
  stop_settling();
  if (!st.ok()) return st;
  if (failed_.load(std::memory_order_acquire)) {
    return make_error(Errc::internal, "order log: closed after a failure; the next start replays it");
  }
  return Status::ok_status();
}

namespace {
// Tells a background thread to finish (the flag under its mutex, then a wake-up) and joins it.
void stop_thread(std::mutex& mu, bool& stopping, std::condition_variable& cv, std::thread& t) {
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  if (t.joinable()) t.join();
}
}  // namespace

void LogStore::stop_retiring() { stop_thread(deleter_mu_, stopping_, deleter_cv_, deleter_); }

void LogStore::stop_settling() { stop_thread(settle_mu_, settle_stopping_, settle_cv_, settler_); }

void LogStore::settle_batches() {
  std::unique_lock lock(settle_mu_);
  for (;;) {
    settle_cv_.wait(lock, [this] { return settle_stopping_ || !settling_.empty(); });
    if (settling_.empty()) return;  // stopping, nothing left
    Settling s = std::move(settling_.front());
    settling_.pop_front();
    lock.unlock();
    settle_cv_.notify_all();  // room for a writer waiting on a full queue
    if (options_.before_settle) options_.before_settle();
    if (!failed_.load(std::memory_order_acquire)) {
      if (Status st = inner_->write(*s.write); !st.ok()) {
        log::error("order log: a batch could not settle into RocksDB", {{"error", st.error().message}});
        (void)fail("settling a batch into RocksDB: " + st.error().message);
      }
    }
    s.write.reset();
    lock.lock();
    // (Also after a failure: nobody waits forever. The store is read-only from then on, and
    // the next start replays the log.)
    s.part->settled.store(s.seq, std::memory_order_release);
    settled_cv_.notify_all();
  }
}

void LogStore::wait_settled(const Part& p, uint64_t seq) {
  std::unique_lock lock(settle_mu_);
  settled_cv_.wait(lock, [&] { return p.settled.load(std::memory_order_acquire) >= seq; });
}

void LogStore::settle() {
  for (auto& p : parts_) wait_settled(*p, p->committed.load(std::memory_order_acquire));
}

size_t LogStore::settle_queued() const {
  std::lock_guard lock(settle_mu_);
  return settling_.size();
}

void LogStore::reap(Part& p) {
  const uint64_t settled = p.settled.load(std::memory_order_acquire);
  if (p.unsettled.empty() || p.unsettled.front().seq > settled) return;
  std::lock_guard lock(p.mu);
  while (!p.unsettled.empty() && p.unsettled.front().seq <= settled) {
    for (OrderId id : p.unsettled.front().ended) p.orders.erase(id);
    for (const std::string& k : p.unsettled.front().keys) p.pending_keys.erase(k);
    p.unsettled.pop_front();
  }
}

LogStore::~LogStore() {
  stop_retiring();
  stop_settling();
  for (auto& p : parts_) {
    if (p->fd >= 0) ::close(p->fd);
  }
}

void LogStore::delete_segments() {
  std::unique_lock lock(deleter_mu_);
  for (;;) {
    deleter_cv_.wait(lock, [this] { return stopping_ || !doomed_.empty(); });
    if (doomed_.empty()) return;  // stopping, nothing left
    Doomed d = std::move(doomed_.front());
    doomed_.pop_front();
    const bool keep = !d.part->spare_ready;
    lock.unlock();
    ::close(d.fd);
    if (options_.before_retire) options_.before_retire();
    // The segment's batches must be in RocksDB's memtables before the flush below.
    wait_settled(*d.part, d.settle_upto);
    // What the segment holds that RocksDB alone must keep from now on (orders that ended in
    // it, new orders' entries) may not be durable there yet: make it so first. Here, not on
    // the partition writer: without a write-ahead log that is a flush of every memtable.
    if (Status st = inner_->sync(); !st.ok()) {
      log::error("order log: cannot retire a segment", {{"path", d.path}, {"error", st.error().message}});
      (void)fail("making RocksDB durable before retiring " + d.path + ": " + st.error().message);
      lock.lock();
      continue;  // the segment stays: recovery replays it
    }
    std::error_code ec;
    if (keep) {
      fs::rename(d.path, fs::path(options_.dir) / spare_name(d.part->id), ec);
    } else {
      fs::remove(d.path, ec);
    }
    if (ec) log::warn("cannot retire an old order log segment", {{"path", d.path}, {"error", ec.message()}});
    lock.lock();
    if (keep && !ec) d.part->spare_ready = true;
  }
}

Status LogStore::fail(const std::string& what) {
  failed_.store(true, std::memory_order_release);
  return make_error(Errc::internal, "order log: " + what + "; the store is now read-only");
}

Status LogStore::write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return make_error(Errc::internal, errno_text("write"));
    done += static_cast<size_t>(n);
  }
  return Status::ok_status();
}

Status LogStore::sync(int fd) {
  if (options_.durability != Durability::fsync) return Status::ok_status();
  auto t0 = std::chrono::steady_clock::now();
  if (::fdatasync(fd) != 0) return make_error(Errc::internal, errno_text("fdatasync"));
  if (options_.on_sync) {
    options_.on_sync(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return Status::ok_status();
}

Status LogStore::cut_segment(const std::string& path, uint64_t length) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::internal, errno_text(("open " + path).c_str()));
  Status st = ::ftruncate(fd, static_cast<off_t>(length)) == 0
                  ? Status::ok_status()
                  : make_error(Errc::internal, errno_text(("truncate " + path).c_str()));
  // The new size is metadata a later read needs, which fdatasync writes too.
  if (st.ok()) st = sync(fd);
  ::close(fd);
  return st;
}

namespace {

Status sync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return make_error(Errc::internal, errno_text("open directory"));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return make_error(Errc::internal, errno_text("fsync directory"));
  return Status::ok_status();
}

// Applies one record's entries to `orders`; the finished ones are moved to `ended`.
Status apply_record(const std::string& file, std::string_view payload,
                    std::unordered_map<OrderId, Held, OrderIdHash>& orders, uint64_t& id_clock) {
  uint64_t clock = 0, entries = 0;
  if (!read_varint(payload, clock) || !read_varint(payload, entries)) {
    return corrupt(file, "record header");
  }
  id_clock = std::max(id_clock, clock);
  for (uint64_t i = 0; i < entries; ++i) {
    std::string_view order;
    uint64_t nruns = 0;
    if (!read_sized(payload, order) || !read_varint(payload, nruns)) return corrupt(file, "entry");
    std::optional<OrderId> id;
    Held* held = nullptr;
    if (!order.empty() && order[0] == kStateEntry) {
      if (order.size() >= 1 + OrderId::kByteLength) {
        id = OrderId::from_bytes(order.substr(1, OrderId::kByteLength));
      }
      auto it = id ? orders.find(*id) : orders.end();
      if (it == orders.end()) return corrupt(file, "the state of an order not held before it");
      held = &it->second;
      held->state.assign(order.substr(1 + OrderId::kByteLength));
    } else {
      // The whole record is decoded once, after replay; here only its id and its parts.
      auto rid = codec::order_id_of(order);
      if (!rid) return rid.error();
      auto state_at = codec::order_state_offset(order);
      if (!state_at) return state_at.error();
      id = *rid;
      held = &orders[*id];
      held->fixed.assign(order.substr(0, *state_at));
      held->state.assign(order.substr(*state_at));
    }
    Held& h = *held;
    for (uint64_t r = 0; r < nruns; ++r) {
      uint64_t first = 0;
      std::string_view run;
      if (!read_varint(payload, first) || !read_sized(payload, run) || first == 0 ||
          first > UINT32_MAX) {
        return corrupt(file, "event run");
      }
      std::vector<Event> events;
      Status st = codec::decode_events(*id, static_cast<uint32_t>(first), run, events);
      if (!st.ok()) return st;
      const uint32_t end = static_cast<uint32_t>(first + events.size());
      if (end <= h.next_seq) continue;  // already held (a snapshot repeats what came before)
      if (first != h.next_seq) return corrupt(file, "gap in an order's events");
      h.runs.emplace_back(static_cast<uint32_t>(first), std::string(run));
      h.next_seq = end;
    }
  }
  if (!payload.empty()) return corrupt(file, "trailing bytes");
  return Status::ok_status();
}

std::vector<Event> decode_runs(OrderId id, const Held& h) {
  std::vector<Event> events;
  for (const auto& [first, run] : h.runs) {
    Status st = codec::decode_events(id, first, run, events);
    OF_ASSERT(st.ok());  // these bytes were encoded (or checked) by this process
  }
  return events;
}

}  // namespace

Status LogStore::recover(Part& p) {
  std::vector<std::pair<uint64_t, std::string>> segments;  // (seq, path)
  const std::string prefix = segment_name(p.id, 0).substr(0, 7);  // "pNNNNN-"
  for (const auto& entry : fs::directory_iterator(options_.dir)) {
    std::string name = entry.path().filename().string();
    if (name.size() != prefix.size() + 16 || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - 4, 4, ".log") != 0) {
      continue;
    }
    segments.emplace_back(std::stoull(name.substr(prefix.size(), 12)), entry.path().string());
  }
  std::sort(segments.begin(), segments.end());
  // A newest segment created but never written (the process died right after creating it)
  // holds nothing: it goes before anything is decided from the seqs.
  if (!segments.empty()) {
    std::error_code ec;
    const uintmax_t size = fs::file_size(segments.back().second, ec);
    if (!ec && size < sizeof kMagic) {
      fs::remove(segments.back().second, ec);
      if (ec) return make_error(Errc::internal, "cannot remove " + segments.back().second + ": " + ec.message());
      segments.pop_back();
    }
  }
  // Segments follow each other by seq. One before a gap is superseded: the segment after it
  // was retired, which happens only once RocksDB holds what came before it durably. (Builds
  // before the fifteenth session left the segment a start had read beside the ones after it;
  // read first, it brought back orders that had ended since in progress.) Only the run after
  // the last gap is read; the others are removed below with the older ones.
  size_t first_read = 0;
  for (size_t i = 1; i < segments.size(); ++i) {
    if (segments[i].first != segments[i - 1].first + 1) first_read = i;
  }

  if (segments.empty()) {
    // A data directory from before the log (or a new one): the inner store's orders in
    // progress, with their events, are the starting state.
    auto active = inner_->list_active(p.id);
    if (!active) return active.error();
    for (const Order& o : *active) {
      auto events = inner_->get_events(o.id);
      if (!events) return events.error();
      Held& h = p.orders[o.id];
      codec::encode_order_fixed(o, h.fixed);
      codec::encode_order_state(o, h.state);
      h.in_inner = o.status;
      if (!events->empty()) {
        std::vector<const Event*> run;
        for (const Event& e : *events) run.push_back(&e);
        std::string bytes;
        codec::encode_events(run, bytes);
        h.runs.emplace_back(1, std::move(bytes));
        h.next_seq = static_cast<uint32_t>(events->size() + 1);
      }
    }
  }

  // Every segment read below is whole up to its end (a torn tail is cut), and a damaged one
  // ends recovery with an error: the partition continues from the newest.
  for (size_t i = first_read; i < segments.size(); ++i) {
    const std::string& file = segments[i].second;
    const bool newest = i + 1 == segments.size();
    std::ifstream in(file, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) return make_error(Errc::internal, "cannot read " + file);
    if (bytes.size() < sizeof kMagic || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0) {
      return corrupt(file, "not an order log segment");  // (an unwritten newest went above)
    }
    std::string_view rest(bytes);
    rest.remove_prefix(sizeof kMagic);
    const uint64_t seq = segments[i].first;
    while (!rest.empty()) {
      // What a recycled file held before: the segment ends here.
      if (rest.size() >= kRecordHeader && get_le<uint64_t>(rest.data() + 8) != seq) break;
      bool whole = rest.size() >= kRecordHeader;
      uint32_t len = whole ? get_le<uint32_t>(rest.data()) : 0;
      whole = whole && len <= kRecordMax && rest.size() - kRecordHeader >= len;
      std::string_view payload = whole ? rest.substr(kRecordHeader, len) : std::string_view();
      if (!whole || record_crc(rest.data() + 8, payload) != get_le<uint32_t>(rest.data() + 4)) {
        // A record torn by a crash can only be the last one written; anything else is damage.
        if (!newest) return corrupt(file, "bad record in a segment that is not the newest");
        // The checkpoint below makes this segment an older one, and the process may die
        // again before the segment is retired: the torn record goes first.
        Status st = cut_segment(file, bytes.size() - rest.size());
        if (!st.ok()) return st;
        break;
      }
      Status st = apply_record(file, payload, p.orders, p.id_clock);
      if (!st.ok()) return st;
      rest.remove_prefix(kRecordHeader + len);
    }
    p.segment_seq = seq;
  }
  // A spare holds nothing of value (every record in it has an older seq than any segment
  // to come): it is kept to be overwritten by the next checkpoint.
  {
    std::lock_guard lock(deleter_mu_);
    p.spare_ready = fs::exists(fs::path(options_.dir) / spare_name(p.id));
  }

  // The inner store gets what the log knows: finished orders whole, orders in progress their
  // creation-time entries (both may be there already; writing them again changes nothing).
  CommitBatch ib;
  ib.partition = p.id;
  std::vector<Order> decoded;
  decoded.reserve(p.orders.size());
  for (auto& [id, h] : p.orders) {
    auto o = codec::decode_order(record_of(h));
    if (!o) return o.error();
    decoded.push_back(std::move(*o));
  }
  for (const Order& o : decoded) {
    Held& h = p.orders.at(o.id);
    ib.orders.push_back(OrderWrite{&o, std::nullopt});
    ib.idempotency.push_back(IdempotencyEntry{o.tenant, o.idempotency_key, o.id, o.created_at_ms});
    if (is_terminal(o.status)) {
      for (Event& e : decode_runs(o.id, h)) ib.events.push_back(std::move(e));
    }
    h.in_inner = o.status;
  }
  if (!ib.orders.empty()) {
    auto state = inner_->load_partition(p.id);
    if (!state) return state.error();
    ib.id_clock = std::max(state->id_clock, p.id_clock);
    Status st = inner_->commit(ib);
    if (!st.ok()) return st;
  }
  for (const Order& o : decoded) {
    if (is_terminal(o.status)) p.orders.erase(o.id);
  }
  // The partition moves to a fresh segment holding what remains. The checkpoint hands the
  // segment read last to the retiring thread, which makes what was just written into the
  // inner store durable before it lets the segment go (it must not stay: once a later
  // checkpoint has retired the segment after it, reading it would go back in time).
  if (!segments.empty()) {
    const std::string& newest = segments.back().second;
    p.fd = ::open(newest.c_str(), O_RDONLY | O_CLOEXEC);
    if (p.fd < 0) return make_error(Errc::internal, errno_text(("open " + newest).c_str()));
  }
  Status st = checkpoint(p);
  if (!st.ok()) return st;
  if (segments.size() > 1) {
    // Older ones (left by a crash during an earlier checkpoint, or superseded before a gap)
    // go here, after the same.
    st = inner_->sync();
    if (!st.ok()) return st;
    for (size_t i = 0; i + 1 < segments.size(); ++i) {
      std::error_code ec;
      fs::remove(segments[i].second, ec);
    }
  }
  return sync_dir(options_.dir);
}

Status LogStore::checkpoint(Part& p) {
  const auto t0 = std::chrono::steady_clock::now();
  const uint64_t seq = p.segment_seq + 1;
  const std::string path = (fs::path(options_.dir) / segment_name(p.id, seq)).string();
  bool recycled = false;
  {
    std::lock_guard lock(deleter_mu_);
    recycled = p.spare_ready;
    p.spare_ready = false;
  }
  if (recycled) {
    // Overwritten from the start: its blocks are allocated, so syncs need no journal commit.
    const std::string spare = (fs::path(options_.dir) / spare_name(p.id)).string();
    if (::rename(spare.c_str(), path.c_str()) != 0) {
      return make_error(Errc::internal, errno_text(("rename " + spare).c_str()));
    }
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | (recycled ? 0 : O_CREAT | O_TRUNC), 0644);
  if (fd < 0) return make_error(Errc::internal, errno_text(("open " + path).c_str()));
  std::string& out = p.buf;
  out.assign(kMagic, sizeof kMagic);
  auto it = p.orders.begin();
  while (it != p.orders.end()) {
    const size_t start = out.size();
    size_t count = 0;
    std::string body;
    for (; it != p.orders.end() && body.size() < kSnapshotRecordBytes; ++it) {
      const Held& h = it->second;
      // An order that ended waits in memory for its batch to settle; the old segment, which
      // holds that batch, is retired only after it has (delete_segments).
      if (h.ended) continue;
      ++count;
      put_sized(body, [&](std::string& o) {
        o.append(h.fixed);
        o.append(h.state);
      });
      codec::put_varint(body, h.runs.size());
      for (const auto& [first, run] : h.runs) {
        codec::put_varint(body, first);
        put_sized(body, [&](std::string& o) { o.append(run); });
      }
    }
    begin_record(out, p.id_clock, count);
    out.append(body);
    end_record(out, start, seq);
  }
  Status st = write_all(fd, out);
  if (st.ok()) st = sync(fd);
  if (st.ok()) st = sync_dir(options_.dir);
  if (!st.ok()) {
    ::close(fd);
    return st;
  }
  const int old_fd = p.fd;
  const uint64_t old_seq = p.segment_seq;
  p.fd = fd;
  p.segment_seq = seq;
  p.segment_bytes = out.size();
  p.snapshot_bytes = out.size();
  if (old_fd >= 0) {
    // The old segment becomes the spare (or is unlinked: tens of milliseconds for a large
    // file) on another thread; the partition does not wait. (A segment left behind by a
    // crash is read, harmlessly, before the newer one.)
    std::lock_guard lock(deleter_mu_);
    doomed_.push_back({&p, old_fd, (fs::path(options_.dir) / segment_name(p.id, old_seq)).string(),
                       p.committed.load(std::memory_order_relaxed)});
    deleter_cv_.notify_one();
  }
  checkpoints_.fetch_add(1, std::memory_order_relaxed);
  const auto t2 = std::chrono::steady_clock::now();
  auto ms = [](auto d) { return std::to_string(std::chrono::duration<double, std::milli>(d).count()); };
  log::info("order log checkpoint", {{"partition", std::to_string(p.id.value)},
                                     {"orders", std::to_string(p.orders.size())},
                                     {"bytes", std::to_string(p.segment_bytes)},
                                     {"snapshot_ms", ms(t2 - t0)}});
  return Status::ok_status();
}

Status LogStore::commit(const CommitBatch& batch) {
  if (failed_.load(std::memory_order_acquire)) {
    return make_error(Errc::unavailable, "the store has failed a write and accepts no more");
  }
  if (closed_.load(std::memory_order_acquire)) {
    return make_error(Errc::unavailable, "the store is closed");
  }
  Part& p = *parts_.at(batch.partition.value);
  reap(p);
  p.runs.clear();
  for (const Event& e : batch.events) p.runs[e.order_id].push_back(&e);

  // 1. The batch, appended to the log and synced: from here on it is durable.
  std::string& out = p.buf;
  out.clear();
  begin_record(out, batch.id_clock, batch.orders.size());
  // Where each order's record and event run sit in `out` (start, end; 0, 0: no run).
  auto& spans = p.spans;
  spans.clear();
  for (const OrderWrite& w : batch.orders) {
    Span sp;
    const Order& o = *w.order;
    // (Pointers into `orders` stay valid while others are inserted; only this thread erases.)
    if (auto held = p.orders.find(o.id); held != p.orders.end()) sp.held = &held->second;
    put_sized(out, [&](std::string& e) {
      if (sp.held) {
        // The log holds the order's fixed part: its state is enough.
        e.push_back(kStateEntry);
        const auto id = o.id.bytes();
        e.append(id.data(), id.size());
      } else {
        sp.fixed = e.size();
        codec::encode_order_fixed(o, e);
      }
      sp.state = e.size();
      codec::encode_order_state(o, e);
      sp.state_end = e.size();
    });
    auto run = p.runs.find(w.order->id);
    codec::put_varint(out, run == p.runs.end() ? 0 : 1);
    if (run != p.runs.end()) {
      sp.run_first = run->second.front()->seq;
      sp.run_next = run->second.back()->seq + 1;
      codec::put_varint(out, sp.run_first);
      sp.run = put_sized(out, [&](std::string& o) { codec::encode_events(run->second, o); });
      sp.run_end = out.size();
    }
    spans.push_back(sp);
  }
  end_record(out, 0, p.segment_seq);
  Status st = write_all(p.fd, out);
  if (st.ok()) st = sync(p.fd);
  if (!st.ok()) return fail(st.error().message);
  p.segment_bytes += out.size();
  p.id_clock = std::max(p.id_clock, batch.id_clock);

  // 2. The inner store: new orders' creation-time entries, finished orders whole.
  CommitBatch ib;
  ib.partition = batch.partition;
  ib.id_clock = batch.id_clock;
  ib.idempotency = batch.idempotency;
  // A finished order's history goes to the inner store as the runs were logged (those held,
  // then the batch's), not decoded: history_values[i] is the i-th finished order's.
  std::vector<RocksStore::History> histories;
  // (Only this thread changes `orders`: reading it here needs no lock.)
  for (const OrderWrite& w : batch.orders) {
    const Order& o = *w.order;
    const bool created = !w.previous_status;
    if (!created && !is_terminal(o.status)) continue;
    const Span& sp = spans[&w - batch.orders.data()];
    const Held* held = sp.held;
    // The inner store's previous status is the one it last wrote: none until it has the order.
    ib.orders.push_back(OrderWrite{&o, held ? held->in_inner : std::nullopt});
    if (!is_terminal(o.status)) continue;
    p.run_views.clear();
    if (held) {
      for (const auto& [first, run] : held->runs) p.run_views.push_back(run);
    }
    if (sp.run_end != 0) p.run_views.push_back(std::string_view(out).substr(sp.run, sp.run_end - sp.run));
    if (p.run_views.empty()) continue;  // (no events at all: nothing to write)
    const size_t i = histories.size();
    if (p.history_values.size() == i) p.history_values.emplace_back();
    p.history_values[i].clear();
    codec::encode_run_list(p.run_views, p.history_values[i]);
    const uint32_t first = held && !held->runs.empty() ? held->runs.front().first : sp.run_first;
    histories.push_back({o.id, first, {}});
  }
  // (Views only now: history_values may have moved its strings while it grew.)
  for (size_t i = 0; i < histories.size(); ++i) histories[i].events = p.history_values[i];

  // 3. Memory: readers see the batch's orders from here on — before the inner store has
  // their index entries, so that a list never finds an entry of an order that is neither
  // here nor there; those that ended stay until the batch has settled, and so do the new
  // idempotency keys.
  Part::Unsettled unsettled;
  {
    std::lock_guard lock(p.mu);
    for (size_t i = 0; i < batch.orders.size(); ++i) {
      const Order& o = *batch.orders[i].order;
      const Span& sp = spans[i];
      Held& h = sp.held ? *sp.held : p.orders[o.id];
      if (!sp.held) h.fixed.assign(out, sp.fixed, sp.state - sp.fixed);
      h.state.assign(out, sp.state, sp.state_end - sp.state);
      if (!batch.orders[i].previous_status) h.in_inner = o.status;
      if (sp.run_end != 0) {
        h.runs.emplace_back(sp.run_first, out.substr(sp.run, sp.run_end - sp.run));
        h.next_seq = sp.run_next;
      }
      if (is_terminal(o.status)) {
        h.ended = true;
        unsettled.ended.push_back(o.id);
      }
    }
    for (const IdempotencyEntry& ie : batch.idempotency) {
      std::string k = scoped_idempotency_key(ie.tenant, ie.key);
      p.pending_keys.insert_or_assign(k, ie);
      unsettled.keys.push_back(std::move(k));
    }
  }
  // 4. The inner store's write, encoded here and applied by the settling thread.
  if (!ib.orders.empty() || !ib.idempotency.empty()) {
    RocksStore::PreparedWrite write = inner_->prepare(ib, histories);
    const uint64_t seq = p.committed.load(std::memory_order_relaxed) + 1;
    {
      std::unique_lock lock(settle_mu_);
      if (settling_.size() >= options_.settle_queue_max) {
        settle_waits_.fetch_add(1, std::memory_order_relaxed);
        settle_cv_.wait(lock, [this] { return settling_.size() < options_.settle_queue_max; });
      }
      settling_.push_back({&p, seq, std::move(write)});
      p.committed.store(seq, std::memory_order_release);
    }
    settle_cv_.notify_all();
    unsettled.seq = seq;
    p.unsettled.push_back(std::move(unsettled));
  }

  // The log must grow by the limit, and by at least the snapshot's size, before the next
  // checkpoint: with many orders in progress a snapshot can outgrow the limit, and
  // checkpointing after every batch would then rewrite them all every time.
  if (p.segment_bytes > p.snapshot_bytes + std::max(p.segment_limit, p.snapshot_bytes)) {
    st = checkpoint(p);
    if (!st.ok()) return fail(st.error().message);
  }
  return Status::ok_status();
}

Result<std::optional<Order>> LogStore::held_order(OrderId id) const {
  if (id.partition().value >= parts_.size()) return std::optional<Order>();
  const Part& p = *parts_[id.partition().value];
  std::string record;
  {
    std::lock_guard lock(p.mu);
    auto it = p.orders.find(id);
    if (it == p.orders.end()) return std::optional<Order>();
    record = record_of(it->second);
  }
  auto o = codec::decode_order(record);
  if (!o) return o.take_error();
  return std::optional<Order>(std::move(*o));
}

Result<std::optional<Order>> LogStore::get_order(OrderId id) {
  auto held = held_order(id);
  if (!held || *held) return held;
  return inner_->get_order(id);
}

Result<std::vector<Event>> LogStore::get_events(OrderId id) {
  if (id.partition().value < parts_.size()) {
    Part& p = *parts_[id.partition().value];
    std::lock_guard lock(p.mu);
    if (auto it = p.orders.find(id); it != p.orders.end()) return decode_runs(id, it->second);
  }
  return inner_->get_events(id);
}

Result<std::optional<IdempotencyEntry>> LogStore::find_idempotency(const std::string& tenant,
                                                                   const std::string& key) {
  // A key of a batch that has not settled is here (in its partition's map; the few
  // partitions are all asked rather than this store knowing the engine's routing).
  const std::string k = scoped_idempotency_key(tenant, key);
  for (const auto& p : parts_) {
    std::lock_guard lock(p->mu);
    if (p->pending_keys.empty()) continue;
    if (auto it = p->pending_keys.find(k); it != p->pending_keys.end()) {
      return std::optional<IdempotencyEntry>(it->second);
    }
  }
  return inner_->find_idempotency(tenant, key);
}

Result<ListPage> LogStore::list_orders(const ListQuery& query) {
  // Every order created before the list was asked has its index entries in the inner store
  // once the batches committed so far have settled.
  settle();
  // The inner store has the index entries of orders in progress, not their records: their
  // current state is here.
  return inner_->list_orders(query, [this](OrderId id) { return held_order(id); });
}

Result<PartitionState> LogStore::load_partition(PartitionId partition) {
  auto state = inner_->load_partition(partition);
  if (!state) return state;
  const Part& p = *parts_.at(partition.value);
  std::lock_guard lock(p.mu);
  state->id_clock = std::max(state->id_clock, p.id_clock);
  return state;
}

Result<std::vector<Order>> LogStore::list_active(PartitionId partition) {
  const Part& p = *parts_.at(partition.value);
  std::lock_guard lock(p.mu);
  std::vector<Order> out;
  out.reserve(p.orders.size());
  for (const auto& [id, h] : p.orders) {
    if (h.ended) continue;
    auto o = codec::decode_order(record_of(h));
    if (!o) return o.take_error();
    out.push_back(std::move(*o));
  }
  return out;
}

bool LogStore::healthy() const {
  return !failed_.load(std::memory_order_acquire) && inner_->healthy();
}

size_t LogStore::held(PartitionId partition) const {
  const Part& p = *parts_.at(partition.value);
  std::lock_guard lock(p.mu);
  return static_cast<size_t>(std::count_if(p.orders.begin(), p.orders.end(),
                                           [](const auto& e) { return !e.second.ended; }));
}

}  // namespace orderflow
