// Handlers of the task API: external workers poll, complete and fail the effects of stages
// configured external.
#include <simdjson.h>

#include "core/clock.h"
#include "core/json_writer.h"
#include "core/order_json.h"
#include "http/api.h"
#include "http/errors.h"

namespace orderflow::http {
namespace {

using simdjson::dom::element;
using simdjson::dom::element_type;

simdjson::dom::parser& parser() {
  thread_local simdjson::dom::parser p;
  return p;
}

// Parses a JSON object body; an empty body is {} when `empty_ok`.
Result<simdjson::dom::object> parse_object(std::string_view body, bool empty_ok) {
  static const std::string kEmpty = "{}";
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    if (!empty_ok) return make_error(Errc::invalid_argument, "a JSON body is required");
    body = kEmpty;
  }
  element doc;
  if (auto err = parser().parse(body.data(), body.size()).get(doc)) {
    return make_error(Errc::invalid_json,
                      std::string("body is not valid JSON: ") + simdjson::error_message(err));
  }
  simdjson::dom::object obj;
  if (doc.get_object().get(obj)) return make_error(Errc::invalid_argument, "body must be a JSON object");
  return obj;
}

Error invalid(std::vector<FieldViolation> v) {
  std::string msg = v.front().field + ": " + v.front().reason;
  return Error{Errc::invalid_argument, std::move(msg), std::move(v)};
}

bool read_uint(element e, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (e.type() != element_type::INT64 && e.type() != element_type::UINT64) return false;
  if (e.type() == element_type::INT64 && int64_t(e) < 0) return false;
  out = uint64_t(e);
  return out >= lo && out <= hi;
}

void render_task(const LeasedTask& t, std::string& out) {
  JsonWriter w(out);
  const EffectCall& c = t.request.call;
  w.begin_object()
      .field("task_id", t.task_id)
      .field("order_id", c.order_id.str())
      .field("stage", stage_name(c.stage))
      .field("action", action_name(c.action))
      .field("attempt", c.attempt)
      .field("idempotency_key", t.request.idempotency_key)
      .field("lease_expires_at", format_rfc3339_ms(t.lease_expires_at_ms));
  w.key("order");
  render_order(*t.order, out);
  w.end_object();
}

}  // namespace

void Api::poll_tasks(const Backend& b, const Principal& who, Request& req, Respond& respond) {
  if (!is_json_media_type(req.content_type)) {
    return respond(error_response(Errc::unsupported_media_type, "Content-Type must be application/json"));
  }
  auto obj = parse_object(req.body, false);
  if (!obj) return respond(error_response(obj.error()));
  const TaskOptions& opts = b.tasks->options();
  std::optional<Stage> stage;
  uint64_t max_tasks = 1, wait_ms = 0;
  std::vector<FieldViolation> bad;
  for (auto field : *obj) {
    std::string_view k = field.key;
    if (k == "stage") {
      std::string_view s;
      if (field.value.get_string().get(s) || !(stage = parse_stage(s))) {
        bad.push_back({"stage", "must be one of inventory, payment, merchant, dispatch, delivery"});
      } else if (!b.external[static_cast<int>(*stage)]) {
        bad.push_back({"stage", "stage " + std::string(s) +
                                    " is served by the built-in simulator; start the server "
                                    "with --stage-mode " + std::string(s) + "=external"});
      }
    } else if (k == "max_tasks") {
      if (!read_uint(field.value, 1, opts.tasks_per_poll_max, max_tasks)) {
        bad.push_back({"max_tasks", "must be an integer from 1 to " +
                                        std::to_string(opts.tasks_per_poll_max)});
      }
    } else if (k == "wait_ms") {
      if (!read_uint(field.value, 0, opts.wait_ms_max, wait_ms)) {
        bad.push_back({"wait_ms", "must be an integer from 0 to " + std::to_string(opts.wait_ms_max)});
      }
    } else {
      bad.push_back({std::string(k), "unknown field"});
    }
  }
  if (!stage && bad.empty()) bad.push_back({"stage", "is required"});
  if (!bad.empty()) return respond(error_response(invalid(std::move(bad))));

  Status s = b.tasks->poll(who.tenant, *stage, max_tasks, wait_ms,
                           [respond](std::vector<LeasedTask> tasks) {
                             Response r;
                             JsonWriter w(r.body);
                             w.begin_object().key("tasks").begin_array();
                             for (const LeasedTask& t : tasks) {
                               w.element_separator();
                               render_task(t, r.body);
                             }
                             w.end_array().end_object();
                             respond(std::move(r));
                           });
  if (!s.ok()) respond(error_response(s.error()));
}

