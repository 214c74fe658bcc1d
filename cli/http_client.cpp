#include "cli/http_client.hpp"

#include <algorithm>
#include <cctype>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

namespace corral::cli {

namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

/// Answers larger than this are a broken server, not a run list.
constexpr std::size_t reply_limit = 256 << 20;
/// Connecting to a local daemon is immediate; waiting longer only delays
/// the "is it running?" hint.
constexpr std::chrono::seconds connect_limit{10};

struct parsed_url {
  std::string host;      // without brackets
  std::string port;      // "80" if not given
  std::string authority; // as written, for the Host header
  std::string prefix;    // path before the API's, no trailing '/'
};

parsed_url parse_url(const std::string& url) {
  auto bad = [&](const std::string& why) {
    return std::invalid_argument("invalid server URL '" + url + "': " + why);
  };
  constexpr std::string_view scheme = "http://";
  std::string lowered = url.substr(0, scheme.size());
  std::transform(lowered.begin(), lowered.end(), lowered.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  if (lowered != scheme)
    throw bad("expected http://HOST:PORT");
  auto rest = std::string_view(url).substr(scheme.size());
  parsed_url out;
  auto slash = rest.find('/');
  out.authority = std::string(rest.substr(0, slash));
  if (slash != std::string_view::npos)
    out.prefix = std::string(rest.substr(slash));
  while (!out.prefix.empty() && out.prefix.back() == '/')
    out.prefix.pop_back();
  std::string_view auth = out.authority;
  if (auth.empty())
    throw bad("no host");
  std::string_view port;
  if (auth.front() == '[') {
    auto close = auth.find(']');
    if (close == std::string_view::npos)
      throw bad("unclosed '['");
    out.host = std::string(auth.substr(1, close - 1));
    auto after = auth.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':')
        throw bad("expected ':' after ']'");
      port = after.substr(1);
    }
  } else {
    auto colon = auth.rfind(':');
    out.host = std::string(auth.substr(0, colon));
    if (colon != std::string_view::npos)
      port = auth.substr(colon + 1);
  }
  if (out.host.empty())
    throw bad("no host");
  if (port.empty())
    port = "80";
  if (!std::all_of(port.begin(), port.end(),
                   [](unsigned char c) { return std::isdigit(c); }))
    throw bad("port must be a number");
  out.port = std::string(port);
  return out;
}

/// Runs the io_context until the one pending operation has completed.
void run_one(net::io_context& ioc) {
  ioc.run();
  ioc.restart();
}

/// Connects `stream` to the daemon, or throws connection_error with a hint.
void connect(beast::tcp_stream& stream, net::io_context& ioc,
             const parsed_url& url, const std::string& base_url,
             std::chrono::seconds timeout) {
  auto unreachable = [&](const std::string& why) {
    return connection_error("cannot connect to corral at " + base_url + ": "
                            + why + " — is `corral serve` running?");
  };
  beast::error_code ec;
  tcp::resolver resolver(ioc);
  auto endpoints = resolver.resolve(url.host, url.port, ec);
  if (ec)
    throw unreachable(ec.message());
  // Sync calls on a tcp_stream ignore its timer: run the async forms one
  // at a time instead.
  stream.expires_after(std::min(timeout, connect_limit));
  stream.async_connect(
      endpoints, [&](beast::error_code e, const tcp::endpoint&) { ec = e; });
  run_one(ioc);
  if (ec == beast::error::timeout)
    throw unreachable("no answer within "
                      + std::to_string(std::min(timeout, connect_limit).count())
                      + "s");
  if (ec)
    throw unreachable(ec.message());
}

} // namespace

std::string url_encode(std::string_view s) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

