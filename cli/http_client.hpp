#pragma once
/// A small synchronous HTTP/1.1 client for the CLI verbs. Beast stays in the
/// .cpp: the CLI's other files compile without it.

#include <chrono>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace corral::cli {

/// What the server answered.
struct http_reply {
  int status = 0;
  std::string body;
  std::string content_type;
};

/// The server could not be reached, or the connection broke before an
/// answer arrived (the CLI exits with 3).
class connection_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Sends one request to `base_url` (http://host:port, optionally with a path
/// prefix) and returns the answer, whatever its status. `content_type` is
/// sent only with a body, `token` (if not empty) as a Bearer token;
/// `timeout` bounds connecting, and separately sending and the wait for the
/// answer. Throws connection_error, or std::invalid_argument for a URL or
/// method it cannot use.
http_reply http_call(const std::string& base_url, std::string method,
                     std::string target, std::string body,
                     std::string content_type, std::string token,
                     std::chrono::seconds timeout);

/// GETs `target` and hands the body to `on_data` piece by piece as it
/// arrives (server-sent events), until the server ends it or `on_data`
/// returns false. A non-2xx answer is returned whole instead, with no call
/// to on_data. `idle` bounds the wait for each piece (the daemon sends a
/// keepalive every 15 s). Throws like http_call.
http_reply http_stream(const std::string& base_url, std::string target,
                       std::string token,
                       const std::function<bool(std::string_view)>& on_data,
                       std::chrono::seconds idle);

/// Percent-encodes everything but RFC 3986's unreserved characters, for a
/// path segment or query value.
std::string url_encode(std::string_view s);

} // namespace corral::cli
