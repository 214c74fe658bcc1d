#include "cli/commands.hpp"
#include "cli/discovery.hpp"
#include "cli/format.hpp"
#include "cli/sse.hpp"
#include "gateway/server.hpp"
#include "services/units.hpp"
#include "tests/gateway/fake_backend.hpp"
#include "tests/temp_dir.hpp"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace corral;
using namespace corral::cli;
using corral::test::temp_dir;
using corral::testing::fake_backend;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

env_lookup fake_env(std::map<std::string, std::string> vars) {
  return [vars](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end())
      return std::nullopt;
    return it->second;
  };
}

/// Display column at which `needle` starts on `line`.
std::size_t column_of(const std::string& line, const std::string& needle) {
  auto pos = line.find(needle);
  REQUIRE(pos != std::string::npos);
  return display_width(line.substr(0, pos));
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    out.push_back(line);
  return out;
}

json run_json(std::string id, std::string state, json extra = json::object()) {
  json run = {{"id", id},
              {"experiment", "ppo"},
              {"state", state},
              {"reason", nullptr},
              {"pid", 4242},
              {"process_count", 3},
              {"exit_code", nullptr},
              {"signal", nullptr},
              {"started_at", "2026-11-28T15:13:00.123Z"},
              {"active_s", 185.2},
              {"queue_position", nullptr},
              {"retry_at", nullptr},
              {"resources",
               {{"cpu_pct", 101.4},
                {"rss_bytes", std::uint64_t{3} << 30},
                {"gpu_memory_bytes", nullptr}}},
              {"progress",
               {{"metrics", json::object()},
                {"fraction", nullptr},
                {"eta_s", nullptr}}}};
  run.update(extra);
  return run;
}

struct cli_result {
  int code;
  std::string out;
  std::string err;
};

/// Runs `corral <args...>` in-process, capturing its output.
cli_result run_cli(std::vector<std::string> args) {
  CLI::App app{"corral"};
  app.require_subcommand(1);
  int exit_code = -1;
  add_client_commands(app, exit_code);
  std::vector<const char*> argv{"corral"};
  for (auto& a : args)
    argv.push_back(a.c_str());
  std::ostringstream out;
  std::ostringstream err;
  auto* old_out = std::cout.rdbuf(out.rdbuf());
  auto* old_err = std::cerr.rdbuf(err.rdbuf());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    exit_code = 2;
  }
  std::cout.rdbuf(old_out);
  std::cerr.rdbuf(old_err);
  return {exit_code, out.str(), err.str()};
}

/// A real server over the fake backend, and the CLI flags that reach it.
struct live_daemon {
  fake_backend backend;
  gateway::http_server server{backend, [] {
                                gateway::router_config cfg;
                                cfg.token = "cli-test-token";
                                return cfg;
                              }()};
  temp_dir state;
  std::string url;

  live_daemon() {
    url = "http://127.0.0.1:"
          + std::to_string(server.start("127.0.0.1", 0).port());
    state.write("token", "cli-test-token\n");
  }

  cli_result run(std::vector<std::string> args) {
    args.insert(args.end(),
                {"--server", url, "--token-file", (state / "token")});
    return run_cli(std::move(args));
  }
};

} // namespace

TEST_CASE("durations read like 1h02m", "[cli][format]") {
  CHECK(format_duration(0) == "0s");
  CHECK(format_duration(12.7) == "12s");
  CHECK(format_duration(59.99) == "59s");
  CHECK(format_duration(60) == "1m00s");
  CHECK(format_duration(185) == "3m05s");
  CHECK(format_duration(3720) == "1h02m");
  CHECK(format_duration(49 * 3600 + 180) == "2d01h");
  CHECK(format_duration(-5) == "0s");
  CHECK(format_duration(std::nan("")) == "0s");
}

TEST_CASE("sizes read like 1.5K", "[cli][format]") {
  CHECK(format_size(0) == "0B");
  CHECK(format_size(512) == "512B");
  CHECK(format_size(1536) == "1.5K");
  CHECK(format_size(1 << 20) == "1.0M");
  CHECK(format_size(std::uint64_t{3} << 30) == "3.0G");
}

