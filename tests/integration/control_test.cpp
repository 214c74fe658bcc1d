// Pause, resume and stop of a real process tree through the real API.

#include <catch2/catch.hpp>

#include <signal.h>

#include <fstream>
#include <set>
#include <thread>

#include "services/cgroup.hpp"
#include "services/proc.hpp"
#include "tests/integration/checks.hpp"

using namespace corral::test;

namespace {

std::string start_trainer(test_daemon& d, const std::string& name,
                          const temp_dir& dir,
                          const std::string& extra_args = "",
                          const std::string& extra_keys = "") {
  auto r = d.submit(trainer_yaml(name, dir.path(), extra_args, extra_keys));
  REQUIRE(r.status == 201);
  REQUIRE(r.body["runs"].size() == 1);
  auto id = r.body["runs"][0]["id"].get<std::string>();
  trainer_dir t{dir.path()};
  REQUIRE(t.wait_all_started());
  REQUIRE(wait_until([&] {
    return d.call("GET", "/api/v1/runs/" + id).body["state"] == "running";
  }));
  return id;
}

std::string state_of(test_daemon& d, const std::string& id) {
  return d.run(id)["state"].get<std::string>();
}

void check_pause_resume_stop(const std::vector<std::string>& flags,
                             bool expect_cgroup) {
  test_daemon d{flags};
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = start_trainer(d, "tree", dir);

  auto run = d.call("GET", "/api/v1/runs/" + id).body;
  CHECK(run["pause_mechanism"] == (expect_cgroup ? "cgroup-v2" : "signals"));
  CHECK(run["pid"] == *t.pid("main"));
  // Every process of the tree is listed, the escapee included.
  std::set<int> listed;
  for (auto& p : run["processes"])
    listed.insert(p["pid"].get<int>());
  for (auto pid : t.pids())
    CHECK(listed.count(pid) == 1);

  auto paused = d.call("POST", "/api/v1/runs/" + id + "/pause");
  REQUIRE(paused.status == 200);
  CHECK(paused.body["state"] == "paused");
  // The kernel confirms: frozen cgroup, or every process in state T.
  auto detail = d.call("GET", "/api/v1/runs/" + id).body;
  for (auto& p : detail["processes"])
    CHECK(p["frozen"] == true);
  for (auto pid : t.pids()) {
    if (expect_cgroup) {
      auto cg = corral::proc_cgroup2_path(pid);
      REQUIRE(cg);
      auto mount = corral::find_cgroup2_mount();
      REQUIRE(mount);
      auto events = corral::read_small_file(*mount + *cg + "/cgroup.events");
      REQUIRE(events);
      CHECK(events->find("frozen 1") != std::string::npos);
    } else {
      CHECK(proc_state(pid) == 'T');
    }
  }
  std::map<std::string, long> at_pause;
  for (auto& r : trainer_dir::roles)
    at_pause[r] = t.count(r);
  std::this_thread::sleep_for(300ms);
  for (auto& r : trainer_dir::roles)
    CHECK(t.count(r) == at_pause[r]);

  auto resumed = d.call("POST", "/api/v1/runs/" + id + "/resume");
  REQUIRE(resumed.status == 200);
  CHECK(resumed.body["state"] == "running");
  REQUIRE(counters_advance(t));
  // Counters went on from where they were, not from zero.
  for (auto& r : trainer_dir::roles)
    CHECK(t.count(r) > at_pause[r]);

  auto stopped
      = d.call("POST", "/api/v1/runs/" + id + "/stop", "{\"wait\": true}");
  REQUIRE(stopped.status == 200);
  CHECK(stopped.body["state"] == "stopped");
  CHECK(stopped.body["reason"] == "user");
  CHECK(t.has("main.sigterm"));
  check_tree_gone(t);
}

} // namespace

TEST_CASE("pause freezes the whole tree via the cgroup, resume continues it, "
          "stop leaves nothing",
          "[integration]") {
  auto mount = corral::find_cgroup2_mount();
  if (!mount || ::access((*mount + "/cgroup.procs").c_str(), W_OK) != 0) {
    WARN("no writable cgroup v2 hierarchy here; cgroup mode not tested");
    return;
  }
  check_pause_resume_stop({}, true);
}

TEST_CASE("without a cgroup, pause stops every process with SIGSTOP",
          "[integration]") {
  check_pause_resume_stop({"--cgroup", "off"}, false);
}

TEST_CASE("stop of a paused run resumes it first so its SIGTERM handler runs",
          "[integration]") {
  for (auto flags : {std::vector<std::string>{},
                     std::vector<std::string>{"--cgroup", "off"}}) {
    test_daemon d{flags};
    temp_dir dir;
    trainer_dir t{dir.path()};
    auto id = start_trainer(d, "paused-stop", dir);
    REQUIRE(d.call("POST", "/api/v1/runs/" + id + "/pause").status == 200);
    auto r
        = d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})");
    REQUIRE(r.status == 200);
    CHECK(r.body["state"] == "stopped");
    CHECK(t.has("main.sigterm"));
    CHECK(r.body["exit_code"] == 0);
    check_tree_gone(t);
  }
}

