// The HTTP server on io_uring (transport.h). Each I/O thread owns a ring and the connections
// handed to it. A turn of its loop: run what other threads posted (responses, stream chunks,
// accepted connections), sweep idle connections once a second, then one
// io_uring_submit_and_wait_timeout that hands the kernel every send and read queued since the
// last turn and waits for at least one completion; then handle every completion. Through
// Asio's reactor each request cost ~3.1 system calls on its I/O thread (a read, a speculative
// read that found nothing, the send, a share of epoll_wait) on a machine where one costs ~1 us;
// here a turn's one call carries the sends and reads of every connection that moved
// (docs/performance.md).
//
// Another thread's post wakes a sleeping loop through an eventfd the ring keeps a read on; a
// loop that is not asleep is not woken (`sleeping_`), so a busy loop takes posts for free.
//
// Connections are slots (index, generation): a completion or a post names both, and one for a
// connection since closed is dropped. A slot is reused only once nothing of it is in the ring.
// Requests are parsed by Beast's parser from the connection's buffer, as the Asio transport
// does, so both answer malformed or oversized requests alike.
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/beast/core.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "core/thread_name.h"
#include "http/errors.h"
#include "http/transport.h"
#include "http/uring_sqe.h"

namespace orderflow::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using Clock = std::chrono::steady_clock;

constexpr Clock::time_point kNever = Clock::time_point::max();
using wire::kReadBufferBytes;
using wire::kReadBufferKeepMax;
using wire::kStreamBacklogMax;
constexpr unsigned kRingEntries = 1024;
constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

// What every loop shares with the transport.
struct Shared {
  ServerOptions options;
  Handler& handler;
  std::atomic<size_t> connections{0};
  std::atomic<size_t> in_flight{0};
};

// A completion's user data: the slot, its generation, what completed.
enum Op : uint8_t { kRecv, kSend, kStreamRecv, kAccept, kWake, kCancel };
constexpr uint32_t kNoSlot = 0xffffffffu;
uint64_t tag(uint32_t slot, uint32_t gen, Op op) {
  return uint64_t{slot} << 32 | uint64_t{gen & 0xffffffu} << 8 | op;
}

struct Conn {
  int fd = -1;
  uint32_t slot = 0;
  uint32_t gen = 0;
  bool reject = false;  // over connections_max: answered 503, then closed
  bool closing = false;
  int ops = 0;  // submissions of this connection in the ring
  Clock::time_point deadline = kNever;

  // Reading: bytes [begin, end) of buf are received and not yet parsed.
  std::unique_ptr<char[]> buf;
  size_t cap = 0, begin = 0, end = 0;
  std::optional<wire::RequestParser> parser;
  bool header_done = false;
  bool continuing = false;  // a 100 Continue is being written
  size_t body_limit = 0;
  wire::BeastRequest req;

  // Writing: head then body, one gather send; `sent` of them are out.
  std::string head, body;
  size_t sent = 0;
  iovec iov[2]{};
  msghdr msg{};
  bool keep_alive = true;
  bool close_after_write = false;
  bool handled = false;  // the handler had the request; in_flight counts it until answered

  // Streaming (SSE): chunks written in order; a read detects the client leaving.
  bool streaming = false;
  std::deque<std::string> stream_out;
  std::function<void(std::shared_ptr<StreamWriter>)> stream_open;
  std::vector<std::function<void()>> closed_fns;
  bool stream_writing = false;
  bool stream_closing = false;
  bool stream_finished = false;
  char discard[256];
};

// What another thread hands a loop.
struct Post {
  enum Kind : uint8_t { kRespond, kAccepted, kStreamSend, kStreamClose, kOnClosed, kStopAccepting };
  Kind kind;
  uint32_t slot = 0;
  uint32_t gen = 0;
  int fd = -1;
  bool reject = false;
  Response response;
  std::string chunk;
  std::function<void()> fn;
};

class Loop;
thread_local Loop* current_loop = nullptr;

class Loop : public std::enable_shared_from_this<Loop> {
 public:
  Loop(Shared& shared, size_t index, std::vector<std::shared_ptr<Loop>>& all)
      : shared_(shared), index_(index), all_(all) {}