TEST_CASE("display width counts emoji as two columns", "[cli][format]") {
  CHECK(display_width("abc") == 3);
  CHECK(display_width("") == 0);
  for (auto e : {"⏳", "🔵", "🟢", "⏸️", "🟠", "🔴", "✅", "❌"}) {
    INFO(e);
    CHECK(display_width(e) == 2);
  }
  CHECK(display_width("✓") == 1);
  CHECK(display_width("e\xCC\x81") == 1); // e + combining acute
  CHECK(display_width("日本") == 4);
  CHECK(display_width("\xFF") == 1); // invalid UTF-8 still takes a column
  CHECK(pad_right("🟢", 4) == "🟢  ");
  CHECK(pad_right("⏸️ x", 3) == "⏸️ x");
}

TEST_CASE("tables align columns by display width", "[cli][format]") {
  auto table = render_table({{"STATE", "ID", "X"},
                             {"⏸️ paused", "id-a", "1"},
                             {"🟢 running", "id-bb", ""},
                             {"✅ finished", "id-c", "3"}});
  auto lines = lines_of(table);
  REQUIRE(lines.size() == 4);
  REQUIRE(column_of(lines[0], "ID") == column_of(lines[1], "id-a"));
  REQUIRE(column_of(lines[0], "ID") == column_of(lines[2], "id-bb"));
  REQUIRE(column_of(lines[0], "ID") == column_of(lines[3], "id-c"));
  REQUIRE(column_of(lines[0], "X") == column_of(lines[3], "3"));
  // No trailing spaces, even with an empty last cell.
  for (auto& line : lines)
    REQUIRE_FALSE(line.ends_with(' '));
}

TEST_CASE("shell_join quotes what a shell would split", "[cli][format]") {
  CHECK(shell_join({"python3", "train.py", "--lr", "3.0e-4"})
        == "python3 train.py --lr 3.0e-4");
  CHECK(shell_join({"echo", "a b", ""}) == "echo 'a b' ''");
  CHECK(shell_join({"python", "-c", "print('hi')"})
        == R"(python -c 'print('\''hi'\'')')");
}

TEST_CASE("the REASON/EXIT cell", "[cli][format]") {
  CHECK(reason_text(run_json("a", "running")) == "");
  CHECK(reason_text(
            run_json("a", "failed", {{"reason", "exit"}, {"exit_code", 1}}))
        == "exit 1");
  CHECK(reason_text(
            run_json("a", "finished", {{"reason", "exit"}, {"exit_code", 0}}))
        == "exit 0");
  CHECK(reason_text(run_json("a", "failed",
                             {{"reason", "signal"}, {"signal", "SIGSEGV"}}))
        == "signal SIGSEGV");
  CHECK(reason_text(run_json("a", "stopped",
                             {{"reason", "user"}, {"signal", "SIGTERM"}}))
        == "user (SIGTERM)");
  CHECK(reason_text(run_json("a", "failed", {{"reason", "timeout"}}))
        == "timeout");
  CHECK(reason_text(run_json("a", "queued", {{"queue_position", 2}}))
        == "queue #2");
}

TEST_CASE("ps shows one aligned row per run", "[cli][format]") {
  json runs = {run_json("ppo-1", "running"),
               run_json("ppo-2", "paused", {{"active_s", 3720}}),
               run_json("sac-long-name-1", "stopped",
                        {{"reason", "user"},
                         {"signal", "SIGTERM"},
                         {"pid", nullptr},
                         {"process_count", 0}}),
               run_json("waiting-1", "queued",
                        {{"started_at", nullptr},
                         {"pid", nullptr},
                         {"process_count", 0},
                         {"queue_position", 1}})};
  auto lines = lines_of(render_ps(runs));
  REQUIRE(lines.size() == 5);
  CHECK(lines[0].starts_with("STATE"));
  CHECK(lines[1].starts_with("🟢 running"));
  CHECK(lines[2].starts_with("⏸️ paused"));
  CHECK(lines[3].starts_with("🔴 stopped"));
  CHECK(lines[4].starts_with("⏳ queued"));
  for (std::size_t i = 1; i < lines.size(); ++i) {
    INFO(lines[i]);
    CHECK(column_of(lines[0], "ID")
          == column_of(lines[i], std::string(runs[i - 1]["id"])));
    CHECK(column_of(lines[0], "UPTIME") < display_width(lines[i]));
  }
  CHECK(lines[1].find("3m05s") != std::string::npos);
  CHECK(lines[2].find("1h02m") != std::string::npos);
  CHECK(lines[3].find("user (SIGTERM)") != std::string::npos);
  // A queued run's place is in the QUEUE column, not repeated as a reason.
  CHECK(column_of(lines[0], "QUEUE") == column_of(lines[4], "#1"));
  CHECK(lines[4].find("queue #1") == std::string::npos);
  CHECK(column_of(lines[0], "REASON/EXIT")
        == column_of(lines[3], "user (SIGTERM)"));
  // No run holds a GPU: a dash, and no legend.
  CHECK(column_of(lines[0], "GPUS") == column_of(lines[1], "-  "));
}