TEST_CASE("a tree that ignores SIGTERM is killed when the grace period ends",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = start_trainer(d, "ignores-term", dir, ", --ignore-term",
                          "    stop: {grace: 1s}\n");
  auto begun = std::chrono::steady_clock::now();
  auto r = d.call("POST", "/api/v1/runs/" + id + "/stop");
  REQUIRE(r.status == 200);
  CHECK(r.body["state"] == "stopping");
  // A second stop of a stopping run is fine.
  CHECK(d.call("POST", "/api/v1/runs/" + id + "/stop").status == 200);
  REQUIRE(wait_until([&] { return state_of(d, id) == "stopped"; }, 20s));
  auto took = std::chrono::steady_clock::now() - begun;
  CHECK(took >= 1s);
  auto run = d.call("GET", "/api/v1/runs/" + id).body;
  CHECK(run["signal"] == "SIGKILL");
  CHECK(t.has("main.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("force kills at once without waiting for the grace period",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = start_trainer(d, "forced", dir, ", --ignore-term",
                          "    stop: {grace: 10m}\n");
  auto r = d.call("POST", "/api/v1/runs/" + id + "/stop",
                  R"({"force": true, "wait": true})");
  REQUIRE(r.status == 200);
  CHECK(r.body["state"] == "stopped");
  CHECK(r.body["signal"] == "SIGKILL");
  CHECK_FALSE(t.has("main.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("stop mode tree signals every process at once", "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = start_trainer(d, "tree-mode", dir, "",
                          "    stop: {mode: tree, grace: 20s}\n");
  auto r = d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})");
  REQUIRE(r.status == 200);
  CHECK(r.body["state"] == "stopped");
  for (auto& role : trainer_dir::roles)
    CHECK(t.has(role + ".sigterm"));
  check_tree_gone(t);
}

TEST_CASE("in stop mode main only the main process gets the signal",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = start_trainer(d, "main-mode", dir);
  auto r = d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})");
  REQUIRE(r.status == 200);
  CHECK(t.has("main.sigterm"));
  // The trainer stops its own workers; the escapee, left over, gets the
  // stop signal after main exits.
  CHECK(t.has("worker1.sigterm"));
  CHECK(t.has("escapee.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("a SIGSTOP from outside shows as paused, SIGCONT as running",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = start_trainer(d, "external", dir);
  auto main = *t.pid("main");
  ::kill(main, SIGSTOP);
  CHECK(wait_until([&] { return state_of(d, id) == "paused"; }, 5s));
  // Resume through the API works for a run paused from outside.
  auto r = d.call("POST", "/api/v1/runs/" + id + "/resume");
  CHECK(r.status == 200);
  CHECK(wait_until([&] { return proc_state(main) != 'T'; }, 5s));
  CHECK(state_of(d, id) == "running");
  ::kill(main, SIGSTOP);
  CHECK(wait_until([&] { return state_of(d, id) == "paused"; }, 5s));
  ::kill(main, SIGCONT);
  CHECK(wait_until([&] { return state_of(d, id) == "running"; }, 5s));
  REQUIRE(
      d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})").status
      == 200);
  check_tree_gone(t);
}

TEST_CASE("a pause that cannot complete is undone and answered 504 naming "
          "the stuck process",
          "[integration]") {
  temp_dir cfg;
  std::ofstream{cfg / "corral.yaml"} << "pause_timeout: 1s\n";
  test_daemon d{{"--cgroup", "off", "--config", cfg / "corral.yaml"}};
  auto r = d.submit(
      "experiments:\n  - name: stuck\n    command: [\"" CORRAL_VFORK_HOLDER
      "\"]\n");
  REQUIRE(r.status == 201);
  std::string id = r.body["runs"][0]["id"];
  nlohmann::json run;
  REQUIRE(wait_until([&] {
    run = d.call("GET", "/api/v1/runs/" + id).body;
    return run["state"] == "running" && run["processes"].size() == 2;
  }));
  int parent = run["pid"];
  REQUIRE(wait_until([&] { return proc_state(parent) == 'D'; }));

  auto p = d.call("POST", "/api/v1/runs/" + id + "/pause");
  CHECK(p.status == 504);
  CHECK(p.body["error"]["code"] == "pause_timeout");
  auto msg = p.body["error"]["message"].get<std::string>();
  CHECK(msg.find("did not freeze within 1000 ms") != std::string::npos);
  CHECK(msg.find(std::to_string(parent)) != std::string::npos);
  CHECK(msg.find("state D") != std::string::npos);
  // Undone: the state is unchanged and nothing is left stopped.
  CHECK(d.call("GET", "/api/v1/runs/" + id).body["state"] == "running");
  // Bound first: a range-for over a temporary's member dangles.
  auto after = d.call("GET", "/api/v1/runs/" + id).body;
  for (auto& proc : after["processes"])
    CHECK(proc_state(proc["pid"].get<int>()) != 'T');
  auto s = d.call("POST", "/api/v1/runs/" + id + "/stop",
                  R"({"wait": true, "grace_s": 1})");
  CHECK(s.status == 200);
  CHECK(s.body["state"] == "stopped");
}
