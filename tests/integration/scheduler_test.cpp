// GPU placement, queueing, restart policies and runtime limits through the
// real daemon, with a configured inventory (no driver needed).

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "tests/integration/checks.hpp"

using namespace corral::test;

namespace {

bool all_ended(test_daemon& d) {
  auto runs = d.call("GET", "/api/v1/runs").body["runs"];
  for (auto& r : runs) {
    auto s = r["state"];
    if (s != "finished" && s != "failed" && s != "stopped")
      return false;
  }
  return true;
}

// What a run recorded about itself: the devices it saw and when it held them.
struct usage {
  std::string id;
  std::vector<int> gpus;
  long long start_ns = 0;
  long long end_ns = 0;
};

usage read_usage(const std::string& path) {
  usage u;
  std::ifstream in{path};
  std::string visible;
  in >> u.id >> visible >> u.start_ns >> u.end_ns;
  std::stringstream list{visible};
  std::string item;
  while (std::getline(list, item, ','))
    if (!item.empty() && item != "-")
      u.gpus.push_back(std::stoi(item));
  return u;
}

} // namespace

TEST_CASE("12 runs on 4 GPUs never share a device, follow priority and all "
          "complete",
          "[integration]") {
  test_daemon d{{"--gpus", "4"}};
  temp_dir out;
  // Each run writes: id, CUDA_VISIBLE_DEVICES as it sees it, start and end.
  auto script = "s=$(date +%s%N); sleep 0.4; e=$(date +%s%N); echo "
                "\"$CORRAL_RUN_ID ${CUDA_VISIBLE_DEVICES:--} $s $e\" > "
                + out.path() + "/$CORRAL_RUN_ID";
  std::string yaml = "experiments:\n";
  for (int i = 0; i < 12; ++i) {
    nlohmann::json cmd = {"/bin/sh", "-c", script};
    yaml += "  - name: job" + std::to_string(i) + "\n    command: " + cmd.dump()
            + "\n    gpus: " + std::to_string(i % 3 == 0 ? 2 : 1) + "\n";
    if (i == 11)
      yaml += "    priority: 10\n";
  }
  auto r = d.submit(yaml);
  REQUIRE(r.status == 201);
  // Right after submission: 4 GPUs' worth started, the rest queued with
  // positions 1..N; the priority run, submitted last, is in the first wave.
  auto runs = d.call("GET", "/api/v1/runs").body["runs"];
  std::vector<int> positions;
  for (auto& run : runs)
    if (run["state"] == "queued")
      positions.push_back(run["queue_position"].get<int>());
  std::sort(positions.begin(), positions.end());
  REQUIRE_FALSE(positions.empty());
  for (std::size_t i = 0; i < positions.size(); ++i)
    CHECK(positions[i] == static_cast<int>(i + 1));
  CHECK(d.run("job11")["state"] != "queued");
  CHECK(d.run("job11")["queue_position"].is_null());

  REQUIRE(wait_until([&] { return all_ended(d); }, 60s));
  std::vector<usage> uses;
  for (int i = 0; i < 12; ++i) {
    auto id = "job" + std::to_string(i);
    auto run = d.run(id);
    CHECK(run["state"] == "finished");
    auto u = read_usage(out / id);
    CHECK(u.id == id);
    CHECK(u.gpus.size() == static_cast<std::size_t>(i % 3 == 0 ? 2 : 1));
    // The run object names the devices the trainer saw.
    CHECK(run["gpus"].get<std::vector<int>>() == u.gpus);
    for (auto g : u.gpus) {
      CHECK(g >= 0);
      CHECK(g < 4);
    }
    uses.push_back(u);
  }
  for (std::size_t a = 0; a < uses.size(); ++a)
    for (std::size_t b = a + 1; b < uses.size(); ++b) {
      bool overlap = uses[a].start_ns < uses[b].end_ns
                     && uses[b].start_ns < uses[a].end_ns;
      if (!overlap)
        continue;
      for (auto g : uses[a].gpus)
        for (auto h : uses[b].gpus)
          CHECK_FALSE(g == h);
    }
  // The priority run started before every run that had to wait.
  auto first = read_usage(out / "job11").start_ns;
  int later = 0;
  for (auto& u : uses)
    later += u.start_ns > first;
  CHECK(later >= static_cast<int>(positions.size()));
  // Every device is free again.
  auto gpus_after = d.call("GET", "/api/v1/gpus").body;
  for (auto& g : gpus_after["gpus"])
    CHECK(g["run"].is_null());
}

