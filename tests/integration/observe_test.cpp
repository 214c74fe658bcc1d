// What a user watches during a run, through a real daemon: logs (JSON and
// SSE), events, progress metrics and ETA, artifacts, the checkpoint
// handshake and restart from the latest checkpoint.

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/integration/checks.hpp"

using namespace corral::test;
using json = nlohmann::json;

namespace {

const std::set<std::string> ended{"stopped", "finished", "failed"};

std::string python_yaml(const std::string& name, const std::string& code,
                        const std::string& extra = "") {
  json cmd = {"python3", "-c", code};
  return "experiments:\n  - name: " + name + "\n    command: " + cmd.dump()
         + "\n" + extra;
}

/// Sends a raw GET and returns what arrives within `window`: to see the
/// bytes of a stream, keepalive comments included.
std::string read_raw(const test_daemon& d, const std::string& target,
                     std::chrono::milliseconds window,
                     const std::string& until = {}) {
  auto port = std::stoi(d.url().substr(d.url().rfind(':') + 1));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  auto req = "GET " + target
             + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port)
             + "\r\nAuthorization: Bearer " + d.token() + "\r\n\r\n";
  REQUIRE(::send(fd, req.data(), req.size(), MSG_NOSIGNAL)
          == static_cast<ssize_t>(req.size()));
  std::string got;
  auto end = std::chrono::steady_clock::now() + window;
  while (std::chrono::steady_clock::now() < end) {
    if (!until.empty() && got.find(until) != std::string::npos)
      break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) != 1)
      continue;
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0)
      break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return got;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos;
       pos = text.find(what, pos + 1))
    ++n;
  return n;
}

std::string toy_trainer() {
  return CORRAL_SOURCE_DIR "/config/examples/toy_trainer.py";
}

} // namespace

TEST_CASE("a follower gets every line as it is printed, then end",
          "[integration][logs]") {
  test_daemon d;
  // Prints a line to each stream every 50 ms, waits for a go file, then a
  // last burst and an unterminated line.
  temp_dir dir;
  auto go = dir / "go";
  auto id = submit_one(
      d, python_yaml("chatty",
                     "import os, sys, time\n"
                     "for i in range(20):\n"
                     "    print('out', i, flush=True)\n"
                     "    print('err', i, file=sys.stderr, flush=True)\n"
                     "    time.sleep(0.05)\n"
                     "while not os.path.exists('"
                         + go
                         + "'): time.sleep(0.02)\n"
                           "print('late', flush=True)\n"
                           "time.sleep(0.3)\n"
                           "sys.stdout.write('no newline at the end')\n"));
  wait_state(d, id, {"running"});
  sse_follower f(d, "/api/v1/runs/" + id + "/logs?follow=1&tail=1000");
  REQUIRE(wait_until(
      [&] {
        auto es = f.events();
        return es.size() >= 40;
      },
      30s));
  // A line printed now reaches the follower promptly (the benchmark
  // measures how promptly; here the bound is generous).
  auto before = f.events().size();
  auto written = std::chrono::steady_clock::now();
  std::ofstream{go} << "1";
  REQUIRE(wait_until(
      [&] {
        for (auto& e : f.events())
          if (e.event == "line" && e.data["text"] == "late")
            return true;
        return false;
      },
      10s));
  for (auto& e : f.events())
    if (e.event == "line" && e.data["text"] == "late")
      CHECK(e.at - written < 5s);
  REQUIRE(f.wait_done());
  auto es = f.events();
  CHECK(es.size() > before);
  REQUIRE(es.back().event == "end");
  std::vector<std::string> out, err;
  for (auto& e : es) {
    if (e.event != "line")
      continue;
    CHECK(!e.id.empty());
    CHECK(e.data["t"].get<std::string>().back() == 'Z');
    (e.data["stream"] == "stdout" ? out : err)
        .push_back(e.data["text"].get<std::string>());
  }
  REQUIRE(out.size() == 22);
  REQUIRE(err.size() == 20);
  for (int i = 0; i < 20; ++i) {
    CHECK(out[i] == "out " + std::to_string(i));
    CHECK(err[i] == "err " + std::to_string(i));
  }
  CHECK(out[20] == "late");
  CHECK(out[21] == "no newline at the end");

  // The same lines as JSON: a tail, and pages from a cursor.
  auto tail
      = d.call("GET", "/api/v1/runs/" + id + "/logs?tail=2&stream=stdout");
  REQUIRE(tail.status == 200);
  REQUIRE(tail.body["lines"].size() == 2);
  CHECK(tail.body["lines"][0]["text"] == "late");
  CHECK(tail.body["lines"][1]["text"] == "no newline at the end");
  auto errs
      = d.call("GET", "/api/v1/runs/" + id + "/logs?tail=3&stream=stderr");
  REQUIRE(errs.body["lines"].size() == 3);
  CHECK(errs.body["lines"][2]["text"] == "err 19");

  // Resuming after the id of line k gives exactly the lines after it.
  auto mid = es[10];
  REQUIRE(mid.event == "line");
  sse_follower again(d,
                     "/api/v1/runs/" + id + "/logs?follow=1&since=" + mid.id);
  REQUIRE(again.wait_done());
  auto rest = again.events();
  std::size_t lines_after = 0;
  for (std::size_t i = 11; i < es.size(); ++i)
    lines_after += es[i].event == "line";
  CHECK(rest.size() == lines_after + 1);
  CHECK(rest.back().event == "end");
  CHECK(rest.front().data == es[11].data);

  // The CLI prints both streams, each on its own.
  auto cli = run_corral({"logs", "-f", "--tail", "5", "--server", d.url(),
                         "--state-dir", d.state_dir(), id});
  CHECK(cli.exit_code == 0);
  CHECK(cli.out.find("late\nno newline at the end\n") != std::string::npos);
}

