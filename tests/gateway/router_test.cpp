#include "gateway/router.hpp"

#include "tests/gateway/fake_backend.hpp"
#include "tests/gateway/router_harness.hpp"

#include <catch2/catch.hpp>

#include <thread>

#include <nlohmann/json.hpp>

using namespace corral;
using namespace corral::gateway;
using corral::testing::fake_backend;
using namespace corral::testing;
using json = nlohmann::json;

namespace {

const char* two_runs_yaml = R"(experiments:
  - name: ppo
    command: [python3, train.py, --seed, "{seed}"]
    matrix:
      seed: [1, 2]
)";

} // namespace

TEST_CASE("healthz answers ok without auth", "[router]") {
  fake_backend aut;
  auto req = make(http::verb::get, "/healthz");
  req.erase(http::field::authorization);
  auto res = answer(aut, std::move(req));
  REQUIRE(res.result() == http::status::ok);
  REQUIRE(body_of(res) == json{{"ok", true}});
  REQUIRE(res[http::field::content_type] == "application/json");
  REQUIRE(res[http::field::cache_control] == "no-store");
}

TEST_CASE("responses keep the connection alive as the request asks",
          "[router]") {
  fake_backend aut;
  auto req = make(http::verb::get, "/healthz");
  REQUIRE(answer(aut, req).keep_alive());
  req.keep_alive(false);
  REQUIRE_FALSE(answer(aut, req).keep_alive());
  request old{http::verb::get, "/healthz", 10};
  old.set(http::field::host, "127.0.0.1:8700");
  auto res = answer(aut, old);
  REQUIRE(res.version() == 10);
  REQUIRE_FALSE(res.keep_alive());
}

TEST_CASE("the API needs the bearer token", "[router][auth]") {
  fake_backend aut;
  SECTION("without a token: 401 with WWW-Authenticate") {
    auto req = make(http::verb::get, "/api/v1/runs");
    req.erase(http::field::authorization);
    auto res = answer(aut, req);
    require_error(res, 401, "unauthorized", "Authorization: Bearer");
    REQUIRE(res[http::field::www_authenticate].starts_with("Bearer"));
    REQUIRE(aut.recorded().empty());
  }
  SECTION("with a wrong token: 401") {
    auto req = make(http::verb::get, "/api/v1/runs");
    req.set(http::field::authorization, "Bearer s3cret-tokem");
    auto res = answer(aut, req);
    require_error(res, 401, "unauthorized", "invalid token");
    REQUIRE(
        std::string(res[http::field::www_authenticate]).find("invalid_token")
        != std::string::npos);
  }
  SECTION("a token prefix is not the token") {
    auto req = make(http::verb::get, "/api/v1/runs");
    req.set(http::field::authorization, "Bearer s3cret");
    require_error(answer(aut, req), 401, "unauthorized");
  }
  SECTION("another scheme is not a bearer token") {
    auto req = make(http::verb::get, "/api/v1/runs");
    req.set(http::field::authorization, std::string("Basic ") + token);
    require_error(answer(aut, req), 401, "unauthorized");
  }
  SECTION("with the token: 200; the scheme is case-insensitive") {
    auto req = make(http::verb::get, "/api/v1/runs");
    REQUIRE(answer(aut, req).result() == http::status::ok);
    req.set(http::field::authorization, std::string("bearer  ") + token);
    REQUIRE(answer(aut, req).result() == http::status::ok);
  }
  SECTION("access_token works on GET") {
    auto req = make(http::verb::get,
                    std::string("/api/v1/runs/ppo-1?access_token=") + token);
    req.erase(http::field::authorization);
    REQUIRE(answer(aut, req).result() == http::status::ok);
  }
  SECTION("access_token does not work on POST") {
    auto req = make(http::verb::post, std::string("/api/v1/runs/ppo-1/pause"
                                                  "?access_token=")
                                          + token);
    req.erase(http::field::authorization);
    require_error(answer(aut, req), 401, "unauthorized");
    REQUIRE(aut.recorded().empty());
  }
  SECTION("unknown API paths need the token too") {
    auto req = make(http::verb::get, "/api/v1/nothing");
    req.erase(http::field::authorization);
    require_error(answer(aut, req), 401, "unauthorized");
  }
  SECTION("an empty configured token turns auth off") {
    auto cfg = test_config();
    cfg.token.clear();
    auto req = make(http::verb::get, "/api/v1/runs");
    req.erase(http::field::authorization);
    REQUIRE(answer(aut, req, cfg).result() == http::status::ok);
  }
}

