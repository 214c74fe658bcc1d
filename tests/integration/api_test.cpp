// Safety by default, request validation and the CLI, against a real daemon.

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/http_client.hpp"
#include "tests/integration/checks.hpp"

using namespace corral::test;

TEST_CASE("the API needs the token the daemon created, healthz does not",
          "[integration]") {
  test_daemon d;
  REQUIRE_FALSE(d.token().empty());
  struct stat st {};
  REQUIRE(::stat((d.state_dir() + "/token").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(d.call("GET", "/healthz", "", "", std::string{}).status == 200);
  auto r = d.call("GET", "/api/v1/runs", "", "", std::string{});
  CHECK(r.status == 401);
  CHECK(r.body["error"]["code"] == "unauthorized");
  CHECK(d.call("GET", "/api/v1/runs", "", "", std::string{"wrong"}).status
        == 401);
  CHECK(d.call("GET", "/api/v1/runs").status == 200);
  // The dashboard URL with the token is printed at start.
  std::ifstream out{d.state_dir() + "/daemon.out"};
  std::stringstream text;
  text << out.rdbuf();
  CHECK(text.str().find("#token=" + d.token()) != std::string::npos);
}

TEST_CASE("a second daemon on the same state dir is refused", "[integration]") {
  test_daemon d;
  auto r = run_corral(
      {"serve", "--listen", "127.0.0.1:0", "--state-dir", d.state_dir()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("already uses the state dir") != std::string::npos);
}

TEST_CASE("serving without auth on a non-loopback address is refused at start",
          "[integration]") {
  temp_dir state;
  auto r = run_corral({"serve", "--listen", "0.0.0.0:0", "--no-auth",
                       "--state-dir", state.path()});
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("--no-auth is for loopback addresses only")
        != std::string::npos);
}

TEST_CASE("unparseable YAML is a 400 and invalid YAML a 422, both with line "
          "and column, and nothing is created",
          "[integration]") {
  test_daemon d;
  auto r = d.submit("experiments:\n  - name: [unclosed\n");
  CHECK(r.status == 400);
  CHECK(r.body["error"]["message"].get<std::string>().find("line")
        != std::string::npos);
  r = d.submit("experiments:\n  - name: x\n    comand: [a]\n");
  CHECK(r.status == 422);
  auto msg = r.body["error"]["message"].get<std::string>();
  CHECK(msg.find("comand") != std::string::npos);
  CHECK(msg.find("line 3") != std::string::npos);
  r = d.submit("experiments:\n  - name: x\n    command: [echo, \"{nope}\"]\n");
  CHECK(r.status == 422);
  CHECK(r.body["error"]["message"].get<std::string>().find("{nope}")
        != std::string::npos);
  CHECK(d.call("GET", "/api/v1/runs").body["runs"].empty());
  r = d.call("POST", "/api/v1/experiments", "experiments: []", "text/plain");
  CHECK(r.status == 415);
}

TEST_CASE("a dry run names the runs a sweep would create and starts none",
          "[integration]") {
  test_daemon d;
  auto r = d.call("POST", "/api/v1/experiments?dry_run=1",
                  "experiments:\n  - name: sweep\n    command: [echo, "
                  "\"{lr}\", \"{run}\"]\n    matrix: {lr: [0.1, 0.2]}\n",
                  "application/yaml");
  REQUIRE(r.status == 200);
  REQUIRE(r.body["runs"].size() == 2);
  CHECK(r.body["runs"][0]["id"] == "sweep-lr0.1");
  CHECK(r.body["runs"][0]["command"]
        == nlohmann::json({"echo", "0.1", "sweep-lr0.1"}));
  CHECK(d.call("GET", "/api/v1/runs").body["runs"].empty());
}

TEST_CASE("a taken id gets a numbered suffix", "[integration]") {
  test_daemon d;
  auto yaml = "experiments:\n  - name: same\n    command: [/bin/true]\n";
  CHECK(d.submit(yaml).body["runs"][0]["id"] == "same");
  CHECK(d.submit(yaml).body["runs"][0]["id"] == "same-2");
  CHECK(d.submit(yaml).body["runs"][0]["id"] == "same-3");
}

TEST_CASE("the CLI submits, lists, pauses, resumes and stops through the API",
          "[integration]") {
  test_daemon d;
  temp_dir dir;
  trainer_dir t{dir.path()};
  auto file = dir / "exp.yaml";
  std::ofstream{file} << trainer_yaml("cli-run", dir.path());
  std::vector<std::string> env{"CORRAL_URL=" + d.url(),
                               "CORRAL_TOKEN=" + d.token()};

  auto r = run_corral({"submit", file}, env);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("cli-run") != std::string::npos);
  REQUIRE(t.wait_all_started());
  REQUIRE(wait_until([&] {
    return run_corral({"ps"}, env).out.find("🟢") != std::string::npos;
  }));
  r = run_corral({"pause", "cli-run"}, env);
  CHECK(r.exit_code == 0);
  CHECK(run_corral({"ps"}, env).out.find("⏸️") != std::string::npos);
  r = run_corral({"pause", "cli-run"}, env);
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("only a running run can be paused") != std::string::npos);
  r = run_corral({"resume", "cli-run"}, env);
  CHECK(r.exit_code == 0);
  r = run_corral({"show", "--json", "cli-run"}, env);
  CHECK(r.exit_code == 0);
  CHECK(nlohmann::json::parse(r.out)["state"] == "running");
  r = run_corral({"stop", "--wait", "cli-run"}, env);
  CHECK(r.exit_code == 0);
  CHECK(run_corral({"ps"}, env).out.find("🔴") == std::string::npos);
  CHECK(run_corral({"ps", "--all"}, env).out.find("🔴") != std::string::npos);
  r = run_corral({"stop", "cli-run"}, env);
  CHECK(r.exit_code == 1);
  // The CLI finds the token in the state dir by itself.
  r = run_corral({"ps", "--all", "--state-dir", d.state_dir()});
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("cli-run") != std::string::npos);
  check_tree_gone(t);
}

