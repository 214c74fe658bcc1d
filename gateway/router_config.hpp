#pragma once
/// What the router needs to know about the daemon it serves; apart from
/// router.hpp so that code configuring the gateway needs no Beast header.

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace corral::gateway {

/// Settings of the HTTP API, fixed once the server has started.
struct router_config {
  /// Bearer token for /api/v1/*; empty turns auth off.
  std::string token;
  /// Accepted Host header values ("127.0.0.1:8700", "localhost:8700");
  /// the server fills them after bind. The loopback names are also
  /// accepted for every port listed here.
  std::vector<std::string> allowed_hosts;
  /// Largest request body accepted, in bytes.
  std::size_t body_limit = 1 << 20;
  /// Base directory and environment of runs submitted through the raw API
  /// (the CLI's envelope names its own).
  std::string daemon_cwd;
  std::map<std::string, std::string> daemon_env;
};

} // namespace corral::gateway
