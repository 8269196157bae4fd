#include "app/ctl.h"

#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <iostream>
#include <map>
#include <regex>

#include "app/server_url.h"
#include "core/json_writer.h"

namespace orderflow::app {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

enum Exit { kOk = 0, kUsage = 2, kNotFound = 3, kRefused = 4, kServer = 5 };

struct Reply {
  int status = 0;
  std::string body;
  std::string error;  // transport failure
};

class Client {
 public:
  explicit Client(const CtlOptions& o) : o_(o) {}

  Reply call(bhttp::verb method, const std::string& target, const std::string& body = "",
             const std::function<bool(std::string_view)>& on_line = nullptr) {
    Reply r;
    std::string host;
    uint16_t port_number = 0;
    if (!parse_server_url(o_.server, host, port_number)) {
      r.error = "--server must be http://HOST:PORT";
      return r;
    }
    try {
      asio::io_context ioc;
      tcp::resolver resolver(ioc);
      beast::tcp_stream stream(ioc);
      stream.expires_after(std::chrono::seconds(30));
      stream.connect(resolver.resolve(host, std::to_string(port_number)));
      bhttp::request<bhttp::string_body> req{method, target, 11};
      req.set(bhttp::field::host, host);
      req.set(bhttp::field::authorization, "Bearer " + o_.api_key);
      if (!body.empty()) {
        req.set(bhttp::field::content_type, "application/json");
        req.body() = body;
      }
      req.prepare_payload();
      bhttp::write(stream, req);
      beast::flat_buffer buf;
      if (on_line) {
        // A stream: read the head, then lines as they come, until the server closes.
        stream.expires_never();
        bhttp::response_parser<bhttp::empty_body> head;
        bhttp::read_header(stream, buf, head);
        r.status = head.get().result_int();
        if (r.status != 200) {
          // Not a stream (an error): its body, as Content-Length says, on a connection the
          // server keeps open — reading until it closes would wait forever.
          stream.expires_after(std::chrono::seconds(30));
          bhttp::response_parser<bhttp::string_body> whole(std::move(head));
          bhttp::read(stream, buf, whole);
          r.body = std::move(whole.get().body());
          return r;
        }
        std::string pending(static_cast<const char*>(buf.data().data()), buf.size());
        buf.consume(buf.size());
        char chunk[4096];
        for (;;) {
          size_t nl;
          while ((nl = pending.find('\n')) != std::string::npos) {
            if (!on_line(std::string_view(pending).substr(0, nl))) return r;
            pending.erase(0, nl + 1);
          }
          beast::error_code ec;
          size_t n = stream.socket().read_some(asio::buffer(chunk), ec);
          if (ec) break;
          pending.append(chunk, n);
        }
        return r;
      }
      bhttp::response<bhttp::string_body> res;
      bhttp::read(stream, buf, res);
      r.status = res.result_int();
      r.body = std::move(res.body());
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return r;
  }

 private:
  const CtlOptions& o_;
};

int exit_for(const Reply& r) {
  if (!r.error.empty()) {
    std::fprintf(stderr, "orderflow ctl: cannot reach the server: %s\n", r.error.c_str());
    return kServer;
  }
  if (r.status < 300) return kOk;
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  std::string_view code = "?", message = r.body;
  if (!p.parse(r.body).get(doc)) {
    if (doc["error"]["code"].get_string().get(code)) code = "?";
    if (doc["error"]["message"].get_string().get(message)) message = r.body;
  }
  std::fprintf(stderr, "orderflow ctl: %d %.*s: %.*s\n", r.status, static_cast<int>(code.size()),
               code.data(), static_cast<int>(message.size()), message.data());
  if (r.status == 404) return kNotFound;
  if (r.status < 500) return kRefused;
  return kServer;
}

std::string str(simdjson::dom::element e, const char* key) {
  std::string_view v;
  if (e[key].get_string().get(v)) return "-";
  return std::string(v);
}
int64_t num(simdjson::dom::element e, const char* key) {
  int64_t v = 0;
  if (e[key].get_int64().get(v)) return 0;
  return v;
}
std::string money(int64_t cents, const std::string& currency) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%lld.%02lld %s", static_cast<long long>(cents / 100),
                static_cast<long long>(cents % 100), currency.c_str());
  return buf;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> w;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      if (w.size() <= i) w.push_back(0);
      w[i] = std::max(w[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(w[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

void print_orders(simdjson::dom::array orders, bool with_stage) {
  std::vector<std::vector<std::string>> rows = {{"ID", "STATUS", "CUSTOMER", "MERCHANT", "TOTAL", "UPDATED"}};
  if (with_stage) rows[0].insert(rows[0].begin() + 2, {"STAGE", "IN STAGE"});
  for (auto o : orders) {
    std::vector<std::string> row = {str(o, "id"), str(o, "status"), str(o, "customer_id"),
                                    str(o, "merchant_id"), money(num(o, "total_cents"), str(o, "currency")),
                                    str(o, "updated_at")};
    if (with_stage) {
      row.insert(row.begin() + 2, {str(o, "stage"), std::to_string(num(o, "in_stage_ms") / 1000) + "s"});
    }
    rows.push_back(std::move(row));
  }
  print_table(rows);
}

void print_order(simdjson::dom::element o) {
  std::printf("order     %s\nstatus    %s (version %lld)\ncustomer  %s\nmerchant  %s\ntotal     %s\n",
              str(o, "id").c_str(), str(o, "status").c_str(), static_cast<long long>(num(o, "version")),
              str(o, "customer_id").c_str(), str(o, "merchant_id").c_str(),
              money(num(o, "total_cents"), str(o, "currency")).c_str());
  std::printf("payment   %s\ncourier   %s\ncreated   %s\nupdated   %s\n",
              str(o["payment"], "status").c_str(), str(o, "courier_id").c_str(),
              str(o, "created_at").c_str(), str(o, "updated_at").c_str());
  simdjson::dom::element f;
  if (!o["failure"].get(f) && f.is_object()) {
    std::printf("failure   %s: %s (%s)\n", str(f, "stage").c_str(), str(f, "code").c_str(), str(f, "message").c_str());
  }
  if (!o["attention"].get(f) && f.is_object()) {
    std::printf("attention %s: %s (%s)\n", str(f, "stage").c_str(), str(f, "code").c_str(), str(f, "message").c_str());
  }
}

// Prints a reply: raw JSON with --json, else through `human`.
int show(const CtlOptions& o, const Reply& r, const std::function<void(simdjson::dom::element)>& human) {
  int code = exit_for(r);
  if (code != kOk) return code;
  if (o.json) {
    std::printf("%s\n", r.body.c_str());
    return kOk;
  }
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  if (p.parse(r.body).get(doc)) {
    std::fprintf(stderr, "orderflow ctl: the server answered something that is not JSON\n");
    return kServer;
  }
  human(doc);
  return kOk;
}

std::string query_string(const CtlOptions& o) {
  std::string q = "?limit=" + std::to_string(o.limit);
  if (!o.customer_id.empty()) q += "&customer_id=" + o.customer_id;
  if (!o.merchant_id.empty()) q += "&merchant_id=" + o.merchant_id;
  if (!o.status.empty()) q += "&status=" + o.status;
  return q;
}

}  // namespace

void add_ctl(CLI::App& app, CtlOptions& o, std::function<int()>& run) {
  CLI::App* ctl = app.add_subcommand("ctl", "Administer a running server over HTTP (exit codes: 0 "
                                            "done, 2 usage, 3 not found, 4 refused, 5 server "
                                            "error or unreachable)");
  ctl->require_subcommand(1);
  ctl->add_option("--server", o.server, "http://HOST:PORT")->capture_default_str();
  ctl->add_option("--api-key", o.api_key, "API key (default: $ORDERFLOW_API_KEY)");
  ctl->add_flag("--json", o.json, "Print the server's JSON instead of tables");
  auto key = [&o] {
    if (o.api_key.empty()) {
      if (const char* env = std::getenv("ORDERFLOW_API_KEY")) o.api_key = env;
    }
  };
  // When `sub` is chosen, `run` becomes `body`, preceded by resolving the API key.
  auto runs = [&run, key](CLI::App* sub, std::function<int()> body) {
    sub->callback([&run, key, body] {
      run = [key, body] {
        key();
        return body();
      };
    });
  };

  CLI::App* orders = ctl->add_subcommand("orders", "Orders: get, list, cancel, events, watch");
  orders->require_subcommand(1);
  auto* get = orders->add_subcommand("get", "Show one order");
  get->add_option("id", o.id, "Order id")->required();
  runs(get, [&] {
    return show(o, Client(o).call(bhttp::verb::get, "/v1/orders/" + o.id), print_order);
  });
  auto* list = orders->add_subcommand("list", "List orders, newest first");
  list->add_option("--customer", o.customer_id, "customer_id filter");
  list->add_option("--merchant", o.merchant_id, "merchant_id filter");
  list->add_option("--status", o.status, "status filter");
  list->add_option("--limit", o.limit, "1-500")->check(CLI::Range(1, 500))->capture_default_str();
  runs(list, [&] {
    return show(o, Client(o).call(bhttp::verb::get, "/v1/orders" + query_string(o)),
                [](simdjson::dom::element d) { print_orders(d["orders"].get_array().value(), false); });
  });
  auto* cancel = orders->add_subcommand("cancel", "Cancel an order");
  cancel->add_option("id", o.id, "Order id")->required();
  cancel->add_option("--reason", o.reason, "Why");
  runs(cancel, [&] {
    std::string body;
    if (!o.reason.empty()) JsonWriter(body).begin_object().field("reason", o.reason).end_object();
    return show(o, Client(o).call(bhttp::verb::post, "/v1/orders/" + o.id + "/cancel", body), print_order);
  });
  auto* events = orders->add_subcommand("events", "An order's history");
  events->add_option("id", o.id, "Order id")->required();
  runs(events, [&] {
    return show(o, Client(o).call(bhttp::verb::get, "/v1/orders/" + o.id + "/events"),
                [](simdjson::dom::element d) {
                  std::vector<std::vector<std::string>> rows = {{"SEQ", "AT", "TYPE", "DETAIL"}};
                  for (auto e : d["events"].get_array()) {
                    simdjson::dom::element data = e["data"];
                    std::string detail;
                    std::string_view v;
                    if (!data["to"].get_string().get(v)) detail = str(data, "from") + " -> " + std::string(v);
                    if (!data["action"].get_string().get(v)) {
                      detail = str(data, "stage") + "/" + std::string(v) + " #" + std::to_string(num(data, "attempt"));
                      if (!data["code"].get_string().get(v)) detail += " " + std::string(v);
                    }
                    if (!data["reason"].get_string().get(v)) detail = std::string(v);
                    rows.push_back({std::to_string(num(e, "seq")), str(e, "at"), str(e, "type"), detail});
                  }
                  print_table(rows);
                });
  });
  auto* watch = orders->add_subcommand("watch", "Follow an order live until it finishes");
  watch->add_option("id", o.id, "Order id")->required();
  runs(watch, [&] {
    int status = 0;
    Reply r = Client(o).call(bhttp::verb::get, "/v1/orders/" + o.id + "/stream", "",
                             [&](std::string_view line) {
                               if (line.substr(0, 6) != "data: ") return true;
                               std::string json(line.substr(6));
                               if (o.json) {
                                 std::printf("%s\n", json.c_str());
                               } else {
                                 simdjson::dom::parser p;
                                 simdjson::dom::element d;
                                 if (!p.parse(json).get(d)) {
                                   std::printf("%s  %-20s version %lld\n", str(d, "updated_at").c_str(),
                                               str(d, "status").c_str(), static_cast<long long>(num(d, "version")));
                                 }
                               }
                               std::fflush(stdout);
                               return true;
                             });
    status = r.status;
    if (!r.error.empty() || status >= 300) return exit_for(r);
    return static_cast<int>(kOk);
  });

  CLI::App* dl = ctl->add_subcommand("dead-letters", "Orders parked in needs_attention: list, redrive");
  dl->require_subcommand(1);
  auto* dl_list = dl->add_subcommand("list", "List parked orders");
  dl_list->add_option("--limit", o.limit, "1-500")->check(CLI::Range(1, 500))->capture_default_str();
  runs(dl_list, [&] {
    return show(o, Client(o).call(bhttp::verb::get, "/v1/admin/dead-letters?limit=" + std::to_string(o.limit)),
                [](simdjson::dom::element d) { print_orders(d["orders"].get_array().value(), false); });
  });
  auto* dl_redrive = dl->add_subcommand("redrive", "Resume a parked order");
  dl_redrive->add_option("id", o.id, "Order id")->required();
  runs(dl_redrive, [&] {
    return show(o, Client(o).call(bhttp::verb::post, "/v1/admin/orders/" + o.id + "/redrive"), print_order);
  });

  auto* stuck = ctl->add_subcommand("stuck", "Orders in a stage longer than its SLA");
  stuck->add_option("--limit", o.limit, "1-1000")->check(CLI::Range(1, 1000))->capture_default_str();
  runs(stuck, [&] {
    return show(o, Client(o).call(bhttp::verb::get, "/v1/admin/orders/stuck?limit=" + std::to_string(o.limit)),
                [](simdjson::dom::element d) { print_orders(d["orders"].get_array().value(), true); });
  });

  auto* stats = ctl->add_subcommand("stats", "Orders in progress, finished, stuck and parked (from /metrics)");
  runs(stats, [&] {
    Reply r = Client(o).call(bhttp::verb::get, "/metrics");
    int code = exit_for(r);
    if (code != kOk) return code;
    std::map<std::string, double> figures;
    const std::regex line_re(R"re(^(orderflow_orders|orderflow_orders_in_flight|orderflow_dead_letters|orderflow_orders_stuck|orderflow_order_transitions_total)(\{[^}]*\})? (\S+)$)re");
    const std::regex to_re(R"re(to="(delivered|cancelled|failed)")re");
    const std::regex status_re(R"re(status="([a-z_]+)")re");
    const std::regex stage_re(R"re(stage="([a-z_]+)")re");
    std::istringstream in(r.body);
    for (std::string line; std::getline(in, line);) {
      std::smatch m;
      if (!std::regex_match(line, m, line_re)) continue;
      std::string name = m[1], labels = m[2];
      double v = std::stod(m[3]);
      std::smatch lm;
      if (name == "orderflow_order_transitions_total") {
        if (std::regex_search(labels, lm, to_re)) {
          figures["finished " + lm[1].str()] += v;
        }
      } else if (name == "orderflow_orders" && std::regex_search(labels, lm, status_re)) {
        figures["in progress " + lm[1].str()] += v;
      } else if (name == "orderflow_orders_stuck" && std::regex_search(labels, lm, stage_re)) {
        figures["stuck in " + lm[1].str()] += v;
      } else if (name == "orderflow_orders_in_flight") {
        figures["in progress (all)"] = v;
      } else if (name == "orderflow_dead_letters") {
        figures["dead letters"] = v;
      }
    }
    if (o.json) {
      std::string j;
      JsonWriter w(j);
      w.begin_object();
      for (auto& [k, v] : figures) w.field(k, static_cast<int64_t>(v));
      w.end_object();
      std::printf("%s\n", j.c_str());
      return static_cast<int>(kOk);
    }
    std::vector<std::vector<std::string>> rows = {{"FIGURE", "ORDERS"}};
    for (auto& [k, v] : figures) rows.push_back({k, std::to_string(static_cast<long long>(v))});
    print_table(rows);
    return static_cast<int>(kOk);
  });
}

}  // namespace orderflow::app