TEST_CASE("ps shows GPUs, paused runs' too, with a legend", "[cli][format]") {
  json runs = {run_json("ppo-1", "running", {{"gpus", {0, 1}}}),
               run_json("ppo-2", "paused", {{"gpus", {2}}}),
               run_json("cpu-1", "running", {{"gpus", json::array()}})};
  auto text = render_ps(runs);
  INFO(text);
  auto lines = lines_of(text);
  REQUIRE(lines.size() == 5);
  CHECK(lines[0]
        == "STATE       ID     EXPERIMENT  GPUS  PID   PROCS  CPU%  RSS   "
           "UPTIME  PROGRESS  ETA  REASON/EXIT");
  CHECK(lines[1]
        == "🟢 running  ppo-1  ppo         0,1   4242  3      101   3.0G  "
           "3m05s   -         -");
  CHECK(lines[2]
        == "⏸️ paused   ppo-2  ppo         2     4242  3      101   3.0G  "
           "3m05s   -         -");
  CHECK(lines[3]
        == "🟢 running  cpu-1  ppo         -     4242  3      101   3.0G  "
           "3m05s   -         -");
  CHECK(lines[4] == paused_gpus_legend);

  // Without a queued run there is no QUEUE column; with one, there is.
  CHECK(lines[0].find("QUEUE") == std::string::npos);
  runs.push_back(run_json("big-1", "queued",
                          {{"started_at", nullptr},
                           {"pid", nullptr},
                           {"process_count", 0},
                           {"queue_position", 3}}));
  runs.push_back(run_json("flaky-1", "queued",
                          {{"started_at", nullptr},
                           {"pid", nullptr},
                           {"process_count", 0},
                           {"attempt", 2},
                           {"retry_at", "2026-11-28T15:14:00.000Z"}}));
  lines = lines_of(render_ps(runs));
  REQUIRE(lines.size() == 7);
  CHECK(lines[0]
        == "STATE       ID       EXPERIMENT  GPUS  PID   PROCS  CPU%  RSS   "
           "UPTIME  PROGRESS  ETA  QUEUE  REASON/EXIT");
  CHECK(lines[1]
        == "🟢 running  ppo-1    ppo         0,1   4242  3      101   3.0G  "
           "3m05s   -         -    -");
  CHECK(lines[4]
        == "⏳ queued   big-1    ppo         -     -     0      -     -     "
           "-       -         -    #3");
  CHECK(lines[5]
        == "⏳ queued   flaky-1  ppo         -     -     0      -     -     "
           "-       -         -    -      retry at 2026-11-28T15:14:00.000Z");
  CHECK(lines[6] == paused_gpus_legend);

  // A paused run without GPUs needs no legend.
  lines = lines_of(render_ps(json{run_json("p", "paused")}));
  CHECK(lines.size() == 2);
}

