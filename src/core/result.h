// Result<T> and Error: how every expected failure travels in orderflow.
//
// Expected failures (bad input, I/O errors, not found, overload) are values, never exceptions.
// Programmer errors are OF_ASSERT, which stays on in release builds.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#define OF_ASSERT(cond)                                                                 \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      std::fprintf(stderr, "assertion failed: %s at %s:%d\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                     \
    }                                                                                   \
  } while (0)

namespace orderflow {

// The error codes of the public API; each maps to one HTTP status (see http/errors.cc).
enum class Errc {
  invalid_json,
  invalid_argument,
  unauthenticated,
  permission_denied,
  not_found,
  method_not_allowed,
  conflict,
  failed_precondition,
  payload_too_large,
  unsupported_media_type,
  idempotency_key_reuse,
  overloaded,     // transient: the caller should retry after Retry-After
  unavailable,    // the server cannot serve (storage latched failed, shutting down)
  internal,
};

const char* errc_name(Errc code);

struct FieldViolation {
  std::string field;   // a path like items[3].sku
  std::string reason;
};

struct Error {
  Errc code;
  std::string message;
  std::vector<FieldViolation> details;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}      // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { OF_ASSERT(ok()); return std::get<0>(v_); }
  const T& value() const { OF_ASSERT(ok()); return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { OF_ASSERT(!ok()); return std::get<1>(v_); }
  Error take_error() { OF_ASSERT(!ok()); return std::move(std::get<1>(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result of an operation with no value.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  static Status ok_status() { return Status(); }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { OF_ASSERT(!ok_); return error_; }

 private:
  Error error_{Errc::internal, {}, {}};
  bool ok_ = true;
};

inline Error make_error(Errc code, std::string message) {
  return Error{code, std::move(message), {}};
}

}  // namespace orderflow
