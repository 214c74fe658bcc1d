// The routes a user watches a run through: logs, events, metrics,
// artifacts (with downloads) and restart, against the fake backend.

#include "tests/gateway/router_harness.hpp"
#include "tests/temp_dir.hpp"

#include <fstream>

using namespace corral;
using namespace corral::testing;

namespace {

request get(std::string target) {
  return make(http::verb::get, std::move(target));
}

/// The status, and for an error its code and part of its message.
void require_status(const response& res, unsigned status,
                    const std::string& code = {},
                    const std::string& part = {}) {
  if (code.empty()) {
    INFO(res.body());
    REQUIRE(res.result_int() == status);
    return;
  }
  require_error(res, static_cast<int>(status), code, part);
}

} // namespace

TEST_CASE("logs answer a tail as JSON with a cursor", "[router][logs]") {
  fake_backend aut;
  auto res = answer(aut, get("/api/v1/runs/ppo-1/logs"));
  require_status(res, 200);
  auto body = json::parse(res.body());
  REQUIRE(body["lines"].size() == 3);
  CHECK(body["lines"][0]
        == json{{"stream", "stdout"},
                {"t", "1970-01-01T00:00:00.000Z"},
                {"text", "step 1"}});
  CHECK(body["lines"][1]["stream"] == "stderr");
  CHECK(body["lines"][2]["text"] == "step 2 é");
  CHECK(body["cursor"] == "16-11");
  CHECK(aut.last_logs.tail == 100);
  CHECK_FALSE(aut.last_logs.since);
  CHECK_FALSE(aut.last_logs.wait);
}

TEST_CASE("logs take stream, tail and since", "[router][logs]") {
  fake_backend aut;
  auto body = json::parse(
      answer(aut, get("/api/v1/runs/ppo-1/logs?stream=stdout&tail=1")).body());
  REQUIRE(body["lines"].size() == 1);
  CHECK(body["lines"][0]["text"] == "step 2 é");
  CHECK(aut.last_logs.streams.out);
  CHECK_FALSE(aut.last_logs.streams.err);

  body = json::parse(
      answer(aut, get("/api/v1/runs/ppo-1/logs?since=7-0")).body());
  REQUIRE(body["lines"].size() == 2);
  CHECK(body["lines"][0]["text"] == "warning: x");
  REQUIRE(aut.last_logs.since);
  CHECK(*aut.last_logs.since == log_cursor{7, 0});
}

TEST_CASE("logs refuse bad parameters naming them", "[router][logs]") {
  fake_backend aut;
  require_status(answer(aut, get("/api/v1/runs/ppo-1/logs?stream=both")), 400,
                 "bad_request", "stream: expected stdout, stderr or all");
  require_status(answer(aut, get("/api/v1/runs/ppo-1/logs?tail=-1")), 400,
                 "bad_request", "tail: expected a whole number");
  require_status(answer(aut, get("/api/v1/runs/ppo-1/logs?tail=1000001")), 400,
                 "bad_request", "tail: at most 100000");
  require_status(answer(aut, get("/api/v1/runs/ppo-1/logs?since=abc")), 400,
                 "bad_request", "since: 'abc' is not a cursor");
  require_status(answer(aut, get("/api/v1/runs/ppo-1/logs?follow=maybe")), 400,
                 "bad_request", "follow: expected 1 or 0");
  require_status(answer(aut, get("/api/v1/runs/ppo-1/logs?lines=3")), 400,
                 "bad_request", "unknown query parameter 'lines'");
  require_status(answer(aut, get("/api/v1/runs/nope/logs")), 404, "not_found",
                 "nope");
  require_status(answer(aut, get("/api/v1/runs/nope/logs?follow=1")), 404,
                 "not_found", "nope");
}

TEST_CASE("following the logs of an ended run sends every line, then end",
          "[router][logs][sse]") {
  fake_backend aut; // sac-1 is stopped
  auto res = answer(aut, get("/api/v1/runs/sac-1/logs?follow=1"));
  require_status(res, 200);
  CHECK(res[http::field::content_type] == "text/event-stream; charset=utf-8");
  CHECK_FALSE(res.keep_alive());
  auto& text = res.body();
  INFO(text);
  CHECK(text.starts_with("retry: 2000\n\n"));
  // Each id resumes right after its line: the first stdout line leaves
  // stderr where it was before its first line.
  CHECK_THAT(text, Catch::Contains("id: 7-0\nevent: line\ndata: "
                                   "{\"stream\":\"stdout\""));
  CHECK_THAT(text, Catch::Contains("id: 7-11\nevent: line\n"));
  CHECK_THAT(text, Catch::Contains("id: 16-11\nevent: line\n"));
  CHECK(text.ends_with("id: 16-11\nevent: end\ndata: {}\n\n"));
}

