#include "app/bench.h"

#include <signal.h>
#include <simdjson.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <atomic>
#include <mutex>
#include <thread>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>

#include <filesystem>
#include <sstream>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "app/histogram.h"
#include "app/server_url.h"
#include "core/clock.h"
#include "core/json_writer.h"
#include "http/uring_sqe.h"

extern char** environ;

namespace orderflow::app {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using SteadyClock = std::chrono::steady_clock;

double seconds_between(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// CPU time used so far: by this process (the load generator), by another process (the
// embedded server: /proc/PID/stat, utime + stime), and by the machine as a whole (/proc/stat's
// first eight fields; busy is all but idle, iowait and steal — guest time, the last two fields,
// is counted in user and nice already).
struct CpuSample {
  double self_s = 0;
  std::optional<double> server_s;
  double machine_busy_ticks = 0, machine_total_ticks = 0;
};

std::optional<double> process_cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');  // the command name may hold spaces and parentheses
  if (paren == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(paren + 1));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {  // fields 14 and 15: utime, stime
    if (i >= 14) ticks += std::strtod(field.c_str(), nullptr);
  }
  return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

CpuSample sample_cpu(pid_t server) {
  CpuSample c;
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](timeval t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  c.self_s = secs(ru.ru_utime) + secs(ru.ru_stime);
  if (server > 0) c.server_s = process_cpu_seconds(server);
  std::ifstream in("/proc/stat");
  std::string cpu;
  in >> cpu;  // "cpu": the sum over all cores
  double v = 0;
  for (int i = 0; i < 8 && in >> v; ++i) {  // user nice system idle iowait irq softirq steal
    c.machine_total_ticks += v;
    if (i != 3 && i != 4 && i != 7) c.machine_busy_ticks += v;
  }
  return c;
}

// A string value after `"name":"` in a JSON text, or empty (enough for our own responses).
std::string_view json_string_field(std::string_view body, std::string_view name) {
  std::string needle = "\"" + std::string(name) + "\":\"";
  size_t at = body.find(needle);
  if (at == std::string_view::npos) return {};
  at += needle.size();
  size_t end = body.find('"', at);
  return end == std::string_view::npos ? std::string_view() : body.substr(at, end - at);
}

// Realistic orders: many customers, fewer merchants, 1-4 lines from a menu, tips, metadata.
class OrderFactory {
 public:
  OrderFactory(uint64_t seed, std::string run_id) : rng_(seed), run_id_(std::move(run_id)) {}

  std::string key() { return run_id_ + "-" + std::to_string(++seq_); }

  std::string body() {
    static const char* kMenu[] = {"burger", "fries", "cola", "salad", "pizza-margherita",
                                  "pad-thai", "sushi-set", "ramen", "taco", "burrito",
                                  "ice-cream", "coffee", "bagel", "soup", "curry"};
    static const char* kChannels[] = {"ios", "android", "web"};
    std::string b;
    b.reserve(512);
    b += "{\"customer_id\":\"c-" + std::to_string(pick(1, 100000)) + "\",";
    b += "\"merchant_id\":\"m-" + std::to_string(pick(1, 2000)) + "\",\"items\":[";
    int lines = static_cast<int>(pick(1, 4));
    for (int i = 0; i < lines; ++i) {
      if (i) b += ",";
      b += "{\"sku\":\"";
      b += kMenu[pick(0, 14)];
      b += "\",\"quantity\":" + std::to_string(pick(1, 3)) +
           ",\"unit_price_cents\":" + std::to_string(pick(199, 2999)) + "}";
    }
    b += "],\"currency\":\"USD\",\"payment_method\":\"tok_visa\",";
    b += "\"delivery_address\":\"" + std::to_string(pick(1, 999)) + " Main St, Springfield\",";
    b += "\"tip_cents\":" + std::to_string(pick(0, 500)) + ",";
    b += "\"metadata\":{\"channel\":\"";
    b += kChannels[pick(0, 2)];
    b += "\"}}";
    return b;
  }

 private:
  uint64_t pick(uint64_t lo, uint64_t hi) { return lo + rng_() % (hi - lo + 1); }
  std::mt19937_64 rng_;
  std::string run_id_;
  uint64_t seq_ = 0;
};

struct Results {
  LatencyHistogram latency_us;   // measured requests (after warm-up)
  LatencyHistogram interval_us;  // since the last progress line
  uint64_t requests_sent = 0;
  uint64_t requests_measured = 0;
  uint64_t orders_acked = 0;          // 201 or 200 (replay), all phases
  uint64_t orders_acked_measured = 0;
  uint64_t interval_acked = 0;
  std::map<std::string, uint64_t> errors;
  std::vector<std::string> ids;       // acknowledged order ids
  uint64_t waits = 0;                 // closed loop: pauses after the server shed a request
};

// The longest a closed-loop connection waits after a 503 or 429 before it asks again.
constexpr std::chrono::milliseconds kShedWaitMax{1000};

// Room for an answer to be read at once: Beast reads max(512, free capacity) bytes at a time,
// so with its default a ~700-byte order came in two reads, a system call more per request on
// the cores the server shares.
constexpr size_t kResponseBufferBytes = 16384;
// The largest answer the load reads (a batch of 1,000 orders is well below it).
constexpr uint64_t kResponseBodyMax = 64 * 1024 * 1024;

// What both transports below share: the schedule (closed or open loop), the requests, what
// each response means for the results, and the progress line.
class LoadPlan {
 public:
  LoadPlan(const BenchOptions& o, std::string host, uint16_t port, uint64_t seed, std::string run_id)
      : o_(o), host_(std::move(host)), port_(port), factory_(seed, std::move(run_id)) {}
  virtual ~LoadPlan() = default;

  // Drives every connection until the load is over; the results of the whole run.
  virtual Results run() = 0;

  double measured_seconds() const { return measured_s_; }
  // From the first request to the last response, warm-up included.
  // 0 when nothing was answered.
  double total_seconds() const {
    return last_response_ > start_ ? seconds_between(start_, last_response_) : 0;
  }

 protected:
  using ResponseParser = bhttp::response_parser<bhttp::string_body>;
  // A parser for the next answer on a connection.
  static void fresh_parser(std::optional<ResponseParser>& parser) {
    parser.emplace();
    parser->body_limit(kResponseBodyMax);
  }

  void begin() {
    start_ = SteadyClock::now();
    measure_start_ = start_ + std::chrono::duration_cast<SteadyClock::duration>(
                                  std::chrono::duration<double>(o_.warmup_s));
    end_ = measure_start_ + std::chrono::duration_cast<SteadyClock::duration>(
                                std::chrono::duration<double>(o_.duration_s));
  }

  Results finish() {
    measured_s_ = std::max(0.0, seconds_between(measure_start_, std::min(last_response_, end_)));
    return std::move(r_);
  }

  struct Planned {
    int orders = 1;
    SteadyClock::time_point intended;  // latency counts from here
    SteadyClock::time_point send_at;   // not before (open loop)
  };
  // A connection's next request, or nullopt when the load is over for it.
  std::optional<Planned> plan(SteadyClock::time_point now) {
    if (done_issuing(now)) return std::nullopt;
    Planned p;
    const uint64_t ticket = tickets_++;
    p.orders = per_request();
    if (o_.orders > 0) {
      p.orders = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(per_request()), o_.orders - issued_orders_));
    }
    issued_orders_ += static_cast<uint64_t>(p.orders);
    p.intended = p.send_at = now;
    if (o_.rate > 0) {
      // Open loop: request k is due at start + k / request_rate, whether or not the server
      // kept up; latency counts from that time, so stalls are not hidden.
      const double request_rate = o_.rate / per_request();
      p.intended = start_ + std::chrono::duration_cast<SteadyClock::duration>(
                                std::chrono::duration<double>(static_cast<double>(ticket) / request_rate));
      // Sent on whole milliseconds from the start: the requests due within one go out on one
      // wake-up instead of one each (at 8,000/s the load generator woke ~7,000 times a second,
      // on the cores the server shares). Latency still counts from each request's own intended
      // time, so the wait to the boundary is charged to it.
      if (p.intended > now) {
        p.send_at = start_ + std::chrono::ceil<std::chrono::milliseconds>(p.intended - start_);
      }
    }
    return p;
  }