void Api::finish_task(const Backend& b, const Principal& who, std::string_view task_id, bool ok,
                      Request& req, Respond& respond) {
  bool has_body = req.body.find_first_not_of(" \t\r\n") != std::string::npos;
  if (has_body && !is_json_media_type(req.content_type)) {
    return respond(error_response(Errc::unsupported_media_type, "Content-Type must be application/json"));
  }
  auto obj = parse_object(req.body, ok);
  if (!obj) return respond(error_response(obj.error()));

  // Validate everything before the lease is taken: a bad request changes nothing.
  EffectResult outcome;
  std::vector<FieldViolation> bad;
  if (ok) {
    for (auto field : *obj) {
      std::string_view k = field.key;
      if (k != "result") {
        bad.push_back({std::string(k), "unknown field"});
        continue;
      }
      simdjson::dom::object result;
      if (field.value.get_object().get(result)) {
        bad.push_back({"result", "must be an object"});
        continue;
      }
      for (auto rf : result) {
        std::string_view rk = rf.key;
        std::string_view v;
        if (rk != "courier_id") continue;  // other result fields are the worker's own
        if (rf.value.get_string().get(v) || !is_valid_token(v, 64)) {
          bad.push_back({"result.courier_id", "must be 1-64 characters of [A-Za-z0-9._:-]"});
        } else {
          outcome.courier_id.assign(v);
        }
      }
    }
  } else {
    bool has_code = false, has_retryable = false;
    for (auto field : *obj) {
      std::string_view k = field.key;
      std::string_view v;
      if (k == "code") {
        has_code = true;
        if (field.value.get_string().get(v) || !is_valid_token(v, 64)) {
          bad.push_back({"code", "must be 1-64 characters of [A-Za-z0-9._:-]"});
        } else {
          outcome.code.assign(v);
        }
      } else if (k == "message") {
        if (field.value.get_string().get(v) || utf8_length(v) > 512) {
          bad.push_back({"message", "must be a string of at most 512 characters"});
        } else {
          outcome.message.assign(v);
        }
      } else if (k == "retryable") {
        has_retryable = true;
        bool r;
        if (field.value.get_bool().get(r)) {
          bad.push_back({"retryable", "must be true or false"});
        } else {
          outcome.outcome = r ? EffectOutcome::transient : EffectOutcome::permanent;
        }
      } else {
        bad.push_back({std::string(k), "unknown field"});
      }
    }
    if (!has_code) bad.push_back({"code", "is required"});
    if (!has_retryable) bad.push_back({"retryable", "is required"});
  }
  if (!bad.empty()) return respond(error_response(invalid(std::move(bad))));

  auto lease = b.tasks->take_lease(who.tenant, std::string(task_id));
  if (!lease) return respond(error_response(lease.error()));
  EffectResult r = std::move(*lease);
  r.outcome = ok ? EffectOutcome::success : outcome.outcome;
  r.code = std::move(outcome.code);
  r.message = std::move(outcome.message);
  r.courier_id = std::move(outcome.courier_id);
  // 200 once the result is durable.
  b.engine->submit_result(std::move(r), [respond](Result<CommandResult> res) {
    if (!res) return respond(error_response(res.error()));
    respond(order_response(200, res->order));
  });
}

}  // namespace orderflow::http
