// Transitions, natural ends, exec errors, many runs and daemon exit.

#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "services/cgroup.hpp"
#include "services/proc.hpp"
#include "tests/integration/checks.hpp"

using namespace corral::test;

namespace {

nlohmann::json wait_ended(test_daemon& d, const std::string& id) {
  nlohmann::json run;
  REQUIRE(wait_until(
      [&] {
        run = d.call("GET", "/api/v1/runs/" + id).body;
        auto s = run["state"];
        return s == "stopped" || s == "finished" || s == "failed";
      },
      30s));
  return run;
}

std::string sh_yaml(const std::string& name, const std::string& script) {
  nlohmann::json cmd = {"/bin/sh", "-c", script};
  return "experiments:\n  - name: " + name + "\n    command: " + cmd.dump()
         + "\n";
}

} // namespace

TEST_CASE("illegal transitions are refused with 409 naming the state and "
          "change nothing",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = submit_one(d, trainer_yaml("transitions", dir.path()));
  REQUIRE(t.wait_all_started());
  REQUIRE(wait_until([&] {
    return d.call("GET", "/api/v1/runs/" + id).body["state"] == "running";
  }));

  auto r = d.call("POST", "/api/v1/runs/" + id + "/resume");
  CHECK(r.status == 409);
  CHECK(r.body["error"]["code"] == "invalid_transition");
  CHECK(r.body["error"]["message"]
        == "run " + id + " is running; only a paused run can be resumed");

  r = d.call("DELETE", "/api/v1/runs/" + id);
  CHECK(r.status == 409);
  CHECK(r.body["error"]["message"].get<std::string>().find("is running")
        != std::string::npos);

  REQUIRE(d.call("POST", "/api/v1/runs/" + id + "/pause").status == 200);
  r = d.call("POST", "/api/v1/runs/" + id + "/pause");
  CHECK(r.status == 409);
  CHECK(r.body["error"]["message"]
        == "run " + id + " is paused; only a running run can be paused");
  CHECK(d.call("GET", "/api/v1/runs/" + id).body["state"] == "paused");

  REQUIRE(
      d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})").status
      == 200);
  for (auto action : {"pause", "resume", "stop"}) {
    r = d.call("POST", "/api/v1/runs/" + id + "/" + action);
    CHECK(r.status == 409);
    CHECK(r.body["error"]["message"].get<std::string>().find("run " + id
                                                             + " is stopped")
          == 0);
  }
  CHECK(d.call("GET", "/api/v1/runs/" + id).body["state"] == "stopped");

  r = d.call("DELETE", "/api/v1/runs/" + id);
  CHECK(r.status == 204);
  CHECK(d.call("GET", "/api/v1/runs/" + id).status == 404);
  r = d.call("POST", "/api/v1/runs/nope/pause");
  CHECK(r.status == 404);
  CHECK(r.body["error"]["code"] == "not_found");
  check_tree_gone(t);
}

TEST_CASE("exit 0 finishes, non-zero fails with the code, a foreign signal "
          "fails with its name",
          "[integration]") {
  test_daemon d;
  auto ok = submit_one(d, sh_yaml("ok", "echo hello; exit 0"));
  auto bad = submit_one(d, sh_yaml("bad", "exit 3"));
  auto killed = submit_one(d, sh_yaml("killed", "kill -KILL $$"));
  auto run = wait_ended(d, ok);
  CHECK(run["state"] == "finished");
  CHECK(run["exit_code"] == 0);
  CHECK(run["reason"] == "exit");
  run = wait_ended(d, bad);
  CHECK(run["state"] == "failed");
  CHECK(run["exit_code"] == 3);
  run = wait_ended(d, killed);
  CHECK(run["state"] == "failed");
  CHECK(run["reason"] == "signal");
  CHECK(run["signal"] == "SIGKILL");
  CHECK(run["exit_code"].is_null());
  // The run's output is in its log file.
  auto out = d.stdout_of(ok);
  auto line = out.substr(0, out.find('\n'));
  CHECK(line == "hello");
}