TEST_CASE("a foreign Host header is refused", "[router][host]") {
  fake_backend aut;
  auto req = make(http::verb::get, "/api/v1/runs");
  SECTION("a rebinding name") {
    req.set(http::field::host, "evil.example:8700");
    require_error(answer(aut, req), 403, "forbidden", "evil.example:8700");
  }
  SECTION("another port") {
    req.set(http::field::host, "127.0.0.1:8701");
    require_error(answer(aut, req), 403, "forbidden");
  }
  SECTION("no Host header") {
    req.erase(http::field::host);
    require_error(answer(aut, req), 403, "forbidden", "Host");
  }
  SECTION("even on healthz") {
    auto h = make(http::verb::get, "/healthz");
    h.set(http::field::host, "evil.example");
    require_error(answer(aut, h), 403, "forbidden");
  }
  REQUIRE(aut.recorded().empty());
}

TEST_CASE("loopback names of the bound port are accepted", "[router][host]") {
  auto cfg = test_config();
  for (auto host :
       {"127.0.0.1:8700", "localhost:8700", "LOCALHOST:8700", "[::1]:8700"})
    CHECK(is_allowed_host(cfg, host));
  for (auto host : {"127.0.0.1", "localhost", "[::1]:8701", "example.com:8700",
                    "", "127.0.0.2:8700"})
    CHECK_FALSE(is_allowed_host(cfg, host));
  cfg.allowed_hosts = {"box.lan:80"};
  CHECK(is_allowed_host(cfg, "box.lan"));
  CHECK(is_allowed_host(cfg, "localhost"));
}

TEST_CASE("a foreign Origin is refused", "[router][origin]") {
  fake_backend aut;
  SECTION("on a bodiless POST") {
    auto req = make(http::verb::post, "/api/v1/runs/ppo-1/pause");
    req.set(http::field::origin, "http://evil.example");
    require_error(answer(aut, req), 403, "forbidden", "evil.example");
    REQUIRE(aut.recorded().empty());
  }
  SECTION("https of the same host is another origin") {
    auto req = make(http::verb::get, "/api/v1/runs");
    req.set(http::field::origin, "https://127.0.0.1:8700");
    require_error(answer(aut, req), 403, "forbidden");
  }
  SECTION("the null origin") {
    auto req = make(http::verb::get, "/api/v1/runs");
    req.set(http::field::origin, "null");
    require_error(answer(aut, req), 403, "forbidden");
  }
  SECTION("the daemon's own origin passes") {
    auto req = make(http::verb::post, "/api/v1/runs/ppo-1/pause");
    req.set(http::field::origin, "http://localhost:8700");
    REQUIRE(answer(aut, req).result() == http::status::ok);
  }
}

TEST_CASE("unknown paths are 404, other methods 405 with Allow", "[router]") {
  fake_backend aut;
  require_error(answer(aut, make(http::verb::get, "/nope")), 404, "not_found",
                "/nope");
  require_error(answer(aut, make(http::verb::get, "/api/v1/nothing")), 404,
                "not_found");
  require_error(answer(aut, make(http::verb::get, "/api/v1/runs/")), 404,
                "not_found");
  require_error(answer(aut, make(http::verb::post, "/api/v1/runs/x/explode")),
                404, "not_found");

  auto res = answer(aut, make(http::verb::delete_, "/api/v1/runs"));
  require_error(res, 405, "method_not_allowed", "DELETE");
  REQUIRE(res[http::field::allow] == "GET");
  res = answer(aut, make(http::verb::put, "/api/v1/runs/ppo-1"));
  require_error(res, 405, "method_not_allowed");
  REQUIRE(res[http::field::allow] == "GET, DELETE");
  res = answer(aut, make(http::verb::get, "/api/v1/runs/ppo-1/pause"));
  REQUIRE(res[http::field::allow] == "POST");
  res = answer(aut, make(http::verb::get, "/api/v1/experiments"));
  REQUIRE(res[http::field::allow] == "POST");
  res = answer(aut, make(http::verb::post, "/healthz"));
  REQUIRE(res[http::field::allow] == "GET");
  REQUIRE(aut.recorded().empty());
}