  ~Loop() {
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  // On the loop's own thread: a ring that only this thread submits to (the kernel then runs
  // completion work when this thread waits, not by interrupting it), falling back to plain
  // flags on kernels that do not know them.
  int init_ring() {
    io_uring_params p{};
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    int rc = io_uring_queue_init_params(kRingEntries, &ring_, &p);
    if (rc == -EINVAL) rc = io_uring_queue_init(kRingEntries, &ring_, 0);
    if (rc < 0) return rc;
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
    if (wake_fd_ < 0) return -errno;
    return 0;
  }

  void set_listener(int fd) { listen_fd_ = fd; }

  void run(std::promise<int>& ready) {
    current_loop = this;
    name_this_thread(shared_.options.thread_name + "-" + std::to_string(index_));
    int rc = init_ring();
    ready.set_value(rc);
    if (rc < 0) return;
    queue_wake_read();
    if (listen_fd_ >= 0) queue_accept();
    auto sweep_at = Clock::now() + std::chrono::seconds(1);
    std::vector<Post> posts;
    while (!stop_.load(std::memory_order_acquire)) {
      take_posts(posts);
      for (auto& p : posts) run_post(p);
      posts.clear();
      auto now = Clock::now();
      if (now >= sweep_at) {
        sweep(now);
        sweep_at = now + std::chrono::seconds(1);
      }
      sleeping_.store(true, std::memory_order_seq_cst);
      bool pending;
      {
        std::lock_guard lock(mu_);
        pending = !posts_.empty() || stop_.load(std::memory_order_relaxed);
      }
      int rc;
      if (pending) {
        sleeping_.store(false, std::memory_order_relaxed);
        rc = io_uring_submit_and_get_events(&ring_);  // completions too: see init_ring
      } else {
        const auto wait = std::max<Clock::duration>(sweep_at - Clock::now(), Clock::duration::zero());
        __kernel_timespec ts{};
        ts.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(wait).count();
        ts.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(wait % std::chrono::seconds(1)).count();
        io_uring_cqe* cqe = nullptr;
        rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
        sleeping_.store(false, std::memory_order_relaxed);
      }
      (void)rc;  // -ETIME, -EINTR: the next turn looks again; completions are read below
      drain([this](uint64_t data, int res) { complete(data, res); });
    }
    shut_down();
  }

  // From any thread. Dropped once the loop has stopped.
  void post(Post p) {
    {
      std::lock_guard lock(mu_);
      if (!closed_) {
        posts_.push_back(std::move(p));
      } else {
        if (p.kind == Post::kAccepted) ::close(p.fd);  // the loop stopped before taking it
        return;
      }
    }
    wake();
  }

  void stop() {
    stop_.store(true, std::memory_order_release);
    wake();
  }

  // A handler's answer to the request of (slot, gen): written at once on the loop's own
  // thread, posted from any other.
  void respond(uint32_t slot, uint32_t gen, Response r) {
    if (current_loop == this) {
      Conn* c = live(slot, gen);
      if (c) write(*c, std::move(r));
      return;
    }
    Post p{Post::kRespond};
    p.slot = slot;
    p.gen = gen;
    p.response = std::move(r);
    post(std::move(p));
  }

  // Starts serving an accepted socket (on this loop's thread).
  void adopt(int fd, bool reject) {
    uint32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<uint32_t>(conns_.size());
      conns_.push_back(std::make_unique<Conn>());
      conns_.back()->slot = slot;
    }
    Conn& c = *conns_[slot];
    c.fd = fd;
    c.reject = reject;
    if (!reject) shared_.connections.fetch_add(1, std::memory_order_relaxed);
    if (reject) {
      c.keep_alive = false;
      write(c, error_response(Errc::overloaded, "too many connections; retry later"));
    } else {
      read_next(c);
    }
  }

 private:
  class Writer;

  void wake() {
    if (sleeping_.exchange(false, std::memory_order_acq_rel)) {
      uint64_t one = 1;
      ssize_t n = ::write(wake_fd_, &one, sizeof one);
      (void)n;  // EAGAIN only when the counter is full: the loop is being woken anyway
    }
  }

