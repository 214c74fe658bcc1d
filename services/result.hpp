#pragma once
/// A value or an error a user can act on: the project's std::expected.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace corral {

/// One error vocabulary for the whole daemon; mapped to HTTP in exactly one
/// table (http_status / code_name below).
enum class ec : std::uint8_t {
  none = 0,
  bad_request,            // 400: unparseable body, query or YAML
  unauthorized,           // 401
  forbidden,              // 403: foreign Host/Origin
  not_found,              // 404
  method_not_allowed,     // 405
  invalid_transition,     // 409
  payload_too_large,      // 413
  unsupported_media_type, // 415
  invalid_spec,           // 422
  internal,               // 500
  unavailable,            // 503: daemon shutting down
  pause_timeout,          // 504
  // Appended rather than sorted by status: codes travel as numbers in CAF
  // errors, so existing values keep theirs.
  range_not_satisfiable, // 416: Range header beyond the file
};

/// HTTP status for an error code.
int http_status(ec code);
/// Stable snake_case name used in the JSON error body.
std::string_view code_name(ec code);

/// An error with the context a user needs to fix it.
struct error {
  ec code = ec::internal;
  std::string message;
};

inline error make_error(ec code, std::string message) {
  return error{code, std::move(message)};
}

/// Either a T or an error.
template <class T>
class result {
public:
  result(T value) : data_(std::move(value)) {}
  result(corral::error err) : data_(std::move(err)) {}

  explicit operator bool() const { return data_.index() == 0; }
  bool has_value() const { return data_.index() == 0; }
  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const corral::error& error() const { return std::get<1>(data_); }

private:
  std::variant<T, corral::error> data_;
};

/// For operations that return nothing but may fail.
struct ok_t {};
inline constexpr ok_t ok{};
using status = result<ok_t>;

} // namespace corral