TEST_CASE("GET /api/v1/runs lists summaries", "[router][runs]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::get, "/api/v1/runs"));
  REQUIRE(res.result() == http::status::ok);
  auto runs = body_of(res)["runs"];
  REQUIRE(runs.size() == 3);
  REQUIRE(runs[0]["id"] == "ppo-1");
  REQUIRE(runs[0]["state"] == "running");
  REQUIRE(runs[0]["processes"].is_null());
  REQUIRE(runs[0]["process_count"] == 3);
  REQUIRE(aut.last_filter.states.empty());
  REQUIRE(aut.last_filter.experiment.empty());
}

TEST_CASE("a listing is answered again from the cache until a run changes",
          "[router][runs]") {
  fake_backend aut;
  listing_cache cache{std::chrono::hours{1}};
  aut.cache = &cache;
  auto first = answer(aut, make(http::verb::get, "/api/v1/runs"));
  auto second = answer(aut, make(http::verb::get, "/api/v1/runs"));
  REQUIRE(second.result() == http::status::ok);
  CHECK(second.body() == first.body());
  CHECK(second[http::field::content_type] == "application/json");
  CHECK(aut.recorded() == std::vector<std::string>{"list"});
  // Another filter is another answer.
  answer(aut, make(http::verb::get, "/api/v1/runs?state=running"));
  CHECK(aut.recorded().size() == 2);
  // A change (a state change, a delete) makes the next listing ask again.
  aut.runs[0].state = run_state::paused;
  cache.changed();
  auto third = answer(aut, make(http::verb::get, "/api/v1/runs"));
  CHECK(aut.recorded().size() == 3);
  CHECK(body_of(third)["runs"][0]["state"] == "paused");
}

TEST_CASE("an old kept listing is answered while a new one is made",
          "[router][runs]") {
  fake_backend aut;
  // Served again once between 500 ms and 1 s of age.
  listing_cache cache{std::chrono::milliseconds{500}};
  aut.cache = &cache;
  auto first = answer(aut, make(http::verb::get, "/api/v1/runs"));
  std::this_thread::sleep_for(std::chrono::milliseconds{600});
  aut.runs[0].state = run_state::paused; // progress-like: no event
  auto second = answer(aut, make(http::verb::get, "/api/v1/runs"));
  CHECK(second.body() == first.body());
  // ...while the backend was asked again, and its answer was kept.
  CHECK(aut.recorded() == std::vector<std::string>{"list", "list"});
  auto third = answer(aut, make(http::verb::get, "/api/v1/runs"));
  CHECK(body_of(third)["runs"][0]["state"] == "paused");
}

TEST_CASE("run filters are URL-decoded and validated", "[router][runs]") {
  fake_backend aut;
  SECTION("states and experiment") {
    auto res = answer(aut, make(http::verb::get,
                                "/api/v1/runs?state=running%2Cpaused,running"
                                "&experiment=pp%6F"));
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(aut.last_filter.states
            == std::vector<run_state>{run_state::running, run_state::paused});
    REQUIRE(aut.last_filter.experiment == "ppo");
    REQUIRE(body_of(res)["runs"].size() == 2);
  }
  SECTION("an unknown state is named") {
    auto res = answer(
        aut, make(http::verb::get, "/api/v1/runs?state=running,zombie"));
    require_error(res, 400, "bad_request", "zombie");
    REQUIRE(aut.recorded().empty());
  }
  SECTION("an unknown parameter is named") {
    auto res
        = answer(aut, make(http::verb::get, "/api/v1/runs?status=running"));
    require_error(res, 400, "bad_request", "status");
  }
  SECTION("a malformed escape") {
    auto res = answer(aut, make(http::verb::get, "/api/v1/runs?state=%zz"));
    require_error(res, 400, "bad_request");
  }
}

