#include "http/server.h"

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <array>
#include <chrono>
#include <deque>
#include <optional>
#include <thread>
#include <vector>

#include "core/thread_name.h"
#include "http/errors.h"
#include "http/transport.h"

namespace orderflow::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class Session;

// Asio's epoll reactor: where io_uring cannot be used (transport.h).
struct AsioTransport final : Transport {
  AsioTransport(ServerOptions o, Handler& h)
      : options(std::move(o)), handler(h), iocs(one_per_thread(options.io_threads)),
        acceptor(*iocs[0]) {}

  // Each I/O thread runs an io_context of its own (concurrency hint 1) and serves the
  // connections accepted onto it: a connection's handlers never run on two threads at once
  // without a strand, and the threads share no scheduler lock or wake-ups. Measured against
  // one shared io_context with a strand per connection: docs/performance.md.
  static std::vector<std::unique_ptr<asio::io_context>> one_per_thread(int threads) {
    std::vector<std::unique_ptr<asio::io_context>> iocs;
    for (int i = 0; i < std::max(threads, 1); ++i) {
      iocs.push_back(std::make_unique<asio::io_context>(1));
    }
    return iocs;
  }

  Status start() override;
  uint16_t port() const override { return bound_port; }
  void stop_accepting() override;
  size_t in_flight() const override { return requests_in_flight.load(std::memory_order_relaxed); }
  void stop() override;
  const char* engine() const override { return "epoll"; }

  void do_accept();
  // Every second, each I/O thread closes its connections whose deadline has passed.
  void sweep(size_t thread);

  ServerOptions options;
  Handler& handler;
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  size_t next_ioc = 0;  // new connections go to the threads in turn
  tcp::acceptor acceptor;
  // Per I/O thread, touched by that thread only: its connections (expired entries are dropped
  // by the sweep) and the timer that sweeps them.
  struct Sessions {
    std::vector<std::weak_ptr<Session>> list;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::vector<Sessions> sessions;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::vector<std::thread> threads;
  std::atomic<size_t> connections{0};
  std::atomic<size_t> requests_in_flight{0};  // handed to the handler, not yet answered
  uint16_t bound_port = 0;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  static constexpr TimePoint kNever = TimePoint::max();

  Session(tcp::socket&& socket, AsioTransport& server, size_t thread, bool reject)
      : socket_(std::move(socket)), server_(server), thread_(thread), reject_(reject) {
    if (!reject_) server_.connections.fetch_add(1, std::memory_order_relaxed);
  }
  ~Session() {
    if (!reject_) server_.connections.fetch_sub(1, std::memory_order_relaxed);
  }

  // Called by the sweep of the session's own thread: closes the socket once the deadline has
  // passed, which completes the pending read or write with an error (and ends the session).
  void close_if_expired(TimePoint now) {
    if (now < deadline_) return;
    deadline_ = kNever;
    beast::error_code ignored;
    socket_.close(ignored);
  }

  void run() {
    asio::dispatch(socket_.get_executor(), [self = shared_from_this()] {
      self->server_.sessions[self->thread_].list.push_back(self);
      if (self->reject_) {
        self->keep_alive_ = false;
        self->write(error_response(Errc::overloaded, "too many connections; retry later"));
      } else {
        self->do_read();
      }
    });
  }

 private:
  void do_read() {
    // Sized per request, given back after a large one (wire::kReadBufferBytes).
    if (buffer_.capacity() > wire::kReadBufferKeepMax) buffer_.shrink_to_fit();
    buffer_.reserve(wire::kReadBufferBytes);
    body_limit_ = server_.options.body_bytes_max;
    wire::fresh_parser(parser_, server_.options);
    expire_in_idle_timeout();
    bhttp::async_read_header(socket_, buffer_, *parser_,
                             beast::bind_front_handler(&Session::on_header, shared_from_this()));
  }

  void expire_in_idle_timeout() {
    deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(server_.options.idle_timeout_s);
  }

  // Returns true when the read failed and the failure was answered or the connection closed.
  bool read_failed(beast::error_code ec) {
    if (!ec) return false;
    keep_alive_ = false;
    if (auto answer = wire::answer_read_error(ec, body_limit_)) {
      write(std::move(*answer));
    } else {
      close();  // end of stream, timeout, reset: nothing to answer
    }
    return true;
  }

  void on_header(beast::error_code ec, size_t) {
    if (read_failed(ec)) return;
    auto& req = parser_->get();
    body_limit_ = wire::body_limit_for(std::string_view(req.target().data(), req.target().size()),
                                       server_.options);
    if (auto len = parser_->content_length(); len && *len > body_limit_) {
      return (void)read_failed(bhttp::error::body_limit);
    }
    auto expect = req[bhttp::field::expect];
    if (beast::iequals(expect, "100-continue")) {
      // curl sends this for bodies over 1 KiB and waits a second unless answered.
      continue_.emplace(bhttp::status::continue_, req.version());
      bhttp::async_write(socket_, *continue_,
                         [self = shared_from_this()](beast::error_code wec, size_t) {
                           if (wec) return self->close();
                           self->read_body();
                         });
      return;
    }
    read_body();
  }