TEST_CASE("Last-Event-ID resumes a log stream after that line",
          "[router][logs][sse]") {
  fake_backend aut;
  auto req = get("/api/v1/runs/sac-1/logs?follow=1");
  req.set("Last-Event-ID", "7-11");
  auto res = answer(aut, std::move(req));
  INFO(res.body());
  CHECK(res.body().find("step 1") == std::string::npos);
  CHECK(res.body().find("warning: x") == std::string::npos);
  CHECK_THAT(res.body(), Catch::Contains("step 2"));
  REQUIRE(aut.last_logs.since);
  CHECK(*aut.last_logs.since == log_cursor{7, 11});

  auto bad = get("/api/v1/runs/sac-1/logs?follow=1");
  bad.set("Last-Event-ID", "x");
  require_status(answer(aut, std::move(bad)), 400, "bad_request",
                 "is not a cursor");
}

TEST_CASE("a log follower of a live run waits for lines",
          "[router][logs][sse]") {
  fake_backend aut;
  std::vector<streamed_response> streams;
  handle_request(
      get("/api/v1/runs/ppo-1/logs?follow=1&tail=0"), aut, test_config(),
      [](response) { FAIL("a follow must stream"); },
      [&](streamed_response s) { streams.push_back(std::move(s)); });
  REQUIRE(streams.size() == 1);
  std::vector<std::string> pieces;
  auto pull = [&] {
    streams[0].body->next([&](body_source::piece p) {
      REQUIRE(p);
      pieces.push_back(*p);
    });
  };
  pull();
  REQUIRE(pieces.size() == 1);
  CHECK_FALSE(aut.last_logs.wait); // the first answer is the tail
  pull();
  CHECK(aut.last_logs.wait); // then it waits for news
  REQUIRE(aut.last_logs.since);
  CHECK(*aut.last_logs.since == log_cursor{16, 11});
  // The fake has nothing after the cursor: a keepalive comment.
  CHECK(pieces.back() == ": keepalive\n\n");
}

TEST_CASE("events list as JSON and follow as SSE", "[router][events]") {
  fake_backend aut;
  auto res = answer(aut, get("/api/v1/runs/ppo-1/events"));
  require_status(res, 200);
  auto events = json::parse(res.body())["events"];
  REQUIRE(events.size() == 1);
  CHECK(events[0]["seq"] == 1);
  CHECK(events[0]["run"] == "ppo-1");

  res = answer(aut, get("/api/v1/runs/sac-1/events?follow=1"));
  INFO(res.body());
  CHECK_THAT(res.body(), Catch::Contains("id: 1\nevent: event\ndata: {"));
  CHECK(res.body().ends_with("id: 1\nevent: end\ndata: {}\n\n"));

  auto after = get("/api/v1/runs/sac-1/events?follow=1");
  after.set("Last-Event-ID", "1");
  res = answer(aut, std::move(after));
  CHECK(res.body().find("event: event") == std::string::npos);

  require_status(answer(aut, get("/api/v1/runs/nope/events?follow=1")), 404,
                 "not_found");
}

TEST_CASE("the daemon-wide events stream by default, list with follow=0",
          "[router][events]") {
  fake_backend aut;
  auto res = answer(aut, get("/api/v1/events?follow=0"));
  require_status(res, 200);
  CHECK(json::parse(res.body())["events"][0]["run"] == "ppo-1");

  std::vector<streamed_response> streams;
  handle_request(
      get("/api/v1/events"), aut, test_config(), [](response) {},
      [&](streamed_response s) { streams.push_back(std::move(s)); });
  REQUIRE(streams.size() == 1);
  CHECK(streams[0].head[http::field::content_type]
        == "text/event-stream; charset=utf-8");
  std::string first;
  streams[0].body->next([&](body_source::piece p) { first = p.value(); });
  CHECK_THAT(first, Catch::Contains("event: event"));
}

TEST_CASE("metrics and the artifact list pass through", "[router]") {
  fake_backend aut;
  auto res = answer(aut, get("/api/v1/runs/ppo-1/metrics"));
  require_status(res, 200);
  CHECK(json::parse(res.body())["latest"]["time/fps"] == 1207);
  require_status(answer(aut, get("/api/v1/runs/nope/metrics")), 404,
                 "not_found");

  artifact a;
  a.kind = "checkpoint";
  a.name = "ckpt/a.pt";
  a.path = "/w/ckpt/a.pt";
  a.size = 10;
  aut.files = {a};
  res = answer(aut, get("/api/v1/runs/ppo-1/artifacts"));
  require_status(res, 200);
  auto body = json::parse(res.body());
  REQUIRE(body["checkpoints"].size() == 1);
  CHECK(body["checkpoints"][0]["name"] == "ckpt/a.pt");
  CHECK(body["videos"] == json::array());
}

