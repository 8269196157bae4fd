// A minimal streaming JSON writer into a caller-owned std::string.
//
// The caller is responsible for structure (begin/end pairs, key before value); the writer
// inserts commas. Strings are escaped per RFC 8259; input is assumed valid UTF-8 (every
// string orderflow writes either came through simdjson's UTF-8 validation or is its own).
#pragma once

#include <cstdint>
#include <charconv>
#include <string>
#include <string_view>

namespace orderflow {

class JsonWriter {
 public:
  explicit JsonWriter(std::string& out) : out_(out) {}

  JsonWriter& begin_object() { sep(); out_.push_back('{'); first_ = true; return *this; }
  JsonWriter& end_object() { out_.push_back('}'); first_ = false; return *this; }
  JsonWriter& begin_array() { sep(); out_.push_back('['); first_ = true; return *this; }
  JsonWriter& end_array() { out_.push_back(']'); first_ = false; return *this; }
  JsonWriter& key(std::string_view k) {
    sep();
    append_string(k);
    out_.push_back(':');
    first_ = true;  // the value that follows takes no comma
    return *this;
  }
  JsonWriter& value(std::string_view s) { sep(); append_string(s); return *this; }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(int64_t v) { sep(); append_number(v); return *this; }
  JsonWriter& value(uint64_t v) { sep(); append_number(v); return *this; }
  JsonWriter& value(int v) { return value(static_cast<int64_t>(v)); }
  JsonWriter& value(unsigned v) { return value(static_cast<uint64_t>(v)); }
  JsonWriter& value(bool v) { sep(); out_.append(v ? "true" : "false"); return *this; }
  JsonWriter& null() { sep(); out_.append("null"); return *this; }
  // Emits only the separator before an element that the caller appends to the string itself
  // (e.g. with render_order), so a writer and a renderer can share one output.
  JsonWriter& element_separator() { sep(); return *this; }
  // Inserts already-serialized JSON verbatim as one value.
  JsonWriter& raw(std::string_view json) { sep(); out_.append(json); return *this; }

  template <typename T>
  JsonWriter& field(std::string_view k, const T& v) { key(k); return value(v); }

  static void escape_into(std::string& out, std::string_view s);

 private:
  template <typename Int>
  void append_number(Int v) {  // no temporary string
    char buf[24];
    auto end = std::to_chars(buf, buf + sizeof buf, v).ptr;
    out_.append(buf, static_cast<size_t>(end - buf));
  }
  void sep() {
    if (!first_) out_.push_back(',');
    first_ = false;
  }
  void append_string(std::string_view s) {
    out_.push_back('"');
    escape_into(out_, s);
    out_.push_back('"');
  }

  std::string& out_;
  bool first_ = true;
};

inline void JsonWriter::escape_into(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + start, i - start);
    start = i + 1;
    switch (c) {
      case '"': out.append("\\\""); break;
      case '\\': out.append("\\\\"); break;
      case '\n': out.append("\\n"); break;
      case '\r': out.append("\\r"); break;
      case '\t': out.append("\\t"); break;
      case '\b': out.append("\\b"); break;
      case '\f': out.append("\\f"); break;
      default:
        out.append("\\u00");
        out.push_back(kHex[c >> 4]);
        out.push_back(kHex[c & 15]);
    }
  }
  out.append(s.data() + start, s.size() - start);
}

}  // namespace orderflow