  void take_posts(std::vector<Post>& out) {
    std::lock_guard lock(mu_);
    out.swap(posts_);
  }

  Conn* live(uint32_t slot, uint32_t gen) {
    if (slot >= conns_.size()) return nullptr;
    Conn* c = conns_[slot].get();
    if (c->gen != gen || c->fd < 0 || c->closing) return nullptr;
    return c;
  }

  io_uring_sqe* sqe() { return next_sqe(ring_); }

  // Hands every completion in the queue to fn(user data, result) and consumes them.
  template <typename Fn>
  void drain(Fn&& fn) {
    unsigned head = 0, seen = 0;
    io_uring_cqe* cqe = nullptr;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      fn(io_uring_cqe_get_data64(cqe), cqe->res);
    }
    io_uring_cq_advance(&ring_, seen);
  }

  void queue_wake_read() {
    io_uring_sqe* s = sqe();
    io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data64(s, tag(kNoSlot, 0, kWake));
  }

  void queue_accept() {
    io_uring_sqe* s = sqe();
    io_uring_prep_accept(s, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(s, tag(kNoSlot, 0, kAccept));
    accepting_ = true;
  }

  void queue_recv(Conn& c) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv(s, c.fd, c.buf.get() + c.end, c.cap - c.end, 0);
    io_uring_sqe_set_data64(s, tag(c.slot, c.gen, kRecv));
    ++c.ops;
  }

  void queue_send(Conn& c) {
    // The part of head+body not yet sent.
    size_t skip = c.sent;
    int n = 0;
    if (skip < c.head.size()) {
      c.iov[n++] = iovec{c.head.data() + skip, c.head.size() - skip};
      skip = 0;
    } else {
      skip -= c.head.size();
    }
    if (skip < c.body.size()) c.iov[n++] = iovec{c.body.data() + skip, c.body.size() - skip};
    c.msg = msghdr{};
    c.msg.msg_iov = c.iov;
    c.msg.msg_iovlen = static_cast<size_t>(n);
    io_uring_sqe* s = sqe();
    io_uring_prep_sendmsg(s, c.fd, &c.msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(c.slot, c.gen, kSend));
    ++c.ops;
  }

  void complete(uint64_t data, int res) {
    const auto op = static_cast<Op>(data & 0xff);
    const auto slot = static_cast<uint32_t>(data >> 32);
    if (op == kWake) {
      if (!stop_.load(std::memory_order_relaxed)) queue_wake_read();
      return;
    }
    if (op == kAccept) return accepted(res);
    if (op == kCancel) return;
    Conn& c = *conns_[slot];
    // A slot is reused only when nothing of it is in the ring: a completion is its own.
    OF_ASSERT((c.gen & 0xffffffu) == ((data >> 8) & 0xffffffu) && c.ops > 0);
    --c.ops;
    if (c.closing) return release_if_done(c);
    switch (op) {
      case kRecv: return received(c, res);
      case kSend: return c.streaming ? stream_sent(c, res) : sent(c, res);
      case kStreamRecv: return stream_received(c, res);
      default: return;
    }
  }

  void accepted(int res) {
    accepting_ = false;
    if (listen_fd_ < 0) {  // stopped accepting; one accepted before the cancel is closed
      if (res >= 0) ::close(res);
      return;
    }
    if (res >= 0) {
      int one = 1;
      ::setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      const bool reject =
          shared_.connections.load(std::memory_order_relaxed) >= shared_.options.connections_max;
      Loop& target = *all_[next_loop_++ % all_.size()];
      if (&target == this) {
        adopt(res, reject);
      } else {
        Post p{Post::kAccepted};
        p.fd = res;
        p.reject = reject;
        target.post(std::move(p));
      }
    } else if (res != -EINTR && res != -ECONNABORTED && res != -EAGAIN) {
      // Out of descriptors or memory: try again at the next sweep rather than spin.
      accept_retry_ = true;
      return;
    }
    queue_accept();
  }

  void run_post(Post& p) {
    switch (p.kind) {
      case Post::kAccepted: return adopt(p.fd, p.reject);
      case Post::kStopAccepting: return stop_accepting();
      case Post::kRespond:
        if (Conn* c = live(p.slot, p.gen)) write(*c, std::move(p.response));
        return;
      case Post::kStreamSend:
        if (Conn* c = live(p.slot, p.gen)) stream_send(*c, std::move(p.chunk));
        return;
      case Post::kStreamClose:
        if (Conn* c = live(p.slot, p.gen)) stream_close(*c);
        return;
      case Post::kOnClosed: {
        Conn* c = live(p.slot, p.gen);
        if (c && c->streaming && !c->stream_finished) {
          c->closed_fns.push_back(std::move(p.fn));
        } else {
          p.fn();  // the stream has already ended
        }
        return;
      }
    }
  }

  // Closes the listening socket (the loop that accepts), cancelling the accept in the ring.
  void stop_accepting() {
    if (listen_fd_ < 0) return;
    if (accepting_) {
      io_uring_sqe* s = sqe();
      io_uring_prep_cancel64(s, tag(kNoSlot, 0, kAccept), 0);
      io_uring_sqe_set_data64(s, tag(kNoSlot, 0, kCancel));
    }
    ::close(listen_fd_);
    listen_fd_ = -1;
  }

  void sweep(Clock::time_point now) {
    for (auto& c : conns_) {
      if (c->fd < 0 || c->closing || now < c->deadline) continue;
      c->deadline = kNever;
      ::shutdown(c->fd, SHUT_RDWR);  // the pending read or write completes, and ends it
    }
    if (accept_retry_ && listen_fd_ >= 0) {
      accept_retry_ = false;
      queue_accept();
    }
  }

  void expire_in_idle_timeout(Conn& c) {
    c.deadline = Clock::now() + std::chrono::seconds(shared_.options.idle_timeout_s);
  }

  // --- reading a request ---

  void read_next(Conn& c) {
    // Bytes of a pipelined request stay; a buffer grown by a large request is given back.
    if (c.cap > kReadBufferKeepMax && c.end - c.begin <= kReadBufferBytes) {
      auto small = std::make_unique<char[]>(kReadBufferBytes);
      std::memcpy(small.get(), c.buf.get() + c.begin, c.end - c.begin);
      c.end -= c.begin;
      c.begin = 0;
      c.buf = std::move(small);
      c.cap = kReadBufferBytes;
    }
    if (!c.buf) {
      c.buf = std::make_unique<char[]>(kReadBufferBytes);
      c.cap = kReadBufferBytes;
    }
    c.body_limit = shared_.options.body_bytes_max;
    wire::fresh_parser(c.parser, shared_.options);
    c.header_done = false;
    expire_in_idle_timeout(c);
    parse(c);
  }

  void received(Conn& c, int res) {
    if (res <= 0) return close(c);  // end of stream or reset: nothing to answer
    c.end += static_cast<size_t>(res);
    parse(c);
  }

  // Feeds the parser what is buffered; reads more when it needs more.
  void parse(Conn& c) {
    beast::error_code ec;
    while (!c.parser->is_done() && c.begin < c.end) {
      const size_t n = c.parser->put(boost::asio::buffer(c.buf.get() + c.begin, c.end - c.begin), ec);
      c.begin += n;
      if (ec == bhttp::error::need_more) break;
      if (ec) return read_failed(c, ec);
      if (!c.header_done && c.parser->is_header_done()) {
        c.header_done = true;
        if (!on_header(c)) return;
      } else if (n == 0) {
        break;
      }
    }
    if (c.parser->is_done()) return on_request(c);
    // More is needed: make room behind what is buffered, growing only for a header that
    // does not fit (the parser's header limit ends that), and read.
    if (c.begin == c.end) {
      c.begin = c.end = 0;
    } else if (c.begin > 0) {
      std::memmove(c.buf.get(), c.buf.get() + c.begin, c.end - c.begin);
      c.end -= c.begin;
      c.begin = 0;
    }
    if (c.end == c.cap) {
      if (c.cap > shared_.options.header_bytes_max + kReadBufferKeepMax) {
        return read_failed(c, bhttp::error::header_limit);  // not reached: the parser stops first
      }
      auto bigger = std::make_unique<char[]>(c.cap * 2);
      std::memcpy(bigger.get(), c.buf.get(), c.end);
      c.buf = std::move(bigger);
      c.cap *= 2;
    }
    queue_recv(c);
  }

  // The header is in: the route's body limit, and 100 Continue when the client waits for it.
  // False when the request was answered (or a Continue is being written) instead.
  bool on_header(Conn& c) {
    auto& req = c.parser->get();
    c.body_limit = wire::body_limit_for(std::string_view(req.target().data(), req.target().size()),
                                        shared_.options);
    if (auto len = c.parser->content_length(); len && *len > c.body_limit) {
      read_failed(c, bhttp::error::body_limit);
      return false;
    }
    c.parser->eager(true);
    if (beast::iequals(req[bhttp::field::expect], "100-continue") && !c.parser->is_done()) {
      // curl sends this for bodies over 1 KiB and waits a second unless answered.
      c.continuing = true;
      c.head.assign(kContinue);
      c.body.clear();
      c.sent = 0;
      queue_send(c);
      return false;
    }
    return true;
  }

  void read_failed(Conn& c, beast::error_code ec) {
    c.keep_alive = false;
    if (auto answer = wire::answer_read_error(ec, c.body_limit)) return write(c, std::move(*answer));
    close(c);
  }

  void on_request(Conn& c) {
    if (c.parser->get().body().size() > c.body_limit) {
      return read_failed(c, bhttp::error::body_limit);  // a chunked body over the route's limit
    }
    c.deadline = kNever;  // the handler may take as long as a durable write takes
    c.req = c.parser->release();
    c.keep_alive = c.req.keep_alive();
    Request request = wire::make_request(c.req);
    shared_.in_flight.fetch_add(1, std::memory_order_relaxed);
    c.handled = true;
    shared_.handler.handle(request, [loop = this, slot = c.slot, gen = c.gen](Response res) {
      loop->respond(slot, gen, std::move(res));
    });
  }

  // --- writing a response ---

  void write(Conn& c, Response r) {
    if (r.stream) return write_stream_head(c, std::move(r));
    c.close_after_write = !(c.keep_alive && !r.close);
    wire::response_head(c.head, r, c.req.version() == 10 ? 10 : 11, c.close_after_write);
    c.body = std::move(r.body);
    c.sent = 0;
    expire_in_idle_timeout(c);
    queue_send(c);
  }

  void sent(Conn& c, int res) {
    if (res > 0) {
      c.sent += static_cast<size_t>(res);
      if (c.sent < c.head.size() + c.body.size()) return queue_send(c);
    }
    if (c.continuing) {
      c.continuing = false;
      if (res <= 0) return close(c);
      return parse(c);
    }
    if (c.handled) {
      c.handled = false;
      shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    if (res <= 0 || c.close_after_write) return close(c);
    c.body = {};  // a large body is not kept for the life of the connection
    c.req = {};
    read_next(c);
  }

  // --- streaming ---

  class Writer final : public StreamWriter {
   public:
    Writer(std::shared_ptr<Loop> loop, uint32_t slot, uint32_t gen)
        : loop_(std::move(loop)), slot_(slot), gen_(gen) {}
    void send(std::string chunk) override {
      Post p = to_stream(Post::kStreamSend);
      p.chunk = std::move(chunk);
      loop_->post(std::move(p));
    }
    void close() override { loop_->post(to_stream(Post::kStreamClose)); }
    void on_closed(std::function<void()> fn) override {
      Post p = to_stream(Post::kOnClosed);
      p.fn = std::move(fn);
      loop_->post(std::move(p));
    }

   private:
    Post to_stream(Post::Kind kind) const {
      Post p{kind};
      p.slot = slot_;
      p.gen = gen_;
      return p;
    }

    std::shared_ptr<Loop> loop_;
    uint32_t slot_, gen_;
  };

  void write_stream_head(Conn& c, Response r) {
    c.deadline = kNever;  // a stream lasts until either side ends it
    c.streaming = true;
    c.stream_out.push_back(wire::stream_head(r));
    c.stream_open = std::move(r.stream);
    if (c.handled) {
      c.handled = false;  // a stream does not hold up draining
      shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    stream_write_next(c);
    // Reading detects the client going away; anything it sends is ignored.
    queue_stream_recv(c);
  }

  void queue_stream_recv(Conn& c) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv(s, c.fd, c.discard, sizeof c.discard, 0);
    io_uring_sqe_set_data64(s, tag(c.slot, c.gen, kStreamRecv));
    ++c.ops;
  }

  void stream_received(Conn& c, int res) {
    if (res <= 0) return stream_finish(c);
    queue_stream_recv(c);
  }

  void stream_send(Conn& c, std::string chunk) {
    if (!c.streaming || c.stream_finished || c.stream_closing) return;
    if (c.stream_out.size() >= kStreamBacklogMax) return stream_finish(c);  // a stalled client
    c.stream_out.push_back(std::move(chunk));
    if (!c.stream_writing) stream_write_next(c);
  }

  void stream_close(Conn& c) {
    if (!c.streaming) return;
    c.stream_closing = true;
    if (!c.stream_writing) stream_finish(c);
  }

  void stream_write_next(Conn& c) {
    if (c.stream_writing) return;  // one write at a time; its completion continues
    if (c.stream_out.empty() || c.stream_finished) {
      if (c.stream_closing) stream_finish(c);
      return;
    }
    c.stream_writing = true;
    c.head = std::move(c.stream_out.front());
    c.stream_out.pop_front();
    c.body.clear();
    c.sent = 0;
    queue_send(c);
  }

  void stream_sent(Conn& c, int res) {
    if (res > 0) {
      c.sent += static_cast<size_t>(res);
      if (c.sent < c.head.size()) return queue_send(c);
    }
    c.stream_writing = false;
    if (res <= 0) return stream_finish(c);
    if (c.stream_open) {
      // The head is out: hand the writer to the handler.
      auto open = std::move(c.stream_open);
      c.stream_open = nullptr;
      open(std::make_shared<Writer>(shared_from_this(), c.slot, c.gen));
    }
    stream_write_next(c);
  }

  void stream_finish(Conn& c) {
    if (c.stream_finished) return;
    c.stream_finished = true;
    c.stream_out.clear();
    if (c.stream_open) {
      auto open = std::move(c.stream_open);
      c.stream_open = nullptr;
      open(std::make_shared<Writer>(shared_from_this(), c.slot, c.gen));  // already closed
    }
    auto fns = std::move(c.closed_fns);
    c.closed_fns.clear();
    for (auto& fn : fns) fn();
    close(c);
  }

  // --- ending a connection ---

  // Ends the connection: what is in the ring for it completes with an error (the socket is
  // shut down), and the slot is reused once nothing is left there.
  void close(Conn& c) {
    if (c.closing) return;
    c.closing = true;
    c.deadline = kNever;
    ::shutdown(c.fd, c.ops > 0 ? SHUT_RDWR : SHUT_WR);
    release_if_done(c);
  }

  void release_if_done(Conn& c) {
    if (!c.closing || c.ops > 0) return;
    ::close(c.fd);
    if (!c.reject) shared_.connections.fetch_sub(1, std::memory_order_relaxed);
    if (c.handled) shared_.in_flight.fetch_sub(1, std::memory_order_relaxed);
    const uint32_t slot = c.slot, gen = c.gen + 1;
    conns_[slot] = std::make_unique<Conn>();  // nothing of the old one carries over
    conns_[slot]->slot = slot;
    conns_[slot]->gen = gen;
    free_.push_back(slot);
  }

  // After the loop: sockets closed, the ring gone. Connection state stays until the loop is
  // destroyed: a handler still holding a request may read it.
  void shut_down() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
      for (const Post& p : posts_) {
        if (p.kind == Post::kAccepted) ::close(p.fd);
      }
      posts_.clear();
    }
    if (listen_fd_ >= 0) ::close(listen_fd_);
    listen_fd_ = -1;
    for (auto& c : conns_) {
      if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
    }
    // Let what the shutdowns completed come back before the ring and the sockets go.
    const auto until = Clock::now() + std::chrono::milliseconds(200);
    for (;;) {
      int outstanding = 0;
      for (auto& c : conns_) outstanding += c->fd >= 0 ? c->ops : 0;
      if (outstanding == 0 || Clock::now() >= until) break;
      __kernel_timespec ts{0, 10'000'000};
      io_uring_cqe* cqe = nullptr;
      io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      drain([this](uint64_t data, int) {
        const auto op = static_cast<Op>(data & 0xff);
        if (op == kRecv || op == kSend || op == kStreamRecv) --conns_[data >> 32]->ops;
      });
    }
    io_uring_queue_exit(&ring_);
    for (auto& c : conns_) {
      if (c->fd >= 0) ::close(c->fd);
      c->fd = -1;
    }
  }

  Shared& shared_;
  const size_t index_;
  std::vector<std::shared_ptr<Loop>>& all_;
  io_uring ring_{};
  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  int listen_fd_ = -1;  // the first loop accepts for all
  bool accepting_ = false;
  size_t next_loop_ = 0;  // the accepting loop hands connections to the loops in turn
  bool accept_retry_ = false;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<uint32_t> free_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> sleeping_{false};
  std::mutex mu_;
  std::vector<Post> posts_;  // guarded by mu_
  bool closed_ = false;      // guarded by mu_
};

