#pragma once
/// What the router tests share: a config, requests with the token, the
/// router's answer taken synchronously, and the API's error shape.

#include "gateway/router.hpp"
#include "tests/gateway/fake_backend.hpp"

#include <optional>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

namespace corral::testing {

using namespace corral::gateway;
using json = nlohmann::json;

constexpr const char* token = "s3cret-token";

inline router_config test_config() {
  router_config cfg;
  cfg.token = token;
  cfg.allowed_hosts = {"127.0.0.1:8700", "localhost:8700"};
  cfg.daemon_cwd = "/daemon/cwd";
  cfg.daemon_env = {{"PATH", "/usr/bin"}, {"HOME", "/root"}};
  return cfg;
}

using request = http::request<http::string_body>;

inline request make(http::verb verb, std::string target, std::string body = {},
                    std::string content_type = {}) {
  request req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1:8700");
  req.set(http::field::authorization, std::string("Bearer ") + token);
  if (!content_type.empty())
    req.set(http::field::content_type, content_type);
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

/// The router's answer, given synchronously (the fake answers at once).
inline response answer(fake_backend& backend, request req,
                       const router_config& cfg = test_config()) {
  std::optional<response> out;
  int sends = 0;
  handle_request(std::move(req), backend, cfg, [&](response res) {
    ++sends;
    out = std::move(res);
  });
  REQUIRE(sends == 1);
  return *out;
}

inline json body_of(const response& res) {
  return json::parse(res.body());
}

/// Checks the one error shape of the API.
inline void require_error(const response& res, int status,
                          const std::string& code,
                          const std::string& message_part = {}) {
  INFO(res.body());
  REQUIRE(res.result_int() == static_cast<unsigned>(status));
  REQUIRE(res[http::field::content_type] == "application/json");
  auto body = body_of(res);
  REQUIRE(body.size() == 1);
  REQUIRE(body["error"]["code"] == code);
  REQUIRE(body["error"]["message"].is_string());
  if (!message_part.empty())
    REQUIRE_THAT(body["error"]["message"].get<std::string>(),
                 Catch::Contains(message_part));
}

} // namespace corral::testing