TEST_CASE("url_decode", "[router]") {
  REQUIRE(url_decode("a%20b+c") == "a b c");
  REQUIRE(url_decode("a+b", false) == "a+b");
  REQUIRE(url_decode("%E2%9C%93") == "✓");
  REQUIRE_FALSE(url_decode("%"));
  REQUIRE_FALSE(url_decode("%4"));
  REQUIRE_FALSE(url_decode("%g0"));
}

TEST_CASE("GET /api/v1/runs/{id} answers the run with processes",
          "[router][runs]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::get, "/api/v1/runs/ppo-1"));
  REQUIRE(res.result() == http::status::ok);
  auto run = body_of(res);
  REQUIRE(run["id"] == "ppo-1");
  REQUIRE(run["processes"].size() == 2);
  REQUIRE(run["processes"][1]["cmd"] == "python3 -c worker");
  require_error(answer(aut, make(http::verb::get, "/api/v1/runs/nope")), 404,
                "not_found", "nope");
}

TEST_CASE("pause and resume answer summaries", "[router][actions]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/pause"));
  REQUIRE(res.result() == http::status::ok);
  REQUIRE(body_of(res)["state"] == "paused");
  REQUIRE(body_of(res)["processes"].is_null());
  res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-2/resume"));
  REQUIRE(body_of(res)["state"] == "running");
  REQUIRE(aut.recorded()
          == std::vector<std::string>{"pause ppo-1", "resume ppo-2"});
}

TEST_CASE("a backend error keeps its status and message", "[router]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::post, "/api/v1/runs/sac-1/pause"));
  require_error(res, 409, "invalid_transition",
                "run sac-1 is stopped; only a running run can be paused");
  aut.fail_with = make_error(ec::pause_timeout, "pid 7 would not freeze");
  res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/pause"));
  require_error(res, 504, "pause_timeout", "pid 7 would not freeze");
  aut.fail_with = make_error(ec::unavailable, "daemon shutting down");
  require_error(answer(aut, make(http::verb::get, "/api/v1/runs")), 503,
                "unavailable");
}

TEST_CASE("pause takes no body", "[router][actions]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/pause",
                              "{}", "application/json"));
  REQUIRE(res.result() == http::status::ok);
  res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/pause",
                         R"({"x": 1})", "application/json"));
  require_error(res, 400, "bad_request", "no body");
}

TEST_CASE("stop parses its optional body", "[router][stop]") {
  fake_backend aut;
  auto stop = [&](std::string body) {
    return answer(aut,
                  make(http::verb::post, "/api/v1/runs/ppo-1/stop",
                       std::move(body), "application/json; charset=utf-8"));
  };
  SECTION("no body: the spec's defaults") {
    auto res = stop("");
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(body_of(res)["state"] == "stopping");
    REQUIRE_FALSE(aut.last_stop.grace);
    REQUIRE_FALSE(aut.last_stop.force);
    REQUIRE_FALSE(aut.last_stop.wait);
  }
  SECTION("every key") {
    auto res = stop(R"({"grace_s": 2.5, "force": true, "wait": true})");
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(body_of(res)["state"] == "stopped");
    REQUIRE(aut.last_stop.grace == millis{2500});
    REQUIRE(aut.last_stop.force);
    REQUIRE(aut.last_stop.wait);
  }
  SECTION("null means default") {
    REQUIRE(stop(R"({"grace_s": null})").result() == http::status::ok);
    REQUIRE_FALSE(aut.last_stop.grace);
  }
  SECTION("grace 0 is allowed") {
    REQUIRE(stop(R"({"grace_s": 0})").result() == http::status::ok);
    REQUIRE(aut.last_stop.grace == millis{0});
  }
  SECTION("wrong types name the key") {
    require_error(stop(R"({"grace_s": "30s"})"), 422, "invalid_spec",
                  "grace_s");
    require_error(stop(R"({"force": "yes"})"), 422, "invalid_spec", "force");
    require_error(stop(R"({"wait": 1})"), 422, "invalid_spec", "wait");
    require_error(stop(R"({"grace_s": -1})"), 422, "invalid_spec", "grace_s");
    require_error(stop(R"({"grace_s": 1e300})"), 422, "invalid_spec",
                  "grace_s");
    require_error(stop(R"({"graceful": true})"), 422, "invalid_spec",
                  "graceful");
    require_error(stop("[1]"), 422, "invalid_spec");
    REQUIRE(aut.recorded().empty());
  }
  SECTION("unparseable JSON is 400") {
    require_error(stop(R"({"force": tru})"), 400, "bad_request",
                  "invalid JSON");
  }
  SECTION("a YAML body is 415") {
    auto res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/stop",
                                "force: true", "application/yaml"));
    require_error(res, 415, "unsupported_media_type");
  }
}