TEST_CASE("ps shows progress and ETA where the run knows them",
          "[cli][format]") {
  json runs = {run_json("ppo-1", "running",
                        {{"progress",
                          {{"metrics", {{"time/fps", 1207}}},
                           {"fraction", 0.4213},
                           {"eta_s", 3725}}}}),
               run_json("done-1", "finished",
                        {{"pid", nullptr},
                         {"process_count", 0},
                         {"progress",
                          {{"metrics", json::object()},
                           {"fraction", 1.0},
                           {"eta_s", nullptr}}}})};
  auto lines = lines_of(render_ps(runs));
  REQUIRE(lines.size() == 3);
  INFO(lines[1]);
  CHECK(column_of(lines[0], "PROGRESS") == column_of(lines[1], "42.1%"));
  CHECK(column_of(lines[0], "ETA") == column_of(lines[1], "1h02m"));
  CHECK(column_of(lines[0], "PROGRESS") == column_of(lines[2], "100.0%"));
  // An ended run has no CPU or RSS to show.
  INFO(lines[2]);
  CHECK(lines[2].find("0      -     -     3m05s") != std::string::npos);
}

TEST_CASE("artifacts are listed by kind with size and time", "[cli][format]") {
  json answer = {{"checkpoints",
                  {{{"name", "ckpt/step_1000.pt"},
                    {"path", "/w/ckpt/step_1000.pt"},
                    {"size", 1536},
                    {"mtime", "2026-11-28T15:13:00.123Z"}}}},
                 {"videos", json::array()}};
  auto lines = lines_of(render_artifacts(answer));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "KIND        NAME               SIZE  MODIFIED");
  CHECK(lines[1]
        == "checkpoint  ckpt/step_1000.pt  1.5K  2026-11-28T15:13:00.123Z");
  CHECK(render_artifacts(
            json{{"checkpoints", json::array()}, {"videos", json::array()}})
        == "no artifacts\n");
}

TEST_CASE("sse parser splits events across arbitrary pieces", "[cli][sse]") {
  std::string stream = "retry: 2000\n\n: keepalive\n\nid: 5-0\nevent: "
                       "line\ndata: {\"text\": \"a\"}\n\nevent: end\r\ndata: "
                       "{}\r\n\r\n";
  // Every split point must give the same events.
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    sse_parser p;
    auto a = p.feed(std::string_view(stream).substr(0, cut));
    auto b = p.feed(std::string_view(stream).substr(cut));
    a.insert(a.end(), b.begin(), b.end());
    INFO("cut at " << cut);
    REQUIRE(a.size() == 2);
    CHECK(a[0].event == "line");
    CHECK(a[0].id == "5-0");
    CHECK(a[0].data == R"({"text": "a"})");
    CHECK(a[1].event == "end");
    CHECK(a[1].data == "{}");
  }
  sse_parser p;
  auto multi = p.feed("data: one\ndata: two\n\n");
  REQUIRE(multi.size() == 1);
  CHECK(multi[0].event == "message");
  CHECK(multi[0].data == "one\ntwo");
}

TEST_CASE("gpus shows memory, utilization and holders", "[cli][format]") {
  json answer = {{"source", "nvml"},
                 {"gpus",
                  {{{"index", 0},
                    {"uuid", "GPU-0"},
                    {"name", "NVIDIA H100 80GB HBM3"},
                    {"memory_total", std::uint64_t{80} << 30},
                    {"memory_used", std::uint64_t{12} << 30},
                    {"utilization", 97.0},
                    {"run", "ppo-1"}},
                   {{"index", 1},
                    {"uuid", "GPU-1"},
                    {"name", "NVIDIA H100 80GB HBM3"},
                    {"memory_total", std::uint64_t{80} << 30},
                    {"memory_used", 0},
                    {"utilization", nullptr},
                    {"run", nullptr}}}}};
  CHECK(render_gpus(answer)
        == "INDEX  NAME                   MEMORY       UTIL  RUN\n"
           "0      NVIDIA H100 80GB HBM3  12.0G/80.0G  97%   ppo-1\n"
           "1      NVIDIA H100 80GB HBM3  0B/80.0G     -     -\n"
           "source: NVML\n");

  json configured = {{"source", "config"},
                     {"gpus",
                      {{{"index", 0},
                        {"uuid", nullptr},
                        {"name", nullptr},
                        {"memory_total", nullptr},
                        {"memory_used", nullptr},
                        {"utilization", nullptr},
                        {"run", "a"}},
                       {{"index", 2},
                        {"uuid", nullptr},
                        {"name", nullptr},
                        {"memory_total", nullptr},
                        {"memory_used", nullptr},
                        {"utilization", nullptr},
                        {"run", nullptr}}}}};
  CHECK(render_gpus(configured)
        == "INDEX  NAME  MEMORY  UTIL  RUN\n"
           "0      -     -       -     a\n"
           "2      -     -       -     -\n"
           "source: configuration (--gpus or gpus:); memory and utilization "
           "need NVML\n");
  CHECK(render_gpus({{"source", "config"}, {"gpus", json::array()}})
        == "no GPUs\nsource: configuration (--gpus or gpus:); memory and "
           "utilization need NVML\n");
}