TEST_CASE("artifact downloads honour Range and refuse what is outside",
          "[router][artifacts]") {
  corral::test::temp_dir dir;
  auto path = dir.path() + "/video.mp4";
  std::string content;
  for (int i = 0; i < 200000; ++i)
    content += static_cast<char>('a' + i % 26);
  std::ofstream(path, std::ios::binary) << content;
  fake_backend aut;
  artifact a;
  a.kind = "video";
  a.name = "videos/run 1.mp4";
  a.path = path;
  a.size = content.size();
  aut.files = {a};

  // The name is one %2F-encoded segment, or several plain ones.
  for (auto target : {"/api/v1/runs/ppo-1/artifacts/videos%2Frun%201.mp4",
                      "/api/v1/runs/ppo-1/artifacts/videos/run%201.mp4"}) {
    auto res = answer(aut, get(target));
    require_status(res, 200);
    CHECK(res.body() == content);
    CHECK(res[http::field::content_type] == "video/mp4");
    CHECK(res[http::field::accept_ranges] == "bytes");
    CHECK(res[http::field::content_length] == std::to_string(content.size()));
    CHECK(res[http::field::content_disposition]
          == "inline; filename=\"run 1.mp4\"");
  }

  auto ranged = get("/api/v1/runs/ppo-1/artifacts/videos%2Frun%201.mp4");
  ranged.set(http::field::range, "bytes=100-199");
  auto res = answer(aut, std::move(ranged));
  require_status(res, 206);
  CHECK(res.body() == content.substr(100, 100));
  CHECK(res[http::field::content_range] == "bytes 100-199/200000");

  auto suffix = get("/api/v1/runs/ppo-1/artifacts/videos%2Frun%201.mp4");
  suffix.set(http::field::range, "bytes=-5");
  res = answer(aut, std::move(suffix));
  require_status(res, 206);
  CHECK(res.body() == content.substr(content.size() - 5));

  auto beyond = get("/api/v1/runs/ppo-1/artifacts/videos%2Frun%201.mp4");
  beyond.set(http::field::range, "bytes=300000-");
  res = answer(aut, std::move(beyond));
  require_status(res, 416, "range_not_satisfiable");
  CHECK(res[http::field::content_range] == "bytes */200000");

  require_status(
      answer(aut, get("/api/v1/runs/ppo-1/artifacts/..%2F..%2Fetc%2Fpasswd")),
      403, "forbidden");
  require_status(answer(aut, get("/api/v1/runs/ppo-1/artifacts/other.mp4")),
                 404, "not_found");
}

TEST_CASE("restart answers 201 with the new run, 409 for a live one",
          "[router]") {
  fake_backend aut;
  auto req = make(http::verb::post, "/api/v1/runs/sac-1/restart");
  auto res = answer(aut, req);
  require_status(res, 201);
  auto body = json::parse(res.body());
  CHECK(body["id"] == "sac-1-2");
  CHECK(body["restart_of"] == "sac-1");
  req.target("/api/v1/runs/ppo-1/restart");
  require_status(answer(aut, req), 409, "invalid_transition",
                 "only an ended run can be restarted");
  require_status(answer(aut, get("/api/v1/runs/sac-1/restart")), 405,
                 "method_not_allowed");
}

TEST_CASE("node shows the machine's load and its GPUs", "[router]") {
  fake_backend aut;
  auto res = answer(aut, get("/api/v1/node"));
  require_status(res, 200);
  auto body = json::parse(res.body());
  CHECK(body["cpus"] == 2);
  CHECK(body["cpu_pct"] == 37.5);
  CHECK(body["load"] == json{0.5, 0.25, 0.125});
  CHECK(body["memory_total"] == 8ull << 30);
  CHECK(body["memory_used"] == 3ull << 30);
  REQUIRE(body["gpus"].size() == 4);
  CHECK(body["gpus"][0]["run"] == "ppo-1");
  CHECK(body["gpus"][3]["name"] == nullptr);
  CHECK(body["gpu_source"] == "nvml");
  require_status(answer(aut, get("/api/v1/node?x=1")), 400, "bad_request");
}