TEST_CASE("DELETE answers 204 without a body", "[router][delete]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::delete_, "/api/v1/runs/sac-1"));
  REQUIRE(res.result() == http::status::no_content);
  REQUIRE(res.body().empty());
  REQUIRE(res[http::field::cache_control] == "no-store");
  REQUIRE(aut.recorded() == std::vector<std::string>{"remove sac-1"});
  require_error(answer(aut, make(http::verb::delete_, "/api/v1/runs/zz")), 404,
                "not_found");
}

TEST_CASE("a body needs a JSON or YAML content type", "[router][media]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::post, "/api/v1/experiments", "name=x",
                              "application/x-www-form-urlencoded"));
  require_error(res, 415, "unsupported_media_type",
                "application/x-www-form-urlencoded");
  res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/stop",
                         R"({"force": true})", "text/plain"));
  require_error(res, 415, "unsupported_media_type");
  res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/stop",
                         R"({"force": true})"));
  require_error(res, 415, "unsupported_media_type", "Content-Type");
  REQUIRE(aut.recorded().empty());
  // A request without a body needs none.
  res = answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/stop"));
  REQUIRE(res.result() == http::status::ok);
}

TEST_CASE("a body over the limit is 413", "[router][limit]") {
  fake_backend aut;
  auto cfg = test_config();
  cfg.body_limit = 16;
  auto res = answer(aut,
                    make(http::verb::post, "/api/v1/experiments",
                         std::string(17, 'x'), "application/yaml"),
                    cfg);
  require_error(res, 413, "payload_too_large", "16");
  REQUIRE(aut.recorded().empty());
}

TEST_CASE("POST /api/v1/experiments takes YAML", "[router][submit]") {
  fake_backend aut;
  for (auto type :
       {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}) {
    auto res = answer(aut, make(http::verb::post, "/api/v1/experiments",
                                two_runs_yaml, type));
    INFO(res.body());
    REQUIRE(res.result() == http::status::created);
    auto runs = body_of(res)["runs"];
    REQUIRE(runs.size() == 2);
    REQUIRE(runs[0]["experiment"] == "ppo");
    REQUIRE(runs[0]["state"] == "queued");
  }
  // Raw API posts run in the daemon's directory and environment.
  REQUIRE(aut.last_submit.size() == 2);
  REQUIRE(aut.last_submit[0].base_dir == "/daemon/cwd");
  REQUIRE(aut.last_submit[0].base_env == test_config().daemon_env);
  REQUIRE_FALSE(aut.last_dry_run);
}