TEST_CASE("show tells queue position and retry time when set",
          "[cli][format]") {
  auto text = render_show(run_json("flaky-1", "queued",
                                   {{"attempt", 2},
                                    {"queue_position", 4},
                                    {"retry_at", "2026-11-28T15:14:00.000Z"}}));
  INFO(text);
  CHECK(text.find("Queue:") != std::string::npos);
  CHECK(text.find("#4") != std::string::npos);
  CHECK(text.find("Retry at:    2026-11-28T15:14:00.000Z")
        != std::string::npos);
  CHECK(text.find("Attempt:     2") != std::string::npos);
  CHECK(text.find("GPUs:        none") != std::string::npos);

  text = render_show(run_json("ppo-1", "running", {{"attempt", 1}}));
  CHECK(text.find("Queue:") == std::string::npos);
  CHECK(text.find("Retry at:") == std::string::npos);
}

TEST_CASE("show lists the fields and the process tree", "[cli][format]") {
  auto run = run_json("ppo-1", "paused",
                      {{"command", {"python3", "train.py", "--lr", "1e-3"}},
                       {"gpus", {0, 1}},
                       {"processes",
                        {{{"pid", 10},
                          {"ppid", 1},
                          {"state", "S"},
                          {"frozen", true},
                          {"cmd", "python3 train.py"},
                          {"cpu_pct", 99.5},
                          {"rss_bytes", 2 << 20}},
                         {{"pid", 12},
                          {"ppid", 11},
                          {"state", "S"},
                          {"frozen", true},
                          {"cmd", "grandchild"},
                          {"cpu_pct", 0},
                          {"rss_bytes", 1024}},
                         {{"pid", 11},
                          {"ppid", 10},
                          {"state", "S"},
                          {"frozen", true},
                          {"cmd", "worker"},
                          {"cpu_pct", 1},
                          {"rss_bytes", 4096}}}},
                       {"progress",
                        {{"fraction", 0.5},
                         {"eta_s", 120},
                         {"metrics", {{"time/fps", 1207}}}}}});
  auto text = render_show(run);
  INFO(text);
  CHECK(text.find("⏸️ paused") != std::string::npos);
  CHECK(text.find("python3 train.py --lr 1e-3") != std::string::npos);
  CHECK(text.find("0, 1") != std::string::npos);
  CHECK(text.find("50.0% (ETA 2m00s)") != std::string::npos);
  CHECK(text.find("time/fps=1207") != std::string::npos);
  // Children under their parents, whatever order /proc gave.
  auto main_pos = text.find("python3 train.py\n");
  auto worker = text.find("└─ worker");
  auto grandchild = text.find("  └─ grandchild");
  REQUIRE(main_pos != std::string::npos);
  REQUIRE(worker != std::string::npos);
  REQUIRE(grandchild != std::string::npos);
  CHECK(main_pos < worker);
  CHECK(worker < grandchild);
  CHECK(text.find("2.0M") != std::string::npos);
}

TEST_CASE("the state dir follows XDG", "[cli][discovery]") {
  CHECK(default_state_dir(
            fake_env({{"XDG_STATE_HOME", "/x/state"}, {"HOME", "/home/me"}}))
        == "/x/state/corral");
  CHECK(default_state_dir(fake_env({{"HOME", "/home/me"}}))
        == "/home/me/.local/state/corral");
  // A relative XDG value is invalid and ignored.
  CHECK(default_state_dir(
            fake_env({{"XDG_STATE_HOME", "rel"}, {"HOME", "/home/me"}}))
        == "/home/me/.local/state/corral");
}