TEST_CASE("a follower of a queued run waits quietly until it prints",
          "[integration][logs]") {
  test_daemon d({"--gpus", "1"});
  auto holder = submit_one(
      d, python_yaml("holder", "import time; time.sleep(60)", "    gpus: 1\n"));
  wait_state(d, holder, {"running"});
  auto waiting
      = submit_one(d, python_yaml("waiting", "print('finally', flush=True)",
                                  "    gpus: 1\n"));
  CHECK(d.run(waiting)["state"] == "queued");
  // Nothing to send: the head, the retry hint and at most one keepalive,
  // not a stream of empty answers.
  auto quiet
      = read_raw(d, "/api/v1/runs/" + waiting + "/logs?follow=1", 1500ms);
  INFO(quiet);
  CHECK(quiet.starts_with("HTTP/1.1 200 OK"));
  CHECK(count_of(quiet, ": keepalive") <= 1);
  CHECK(count_of(quiet, "event:") == 0);

  std::string streamed;
  std::thread reader([&] {
    streamed = read_raw(d, "/api/v1/runs/" + waiting + "/logs?follow=1", 30s,
                        "event: end");
  });
  std::this_thread::sleep_for(300ms);
  REQUIRE(d.call("POST", "/api/v1/runs/" + holder + "/stop").status == 200);
  reader.join();
  INFO(streamed);
  CHECK(streamed.find("\"text\":\"finally\"") != std::string::npos);
  CHECK(streamed.find("event: end") != std::string::npos);
}

TEST_CASE("200k lines a second with rotation arrive through the API once "
          "each and in order",
          "[integration][logs]") {
  temp_dir cfg;
  // Small files: the 200000 lines (about 11 MB) rotate a dozen times.
  std::ofstream{cfg / "corral.yaml"} << "log_rotate: {size: 1M, count: 50}\n";
  test_daemon d{{"--config", cfg / "corral.yaml"}};
  json cmd
      = {"python3", CORRAL_FIXTURES_DIR "/log_writer.py", "200000", "200000"};
  auto id = submit_one(
      d, "experiments:\n  - name: flood\n    command: " + cmd.dump() + "\n");
  // A follower reads while the run writes; pages from a cursor afterwards.
  sse_follower f(d, "/api/v1/runs/" + id + "/logs?follow=1&stream=stdout");
  wait_state(d, id, ended);
  REQUIRE(f.wait_done(120s));
  auto check = [](const std::vector<std::string>& texts) {
    REQUIRE(texts.size() == 200000);
    char want[64];
    for (int i = 0; i < 200000; ++i) {
      std::snprintf(want, sizeof want,
                    "line %08d abcdefghijklmnopqrstuvwxyz0123456789", i);
      if (texts[static_cast<std::size_t>(i)] != want) {
        INFO("line " << i << ": " << texts[static_cast<std::size_t>(i)]);
        REQUIRE(texts[static_cast<std::size_t>(i)] == want);
      }
    }
  };
  std::vector<std::string> followed;
  for (auto& e : f.events())
    if (e.event == "line")
      followed.push_back(e.data["text"].get<std::string>());
  check(followed);

  std::vector<std::string> paged;
  std::string cursor = "0-0";
  for (int page = 0; page < 1000; ++page) {
    auto r = d.call("GET", "/api/v1/runs/" + id
                               + "/logs?stream=stdout&since=" + cursor);
    REQUIRE(r.status == 200);
    if (r.body["lines"].empty())
      break;
    for (auto& l : r.body["lines"])
      paged.push_back(l["text"].get<std::string>());
    cursor = r.body["cursor"].get<std::string>();
  }
  check(paged);
  // The files did rotate.
  CHECK(
      std::filesystem::exists(d.state_dir() + "/runs/" + id + "/stdout.log.5"));
}