  void build_request(std::string& req, int orders) {
    std::string body, key;
    std::string target = "/v1/orders";
    if (o_.batch > 0) {
      target = "/v1/orders:batch";
      body = "{\"orders\":[";
      for (int i = 0; i < orders; ++i) {
        if (i) body += ",";
        body += "{\"idempotency_key\":\"" + factory_.key() + "\",\"order\":" + factory_.body() + "}";
      }
      body += "]}";
    } else {
      key = factory_.key();
      body = factory_.body();
    }
    req.clear();
    req += "POST " + target + " HTTP/1.1\r\nHost: " + host_ + "\r\nAuthorization: Bearer " +
           o_.api_key + "\r\nContent-Type: application/json\r\n";
    if (!key.empty()) req += "Idempotency-Key: " + key + "\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    req += body;
    ++r_.requests_sent;
  }

  // Records a response. Returns how long the connection waits before its next request: zero,
  // or, in closed loop after the server shed the request, as long as it asked.
  SteadyClock::duration on_response(SteadyClock::time_point intended,
                                    const bhttp::response<bhttp::string_body>& res) {
    auto now = SteadyClock::now();
    last_response_ = now;
    const bool measured = intended >= measure_start_ && intended < end_;
    uint64_t us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(now - intended).count());
    if (measured) {
      r_.latency_us.record(us);
      ++r_.requests_measured;
    }
    r_.interval_us.record(us);
    uint64_t acked = 0;
    bool shed = false;  // the server turned the request away for now: overloaded, shutting down
    const std::string& body = res.body();
    int status = res.result_int();
    if (o_.batch > 0 && status == 200) {
      simdjson::dom::element doc;
      simdjson::dom::array results;
      if (parser_.parse(body).get(doc) || doc["results"].get_array().get(results)) {
        ++r_.errors["bad_batch_response"];
      } else {
        for (auto item : results) {
          int64_t st = 0;
          if (item["status"].get_int64().get(st)) st = 0;
          std::string_view id;
          if ((st == 201 || st == 200) && !item["order"]["id"].get_string().get(id)) {
            r_.ids.emplace_back(id);
            ++acked;
          } else {
            std::string_view code;
            if (item["error"]["code"].get_string().get(code)) code = {};
            ++r_.errors[code.empty() ? std::to_string(st) : std::string(code)];
            shed = shed || st == 503 || st == 429;
          }
        }
      }
      shed = shed && acked == 0;  // a batch turned away whole
    } else if (status == 201 || status == 200) {
      std::string_view id = json_string_field(body, "id");
      if (!id.empty()) r_.ids.emplace_back(id);
      acked = 1;
    } else {
      std::string_view code = json_string_field(body, "code");
      ++r_.errors[code.empty() ? "http_" + std::to_string(status) : std::string(code)];
      shed = status == 503 || status == 429;
    }
    r_.orders_acked += acked;
    r_.interval_acked += acked;
    if (measured) r_.orders_acked_measured += acked;
    if (!shed || o_.rate > 0) return SteadyClock::duration::zero();
    // Closed loop: wait as the server asked (Retry-After, at most kShedWaitMax; 100 ms when it
    // did not say) instead of asking again at once, which only burns the CPU the server shares
    // with this process. (Open loop keeps its schedule.)
    std::chrono::milliseconds wait(100);
    if (auto it = res.find(bhttp::field::retry_after); it != res.end()) {
      int secs = 0;
      auto v = it->value();
      if (std::from_chars(v.data(), v.data() + v.size(), secs).ec == std::errc() && secs >= 0) {
        wait = std::chrono::milliseconds(1000LL * secs);
      }
    } else if (o_.batch > 0) {
      wait = std::chrono::milliseconds(1000);  // items carry no header: the single endpoint's 1 s
    }
    ++r_.waits;
    return std::min<SteadyClock::duration>(wait, kShedWaitMax);
  }

  void error(const std::string& what) { ++r_.errors[what]; }

  void progress_line() {
    if (!o_.quiet) {
      double t = seconds_between(start_, SteadyClock::now());
      std::string errs;
      for (auto& [k, v] : r_.errors) errs += " " + k + "=" + std::to_string(v);
      std::fprintf(stderr, "[%5.1fs]%s sent=%llu acked=%llu rate=%llu/s p99=%.2fms errors:%s\n", t,
                   SteadyClock::now() < measure_start_ ? " warm-up" : "",
                   static_cast<unsigned long long>(r_.requests_sent),
                   static_cast<unsigned long long>(r_.orders_acked),
                   static_cast<unsigned long long>(r_.interval_acked),
                   static_cast<double>(r_.interval_us.quantile(0.99)) / 1000.0,
                   errs.empty() ? " none" : errs.c_str());
    }
    r_.interval_acked = 0;
    r_.interval_us.reset();
  }

  const BenchOptions& o_;
  std::string host_;
  uint16_t port_;

 private:
  int per_request() const { return o_.batch > 0 ? o_.batch : 1; }

  bool done_issuing(SteadyClock::time_point now) const {
    if (o_.orders > 0) return issued_orders_ >= o_.orders;
    return now >= end_;
  }

  OrderFactory factory_;
  simdjson::dom::parser parser_;
  SteadyClock::time_point start_, measure_start_, end_, last_response_;
  uint64_t tickets_ = 0;
  uint64_t issued_orders_ = 0;
  double measured_s_ = 0;
  Results r_;
};

