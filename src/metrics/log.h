// Structured logs: one JSON object per line on stderr, with level, time and message, plus
// whatever fields the caller adds (request_id, order_id, ...).
//
// Thread safety: every function from any thread; lines never interleave.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace orderflow::log {

enum class Level { debug = 0, info, warn, error };

bool parse_level(std::string_view name, Level& out);
void set_level(Level level);
bool enabled(Level level);

using Field = std::pair<std::string_view, std::string_view>;  // empty values are left out
void write(Level level, std::string_view message, std::initializer_list<Field> fields = {});

inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::error, m, f); }

}  // namespace orderflow::log