TEST_CASE("POST /api/v1/experiments takes JSON", "[router][submit]") {
  fake_backend aut;
  auto post = [&](const json& body) {
    return answer(aut, make(http::verb::post, "/api/v1/experiments",
                            body.dump(), "application/json"));
  };
  json experiments = {
      {"experiments", {{{"name", "sac"}, {"command", {"python3", "sac.py"}}}}}};
  SECTION("an experiments document") {
    auto res = post(experiments);
    INFO(res.body());
    REQUIRE(res.result() == http::status::created);
    REQUIRE(body_of(res)["runs"][0]["id"] == "sac");
    REQUIRE(aut.last_submit[0].base_dir == "/daemon/cwd");
  }
  SECTION("the CLI's envelope with YAML text") {
    auto res = post({{"spec", two_runs_yaml},
                     {"base_dir", "/home/me/proj"},
                     {"env", {{"VIRTUAL_ENV", "/home/me/venv"}}}});
    INFO(res.body());
    REQUIRE(res.result() == http::status::created);
    REQUIRE(aut.last_submit.size() == 2);
    REQUIRE(aut.last_submit[1].base_dir == "/home/me/proj");
    REQUIRE(aut.last_submit[1].base_env
            == std::map<std::string, std::string>{
                {"VIRTUAL_ENV", "/home/me/venv"}});
  }
  SECTION("the envelope with a JSON spec and defaults") {
    auto res = post({{"spec", experiments}});
    INFO(res.body());
    REQUIRE(res.result() == http::status::created);
    REQUIRE(aut.last_submit[0].command
            == std::vector<std::string>{"python3", "sac.py"});
    REQUIRE(aut.last_submit[0].base_dir == "/daemon/cwd");
    REQUIRE(aut.last_submit[0].base_env == test_config().daemon_env);
  }
  SECTION("envelope errors name the key") {
    require_error(post({{"spec", 5}}), 422, "invalid_spec", "spec");
    require_error(post({{"spec", two_runs_yaml}, {"base_dir", "rel/dir"}}), 422,
                  "invalid_spec", "base_dir");
    require_error(post({{"spec", two_runs_yaml}, {"base_dir", 3}}), 422,
                  "invalid_spec", "base_dir");
    require_error(post({{"spec", two_runs_yaml}, {"env", {{"A", 1}}}}), 422,
                  "invalid_spec", "env.A");
    require_error(post({{"spec", two_runs_yaml}, {"env", "A=1"}}), 422,
                  "invalid_spec", "env");
    require_error(post({{"spec", two_runs_yaml}, {"environment", {}}}), 422,
                  "invalid_spec", "environment");
    REQUIRE(aut.recorded().empty());
  }
  SECTION("unparseable JSON is 400") {
    auto res = answer(aut, make(http::verb::post, "/api/v1/experiments",
                                "{\"spec\": ", "application/json"));
    require_error(res, 400, "bad_request", "invalid JSON");
  }
}

TEST_CASE("experiments errors come from the spec parser", "[router][submit]") {
  fake_backend aut;
  auto post = [&](std::string yaml) {
    return answer(aut, make(http::verb::post, "/api/v1/experiments",
                            std::move(yaml), "application/yaml"));
  };
  require_error(post("experiments: [unclosed"), 400, "bad_request", "line");
  require_error(post("experiments:\n  - name: x\n    command: [a]\n"
                     "    colour: red\n"),
                422, "invalid_spec", "colour");
  require_error(post("  \n"), 400, "bad_request", "empty body");
  REQUIRE(aut.recorded().empty());
}

TEST_CASE("dry_run validates without creating", "[router][submit]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::post, "/api/v1/experiments?dry_run=1",
                              two_runs_yaml, "application/yaml"));
  REQUIRE(res.result() == http::status::ok);
  REQUIRE(body_of(res)["runs"].size() == 2);
  REQUIRE(aut.last_dry_run);
  res = answer(aut, make(http::verb::post, "/api/v1/experiments?dry_run=0",
                         two_runs_yaml, "application/yaml"));
  REQUIRE(res.result() == http::status::created);
  res = answer(aut, make(http::verb::post, "/api/v1/experiments?dry_run=maybe",
                         two_runs_yaml, "application/yaml"));
  require_error(res, 400, "bad_request", "dry_run");
}

TEST_CASE("an answer from another thread arrives once", "[router][async]") {
  fake_backend aut;
  aut.defer = true;
  std::vector<response> sent;
  handle_request(make(http::verb::post, "/api/v1/runs/ppo-1/pause"), aut,
                 test_config(),
                 [&](response res) { sent.push_back(std::move(res)); });
  REQUIRE(sent.empty());
  REQUIRE(aut.pending.size() == 1);
  std::thread([&] { aut.pending[0](); }).join();
  REQUIRE(sent.size() == 1);
  REQUIRE(body_of(sent[0])["state"] == "paused");
}