TEST_CASE("when the main process exits, the rest of its tree is stopped",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto id = submit_one(
      d, trainer_yaml("natural", dir.path(),
                      ", --exit-after, \"1\", --exit-code, \"0\""));
  REQUIRE(t.wait_all_started());
  auto run = wait_ended(d, id);
  CHECK(run["state"] == "finished");
  CHECK(t.has("escapee.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("a missing command, a non-executable file and a bad cwd fail with "
          "exec_error and leave the daemon serving",
          "[integration]") {
  test_daemon d;
  auto missing = submit_one(
      d,
      "experiments:\n  - name: missing\n    command: [no-such-program-xyz]\n");
  auto run = wait_ended(d, missing);
  CHECK(run["state"] == "failed");
  CHECK(run["reason"] == "exec_error");
  CHECK(run["message"].get<std::string>().find("No such file or directory")
        != std::string::npos);

  temp_dir dir;
  std::ofstream{dir / "data.txt"} << "not a program\n";
  std::filesystem::permissions(dir / "data.txt",
                               std::filesystem::perms::owner_read
                                   | std::filesystem::perms::owner_write);
  auto noexec = submit_one(d, "experiments:\n  - name: noexec\n    command: ["
                                  + dir / "data.txt" + "]\n");
  run = wait_ended(d, noexec);
  CHECK(run["reason"] == "exec_error");
  CHECK(run["message"].get<std::string>().find("Permission denied")
        != std::string::npos);

  auto badcwd = submit_one(d, "experiments:\n  - name: badcwd\n    command: "
                              "[/bin/true]\n    cwd: /no/such/dir\n");
  run = wait_ended(d, badcwd);
  CHECK(run["reason"] == "exec_error");
  CHECK(run["message"].get<std::string>().find("/no/such/dir")
        != std::string::npos);
  CHECK(d.call("GET", "/healthz").status == 200);
}

TEST_CASE("30 runs paused, resumed and stopped concurrently all end as asked",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  std::string yaml = "experiments:\n";
  for (int i = 0; i < 30; ++i)
    yaml
        += "  - name: many-" + std::to_string(i)
           + "\n    command: [/bin/sh, -c, \"sleep 600 & sleep 600 & wait\"]\n";
  auto r = d.submit(yaml);
  REQUIRE(r.status == 201);
  std::vector<std::string> ids;
  for (auto& run : r.body["runs"])
    ids.push_back(run["id"]);
  REQUIRE(ids.size() == 30);
  auto all_in = [&](const std::string& state) {
    auto runs = d.call("GET", "/api/v1/runs").body["runs"];
    for (auto& run : runs)
      if (run["state"] != state)
        return false;
    return runs.size() == 30;
  };
  REQUIRE(wait_until([&] { return all_in("running"); }, 30s));
  std::vector<int> pids;
  for (auto& id : ids) {
    auto run = d.call("GET", "/api/v1/runs/" + id).body;
    for (auto& p : run["processes"])
      pids.push_back(p["pid"]);
  }
  CHECK(pids.size() == 90);

  auto in_parallel = [&](const std::string& action, int expect) {
    std::vector<std::thread> threads;
    std::vector<int> codes(ids.size());
    for (std::size_t i = 0; i < ids.size(); ++i)
      threads.emplace_back([&, i] {
        codes[i] = d.call("POST", "/api/v1/runs/" + ids[i] + "/" + action,
                          action == "stop" ? R"({"wait": true})" : "")
                       .status;
      });
    for (auto& th : threads)
      th.join();
    for (auto c : codes)
      CHECK(c == expect);
  };
  in_parallel("pause", 200);
  CHECK(all_in("paused"));
  in_parallel("resume", 200);
  CHECK(all_in("running"));
  in_parallel("stop", 200);
  CHECK(all_in("stopped"));
  for (auto pid : pids)
    CHECK_FALSE(alive(pid));
}

TEST_CASE("SIGTERM to the daemon stops every run, then the daemon exits",
          "[integration]") {
  temp_dir dir;
  trainer_dir t{dir.path()};
  int code = -1;
  std::string run_cgroup;
  {
    test_daemon d;
    submit_one(d, trainer_yaml("at-exit", dir.path()));
    REQUIRE(t.wait_all_started());
    auto mount = corral::find_cgroup2_mount();
    auto rel = corral::proc_cgroup2_path(*t.pid("main"));
    if (mount && rel && *rel != "/")
      run_cgroup = *mount + *rel;
    code = d.terminate();
  }
  CHECK(code == 0);
  // The run's cgroup and the daemon's parent of it are removed.
  if (!run_cgroup.empty()) {
    CHECK_FALSE(std::filesystem::exists(run_cgroup));
    CHECK_FALSE(std::filesystem::exists(
        std::filesystem::path{run_cgroup}.parent_path()));
  }
  CHECK(t.has("main.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("a run gets its environment, /dev/null as stdin and no descriptor "
          "of the daemon",
          "[integration]") {
  test_daemon d;
  auto yaml = std::string{"experiments:\n  - name: envcheck\n    command: "
                          "[/bin/sh, -c, \"env; ls -l /proc/$$/fd\"]\n    env: "
                          "{FROM_SPEC: yes, PYTHONUNBUFFERED: \"0\"}\n"};
  nlohmann::json envelope{{"spec", yaml},
                          {"base_dir", "/tmp"},
                          {"env",
                           {{"PATH", "/usr/bin:/bin"},
                            {"FROM_SHELL", "1"},
                            {"FROM_SPEC", "shell"}}}};
  auto r = d.call("POST", "/api/v1/experiments", envelope.dump());
  REQUIRE(r.status == 201);
  auto run = wait_ended(d, "envcheck");
  REQUIRE(run["state"] == "finished");
  auto text = d.stdout_of("envcheck");
  auto has_line = [&](const std::string& line) {
    return text.find("\n" + line + "\n") != std::string::npos
           || text.rfind(line + "\n", 0) == 0;
  };
  CHECK(has_line("FROM_SHELL=1"));
  CHECK(has_line("FROM_SPEC=yes"));      // the spec's env wins
  CHECK(has_line("PYTHONUNBUFFERED=0")); // set by the user: kept
  CHECK(has_line("CORRAL_RUN_ID=envcheck"));
  CHECK(has_line("CUDA_VISIBLE_DEVICES="));
  CHECK(text.find("HOME=") == std::string::npos); // only what was sent
  // Exactly stdin, stdout and stderr.
  CHECK(text.find(" 0 -> /dev/null") != std::string::npos);
  CHECK(text.find(" 1 -> pipe:") != std::string::npos);
  CHECK(text.find(" 2 -> pipe:") != std::string::npos);
  CHECK(text.find(" 3 -> ") == std::string::npos);
  CHECK(text.find(" 4 -> ") == std::string::npos);
  CHECK(text.find("socket:") == std::string::npos);
}