  void read_body() {
    bhttp::async_read(socket_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::on_read, shared_from_this()));
  }

  void on_read(beast::error_code ec, size_t) {
    if (read_failed(ec)) return;
    if (parser_->get().body().size() > body_limit_) {
      return (void)read_failed(bhttp::error::body_limit);  // a chunked body over the route's limit
    }
    deadline_ = kNever;  // the handler may take as long as a durable write takes
    req_ = parser_->release();
    keep_alive_ = req_.keep_alive();
    Request request = wire::make_request(req_);
    server_.requests_in_flight.fetch_add(1, std::memory_order_relaxed);
    handled_ = true;
    server_.handler.handle(request, [self = shared_from_this()](Response res) {
      asio::dispatch(self->socket_.get_executor(), [self, res = std::move(res)]() mutable {
        self->write(std::move(res));
      });
    });
  }

  void write(Response r) {
    if (r.stream) return write_stream_head(std::move(r));
    // The head and the body go out in one gather write.
    close_after_write_ = !(keep_alive_ && !r.close);
    wire::response_head(head_, r, req_.version() == 10 ? 10 : 11, close_after_write_);
    body_ = std::move(r.body);
    expire_in_idle_timeout();
    asio::async_write(socket_, std::array{asio::buffer(head_), asio::buffer(body_)},
                      beast::bind_front_handler(&Session::on_write, shared_from_this()));
  }

  void on_write(beast::error_code ec, size_t) {
    if (handled_) {
      handled_ = false;
      server_.requests_in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    if (ec || close_after_write_) return close();
    body_ = {};  // a large body is not kept for the life of the connection
    req_ = {};
    do_read();
  }

  void close() {
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }

  // Streaming responses (SSE): the head, then chunks in order, until either side ends it.
  class Writer final : public StreamWriter {
   public:
    explicit Writer(std::shared_ptr<Session> s) : s_(std::move(s)) {}
    // post, not dispatch: never re-enter the session from inside its own completion handler.
    void send(std::string chunk) override {
      asio::post(s_->socket_.get_executor(),
                     [s = s_, c = std::move(chunk)]() mutable { s->stream_send(std::move(c)); });
    }
    void close() override {
      asio::post(s_->socket_.get_executor(), [s = s_] { s->stream_close(); });
    }
    void on_closed(std::function<void()> fn) override {
      asio::post(s_->socket_.get_executor(), [s = s_, fn = std::move(fn)]() mutable {
        if (s->stream_finished_) {
          fn();
        } else {
          s->closed_fns_.push_back(std::move(fn));
        }
      });
    }

   private:
    std::shared_ptr<Session> s_;
  };

  void write_stream_head(Response r) {
    deadline_ = kNever;  // a stream lasts until either side ends it
    stream_out_.push_back(wire::stream_head(r));
    stream_open_ = std::move(r.stream);
    if (handled_) {
      handled_ = false;  // a stream does not hold up draining
      server_.requests_in_flight.fetch_sub(1, std::memory_order_relaxed);
    }
    stream_write_next();
    // Reading detects the client going away; anything it sends is ignored.
    stream_read();
  }

  void stream_read() {
    socket_.async_read_some(
        asio::buffer(discard_), [self = shared_from_this()](beast::error_code ec, size_t) {
          if (ec) return self->stream_finish();
          self->stream_read();
        });
  }

  void stream_send(std::string chunk) {
    if (stream_finished_ || stream_closing_) return;
    if (stream_out_.size() >= wire::kStreamBacklogMax) return stream_finish();  // a stalled client
    stream_out_.push_back(std::move(chunk));
    if (!stream_writing_) stream_write_next();
  }

  void stream_close() {
    stream_closing_ = true;
    if (!stream_writing_) stream_finish();
  }

  void stream_write_next() {
    if (stream_writing_) return;  // one write at a time; its completion continues
    if (stream_out_.empty() || stream_finished_) {
      if (stream_closing_) stream_finish();
      return;
    }
    stream_writing_ = true;
    // The chunk leaves the queue before it is written: stream_finish() may clear the queue
    // while the write is in flight (the client left), and the write must not lose its buffer.
    head_ = std::move(stream_out_.front());
    stream_out_.pop_front();
    asio::async_write(socket_, asio::buffer(head_),
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        self->stream_writing_ = false;
                        if (ec) return self->stream_finish();
                        if (self->stream_open_) {
                          // The head is out: hand the writer to the handler.
                          auto open = std::move(self->stream_open_);
                          self->stream_open_ = nullptr;
                          open(std::make_shared<Writer>(self));
                        }
                        self->stream_write_next();
                      });
  }

  void stream_finish() {
    if (stream_finished_) return;
    stream_finished_ = true;
    stream_out_.clear();
    beast::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (stream_open_) {
      auto open = std::move(stream_open_);
      stream_open_ = nullptr;
      open(std::make_shared<Writer>(shared_from_this()));  // already closed
    }
    auto fns = std::move(closed_fns_);
    closed_fns_.clear();
    for (auto& fn : fns) fn();
  }

