#pragma once
/// HTTP routing of the v1 API (DESIGN.md, "HTTP API"): one free function
/// from a parsed request to a response, unit-tested without sockets. The
/// server owns the sockets; the router owns the checks (Host, Origin, auth,
/// content type, body limit) and the JSON mapping.

#include "gateway/router_config.hpp"
#include "services/api_backend.hpp"
#include "services/result.hpp"

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

namespace corral::gateway {

namespace http = boost::beast::http;

/// The response type every route answers with.
using response = http::response<http::string_body>;

/// A body made piece by piece: server-sent events, file downloads.
class body_source {
public:
  /// A piece of the body, or nullopt once the body is complete.
  using piece = std::optional<std::string>;

  virtual ~body_source() = default;
  /// Asks for the next piece; `deliver` is called exactly once, now or
  /// later from any thread. The server asks again only after it wrote the
  /// piece, so a slow client slows the source instead of filling memory.
  virtual void next(std::function<void(piece)> deliver) = 0;
};

/// A response whose body comes from a source. `head` has the status and
/// headers; its own body is empty. With a Content-Length the connection
/// may be kept alive (the server closes it if the source gave a different
/// length); without one (SSE) the body ends when the connection does.
struct streamed_response {
  response head;
  std::shared_ptr<body_source> body;
};

/// Answers `req` exactly once, through `send` or `stream`, either before
/// returning or later from whatever thread the backend answers on. Never
/// throws.
void handle_request(http::request<http::string_body>&& req,
                    api_backend& backend, const router_config& cfg,
                    std::function<void(response)> send,
                    std::function<void(streamed_response)> stream);

/// As above, with streamed bodies collected into one response (until the
/// source ends): for tests and for callers without a socket.
void handle_request(http::request<http::string_body>&& req,
                    api_backend& backend, const router_config& cfg,
                    std::function<void(response)> send);

/// The API's error response: {"error": {"code", "message"}} with the
/// status of `err.code`, and the headers every response carries.
response error_response(const corral::error& err, unsigned version,
                        bool keep_alive);

/// True when `host` (a Host header value) names this daemon per `cfg`.
bool is_allowed_host(const router_config& cfg, std::string_view host);

/// Decodes %XX escapes (and '+' as a space when `plus_is_space`); nullopt
/// on a malformed escape.
std::optional<std::string> url_decode(std::string_view s,
                                      bool plus_is_space = true);

} // namespace corral::gateway