// The load on io_uring: every connection's request and the read of its answer are queued
// together, and one system call submits what is queued and waits for what completed. Through
// Asio each request cost ~2.8 system calls (a send, a speculative read that mostly found
// nothing, the read, a share of epoll_wait), on the same cores as the server, on a machine
// where each costs ~1 us (docs/performance.md). Timers (open-loop schedule, waits after a
// shed request, the progress line) are a heap whose earliest entry bounds each wait.
class UringLoad final : public LoadPlan {
 public:
  using LoadPlan::LoadPlan;
  ~UringLoad() {
    for (auto& c : conns_) close_fd(*c);
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }

  // False (and nothing started) when io_uring cannot be used here: a kernel without it, or a
  // sandbox that forbids it (container seccomp profiles often do).
  bool init() {
    unsigned entries = 64;
    while (entries < 2u * static_cast<unsigned>(o_.connections) + 8 && entries < 32768) entries *= 2;
    if (io_uring_queue_init(entries, &ring_, 0) != 0) return false;
    ring_ready_ = true;
    return true;
  }

  Results run() override {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (getaddrinfo(host_.c_str(), std::to_string(port_).c_str(), &hints, &found) != 0 || found == nullptr) {
      for (int i = 0; i < o_.connections; ++i) error("connect_error");
      return finish();
    }
    std::memcpy(&addr_, found->ai_addr, found->ai_addrlen);
    addr_len_ = found->ai_addrlen;
    family_ = found->ai_family;
    freeaddrinfo(found);
    begin();
    for (int i = 0; i < o_.connections; ++i) {
      conns_.push_back(std::make_unique<Conn>());
      conns_.back()->index = static_cast<uint32_t>(i);
    }
    for (auto& c : conns_) {
      if (!connect(*c)) {
        error("connect_error");
        finish_conn(*c);
      } else {
        next(*c);
      }
    }
    auto progress_at = SteadyClock::now() + std::chrono::seconds(1);
    while (finished_ < conns_.size()) {
      auto now = SteadyClock::now();
      while (!timers_.empty() && timers_.top().due <= now) {
        Timer t = timers_.top();
        timers_.pop();
        Conn& c = *conns_[t.conn];
        if (t.seq == c.seq) t.send ? send(c) : next(c);
      }
      if (now >= progress_at) {
        progress_line();
        progress_at += std::chrono::seconds(1);
      }
      if (finished_ == conns_.size()) break;
      auto until = progress_at;
      if (!timers_.empty()) until = std::min(until, timers_.top().due);
      const auto wait = std::max<SteadyClock::duration>(until - SteadyClock::now(), std::chrono::microseconds(0));
      __kernel_timespec ts{};
      ts.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(wait).count();
      ts.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(wait % std::chrono::seconds(1)).count();
      io_uring_cqe* cqe = nullptr;
      int rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
      if (rc < 0 && rc != -ETIME && rc != -EINTR) {
        error("io_uring_error");
        break;
      }
      unsigned head = 0, seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        complete(io_uring_cqe_get_data64(cqe), cqe->res);
      }
      io_uring_cq_advance(&ring_, seen);
    }
    return finish();
  }

 private:
  struct Conn {
    uint32_t index = 0;
    int fd = -1;
    uint32_t seq = 0;  // the current request's number: completions of an earlier one are stale
    std::string req;
    size_t sent = 0;
    std::string in;  // bytes of an answer received before the parser could take them
    std::optional<ResponseParser> parser;
    SteadyClock::time_point intended;
    int reconnects = 0;
    bool finished = false;
    char buf[kResponseBufferBytes];
  };
  struct Timer {
    SteadyClock::time_point due;
    uint32_t conn;
    uint32_t seq;
    bool send;  // true: send the planned request; false: plan the next one
    bool operator>(const Timer& o) const { return due > o.due; }
  };
  enum Op : uint64_t { kSend = 0, kRecv = 1 };

  static uint64_t tag(const Conn& c, Op op) {
    return uint64_t{c.index} << 33 | uint64_t{c.seq} << 1 | op;
  }

  io_uring_sqe* sqe() { return http::next_sqe(ring_); }

  bool connect(Conn& c) {
    c.fd = ::socket(family_, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) return false;
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), addr_len_) != 0) {
      close_fd(c);
      return false;
    }
    int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return true;
  }

  static void close_fd(Conn& c) {
    if (c.fd < 0) return;
    ::shutdown(c.fd, SHUT_RDWR);  // ends a read still queued in the ring on this socket
    ::close(c.fd);
    c.fd = -1;
  }

  void finish_conn(Conn& c) {
    if (c.finished) return;
    c.finished = true;
    ++c.seq;
    close_fd(c);
    ++finished_;
  }

  void next(Conn& c) {
    auto p = plan(SteadyClock::now());
    if (!p) return finish_conn(c);
    ++c.seq;
    c.intended = p->intended;
    build_request(c.req, p->orders);
    if (p->send_at > SteadyClock::now()) {
      timers_.push(Timer{p->send_at, c.index, c.seq, true});
      return;
    }
    send(c);
  }

  void send(Conn& c) {
    c.sent = 0;
    c.in.clear();
    fresh_parser(c.parser);
    c.parser->eager(true);
    queue_send(c);
    queue_recv(c);
  }

  void queue_send(Conn& c) {
    io_uring_sqe* s = sqe();
    io_uring_prep_send(s, c.fd, c.req.data() + c.sent, c.req.size() - c.sent, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(s, tag(c, kSend));
  }

  void queue_recv(Conn& c) {
    io_uring_sqe* s = sqe();
    io_uring_prep_recv(s, c.fd, c.buf, sizeof c.buf, 0);
    io_uring_sqe_set_data64(s, tag(c, kRecv));
  }

  void complete(uint64_t data, int res) {
    Conn& c = *conns_[data >> 33];
    if (static_cast<uint32_t>(data >> 1) != c.seq || c.finished) return;  // an earlier request's
    if ((data & 1) == kSend) {
      if (res < 0) return failed(c, "connection_error");
      c.sent += static_cast<size_t>(res);
      if (c.sent < c.req.size()) queue_send(c);
      return;
    }
    beast::error_code ec;
    if (res < 0) return failed(c, "connection_error");
    if (res == 0) {
      // Closed by the server. Only a response that ends at the close (no length given) can be
      // complete here; with nothing received, there is none (and put_eof asserts).
      if (!c.parser->got_some()) return failed(c, "connection_error");
      c.parser->put_eof(ec);
      if (ec || !c.parser->is_done()) return failed(c, "connection_error");
    } else {
      // Parsed where it was received; only what the parser could not take yet is kept.
      std::string_view data(c.buf, static_cast<size_t>(res));
      if (!c.in.empty()) data = c.in.append(data);
      size_t used = 0;
      while (used < data.size() && !c.parser->is_done()) {
        const size_t n = c.parser->put(asio::buffer(data.data() + used, data.size() - used), ec);
        used += n;
        if (ec == bhttp::error::need_more) {
          ec = {};
          break;
        }
        if (ec) return failed(c, "connection_error");
        if (n == 0) break;
      }
      if (!c.parser->is_done()) {
        c.in = std::string(data.substr(used));
        return queue_recv(c);
      }
    }
    const auto& res_msg = c.parser->get();
    const SteadyClock::duration wait = on_response(c.intended, res_msg);
    if (!res_msg.keep_alive()) return failed(c, "server_closed");
    if (wait > SteadyClock::duration::zero()) {
      ++c.seq;  // nothing of this request is pending any more
      timers_.push(Timer{SteadyClock::now() + wait, c.index, c.seq, false});
      return;
    }
    next(c);
  }

  void failed(Conn& c, const char* what) {
    error(what);
    ++c.seq;
    close_fd(c);
    if (++c.reconnects > 100) return finish_conn(c);
    if (!connect(c)) {
      error("connect_error");
      return finish_conn(c);
    }
    next(c);
  }

  io_uring ring_{};
  bool ring_ready_ = false;
  sockaddr_storage addr_{};
  socklen_t addr_len_ = 0;
  int family_ = AF_INET;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<Timer>> timers_;
  size_t finished_ = 0;
};