http_reply http_call(const std::string& base_url, std::string method,
                     std::string target, std::string body,
                     std::string content_type, std::string token,
                     std::chrono::seconds timeout) {
  auto url = parse_url(base_url);
  auto verb = http::string_to_verb(method);
  if (verb == http::verb::unknown)
    throw std::invalid_argument("unknown HTTP method '" + method + "'");
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  connect(stream, ioc, url, base_url, timeout);

  http::request<http::string_body> req{verb, url.prefix + target, 11};
  req.set(http::field::host, url.authority);
  req.set(http::field::user_agent, "corral-cli");
  req.set(http::field::accept, "application/json");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  if (!body.empty() && !content_type.empty())
    req.set(http::field::content_type, content_type);
  req.body() = std::move(body);
  req.prepare_payload();

  stream.expires_after(timeout);
  beast::error_code write_ec;
  http::async_write(stream, req,
                    [&](beast::error_code e, std::size_t) { write_ec = e; });
  run_one(ioc);
  if (write_ec == beast::error::timeout)
    throw connection_error("corral at " + base_url
                           + " did not take the "
                             "request within "
                           + std::to_string(timeout.count()) + "s");

  // Even when sending failed the server may have answered first (a 413
  // for a body too large): read what is there.
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(reply_limit);
  stream.expires_after(timeout);
  beast::error_code read_ec;
  http::async_read(stream, buffer, parser,
                   [&](beast::error_code e, std::size_t) { read_ec = e; });
  run_one(ioc);
  if (read_ec) {
    if (read_ec == beast::error::timeout)
      throw connection_error("no answer from corral at " + base_url + " within "
                             + std::to_string(timeout.count()) + "s");
    auto cause = write_ec ? write_ec : read_ec;
    throw connection_error("lost the connection to corral at " + base_url + ": "
                           + cause.message());
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);

  auto res = parser.release();
  http_reply out;
  out.status = static_cast<int>(res.result_int());
  out.content_type = std::string(res[http::field::content_type]);
  out.body = std::move(res.body());
  return out;
}

http_reply http_stream(const std::string& base_url, std::string target,
                       std::string token,
                       const std::function<bool(std::string_view)>& on_data,
                       std::chrono::seconds idle) {
  auto url = parse_url(base_url);
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  connect(stream, ioc, url, base_url, idle);

  http::request<http::empty_body> req{http::verb::get, url.prefix + target, 11};
  req.set(http::field::host, url.authority);
  req.set(http::field::user_agent, "corral-cli");
  req.set(http::field::accept, "text/event-stream");
  if (!token.empty())
    req.set(http::field::authorization, "Bearer " + token);
  beast::error_code ec;
  stream.expires_after(idle);
  http::async_write(stream, req,
                    [&](beast::error_code e, std::size_t) { ec = e; });
  run_one(ioc);
  if (ec)
    throw connection_error("lost the connection to corral at " + base_url + ": "
                           + ec.message());

  beast::flat_buffer buffer;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  stream.expires_after(idle);
  http::async_read_header(stream, buffer, parser,
                          [&](beast::error_code e, std::size_t) { ec = e; });
  run_one(ioc);
  if (ec)
    throw connection_error("no answer from corral at " + base_url + ": "
                           + ec.message());
  http_reply out;
  out.status = static_cast<int>(parser.get().result_int());
  out.content_type = std::string(parser.get()[http::field::content_type]);
  bool ok = out.status >= 200 && out.status < 300;
  char piece[16 * 1024];
  while (!parser.is_done()) {
    parser.get().body().data = piece;
    parser.get().body().size = sizeof piece;
    stream.expires_after(idle);
    http::async_read_some(stream, buffer, parser,
                          [&](beast::error_code e, std::size_t) { ec = e; });
    run_one(ioc);
    if (ec == http::error::need_buffer)
      ec = {};
    auto n = sizeof piece - parser.get().body().size;
    if (n > 0) {
      std::string_view data(piece, n);
      if (!ok && out.body.size() < reply_limit)
        out.body.append(data);
      else if (ok && !on_data(data))
        break;
    }
    if (ec == http::error::end_of_stream || ec == http::error::partial_message)
      break;
    if (ec == beast::error::timeout)
      throw connection_error("corral at " + base_url + " sent nothing for "
                             + std::to_string(idle.count()) + "s");
    if (ec)
      throw connection_error("lost the connection to corral at " + base_url
                             + ": " + ec.message());
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  return out;
}

} // namespace corral::cli