class UringTransport final : public Transport {
 public:
  UringTransport(const ServerOptions& options, Handler& handler)
      : shared_{options, handler} {}
  ~UringTransport() override { stop(); }

  Status start() override {
    const auto& o = shared_.options;
    sockaddr_storage addr{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    if (inet_pton(AF_INET, o.host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(o.port);
      len = sizeof *v4;
    } else if (inet_pton(AF_INET6, o.host.c_str(), &v6->sin6_addr) == 1) {
      v6->sin6_family = AF_INET6;
      v6->sin6_port = htons(o.port);
      len = sizeof *v6;
    } else {
      return make_error(Errc::invalid_argument, "invalid listen address: " + o.host);
    }
    int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    auto failed = [&](const char* what) {
      std::string message = "cannot listen on " + o.host + ":" + std::to_string(o.port) + ": " +
                            what + ": " + std::strerror(errno);
      if (fd >= 0) ::close(fd);
      return make_error(Errc::unavailable, message);
    };
    if (fd < 0) return failed("socket");
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0) return failed("setsockopt");
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return failed("bind");
    if (::listen(fd, SOMAXCONN) != 0) return failed("listen");
    sockaddr_storage bound{};
    socklen_t bound_len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
    port_ = ntohs(bound.ss_family == AF_INET ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                                             : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);

    const int threads = std::max(o.io_threads, 1);
    for (int i = 0; i < threads; ++i) {
      loops_.push_back(std::make_shared<Loop>(shared_, static_cast<size_t>(i), loops_));
    }
    loops_[0]->set_listener(fd);
    for (int i = 0; i < threads; ++i) {
      std::promise<int> ready;
      auto started = ready.get_future();
      threads_.emplace_back([loop = loops_[i], &ready] { loop->run(ready); });
      if (int rc = started.get(); rc < 0) {
        stop();
        if (i == 0) ::close(fd);
        return make_error(Errc::unavailable,
                          std::string("cannot set up io_uring: ") + std::strerror(-rc));
      }
    }
    return Status::ok_status();
  }

  uint16_t port() const override { return port_; }

  void stop_accepting() override {
    if (loops_.empty()) return;
    loops_[0]->post(Post{Post::kStopAccepting});
  }

  size_t in_flight() const override { return shared_.in_flight.load(std::memory_order_relaxed); }

  void stop() override {
    for (auto& l : loops_) l->stop();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  const char* engine() const override { return "io_uring"; }

 private:
  Shared shared_;
  uint16_t port_ = 0;
  std::vector<std::shared_ptr<Loop>> loops_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Transport> make_uring_transport(const ServerOptions& options, Handler& handler,
                                                std::string& why) {
  // A ring made and dropped: io_uring_setup is what a kernel without io_uring, or a seccomp
  // profile forbidding it, refuses.
  io_uring probe{};
  if (int rc = io_uring_queue_init(4, &probe, 0); rc < 0) {
    why = std::string("io_uring_setup: ") + std::strerror(-rc);
    return nullptr;
  }
  io_uring_queue_exit(&probe);
  return std::make_unique<UringTransport>(options, handler);
}

}  // namespace orderflow::http