// The same load through Asio, where io_uring is not available.
class AsioLoad final : public LoadPlan {
 public:
  AsioLoad(const BenchOptions& o, std::string host, uint16_t port, uint64_t seed, std::string run_id)
      : LoadPlan(o, std::move(host), port, seed, std::move(run_id)), progress_(ioc_) {}

  Results run() override {
    tcp::resolver resolver(ioc_);
    endpoints_ = resolver.resolve(host_, std::to_string(port_));
    begin();
    for (int i = 0; i < o_.connections; ++i) {
      auto c = std::make_shared<Conn>(ioc_);
      conns_.push_back(c);
      connect(c);
    }
    schedule_progress();
    ioc_.run();
    return finish();
  }

 private:
  struct Conn {
    explicit Conn(asio::io_context& ioc) : sock(ioc), timer(ioc) {}
    tcp::socket sock;
    asio::steady_timer timer;
    beast::flat_buffer buf;
    std::optional<ResponseParser> parser;
    std::string req;
    SteadyClock::time_point intended;
    int reconnects = 0;
  };

  void connect(const std::shared_ptr<Conn>& c) {
    asio::async_connect(c->sock, endpoints_, [this, c](beast::error_code ec, const tcp::endpoint&) {
      if (ec) {
        error("connect_error");
        return finish_conn(c);
      }
      c->sock.set_option(tcp::no_delay(true));
      next(c);
    });
  }

