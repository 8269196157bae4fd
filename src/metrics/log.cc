#include "metrics/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>

#include "core/clock.h"
#include "core/json_writer.h"

namespace orderflow::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::info)};
std::mutex g_mu;
constexpr const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

bool parse_level(std::string_view name, Level& out) {
  for (int i = 0; i < 4; ++i) {
    if (name == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

void set_level(Level level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }

bool enabled(Level level) {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void write(Level level, std::string_view message, std::initializer_list<Field> fields) {
  if (!enabled(level)) return;
  std::string line;
  line.reserve(160);
  JsonWriter w(line);
  w.begin_object()
      .field("time", format_rfc3339_ms(SystemClock().now_ms()))
      .field("level", kNames[static_cast<int>(level)])
      .field("msg", message);
  for (const auto& [k, v] : fields) {
    if (!v.empty()) w.field(k, v);  // an empty value is an absent field
  }
  w.end_object();
  line.push_back('\n');
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace orderflow::log