  tcp::socket socket_;
  AsioTransport& server_;
  const size_t thread_;  // the I/O thread serving it: its index in server_.sessions
  const bool reject_;
  // When the sweep closes the connection: idle_timeout_s after a read for a request or a write
  // of a response began; never while the handler has the request or a stream is open.
  TimePoint deadline_ = kNever;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  bhttp::request<bhttp::string_body> req_;
  std::optional<bhttp::response<bhttp::empty_body>> continue_;
  std::string head_;  // the response being written: its head (then body_), or a stream chunk
  std::string body_;
  bool close_after_write_ = false;
  bool keep_alive_ = true;
  bool handled_ = false;
  size_t body_limit_ = 0;

  std::deque<std::string> stream_out_;
  std::function<void(std::shared_ptr<StreamWriter>)> stream_open_;
  std::vector<std::function<void()>> closed_fns_;
  std::array<char, 256> discard_{};
  bool stream_writing_ = false;
  bool stream_closing_ = false;
  bool stream_finished_ = false;
};

void AsioTransport::sweep(size_t thread) {
  Sessions& s = sessions[thread];
  const auto now = std::chrono::steady_clock::now();
  std::erase_if(s.list, [now](const std::weak_ptr<Session>& w) {
    std::shared_ptr<Session> session = w.lock();
    if (!session) return true;  // ended
    session->close_if_expired(now);
    return false;
  });
  s.timer->expires_after(std::chrono::seconds(1));
  s.timer->async_wait([this, thread](beast::error_code ec) {
    if (!ec) sweep(thread);
  });
}

void AsioTransport::do_accept() {
  const size_t thread = next_ioc++ % iocs.size();
  asio::io_context& target = *iocs[thread];
  acceptor.async_accept(target, [this, thread](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      bool reject = connections.load(std::memory_order_relaxed) >= options.connections_max;
      socket.set_option(tcp::no_delay(true), ec);
      std::make_shared<Session>(std::move(socket), *this, thread, reject)->run();
    }
    do_accept();
  });
}

Status AsioTransport::start() {
  beast::error_code ec;
  auto address = asio::ip::make_address(options.host, ec);
  if (ec) return make_error(Errc::invalid_argument, "invalid listen address: " + options.host);
  tcp::endpoint endpoint(address, options.port);
  auto& acc = acceptor;
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(Errc::unavailable, "cannot listen on " + options.host + ":" +
                                             std::to_string(options.port) + ": " + ec.message());
  }
  bound_port = acc.local_endpoint().port();
  for (auto& ioc : iocs) work.emplace_back(ioc->get_executor());
  sessions.resize(iocs.size());
  for (size_t i = 0; i < iocs.size(); ++i) {
    sessions[i].timer = std::make_unique<asio::steady_timer>(*iocs[i]);
    asio::post(*iocs[i], [this, i] { sweep(i); });
  }
  do_accept();
  for (size_t i = 0; i < iocs.size(); ++i) {
    threads.emplace_back([this, i] {
      name_this_thread(options.thread_name + "-" + std::to_string(i));
      iocs[i]->run();
    });
  }
  return Status::ok_status();
}

void AsioTransport::stop_accepting() {
  asio::post(*iocs[0], [this] {
    beast::error_code ignored;
    acceptor.close(ignored);
  });
}

void AsioTransport::stop() {
  if (threads.empty()) return;
  work.clear();
  for (auto& ioc : iocs) ioc->stop();
  for (auto& t : threads) t.join();
  threads.clear();
}

}  // namespace

std::unique_ptr<Transport> make_asio_transport(const ServerOptions& options, Handler& handler) {
  return std::make_unique<AsioTransport>(options, handler);
}

HttpServer::HttpServer(ServerOptions options, Handler& handler)
    : options_(std::move(options)), handler_(handler) {}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  if (options_.io_engine != "auto" && options_.io_engine != "io_uring" &&
      options_.io_engine != "epoll") {
    return make_error(Errc::invalid_argument, "unknown I/O engine: " + options_.io_engine);
  }
  if (options_.io_engine != "epoll") {
    transport_ = make_uring_transport(options_, handler_, engine_note_);
    if (!transport_ && options_.io_engine == "io_uring") {
      return make_error(Errc::unavailable, "io_uring is not available here: " + engine_note_);
    }
  }
  if (!transport_) transport_ = make_asio_transport(options_, handler_);
  return transport_->start();
}

uint16_t HttpServer::port() const { return transport_ ? transport_->port() : 0; }

const char* HttpServer::io_engine() const { return transport_ ? transport_->engine() : "none"; }

void HttpServer::stop_accepting() {
  if (transport_) transport_->stop_accepting();
}

bool HttpServer::wait_idle(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (transport_ && transport_->in_flight() != 0) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void HttpServer::stop() {
  if (transport_) transport_->stop();
}

}  // namespace orderflow::http