  void finish_conn(const std::shared_ptr<Conn>& c) {
    beast::error_code ignored;
    c->sock.close(ignored);
    if (++finished_ == conns_.size()) progress_.cancel();
  }

  void next(const std::shared_ptr<Conn>& c) {
    auto p = plan(SteadyClock::now());
    if (!p) return finish_conn(c);
    c->intended = p->intended;
    build_request(c->req, p->orders);
    if (p->send_at > SteadyClock::now()) {
      c->timer.expires_at(p->send_at);
      c->timer.async_wait([this, c](beast::error_code) { send(c); });
      return;
    }
    send(c);
  }

  void send(const std::shared_ptr<Conn>& c) {
    asio::async_write(c->sock, asio::buffer(c->req), [this, c](beast::error_code ec, size_t) {
      if (ec) return failed(c, "connection_error");
      fresh_parser(c->parser);
      c->buf.reserve(kResponseBufferBytes);
      bhttp::async_read(c->sock, c->buf, *c->parser, [this, c](beast::error_code ec2, size_t) {
        if (ec2) return failed(c, "connection_error");
        const auto& res = c->parser->get();
        const SteadyClock::duration wait = on_response(c->intended, res);
        if (!res.keep_alive()) return failed(c, "server_closed");
        if (wait > SteadyClock::duration::zero()) {
          c->timer.expires_after(wait);
          c->timer.async_wait([this, c](beast::error_code) { next(c); });
          return;
        }
        next(c);
      });
    });
  }

  void failed(const std::shared_ptr<Conn>& c, const char* what) {
    error(what);
    beast::error_code ignored;
    c->sock.close(ignored);
    if (++c->reconnects > 100) return finish_conn(c);
    c->sock = tcp::socket(ioc_);
    c->buf.clear();
    connect(c);
  }

  void schedule_progress() {
    progress_.expires_after(std::chrono::seconds(1));
    progress_.async_wait([this](beast::error_code ec) {
      if (ec || finished_ == conns_.size()) return;
      progress_line();
      schedule_progress();
    });
  }

  asio::io_context ioc_;
  tcp::resolver::results_type endpoints_;
  std::vector<std::shared_ptr<Conn>> conns_;
  asio::steady_timer progress_;
  size_t finished_ = 0;
};

// After the load: polls every acknowledged order until it is terminal or time runs out.
struct TerminalReport {
  std::map<std::string, uint64_t> by_status;
  std::vector<std::string> not_terminal;  // ids (first 20 listed)
  uint64_t not_terminal_count = 0;
  uint64_t checked = 0;
  double seconds = 0;              // the check's own duration
  uint64_t last_terminal_ms = 0;   // the latest `updated_at` of a terminal order (server clock)
  uint64_t unparsed_times = 0;     // terminal orders whose `updated_at` could not be read

  // Seconds from `load_end_ms` (this machine's clock) until the last order became terminal:
  // the pipeline's drain, without the time the check itself takes to look at every order.
  // Conservative (the whole check) when an order is not terminal or a time is unreadable;
  // never more than the check, never negative.
  double drain_after(uint64_t load_end_ms) const {
    if (not_terminal_count > 0 || unparsed_times > 0 || checked == 0) return seconds;
    const double d = last_terminal_ms > load_end_ms
                         ? static_cast<double>(last_terminal_ms - load_end_ms) / 1000.0
                         : 0.0;
    return std::min(d, seconds);
  }
};