TEST_CASE("a deleted run's id can be used again and its old logs are kept "
          "aside",
          "[integration]") {
  test_daemon d;
  auto yaml = "experiments:\n  - name: again\n    command: [/bin/sh, -c, "
              "\"echo run-$CORRAL_RUN_ID-$$\"]\n";
  auto first = d.submit(yaml);
  REQUIRE(first.status == 201);
  REQUIRE(wait_until([&] {
    return d.call("GET", "/api/v1/runs/again").body["state"] == "finished";
  }));
  REQUIRE(d.call("DELETE", "/api/v1/runs/again").status == 204);
  auto second = d.submit(yaml);
  REQUIRE(second.status == 201);
  CHECK(second.body["runs"][0]["id"] == "again");
  REQUIRE(wait_until([&] {
    return d.call("GET", "/api/v1/runs/again").body["state"] == "finished";
  }));
  auto text = d.stdout_of("again");
  // One line: the new run's log does not continue the old one.
  CHECK(std::count(text.begin(), text.end(), '\n') == 1);
  std::size_t archived = 0;
  for (auto& e :
       std::filesystem::directory_iterator{d.state_dir() + "/runs-archive"})
    archived += e.path().filename().string().rfind("again-", 0) == 0;
  CHECK(archived == 1);
}

TEST_CASE("node reports this machine's CPUs, memory and configured GPUs",
          "[integration]") {
  test_daemon d{{"--gpus", "2"}};
  auto r = d.call("GET", "/api/v1/node");
  REQUIRE(r.status == 200);
  CHECK(r.body["cpus"] == ::sysconf(_SC_NPROCESSORS_ONLN));
  auto total = r.body["memory_total"].get<std::uint64_t>();
  CHECK(total
        == static_cast<std::uint64_t>(::sysconf(_SC_PHYS_PAGES))
               * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE)));
  CHECK(r.body["memory_used"].get<std::uint64_t>() <= total);
  CHECK(r.body["load"].size() == 3);
  CHECK(r.body["gpus"].size() == 2);
  CHECK(r.body["gpu_source"] == "config");
  CHECK(d.call("GET", "/api/v1/node", "", "", std::string{"wrong"}).status
        == 401);
}

TEST_CASE("a listing shows a pause, a new run and a delete as soon as they "
          "are answered, however often it is asked",
          "[integration]") {
  test_daemon d;
  auto states = [&] {
    std::map<std::string, std::string> out;
    auto listing = d.call("GET", "/api/v1/runs");
    for (auto& r : listing.body["runs"])
      out[r["id"]] = r["state"];
    return out;
  };
  REQUIRE(d.submit("experiments:\n  - name: a\n    command: [sleep, '60']\n"
                   "  - name: b\n    command: [sleep, '60']\n")
              .status
          == 201);
  REQUIRE(wait_until([&] {
    auto s = states();
    return s["a"] == "running" && s["b"] == "running";
  }));
  // Asked again and again: answered from what was kept.
  for (int i = 0; i < 20; ++i)
    REQUIRE(states().size() == 2);
  REQUIRE(d.call("POST", "/api/v1/runs/a/pause").status == 200);
  CHECK(states()["a"] == "paused");
  REQUIRE(
      d.submit("experiments:\n  - name: c\n    command: [sleep, '60']\n").status
      == 201);
  CHECK(states().count("c") == 1);
  REQUIRE(d.call("POST", "/api/v1/runs/b/stop", R"({"wait": true})").status
          == 200);
  CHECK(states()["b"] == "stopped");
  REQUIRE(d.call("DELETE", "/api/v1/runs/b").status == 204);
  CHECK(states().count("b") == 0);
}