TEST_CASE("garbage output stays valid JSON and tqdm redraws collapse",
          "[integration][logs]") {
  test_daemon d;
  auto id = submit_one(
      d,
      python_yaml("garbage",
                  "import sys\n"
                  "w = sys.stdout.buffer.write\n"
                  "w(b'bad \\xff\\xfe bytes\\n')\n"
                  "w(b'  0%|    | 0/3\\r 33%|#   | 1/3\\r100%|####| 3/3\\n')\n"
                  "w(b'nul \\x00 and esc \\x1b[31mred\\x1b[0m\\n')\n"
                  "w(b'x' * 200000 + b'\\n')\n"
                  "sys.stdout.flush()\n"));
  wait_state(d, id, ended);
  auto r = d.call("GET", "/api/v1/runs/" + id + "/logs?tail=100");
  REQUIRE(r.status == 200);
  auto& lines = r.body["lines"];
  INFO(r.raw.substr(0, 400));
  REQUIRE(lines.size() >= 4);
  CHECK(lines[0]["text"] == "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
  CHECK(lines[1]["text"] == "100%|####| 3/3");
  CHECK(lines[2]["text"]
        == std::string("nul \0 and esc \x1b[31mred\x1b[0m", 26));
  // A 200000-byte line comes in pieces of at most 64 KiB, nothing lost.
  std::size_t xs = 0;
  for (std::size_t i = 3; i < lines.size(); ++i) {
    auto text = lines[i]["text"].get<std::string>();
    CHECK(text.size() <= 64 * 1024);
    xs += text.size();
  }
  CHECK(xs == 200000);
}

TEST_CASE("sb3 progress gives metrics, fraction and an ETA that a pause "
          "does not move",
          "[integration][metrics]") {
  test_daemon d;
  temp_dir dir;
  auto id = submit_one(
      d,
      "experiments:\n  - name: toy\n    command: [python3, \"" + toy_trainer()
          + "\", --total-timesteps, \"409600\", --workers, \"1\"]\n"
            "    progress: {format: sb3, counter: time/total_timesteps, "
            "total: 409600}\n",
      dir.path());
  json run;
  REQUIRE(wait_until(
      [&] {
        run = d.run(id);
        return run["progress"]["eta_s"].is_number()
               && run["progress"]["metrics"]["time/total_timesteps"] >= 6144;
      },
      30s));
  auto& progress = run["progress"];
  CHECK(progress["fraction"].get<double>() > 0);
  CHECK(progress["fraction"].get<double>() < 0.2);
  CHECK(progress["metrics"]["rollout/ep_rew_mean"].is_number());
  // About 2048 steps a second: 400k steps take minutes, not hours.
  CHECK(progress["eta_s"].get<double>() > 30);
  CHECK(progress["eta_s"].get<double>() < 1000);

  REQUIRE(d.call("POST", "/api/v1/runs/" + id + "/pause").status == 200);
  auto paused = d.run(id);
  std::this_thread::sleep_for(1500ms);
  auto later = d.run(id);
  CHECK(later["progress"]["eta_s"] == paused["progress"]["eta_s"]);
  CHECK(later["active_s"] == paused["active_s"]);
  REQUIRE(d.call("POST", "/api/v1/runs/" + id + "/resume").status == 200);
  REQUIRE(wait_until(
      [&] {
        auto now = d.run(id);
        return now["progress"]["eta_s"].is_number()
               && now["progress"]["eta_s"].get<double>()
                      < paused["progress"]["eta_s"].get<double>() - 0.5;
      },
      20s));

  auto m = d.call("GET", "/api/v1/runs/" + id + "/metrics");
  REQUIRE(m.status == 200);
  auto series = m.body["series"]["time/total_timesteps"];
  REQUIRE(series.size() >= 3);
  for (auto& point : series) {
    REQUIRE(point.size() == 3);
    CHECK(point[1] == point[2]); // the counter is its own step
  }
  CHECK(m.body["latest"]["time/total_timesteps"] == series.back()[2]);
  // ps shows the same progress.
  auto ps
      = run_corral({"ps", "--server", d.url(), "--state-dir", d.state_dir()});
  CHECK(ps.out.find("%") != std::string::npos);
}

TEST_CASE("a csv progress file is followed as the run appends to it",
          "[integration][metrics]") {
  test_daemon d;
  temp_dir dir;
  std::filesystem::create_directories(dir / "logs/csv");
  auto id = submit_one(
      d,
      python_yaml(
          "csv",
          "import os, time\n"
          "f = open('logs/{run}/progress.csv', 'w')\n"
          "f.write('time/total_timesteps,rollout/ep_rew_mean\\n')\n"
          "for i in range(1, 4):\n"
          "    f.write('%d,%d\\n' % (i * 100, i * 10)); f.flush()\n"
          "    time.sleep(0.3)\n"
          "while not os.path.exists('stop'): time.sleep(0.05)\n",
          "    progress: {format: csv, file: \"logs/{run}/progress.csv\", "
          "counter: time/total_timesteps, total: 600}\n"),
      dir.path());
  REQUIRE(wait_until(
      [&] {
        return d.run(id)["progress"]["metrics"]["time/total_timesteps"] == 300;
      },
      20s));
  auto run = d.run(id);
  CHECK(run["progress"]["metrics"]["rollout/ep_rew_mean"] == 30);
  CHECK(run["progress"]["fraction"] == 0.5);
  auto m = d.call("GET", "/api/v1/runs/" + id + "/metrics").body;
  CHECK(m["series"]["rollout/ep_rew_mean"].size() == 3);
  std::ofstream{dir / "stop"} << "1";
  wait_state(d, id, ended);
}

TEST_CASE("a stop asks for a checkpoint first, and the event names it",
          "[integration][artifacts]") {
  test_daemon d;
  temp_dir dir;
  auto id = submit_one(
      d,
      "experiments:\n  - name: ckpt\n    command: [python3, \"" + toy_trainer()
          + "\", --ckpt-dir, \"ckpt/{run}\", --workers, \"1\"]\n"
            "    stop: {checkpoint_signal: SIGUSR1, checkpoint_timeout: 20s, "
            "grace: 10s}\n"
            "    artifacts: {checkpoints: \"ckpt/{run}/*.zip\", videos: "
            "\"videos/*.mp4\"}\n",
      dir.path());
  wait_state(d, id, {"running"});
  REQUIRE(wait_until(
      [&] { return d.stdout_of(id).find("Using cpu") != std::string::npos; }));
  // A video appears while the run goes: it is an event and can be served.
  std::filesystem::create_directories(dir / "videos");
  std::string video(300000, 'v');
  for (std::size_t i = 0; i < video.size(); ++i)
    video[i] = static_cast<char>(i % 251);
  std::ofstream(dir / "videos/ep1.mp4", std::ios::binary) << video;
  json events;
  bool seen = wait_until(
      [&] {
        events = d.call("GET", "/api/v1/runs/" + id + "/events").body;
        for (auto& e : events["events"])
          if (e["type"] == "artifact" && e["data"]["name"] == "videos/ep1.mp4")
            return true;
        return false;
      },
      20s);
  INFO(events.dump(1));
  REQUIRE(seen);

  auto stop
      = d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})");
  REQUIRE(stop.status == 200);
  CHECK(stop.body["state"] == "stopped");
  json saved;
  auto after = d.call("GET", "/api/v1/runs/" + id + "/events").body;
  for (auto& e : after["events"])
    if (e["type"] == "checkpoint")
      saved = e;
  INFO(after.dump());
  REQUIRE(saved["data"]["saved"] == true);
  auto name = saved["data"]["name"].get<std::string>();
  CHECK(name.starts_with("ckpt/" + id + "/ppo_"));
  CHECK(d.stdout_of(id).find("(SIGUSR1)") != std::string::npos);

  auto list = d.call("GET", "/api/v1/runs/" + id + "/artifacts");
  REQUIRE(list.status == 200);
  REQUIRE(list.body["videos"].size() == 1);
  CHECK(list.body["videos"][0]["size"] == 300000);
  bool listed = false;
  for (auto& c : list.body["checkpoints"])
    listed = listed || c["name"] == name;
  CHECK(listed);

  auto file
      = d.call("GET", "/api/v1/runs/" + id + "/artifacts/videos%2Fep1.mp4");
  REQUIRE(file.status == 200);
  CHECK(file.raw == video);
  // Nothing outside the declared patterns is served.
  std::ofstream(dir / "secret.txt") << "no";
  for (auto bad : {"..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
                   "videos%2F..%2Fsecret.txt"})
    CHECK(d.call("GET", "/api/v1/runs/" + id + "/artifacts/" + bad).status
          == 403);
  CHECK(d.call("GET", "/api/v1/runs/" + id + "/artifacts/secret.txt").status
        == 404);
}