TerminalReport check_terminal(const BenchOptions& o, const std::string& host, uint16_t port,
                              std::vector<std::string> ids) {
  TerminalReport rep;
  rep.checked = ids.size();
  auto t0 = SteadyClock::now();
  auto deadline = t0 + std::chrono::duration_cast<SteadyClock::duration>(
                           std::chrono::duration<double>(o.terminal_timeout_s));
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(host, std::to_string(port));
  std::deque<std::string> queue(ids.begin(), ids.end());
  std::map<std::string, std::string> last_status;
  struct Conn {
    explicit Conn(asio::io_context& ioc) : sock(ioc), timer(ioc) {}
    tcp::socket sock;
    asio::steady_timer timer;
    beast::flat_buffer buf;
    bhttp::request<bhttp::empty_body> req;
    std::optional<bhttp::response_parser<bhttp::string_body>> parser;
    std::string id;
  };
  std::function<void(std::shared_ptr<Conn>)> next;
  next = [&](std::shared_ptr<Conn> c) {
    if (queue.empty()) return;
    if (SteadyClock::now() >= deadline) {
      for (auto& id : queue) {
        ++rep.not_terminal_count;
        if (rep.not_terminal.size() < 20) rep.not_terminal.push_back(id + " (" + last_status[id] + ")");
        ++rep.by_status[last_status[id].empty() ? "unknown" : last_status[id]];
      }
      queue.clear();
      return;
    }
    c->id = queue.front();
    queue.pop_front();
    c->req = {bhttp::verb::get, "/v1/orders/" + c->id, 11};
    c->req.set(bhttp::field::host, host);
    c->req.set(bhttp::field::authorization, "Bearer " + o.api_key);
    bhttp::async_write(c->sock, c->req, [&, c](beast::error_code ec, size_t) {
      if (ec) return;
      c->parser.emplace();
      c->buf.reserve(kResponseBufferBytes);
      bhttp::async_read(c->sock, c->buf, *c->parser, [&, c](beast::error_code ec2, size_t) {
        if (ec2) return;
        std::string_view body = c->parser->get().body();
        std::string status(json_string_field(body, "status"));
        if (status == "delivered" || status == "cancelled" || status == "failed") {
          ++rep.by_status[status];
          // A terminal order's last change is its end.
          if (auto t = parse_rfc3339_ms(json_string_field(body, "updated_at"))) {
            rep.last_terminal_ms = std::max(rep.last_terminal_ms, *t);
          } else {
            ++rep.unparsed_times;
          }
          next(c);
        } else {
          last_status[c->id] = status;
          queue.push_back(c->id);  // not yet: look again shortly
          c->timer.expires_after(std::chrono::milliseconds(queue.size() < 64 ? 50 : 0));
          c->timer.async_wait([&, c](beast::error_code) { next(c); });
        }
      });
    });
  };
  std::vector<std::shared_ptr<Conn>> conns;
  for (int i = 0; i < std::min(o.connections, 32); ++i) {
    auto c = std::make_shared<Conn>(ioc);
    conns.push_back(c);
    asio::async_connect(c->sock, endpoints, [&, c](beast::error_code ec, const tcp::endpoint&) {
      if (!ec) next(c);
    });
  }
  ioc.run();
  for (auto& id : queue) {  // connections failed: whatever is left is unchecked
    ++rep.not_terminal_count;
    if (rep.not_terminal.size() < 20) rep.not_terminal.push_back(id + " (unchecked)");
  }
  rep.seconds = seconds_between(t0, SteadyClock::now());
  return rep;
}

// The embedded server: this binary's `serve`, in a child process on an ephemeral port.
struct Embedded {
  pid_t pid = -1;
  std::string dir;
  bool owns_dir = false;
  uint16_t port = 0;
};

// Stops the server (it drains; a server already reaped has pid -1) and removes the data
// directory if the bench made it.
void stop_embedded(Embedded& e) {
  if (e.pid > 0) {
    kill(e.pid, SIGTERM);
    int status;
    waitpid(e.pid, &status, 0);
  }
  if (e.owns_dir) {
    std::error_code ec;
    std::filesystem::remove_all(e.dir, ec);
  }
}

std::optional<Embedded> start_embedded(const BenchOptions& o, const std::string& key) {
  Embedded e;
  if (o.data_dir.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "orderflow-bench-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) return std::nullopt;
    e.dir = tmpl;
    e.owns_dir = true;
  } else {
    e.dir = o.data_dir;
    std::error_code ec;
    std::filesystem::create_directories(e.dir, ec);
    if (ec) return std::nullopt;
  }
  std::string log = e.dir + "/bench-server.log";
  std::vector<std::string> args = {"/proc/self/exe", "serve", "--listen", "127.0.0.1:0",
                                   "--data-dir", e.dir + "/data", "--durability", o.durability,
                                   "--api-key", key + ":bench:client+admin"};
  if (o.partitions > 0) {
    args.push_back("--partitions");
    args.push_back(std::to_string(o.partitions));
  }
  std::stringstream extra(o.server_args);
  for (std::string a; extra >> a;) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  e.pid = fork();
  if (e.pid < 0) {
    stop_embedded(e);  // (its directory)
    return std::nullopt;
  }
  if (e.pid == 0) {
    // The server goes when the bench does, however it ends (a kill -9 too): it is sent
    // SIGTERM and drains. (Only async-signal-safe calls until exec: this process may have
    // threads.)
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) _exit(127);
    sigset_t none;  // the bench blocks the signals its watcher takes (Interrupts); not the server
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) _exit(127);
    const int err = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    const int out = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (err < 0 || out < 0 || dup2(err, 2) < 0 || dup2(out, 1) < 0) _exit(127);
    execve("/proc/self/exe", argv.data(), environ);
    _exit(127);
  }
  for (int i = 0; i < 600; ++i) {
    std::ifstream in(log);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    size_t at = text.find("ready on ");
    if (at != std::string::npos) {
      size_t colon = text.find(':', at + 9);
      size_t eol = text.find('\n', at);
      if (colon != std::string::npos && eol != std::string::npos) {
        e.port = static_cast<uint16_t>(std::stoi(text.substr(colon + 1, eol - colon - 1)));
        return e;
      }
    }
    int status;
    if (waitpid(e.pid, &status, WNOHANG) == e.pid) {
      std::fprintf(stderr, "orderflow bench: the embedded server exited:\n%s\n", text.c_str());
      e.pid = -1;  // reaped
      stop_embedded(e);
      return std::nullopt;
    }
    usleep(50000);
  }
  std::fprintf(stderr, "orderflow bench: the embedded server was not ready after 30 s\n");
  kill(e.pid, SIGKILL);
  stop_embedded(e);
  return std::nullopt;
}

// The embedded server, stopped once: when the run ends, on an early return, or by Interrupts.
class EmbeddedServer {
 public:
  ~EmbeddedServer() { stop(); }
  void set(const Embedded& e) {
    std::lock_guard lock(mu_);
    e_ = e;
  }
  void stop() {
    std::lock_guard lock(mu_);
    stop_embedded(e_);
    e_ = Embedded{};
  }

 private:
  std::mutex mu_;
  Embedded e_;
};

