#pragma once
/// The daemon's HTTP/1.1 server: Boost.Beast on a few asio threads, in the
/// manner of Beast's advanced server example. Routing lives in router.hpp;
/// this header keeps Beast out of the code that starts the server.

#include "gateway/router_config.hpp"
#include "services/api_backend.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>

namespace corral::gateway {

/// Serves the API of `backend` until stopped.
class http_server {
public:
  /// `backend` must outlive the server; its callbacks may still fire after
  /// stop() and are then ignored.
  http_server(api_backend& backend, router_config cfg, int threads = 2);
  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;
  /// Stops if still running.
  ~http_server();

  /// Binds and starts; port 0 picks a free port. Returns the bound
  /// endpoint. Throws std::runtime_error with a clear message ("cannot
  /// listen on 127.0.0.1:8700: Address already in use") on failure.
  boost::asio::ip::tcp::endpoint start(const std::string& host,
                                       std::uint16_t port);

  /// Stops accepting, closes every connection (requests still waiting for
  /// the backend get no answer) and joins the threads. Idempotent.
  void stop();

  /// Replaces the 30 s read timeout (idle keep-alive connections, slow
  /// senders); call before start(). Requests waiting for the backend are
  /// never cut by it.
  void set_read_timeout(std::chrono::milliseconds timeout);

  /// The configuration in effect; after start() it lists the allowed hosts.
  const router_config& config() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace corral::gateway