TEST_CASE("restart makes a new run bound to the newest checkpoint",
          "[integration][artifacts]") {
  test_daemon d;
  temp_dir dir;
  auto yaml = python_yaml(
      "resume",
      "import os, sys\n"
      "print('resume=' + sys.argv[1], flush=True)\n"
      "os.makedirs('ck', exist_ok=True)\n"
      "open('ck/step_%d.pt' % len(sys.argv[1]), 'w').write('x')\n",
      "    artifacts: {checkpoints: \"ck/*.pt\"}\n");
  // python3 -c CODE ARG: the placeholder is the script's argv[1].
  yaml.replace(yaml.find("]\n"), 2, ", \"{latest_checkpoint}\"]\n");
  auto id = submit_one(d, yaml, dir.path());
  wait_state(d, id, ended);
  CHECK(d.stdout_of(id) == "resume=\n");

  auto live
      = submit_one(d, python_yaml("sleeper", "import time; time.sleep(60)"));
  auto refused = d.call("POST", "/api/v1/runs/" + live + "/restart");
  CHECK(refused.status == 409);
  CHECK(d.call("POST", "/api/v1/runs/nope/restart").status == 404);

  auto r = d.call("POST", "/api/v1/runs/" + id + "/restart");
  INFO(r.raw);
  REQUIRE(r.status == 201);
  auto again = r.body["id"].get<std::string>();
  CHECK(again != id);
  CHECK(r.body["restart_of"] == id);
  wait_state(d, again, ended);
  CHECK(d.stdout_of(again) == "resume=" + dir.path() + "/ck/step_0.pt\n");
  auto events
      = d.call("GET", "/api/v1/runs/" + again + "/events").body["events"];
  CHECK(events[0]["message"] == "restart of " + id + " queued");
}