TEST_CASE("the server is the flag, CORRAL_URL, the endpoint file, or the "
          "default",
          "[cli][discovery]") {
  temp_dir state;
  auto none = fake_env({});
  auto env = fake_env({{"CORRAL_URL", "http://10.0.0.1:9000/"}});
  CHECK(discover_server("", state.path(), none) == "http://127.0.0.1:8700");
  state.write("endpoint", "http://127.0.0.1:43121\n");
  CHECK(discover_server("", state.path(), none) == "http://127.0.0.1:43121");
  CHECK(discover_server("", state.path(), env) == "http://10.0.0.1:9000");
  CHECK(discover_server("localhost:1234", state.path(), env)
        == "http://localhost:1234");
  state.write("endpoint", "  \n");
  CHECK(discover_server("", state.path(), none) == "http://127.0.0.1:8700");
}

TEST_CASE("the token is the file flag, CORRAL_TOKEN, or the state dir's",
          "[cli][discovery]") {
  temp_dir state;
  auto none = fake_env({});
  CHECK(discover_token("", state.path(), none).empty());
  state.write("token", "from-state-dir\n\n");
  CHECK(discover_token("", state.path(), none) == "from-state-dir");
  auto env = fake_env({{"CORRAL_TOKEN", "from-env "}});
  CHECK(discover_token("", state.path(), env) == "from-env");
  state.write("mine", "from-flag \t\n");
  CHECK(discover_token((state / "mine"), state.path(), env) == "from-flag");
  REQUIRE_THROWS_WITH(discover_token((state / "missing"), state.path(), env),
                      Catch::StartsWith("cannot read token file"));
}