TEST_CASE("a dropped backend callback still answers 500", "[router][async]") {
  fake_backend aut;
  aut.drop = true;
  std::vector<response> sent;
  handle_request(make(http::verb::get, "/api/v1/runs/ppo-1"), aut,
                 test_config(),
                 [&](response res) { sent.push_back(std::move(res)); });
  REQUIRE(sent.size() == 1);
  require_error(sent[0], 500, "internal", "dropped");
}

TEST_CASE("error_response has the API's error shape", "[router]") {
  auto res
      = error_response(make_error(ec::payload_too_large, "too big"), 11, false);
  require_error(res, 413, "payload_too_large", "too big");
  REQUIRE_FALSE(res.keep_alive());
  REQUIRE(res[http::field::content_length]
          == std::to_string(res.body().size()));
}

TEST_CASE("GET /api/v1/gpus lists the devices and their holders",
          "[router][gpus]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::get, "/api/v1/gpus"));
  INFO(res.body());
  REQUIRE(res.result() == http::status::ok);
  auto body = body_of(res);
  CHECK(body["source"] == "nvml");
  auto gpus = body["gpus"];
  REQUIRE(gpus.size() == 4);
  CHECK(gpus[0]
        == json{{"index", 0},
                {"uuid", "GPU-0"},
                {"name", "NVIDIA H100 80GB HBM3"},
                {"memory_total", std::uint64_t{80} << 30},
                {"memory_used", std::uint64_t{12} << 30},
                {"utilization", 97.0},
                {"run", "ppo-1"}});
  // What a configured inventory cannot know is null, never omitted.
  CHECK(gpus[3]
        == json{{"index", 3},
                {"uuid", nullptr},
                {"name", nullptr},
                {"memory_total", nullptr},
                {"memory_used", nullptr},
                {"utilization", nullptr},
                {"run", nullptr}});
  CHECK(aut.recorded() == std::vector<std::string>{"gpus"});

  aut.gpu_state = {"config", {}};
  body = body_of(answer(aut, make(http::verb::get, "/api/v1/gpus")));
  CHECK(body == json{{"gpus", json::array()}, {"source", "config"}});
}

TEST_CASE("/api/v1/gpus: auth, methods, parameters, errors", "[router][gpus]") {
  fake_backend aut;
  auto req = make(http::verb::get, "/api/v1/gpus");
  req.erase(http::field::authorization);
  require_error(answer(aut, req), 401, "unauthorized");

  auto res = answer(aut, make(http::verb::post, "/api/v1/gpus"));
  require_error(res, 405, "method_not_allowed", "POST");
  CHECK(res[http::field::allow] == "GET");
  require_error(answer(aut, make(http::verb::get, "/api/v1/gpus?all=1")), 400,
                "bad_request", "unknown query parameter 'all'");
  require_error(answer(aut, make(http::verb::get, "/api/v1/gpus/0")), 404,
                "not_found");
  CHECK(aut.recorded().empty());

  aut.fail_with = make_error(ec::unavailable, "daemon shutting down");
  require_error(answer(aut, make(http::verb::get, "/api/v1/gpus")), 503,
                "unavailable", "daemon shutting down");
}

TEST_CASE("GET /api/v1/runs/{id}/events lists the run's events",
          "[router][events]") {
  fake_backend aut;
  auto res = answer(aut, make(http::verb::get, "/api/v1/runs/ppo-1/events"));
  INFO(res.body());
  REQUIRE(res.result() == http::status::ok);
  auto events = body_of(res)["events"];
  REQUIRE(events.size() == 1);
  CHECK(events[0]["type"] == "state");
  CHECK(events[0]["cause"] == "scheduled");
  CHECK(events[0]["message"] == "starting");
  CHECK(events[0]["data"] == json{{"from", "queued"}, {"to", "starting"}});
  CHECK(events[0]["t"].get<std::string>().back() == 'Z');
  require_error(answer(aut, make(http::verb::get, "/api/v1/runs/nope/events")),
                404, "not_found");
  require_error(
      answer(aut, make(http::verb::post, "/api/v1/runs/ppo-1/events")), 405,
      "method_not_allowed");
}