TEST_CASE("the daemon-wide event stream carries every run's events",
          "[integration][events]") {
  test_daemon d;
  sse_follower all(
      d, "/api/v1/events", [](const std::vector<received_event>& es) {
        std::set<std::string> finished;
        for (auto& e : es)
          if (e.event == "event" && e.data["data"]["to"] == "finished")
            finished.insert(e.data["run"].get<std::string>());
        return finished.size() >= 2;
      });
  auto a = submit_one(d, python_yaml("a", "print(1)"));
  auto b = submit_one(d, python_yaml("b", "print(2)"));
  REQUIRE(all.wait_done(30s));
  std::uint64_t last = 0;
  for (auto& e : all.events()) {
    if (e.event != "event")
      continue;
    auto seq = std::stoull(e.id);
    CHECK(seq > last); // one order for all runs
    last = seq;
  }
  // A run's own stream ends once the run has ended for good.
  sse_follower one(d, "/api/v1/runs/" + a + "/events?follow=1");
  REQUIRE(one.wait_done());
  auto es = one.events();
  REQUIRE(es.size() >= 4);
  CHECK(es.back().event == "end");
  CHECK(es[0].data["message"] == "queued");
  CHECK(es[es.size() - 2].data["data"]["to"] == "finished");
  auto cli = run_corral(
      {"events", "--server", d.url(), "--state-dir", d.state_dir(), b});
  CHECK(cli.exit_code == 0);
  CHECK(cli.out.find("finished") != std::string::npos);
}