TEST_CASE("corral ps and show talk to the server", "[cli][verbs]") {
  live_daemon d;
  auto r = d.run({"ps"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto lines = lines_of(r.out);
  // The two active runs, the paused-GPUs legend, and a word on the ended
  // one left out.
  REQUIRE(lines.size() == 5);
  CHECK(lines[1].starts_with("🟢 running"));
  CHECK(lines[1].find("ppo-1") != std::string::npos);
  CHECK(column_of(lines[0], "GPUS") == column_of(lines[1], "0,1"));
  CHECK(r.out.find("sac-1") == std::string::npos);
  CHECK(lines[3] == paused_gpus_legend);
  CHECK(lines[4] == "1 ended run not shown (corral ps --all)");

  r = d.run({"ps", "--all"});
  REQUIRE(r.code == 0);
  lines = lines_of(r.out);
  REQUIRE(lines.size() == 5); // three runs and the paused-GPUs legend
  CHECK(lines[3].find("sac-1") != std::string::npos);
  CHECK(lines[4] == paused_gpus_legend);

  r = d.run({"ps", "--state", "paused,stopped", "--experiment", "sac"});
  REQUIRE(r.code == 0);
  CHECK(d.backend.last_filter.states
        == std::vector<run_state>{run_state::paused, run_state::stopped});
  CHECK(d.backend.last_filter.experiment == "sac");
  CHECK(lines_of(r.out).size() == 2);

  r = d.run({"ps", "--json"});
  REQUIRE(r.code == 0);
  CHECK(json::parse(r.out)["runs"].size() == 2);
  r = d.run({"ps", "--json", "--all"});
  REQUIRE(r.code == 0);
  CHECK(json::parse(r.out)["runs"].size() == 3);

  r = d.run({"show", "ppo-1"});
  REQUIRE(r.code == 0);
  CHECK(r.out.find("└─ python3 -c worker") != std::string::npos);

  r = d.run({"show", "nope"});
  CHECK(r.code == 1);
  CHECK(r.err == "corral: show nope: no run named 'nope'\n");
}

TEST_CASE("corral gpus talks to the server", "[cli][verbs]") {
  live_daemon d;
  auto r = d.run({"gpus"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 6);
  CHECK(lines[0].starts_with("INDEX  NAME"));
  CHECK(lines[3].find("ppo-2") != std::string::npos);
  CHECK(lines[4] == "3      -                      -            -     -");
  CHECK(lines[5] == "source: NVML");

  r = d.run({"gpus", "--json"});
  REQUIRE(r.code == 0);
  auto body = json::parse(r.out);
  CHECK(body["source"] == "nvml");
  CHECK(body["gpus"].size() == 4);

  d.backend.fail_with = make_error(ec::unavailable, "daemon shutting down");
  r = d.run({"gpus"});
  CHECK(r.code == 1);
  CHECK(r.err == "corral: gpus: daemon shutting down\n");
}

TEST_CASE("corral pause goes on after a refusal", "[cli][verbs]") {
  live_daemon d;
  auto r = d.run({"pause", "ppo-1", "sac-1", "ppo-2"});
  CHECK(r.code == 1);
  CHECK(r.out == "⏸️ paused ppo-1 (3 processes frozen)\n");
  CHECK(r.err
        == "corral: pause sac-1: run sac-1 is stopped; only a running run can "
           "be paused\n"
           "corral: pause ppo-2: run ppo-2 is paused; only a running run can "
           "be paused\n");
  r = d.run({"resume", "ppo-2"});
  CHECK(r.code == 0);
  CHECK(r.out == "🟢 resumed ppo-2\n");
}

TEST_CASE("corral stop sends grace, force and wait", "[cli][verbs]") {
  live_daemon d;
  auto r = d.run({"stop", "--grace", "5", "--force", "ppo-1"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out == "🟠 stopping ppo-1\n");
  CHECK(d.backend.last_stop.grace == millis{5000});
  CHECK(d.backend.last_stop.force);
  CHECK_FALSE(d.backend.last_stop.wait);
  r = d.run({"stop", "--wait", "ppo-2"});
  REQUIRE(r.code == 0);
  CHECK(r.out == "🔴 stopped ppo-2\n");
  CHECK_FALSE(d.backend.last_stop.grace);
  CHECK(d.run({"stop", "--grace", "-1", "ppo-1"}).code == 2);
}

TEST_CASE("corral submit sends the file, its directory and the environment",
          "[cli][verbs]") {
  live_daemon d;
  temp_dir project;
  project.write("sweep.yaml", R"(experiments:
  - name: ppo
    command: [python3, train.py, --seed, "{seed}"]
    matrix:
      seed: [1, 2]
)");
  auto file = (project / "sweep.yaml");
  auto r = d.run({"submit", file});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto lines = lines_of(r.out);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].starts_with("✓ created ppo-"));
  CHECK(lines[0].ends_with(" (queued)"));
  REQUIRE(d.backend.last_submit.size() == 2);
  CHECK(d.backend.last_submit[0].base_dir == project.path());
  const char* path = std::getenv("PATH");
  REQUIRE(path);
  CHECK(d.backend.last_submit[0].base_env.at("PATH") == path);

  r = d.run({"submit", "--dry-run", file});
  REQUIRE(r.code == 0);
  CHECK(d.backend.last_dry_run);
  lines = lines_of(r.out);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].starts_with("would create ppo-"));
  CHECK(lines[0].ends_with(": python3 train.py --seed 1"));

  project.write("bad.yaml", "experiments:\n  - name: x\n    comand: [a]\n");
  r = d.run({"submit", (project / "bad.yaml")});
  CHECK(r.code == 1);
  CHECK(r.err.find("comand") != std::string::npos);

  r = d.run({"submit", (project / "missing.yaml")});
  CHECK(r.code == 2);
}

TEST_CASE("client exit codes: 3 unreachable, 2 usage, 1 refused",
          "[cli][verbs]") {
  std::string url;
  {
    live_daemon d;
    url = d.url;
    // No token at all: the server refuses.
    temp_dir empty;
    ::unsetenv("CORRAL_TOKEN");
    auto r = run_cli({"ps", "--server", d.url, "--state-dir", empty.path()});
    CHECK(r.code == 1);
    CHECK(r.err.find("authentication required") != std::string::npos);
    r = run_cli({"ps", "--server", d.url, "--token-file", "/nonexistent/t"});
    CHECK(r.code == 2);
  }
  auto r = run_cli({"ps", "--server", url});
  CHECK(r.code == 3);
  CHECK(r.err.find("cannot connect to corral at " + url) != std::string::npos);
  CHECK(run_cli({"pause"}).code == 2);
  CHECK(run_cli({"ps", "--server", "ftp://x"}).code == 2);
}