TEST_CASE("GPUs are held while a run is paused and released when it ends",
          "[integration]") {
  test_daemon d{{"--gpus", "0,2"}};
  auto r = d.submit("experiments:\n  - name: holder\n    command: [/bin/sleep, "
                    "\"600\"]\n    gpus: 2\n  - name: waiter\n    command: "
                    "[/bin/true]\n    gpus: 1\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return d.run("holder")["state"] == "running"; }));
  auto gpus = d.call("GET", "/api/v1/gpus");
  REQUIRE(gpus.status == 200);
  CHECK(gpus.body["source"] == "config");
  REQUIRE(gpus.body["gpus"].size() == 2);
  CHECK(gpus.body["gpus"][0]["index"] == 0);
  CHECK(gpus.body["gpus"][1]["index"] == 2);
  for (auto& g : gpus.body["gpus"])
    CHECK(g["run"] == "holder");
  CHECK(d.run("holder")["gpus"] == nlohmann::json({0, 2}));

  auto waiter = d.run("waiter");
  CHECK(waiter["state"] == "queued");
  CHECK(waiter["queue_position"] == 1);
  auto p = d.call("POST", "/api/v1/runs/waiter/pause");
  CHECK(p.status == 409);
  CHECK(p.body["error"]["message"].get<std::string>().find("is queued")
        != std::string::npos);

  REQUIRE(d.call("POST", "/api/v1/runs/holder/pause").status == 200);
  CHECK(d.run("waiter")["state"] == "queued"); // paused keeps its GPUs
  REQUIRE(d.call("POST", "/api/v1/runs/holder/stop", R"({"wait": true})").status
          == 200);
  REQUIRE(wait_until([&] { return d.run("waiter")["state"] == "finished"; }));
  CHECK(d.run("waiter")["gpus"] == nlohmann::json({0}));
}

TEST_CASE(
    "a queued run stopped leaves the queue, and an impossible request is 422",
    "[integration]") {
  test_daemon d{{"--gpus", "1"}};
  auto r = d.submit("experiments:\n  - name: first\n    command: [/bin/sleep, "
                    "\"600\"]\n    gpus: 1\n  - name: second\n    command: "
                    "[/bin/sleep, \"600\"]\n    gpus: 1\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return d.run("first")["state"] == "running"; }));
  auto s = d.call("POST", "/api/v1/runs/second/stop");
  REQUIRE(s.status == 200);
  CHECK(s.body["state"] == "stopped");
  CHECK(d.run("second")["reason"] == "user");
  REQUIRE(d.call("POST", "/api/v1/runs/first/stop", R"({"wait": true})").status
          == 200);
  // Nothing starts the stopped run later.
  CHECK(d.run("second")["state"] == "stopped");
  CHECK(d.run("second")["pid"].is_null());

  auto big = d.submit(
      "experiments:\n  - name: big\n    command: [/bin/true]\n    gpus: 2\n");
  CHECK(big.status == 422);
  CHECK(big.body["error"]["message"].get<std::string>().find(
            "asks for 2 GPUs but this node has 1")
        != std::string::npos);
}

TEST_CASE("a run without GPUs sees CUDA_VISIBLE_DEVICES empty",
          "[integration]") {
  test_daemon d{{"--gpus", "2"}};
  auto r = d.submit("experiments:\n  - name: cpu\n    command: [/bin/sh, -c, "
                    "\"echo [$CUDA_VISIBLE_DEVICES]\"]\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return d.run("cpu")["state"] == "finished"; }));
  CHECK(d.stdout_of("cpu") == "[]\n");
}

TEST_CASE("on-failure restarts keep the id and count attempts until success",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  auto script = "n=$(cat " + dir.path()
                + "/n 2>/dev/null || echo 0); n=$((n+1)); "
                  "echo $n > "
                + dir.path() + "/n; [ $n -ge 3 ]";
  nlohmann::json cmd = {"/bin/sh", "-c", script};
  auto r = d.submit("experiments:\n  - name: flaky\n    command: " + cmd.dump()
                    + "\n    restart: {policy: on-failure, max: 3, backoff: "
                      "100ms}\n");
  REQUIRE(r.status == 201);
  nlohmann::json run;
  bool saw_queued_with_retry = false;
  REQUIRE(wait_until(
      [&] {
        run = d.run("flaky");
        if (run["state"] == "queued" && run["retry_at"].is_string())
          saw_queued_with_retry = true;
        return run["state"] == "finished";
      },
      20s));
  CHECK(run["attempt"] == 3);
  CHECK(run["exit_code"] == 0);
  CHECK(saw_queued_with_retry);
  CHECK(d.call("GET", "/api/v1/runs").body["runs"].size() == 1);
  // Each attempt is an event: two restarts, three starts.
  auto events = d.call("GET", "/api/v1/runs/flaky/events").body["events"];
  int restarts = 0, starts = 0;
  for (auto& e : events) {
    if (e["type"] != "state")
      continue;
    restarts += e["cause"] == "restart";
    starts += e["data"]["to"] == "starting";
  }
  CHECK(restarts == 2);
  CHECK(starts == 3);

  // A run that keeps failing ends failed after max restarts.
  auto r2 = d.submit("experiments:\n  - name: hopeless\n    command: "
                     "[/bin/false]\n    restart: {policy: on-failure, max: 2, "
                     "backoff: 50ms}\n");
  REQUIRE(r2.status == 201);
  REQUIRE(wait_until(
      [&] {
        run = d.run("hopeless");
        return run["state"] == "failed" && run["attempt"] == 3;
      },
      20s));
  CHECK(run["exit_code"] == 1);
}

TEST_CASE("a stopped run is never restarted by its policy", "[integration]") {
  test_daemon d;
  auto r = d.submit("experiments:\n  - name: kept\n    command: [/bin/sleep, "
                    "\"600\"]\n    restart: {policy: always, backoff: 50ms}\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return d.run("kept")["state"] == "running"; }));
  auto s = d.call("POST", "/api/v1/runs/kept/stop", R"({"wait": true})");
  REQUIRE(s.status == 200);
  CHECK(s.body["state"] == "stopped");
  std::this_thread::sleep_for(300ms);
  CHECK(d.run("kept")["state"] == "stopped");
  CHECK(d.run("kept")["attempt"] == 1);
}

TEST_CASE("max_runtime stops a run and fails it with reason timeout",
          "[integration]") {
  test_daemon d;
  auto begun = std::chrono::steady_clock::now();
  auto r = d.submit("experiments:\n  - name: slow\n    command: [/bin/sleep, "
                    "\"600\"]\n    max_runtime: 1s\n");
  REQUIRE(r.status == 201);
  nlohmann::json run;
  REQUIRE(wait_until(
      [&] {
        run = d.run("slow");
        return run["state"] == "failed";
      },
      20s));
  CHECK(std::chrono::steady_clock::now() - begun >= 1s);
  CHECK(run["reason"] == "timeout");
  CHECK(run["signal"] == "SIGTERM");
}

TEST_CASE("max_concurrent per experiment holds runs back", "[integration]") {
  test_daemon d;
  temp_dir out;
  auto script = "s=$(date +%s%N); sleep 0.3; e=$(date +%s%N); echo "
                "\"$CORRAL_RUN_ID - $s $e\" > "
                + out.path() + "/$CORRAL_RUN_ID";
  nlohmann::json cmd = {"/bin/sh", "-c", script};
  auto r = d.submit("experiments:\n  - name: lim\n    command: " + cmd.dump()
                    + "\n    max_concurrent: 2\n    matrix: {i: [1, 2, 3, 4, "
                      "5]}\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return all_ended(d); }, 30s));
  std::vector<usage> uses;
  for (auto& e : std::filesystem::directory_iterator{out.path()})
    uses.push_back(read_usage(e.path()));
  REQUIRE(uses.size() == 5);
  // At no start time were more than 2 runs inside their interval.
  for (auto& u : uses) {
    int inside = 0;
    for (auto& v : uses)
      inside += v.start_ns <= u.start_ns && u.start_ns < v.end_ns;
    CHECK(inside <= 2);
  }
}

TEST_CASE("a higher-priority run submitted later starts first when a device "
          "frees up",
          "[integration]") {
  test_daemon d{{"--gpus", "1"}};
  auto sleeper = [](const std::string& name, int priority) {
    return "  - name: " + name
           + "\n    command: [/bin/sleep, \"600\"]\n    gpus: 1\n    "
             "priority: "
           + std::to_string(priority) + "\n";
  };
  REQUIRE(d.submit("experiments:\n" + sleeper("holder", 0)).status == 201);
  REQUIRE(d.submit("experiments:\n" + sleeper("low", 0)).status == 201);
  REQUIRE(d.submit("experiments:\n" + sleeper("high", 5)).status == 201);
  CHECK(d.run("high")["queue_position"] == 1);
  CHECK(d.run("low")["queue_position"] == 2);
  REQUIRE(d.call("POST", "/api/v1/runs/holder/stop", R"({"wait": true})").status
          == 200);
  REQUIRE(wait_until([&] { return d.run("high")["state"] == "running"; }));
  CHECK(d.run("low")["state"] == "queued");
  CHECK(d.run("low")["queue_position"] == 1);
  CHECK(d.run("high")["gpus"] == nlohmann::json({0}));
}

TEST_CASE("cpus and memory are placement: what the node cannot hold is 422, "
          "what fits runs",
          "[integration]") {
  test_daemon d;
  auto r = d.submit("experiments:\n  - name: huge\n    command: [/bin/true]\n"
                    "    cpus: 100000\n");
  CHECK(r.status == 422);
  CHECK(r.body["error"]["message"].get<std::string>().find(
            "experiment huge asks for 100000 CPUs but this node has")
        == 0);
  r = d.submit("experiments:\n  - name: fat\n    command: [/bin/true]\n"
               "    memory: 100T\n");
  CHECK(r.status == 422);
  r = d.submit("experiments:\n  - name: small\n    command: [/bin/true]\n"
               "    cpus: 1\n    memory: 64M\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return d.run("small")["state"] == "finished"; }));
}

TEST_CASE("without NVML or a configured inventory the daemon says so and runs "
          "without GPUs",
          "[integration]") {
  test_daemon d;
  auto log = d.log();
  CHECK(log.find("registry runs without GPUs: libnvidia-ml.so.1 not found")
        != std::string::npos);
  auto gpus = d.call("GET", "/api/v1/gpus").body;
  CHECK(gpus["gpus"].empty());
  CHECK(gpus["source"] == "config");
}

TEST_CASE("the daemon's max_concurrent holds runs of every experiment back",
          "[integration]") {
  temp_dir cfg;
  std::ofstream{cfg / "corral.yaml"} << "max_concurrent: 1\n";
  test_daemon d{{"--config", cfg / "corral.yaml"}};
  temp_dir out;
  auto script = "s=$(date +%s%N); sleep 0.2; e=$(date +%s%N); echo "
                "\"$CORRAL_RUN_ID - $s $e\" > "
                + out.path() + "/$CORRAL_RUN_ID";
  nlohmann::json cmd = {"/bin/sh", "-c", script};
  auto r = d.submit("experiments:\n  - name: a\n    command: " + cmd.dump()
                    + "\n  - name: b\n    command: " + cmd.dump()
                    + "\n  - name: c\n    command: " + cmd.dump() + "\n");
  REQUIRE(r.status == 201);
  REQUIRE(wait_until([&] { return all_ended(d); }, 30s));
  std::vector<usage> uses;
  for (auto id : {"a", "b", "c"})
    uses.push_back(read_usage(out / id));
  for (std::size_t i = 0; i < uses.size(); ++i)
    for (std::size_t j = i + 1; j < uses.size(); ++j)
      CHECK_FALSE((uses[i].start_ns < uses[j].end_ns
                   && uses[j].start_ns < uses[i].end_ns));
}

TEST_CASE("a restarted run's log goes on in the same file", "[integration]") {
  test_daemon d;
  temp_dir dir;
  auto script = "n=$(cat " + dir.path()
                + "/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > "
                + dir.path() + "/n; echo attempt-$n; [ $n -ge 2 ]";
  nlohmann::json cmd = {"/bin/sh", "-c", script};
  auto r = d.submit("experiments:\n  - name: again\n    command: " + cmd.dump()
                    + "\n    restart: {policy: on-failure, backoff: 50ms}\n");
  REQUIRE(r.status == 201);
  REQUIRE(
      wait_until([&] { return d.run("again")["state"] == "finished"; }, 20s));
  auto text = d.stdout_of("again");
  CHECK(text == "attempt-1\nattempt-2\n");
}