// Ctrl-C (SIGINT), SIGTERM or SIGHUP while the bench runs its own server: a thread takes the
// signal, stops the server (it drains) and removes its temporary directory, then the bench
// exits 128 + the signal. (Without it both died and the directory stayed, with its data.) The
// signals are blocked in every thread but that one while this object lives.
class Interrupts {
 public:
  explicit Interrupts(EmbeddedServer& server) : server_(server) {
    sigemptyset(&set_);
    for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set_, sig);
    pthread_sigmask(SIG_BLOCK, &set_, &before_);
    thread_ = std::thread([this] { watch(); });
  }
  ~Interrupts() {
    done_.store(true);
    thread_.join();
    pthread_sigmask(SIG_SETMASK, &before_, nullptr);
  }

 private:
  void watch() {
    const timespec tick{0, 100'000'000};
    while (!done_.load()) {
      const int sig = sigtimedwait(&set_, nullptr, &tick);
      if (sig <= 0) continue;
      std::fprintf(stderr, "orderflow bench: %s: stopping the embedded server\n", strsignal(sig));
      server_.stop();
      _exit(128 + sig);
    }
  }

  EmbeddedServer& server_;
  sigset_t set_{}, before_{};
  std::atomic<bool> done_{false};
  std::thread thread_;
};

}  // namespace

int bench(const BenchOptions& in) {
  BenchOptions o = in;
  if (o.api_key.empty()) {
    if (const char* env = std::getenv("ORDERFLOW_API_KEY")) o.api_key = env;
  }
  std::random_device rd;
  uint64_t seed = o.seed ? o.seed : (uint64_t{rd()} << 32 | rd());
  std::string run_id = "bench-" + std::to_string(seed % 1000000007);
  std::fprintf(stderr, "orderflow bench: seed=%llu (repeat with --seed)\n",
               static_cast<unsigned long long>(seed));

  std::string host;
  uint16_t port = 0;
  Embedded embedded;
  EmbeddedServer server;  // (declared before `interrupts`: it outlives the watcher)
  std::optional<Interrupts> interrupts;
  if (o.embedded) {
    if (o.api_key.empty()) o.api_key = "bench-embedded-" + std::to_string(seed);
    interrupts.emplace(server);
    auto e = start_embedded(o, o.api_key);
    if (!e) {
      std::fprintf(stderr, "orderflow bench: could not start the embedded server\n");
      return 1;
    }
    embedded = *e;
    server.set(embedded);
    host = "127.0.0.1";
    port = embedded.port;
    std::fprintf(stderr, "orderflow bench: embedded server pid %d on 127.0.0.1:%u, data in %s\n",
                 embedded.pid, port, embedded.dir.c_str());
  } else if (!parse_server_url(o.server, host, port)) {
    std::fprintf(stderr, "orderflow bench: --server must be http://HOST:PORT\n");
    return 2;
  }
  if (o.api_key.empty()) {
    std::fprintf(stderr, "orderflow bench: an API key with role client is needed (--api-key or "
                         "ORDERFLOW_API_KEY)\n");
    return 2;
  }

  // io_uring where the kernel allows it (fewer system calls on the cores the server shares);
  // Asio otherwise.
  std::unique_ptr<LoadPlan> load;
  const char* engine = "epoll";
  if (o.io_engine != "epoll") {
    auto uring = std::make_unique<UringLoad>(o, host, port, seed, run_id);
    if (uring->init()) {
      load = std::move(uring);
      engine = "io_uring";
    } else if (o.io_engine == "io_uring") {
      std::fprintf(stderr, "orderflow bench: io_uring is not available here (--io-engine epoll "
                           "or auto)\n");
      return 2;
    } else if (!o.quiet) {
      std::fprintf(stderr, "orderflow bench: io_uring is not available here; using epoll\n");
    }
  }
  if (!load) load = std::make_unique<AsioLoad>(o, host, port, seed, run_id);
  const CpuSample cpu0 = sample_cpu(embedded.pid);
  Results r = load->run();
  const CpuSample cpu1 = sample_cpu(embedded.pid);
  // CPU per order acknowledged during the load (warm-up included on both sides); none
  // without orders, and none for a server that is not our child.
  std::optional<double> client_us, server_us;
  if (r.orders_acked > 0) {
    const double per_order = 1e6 / static_cast<double>(r.orders_acked);
    client_us = (cpu1.self_s - cpu0.self_s) * per_order;
    if (cpu0.server_s && cpu1.server_s) server_us = (*cpu1.server_s - *cpu0.server_s) * per_order;
  }
  const double total_ticks = cpu1.machine_total_ticks - cpu0.machine_total_ticks;
  const double machine_busy =
      total_ticks > 0 ? (cpu1.machine_busy_ticks - cpu0.machine_busy_ticks) / total_ticks : 0;
  double secs = load->measured_seconds();
  double load_secs = load->total_seconds();
  const uint64_t load_end_ms = SystemClock().now_ms();
  TerminalReport term;
  if (o.check_terminal) term = check_terminal(o, host, port, r.ids);
  const double drain_secs = term.drain_after(load_end_ms);
  // The pipeline's rate: orders delivered over the load and its drain.
  const uint64_t delivered = term.by_status.count("delivered") ? term.by_status.at("delivered") : 0;
  const double pipeline_secs = load_secs + drain_secs;
  const double delivered_per_s = pipeline_secs > 0 ? static_cast<double>(delivered) / pipeline_secs : 0.0;
  server.stop();

  const auto& h = r.latency_us;
  double throughput = secs > 0 ? static_cast<double>(r.orders_acked_measured) / secs : 0;
  double req_rate = secs > 0 ? static_cast<double>(r.requests_measured) / secs : 0;
  auto ms = [](uint64_t us) { return static_cast<double>(us) / 1000.0; };
  uint64_t errors_total = 0;
  for (auto& [k, v] : r.errors) errors_total += v;

  std::printf("mode: %s, connections: %d%s%s, %s\n", o.rate > 0 ? "open loop" : "closed loop",
              o.connections, o.rate > 0 ? (", target " + std::to_string(static_cast<long>(o.rate)) + " orders/s").c_str() : "",
              o.batch > 0 ? (", batches of " + std::to_string(o.batch)).c_str() : "", engine);
  std::printf("measured: %.1f s after %.1f s warm-up; %llu orders acknowledged in all\n", secs,
              o.warmup_s, static_cast<unsigned long long>(r.orders_acked));
  std::printf("throughput: %.0f orders/s (%.0f requests/s)\n", throughput, req_rate);
  std::printf("latency (ms): p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f  (%llu requests)\n",
              ms(h.quantile(0.5)), ms(h.quantile(0.9)), ms(h.quantile(0.99)), ms(h.quantile(0.999)),
              ms(h.max()), static_cast<unsigned long long>(h.count()));
  std::printf("errors: %llu", static_cast<unsigned long long>(errors_total));
  for (auto& [k, v] : r.errors) std::printf("  %s=%llu", k.c_str(), static_cast<unsigned long long>(v));
  if (r.waits > 0) {
    std::printf("  (%llu waits as the server asked after a 503/429)",
                static_cast<unsigned long long>(r.waits));
  }
  std::printf("\n");
  if (client_us) {
    std::printf("cpu during the load, per acknowledged order: ");
    if (server_us) std::printf("server %.1f us, ", *server_us);
    std::printf("load generator %.1f us; machine %.0f%% busy\n", *client_us, 100 * machine_busy);
  }
  if (o.check_terminal) {
    std::printf("pipeline: %.0f orders placed and delivered per second (%llu delivered in %.1f s "
                "of load plus %.1f s until the last one ended; checked in %.1f s)\n",
                delivered_per_s, static_cast<unsigned long long>(delivered), load_secs, drain_secs, term.seconds);
    std::printf("terminal check: %llu acknowledged orders, %llu not terminal after %.1f s;",
                static_cast<unsigned long long>(term.checked),
                static_cast<unsigned long long>(term.not_terminal_count), term.seconds);
    for (auto& [k, v] : term.by_status) std::printf(" %s=%llu", k.c_str(), static_cast<unsigned long long>(v));
    std::printf("\n");
    for (auto& id : term.not_terminal) std::printf("  not terminal: %s\n", id.c_str());
  }

  if (!o.json_path.empty()) {
    std::string j;
    JsonWriter w(j);
    w.begin_object()
        .field("mode", o.rate > 0 ? "open" : "closed")
        .field("io_engine", engine)
        .field("connections", o.connections)
        .field("target_rate", static_cast<int64_t>(o.rate))
        .field("batch", o.batch)
        .field("warmup_s", static_cast<int64_t>(o.warmup_s))
        .field("seed", seed);
    w.key("measured_s").raw(std::to_string(secs));
    w.field("orders_acknowledged", r.orders_acked)
        .field("orders_acknowledged_measured", r.orders_acked_measured);
    w.key("throughput_orders_per_s").raw(std::to_string(throughput));
    w.key("requests_per_s").raw(std::to_string(req_rate));
    w.key("latency_ms").begin_object();
    for (auto [name, q] : {std::pair{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}}) {
      w.key(name).raw(std::to_string(ms(h.quantile(q))));
    }
    w.key("max").raw(std::to_string(ms(h.max())));
    w.key("mean").raw(std::to_string(h.mean() / 1000.0));
    w.end_object();
    w.key("errors").begin_object();
    for (auto& [k, v] : r.errors) w.field(k, v);
    w.end_object();
    w.field("waits_after_shed", r.waits);
    auto number_or_null = [](std::optional<double> v) { return v ? std::to_string(*v) : "null"; };
    w.key("cpu_us_per_order").begin_object();
    w.key("server").raw(number_or_null(server_us));
    w.key("load_generator").raw(number_or_null(client_us));
    w.end_object();
    w.key("machine_busy").raw(std::to_string(machine_busy));
    if (o.check_terminal) {
      w.key("terminal").begin_object().field("checked", term.checked)
          .field("not_terminal", term.not_terminal_count);
      w.key("by_status").begin_object();
      for (auto& [k, v] : term.by_status) w.field(k, v);
      w.end_object();
      w.key("drain_s").raw(std::to_string(drain_secs));
      w.key("check_s").raw(std::to_string(term.seconds));
      w.key("load_s").raw(std::to_string(load_secs));
      w.key("delivered_per_s").raw(std::to_string(delivered_per_s));
      w.key("not_terminal_ids").begin_array();
      for (auto& id : term.not_terminal) w.value(id);
      w.end_array().end_object();
    }
    w.end_object();
    std::ofstream out(o.json_path, std::ios::trunc);
    out << j << "\n";
    if (!out) {
      std::fprintf(stderr, "orderflow bench: cannot write %s\n", o.json_path.c_str());
      return 1;
    }
  }
  if (o.check_terminal && term.not_terminal_count > 0) return 3;
  if (r.orders_acked == 0) {
    // Nothing was measured (no server, every request refused, ...): a figure of zero is not a
    // result, and a script that runs the bench must not take it for one.
    std::fprintf(stderr, "orderflow bench: no order was acknowledged (errors: above)\n");
    return 4;
  }
  return 0;
}

}  // namespace orderflow::app
