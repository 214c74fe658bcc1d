#include "services/spec.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <filesystem>

using namespace corral;
using namespace std::chrono_literals;

namespace {

const std::map<std::string, std::string> shell_env{{"PATH", "/venv/bin"}};

result<std::vector<run_spec>> parse(std::string_view text) {
  return parse_experiments(text, "/home/u/proj", shell_env);
}

std::vector<run_spec> runs_of(std::string_view text) {
  auto aut = parse(text);
  if (!aut)
    FAIL(aut.error().message);
  return std::move(aut).value();
}

run_spec one_run(std::string_view text) {
  auto runs = runs_of(text);
  REQUIRE(runs.size() == 1);
  return runs.front();
}

/// The message of an invalid_spec error.
std::string invalid(std::string_view text) {
  auto aut = parse(text);
  INFO(text);
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::invalid_spec);
  return aut.error().message;
}

/// The message of an error for a one-experiment file with `extra` lines
/// after name (line 2) and command (line 3).
std::string invalid_key(std::string_view extra) {
  return invalid("experiments:\n"
                 "  - name: a\n"
                 "    command: [x]\n"
                 + std::string{extra});
}

const char* design_example = R"(experiments:
  - name: ppo-cartpole                     # [a-z0-9._-], unique per daemon
    command: [python3, train.py, --lr, "{lr}", --seed, "{seed}"]   # argv, never a shell
    cwd: ./projects/rl                     # relative to the submitted file's directory
    env: {WANDB_MODE: offline}
    gpus: 1
    priority: 0
    matrix:
      lr: [3.0e-4, 1.0e-3]
      seed: [1, 2, 3]
      exclude: [{lr: 1.0e-3, seed: 3}]
      include: [{lr: 1.0e-2, seed: 7}]
    stop: {signal: SIGTERM, mode: main, grace: 30s, checkpoint_signal: SIGUSR1, checkpoint_timeout: 60s}
    progress: {format: sb3, counter: time/total_timesteps, total: 1000000}
    artifacts: {checkpoints: "ckpt/*.pt", videos: "videos/*.mp4"}
    restart: {policy: on-failure, max: 3, backoff: 10s}
    max_runtime: 12h
)";

std::vector<std::string> ids(const std::vector<run_spec>& runs) {
  std::vector<std::string> out;
  for (auto& r : runs)
    out.push_back(r.id_base);
  return out;
}

} // namespace

// ---- what parses ----

TEST_CASE("the design's example parses into six runs named by their matrix "
          "values") {
  auto runs = runs_of(design_example);
  CHECK(ids(runs)
        == std::vector<std::string>{
            "ppo-cartpole-lr3.0e-4-seed1", "ppo-cartpole-lr3.0e-4-seed2",
            "ppo-cartpole-lr3.0e-4-seed3", "ppo-cartpole-lr1.0e-3-seed1",
            "ppo-cartpole-lr1.0e-3-seed2", "ppo-cartpole-lr1.0e-2-seed7"});
  using values = std::map<std::string, std::string>;
  CHECK(runs[0].matrix == values{{"lr", "3.0e-4"}, {"seed", "1"}});
  CHECK(runs[4].matrix == values{{"lr", "1.0e-3"}, {"seed", "2"}});
  CHECK(runs[5].matrix == values{{"lr", "1.0e-2"}, {"seed", "7"}});
}

TEST_CASE("the design's example fills every field of the run spec") {
  auto aut = runs_of(design_example).front();
  CHECK(aut.experiment == "ppo-cartpole");
  CHECK(aut.command
        == std::vector<std::string>{"python3", "train.py", "--lr", "{lr}",
                                    "--seed", "{seed}"});
  CHECK(aut.cwd == "./projects/rl");
  CHECK(aut.base_dir == "/home/u/proj");
  CHECK(aut.env
        == std::map<std::string, std::string>{{"WANDB_MODE", "offline"}});
  CHECK(aut.base_env == shell_env);
  CHECK(aut.gpus == 1);
  CHECK(aut.priority == 0);
  CHECK(aut.stop.signal == SIGTERM);
  CHECK(aut.stop.mode == stop_mode::main);
  CHECK(aut.stop.grace == 30s);
  CHECK(aut.stop.checkpoint_signal == SIGUSR1);
  CHECK(aut.stop.checkpoint_timeout == 60s);
  CHECK(aut.progress.format == "sb3");
  CHECK(aut.progress.counter == "time/total_timesteps");
  CHECK(aut.progress.total == 1000000.0);
  CHECK(aut.artifacts.checkpoints == "ckpt/*.pt");
  CHECK(aut.artifacts.videos == "videos/*.mp4");
  CHECK(aut.restart.policy == restart_policy::on_failure);
  CHECK(aut.restart.max == 3);
  CHECK(aut.restart.backoff == 10s);
  CHECK(aut.max_runtime == 12h);
  CHECK(aut.executor.empty()); // the daemon's default
  CHECK(aut.slurm == slurm_spec{});
}

TEST_CASE("an experiment with only name and command gets the documented "
          "defaults") {
  auto aut = one_run("experiments:\n"
                     "  - name: plain\n"
                     "    command: [sleep, 10]\n");
  CHECK(aut.id_base == "plain");
  CHECK(aut.experiment == "plain");
  CHECK(aut.command == std::vector<std::string>{"sleep", "10"});
  CHECK(aut.cwd.empty());
  CHECK(aut.env.empty());
  CHECK(aut.matrix.empty());
  CHECK(aut.gpus == 0);
  CHECK_FALSE(aut.cpus);
  CHECK_FALSE(aut.memory_bytes);
  CHECK(aut.priority == 0);
  CHECK_FALSE(aut.max_concurrent);
  CHECK(aut.stop.signal == SIGTERM);
  CHECK(aut.stop.mode == stop_mode::main);
  CHECK(aut.stop.grace == 30s);
  CHECK_FALSE(aut.stop.checkpoint_signal);
  CHECK(aut.stop.checkpoint_timeout == 60s);
  CHECK(aut.progress.format.empty());
  CHECK(aut.artifacts.checkpoints.empty());
  CHECK(aut.restart.policy == restart_policy::never);
  CHECK(aut.restart.max == 3);
  CHECK(aut.restart.backoff == 10s);
  CHECK_FALSE(aut.max_runtime);
  CHECK(aut.executor.empty());
  CHECK(aut.slurm == slurm_spec{});
}

TEST_CASE("resources, limits and the remaining keys are read") {
  auto aut = one_run(R"(experiments:
  - name: big
    command: [python3, "-c", 1, 2.50, true]
    cpus: 2.5
    memory: 8G
    priority: -3
    max_concurrent: 2
    executor: local
    stop: {signal: 2, mode: tree, grace: 500ms}
    restart: {policy: always, max: 0, backoff: 1m30s}
    progress: {format: regex, pattern: 'step=(?<step>\d+)', counter: step, total: 5e5}
)");
  CHECK(aut.command
        == std::vector<std::string>{"python3", "-c", "1", "2.50", "true"});
  CHECK(aut.cpus == 2.5);
  CHECK(aut.memory_bytes == 8ull << 30);
  CHECK(aut.priority == -3);
  CHECK(aut.max_concurrent == 2);
  CHECK(aut.stop.signal == SIGINT);
  CHECK(aut.stop.mode == stop_mode::tree);
  CHECK(aut.stop.grace == 500ms);
  CHECK(aut.restart.policy == restart_policy::always);
  CHECK(aut.restart.max == 0);
  CHECK(aut.restart.backoff == 90s);
  CHECK(aut.progress.format == "regex");
  CHECK(aut.progress.pattern == R"(step=(?<step>\d+))");
  CHECK(aut.progress.total == 500000.0);
  CHECK(aut.executor == "local");
}

TEST_CASE("signals are read by name with or without SIG, or by number") {
  auto signal_of = [](std::string value) {
    return one_run("experiments:\n  - name: a\n    command: [x]\n"
                   "    stop: {signal: "
                   + value + "}\n")
        .stop.signal;
  };
  CHECK(signal_of("SIGINT") == SIGINT);
  CHECK(signal_of("INT") == SIGINT);
  CHECK(signal_of("sigusr2") == SIGUSR2);
  CHECK(signal_of("9") == SIGKILL);
}

TEST_CASE("csv progress follows a file") {
  auto aut = one_run(R"(experiments:
  - name: a
    command: [x]
    progress: {format: csv, file: "logs/{run}/progress.csv", counter: step}
)");
  CHECK(aut.progress.format == "csv");
  CHECK(aut.progress.file == "logs/{run}/progress.csv");
}

TEST_CASE("several experiments each give their runs, in file order") {
  auto runs = runs_of(R"(experiments:
  - name: a
    command: [x]
  - name: b
    command: [y, "{s}"]
    matrix: {s: [1, 2]}
  - name: c
    command: [z]
)");
  CHECK(ids(runs) == std::vector<std::string>{"a", "b-s1", "b-s2", "c"});
}

TEST_CASE("JSON text is accepted like YAML") {
  auto runs = runs_of(R"({
  "experiments": [
    {
      "name": "js",
      "command": ["python3", "train.py", "--seed", "{seed}"],
      "env": {"A": "1", "B": 2},
      "gpus": 2,
      "matrix": {"seed": [1, 2]},
      "stop": {"grace": "5s"}
    }
  ]
})");
  REQUIRE(runs.size() == 2);
  CHECK(runs[1].id_base == "js-seed2");
  CHECK(runs[0].env
        == std::map<std::string, std::string>{{"A", "1"}, {"B", "2"}});
  CHECK(runs[0].gpus == 2);
  CHECK(runs[0].stop.grace == 5s);
}

TEST_CASE("JSON errors name the key, line and column too") {
  CHECK(invalid(R"({"experiments": [
  {"name": "js", "command": ["x"],
   "gpus": -1}
]})")
        == "experiments[0].gpus (line 3, column 12): expected an integer >= 0, "
           "got '-1'");
}

TEST_CASE("an empty base_dir is the working directory, a relative one is "
          "refused") {
  auto aut
      = parse_experiments("experiments: [{name: a, command: [x]}]", "", {});
  REQUIRE(aut);
  CHECK(aut->front().base_dir == std::filesystem::current_path().string());
  auto relative = parse_experiments("experiments: [{name: a, command: [x]}]",
                                    "rel/dir", {});
  REQUIRE_FALSE(relative);
  CHECK(relative.error().code == ec::bad_request);
  CHECK(relative.error().message
        == "base_dir 'rel/dir' must be an absolute path");
  auto messy = parse_experiments("experiments: [{name: a, command: [x]}]",
                                 "/home/u/./proj/../proj/", {});
  REQUIRE(messy);
  CHECK(messy->front().base_dir == "/home/u/proj");
}

// ---- syntax and document errors ----

TEST_CASE("unparseable YAML is a bad request naming line and column") {
  auto aut = parse("experiments:\n"
                   "  - name: a\n"
                   "    command: [x, y\n"
                   "    gpus: 1\n");
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::bad_request);
  CHECK_THAT(aut.error().message,
             Catch::StartsWith("YAML syntax error at line 4, column 9: "));

  auto bad_map = parse("experiments:\n  - name: a: b\n");
  REQUIRE_FALSE(bad_map);
  CHECK(bad_map.error().code == ec::bad_request);
  CHECK(bad_map.error().message
        == "YAML syntax error at line 2, column 12: illegal map value");
}

TEST_CASE("unparseable JSON is a bad request naming line and column") {
  auto aut
      = parse("{\"experiments\": [\n  {\"name\": \"a\" \"command\": 1}\n]}");
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::bad_request);
  CHECK(aut.error().message
        == "YAML syntax error at line 2, column 16: end of map flow not found");
}

TEST_CASE("a stray comma is a syntax error, not a hang") {
  // yaml-cpp 0.7's LoadAll loops forever, allocating, on these.
  for (auto text : {",", ",experiments:\n  - name: a\n", "# c\n---\n  ,\n"}) {
    auto aut = parse(text);
    REQUIRE_FALSE(aut);
    CHECK(aut.error().code == ec::bad_request);
    CHECK_THAT(aut.error().message,
               Catch::Matches("YAML syntax error at line \\d, column \\d: "
                              "unexpected ','"));
  }
  CHECK(parse("# c\n---\n  ,\n").error().message
        == "YAML syntax error at line 3, column 3: unexpected ','");
  auto after_document = parse("experiments: [{name: a, command: [x]}]\n"
                              "--- ,\n");
  REQUIRE_FALSE(after_document);
  CHECK(after_document.error().code == ec::bad_request);
  CHECK(after_document.error().message
        == "YAML syntax error at line 2, column 5: unexpected ','");
  auto in_second = parse("experiments: []\n---\n[x\n");
  REQUIRE_FALSE(in_second);
  CHECK(in_second.error().code == ec::bad_request);
  CHECK_THAT(in_second.error().message,
             Catch::StartsWith("YAML syntax error at line 4"));
}

TEST_CASE("an empty document or one without experiments is invalid") {
  auto empty = "the document is empty; expected 'experiments:' with a list of "
               "experiments";
  CHECK(invalid("") == empty);
  CHECK(invalid("# only a comment\n") == empty);
  CHECK(invalid("%YAML 1.2\n---\n~\n...\n") == empty);
  CHECK(invalid("experiments:\n")
        == "experiments (line 1, column 1): expected a list of experiments, "
           "got no value");
  CHECK(invalid("experiments: []\n")
        == "experiments (line 1, column 14): the list of experiments is empty");
  CHECK(invalid("{}\n")
        == "document (line 1, column 1): missing key 'experiments' (a list of "
           "experiments)");
  CHECK(invalid("- name: a\n  command: [x]\n")
        == "document (line 1, column 1): expected a map with key "
           "'experiments', got a list");
  CHECK(invalid("hello\n")
        == "document (line 1, column 1): expected a map with key "
           "'experiments', got 'hello'");
  CHECK(invalid("experiments: {name: a}\n")
        == "experiments (line 1, column 14): expected a list of experiments, "
           "got a map");
  CHECK(invalid("experiments:\n  - just-a-string\n")
        == "experiments[0] (line 2, column 5): expected an experiment (a map "
           "with name and command), got 'just-a-string'");
}

TEST_CASE("a second YAML document is refused rather than ignored") {
  CHECK(
      invalid("experiments: [{name: a, command: [x]}]\n---\nexperiments: []\n")
      == "document (line 3, column 1): expected one YAML document, found a "
         "second one");
}

// ---- keys ----

TEST_CASE("unknown keys are refused at every level, naming the key") {
  CHECK(invalid("experiment:\n  - name: a\n")
        == "experiment (line 1, column 1): unknown key 'experiment'; did you "
           "mean 'experiments'?");
  CHECK(invalid("experiments: []\nversion: 2\n")
        == "version (line 2, column 1): unknown key 'version'; expected one "
           "of: experiments");
  CHECK(
      invalid(R"(experiments:
  - name: a
    command: [x]
  - name: b
    comand: [x]
)")
      == "experiments[1].comand (line 5, column 5): unknown key 'comand'; did "
         "you mean 'command'?");
  CHECK(invalid_key("    stop: {grace: 1s, sginal: TERM}\n")
        == "experiments[0].stop.sginal (line 4, column 23): unknown key "
           "'sginal'; did you mean 'signal'?");
  CHECK(invalid_key("    progress:\n      format: kv\n      totl: 10\n")
        == "experiments[0].progress.totl (line 6, column 7): unknown key "
           "'totl'; did you mean 'total'?");
  CHECK(invalid_key("    artifacts: {checkpoint: a}\n")
        == "experiments[0].artifacts.checkpoint (line 4, column 17): unknown "
           "key 'checkpoint'; did you mean 'checkpoints'?");
  CHECK(invalid_key("    restart: {policy: always, retries: 3}\n")
        == "experiments[0].restart.retries (line 4, column 31): unknown key "
           "'retries'; expected one of: policy, max, backoff");
  CHECK(invalid_key("    timeout: 1h\n")
        == "experiments[0].timeout (line 4, column 5): unknown key 'timeout'; "
           "expected one of: name, command, cwd, env, gpus, cpus, memory, "
           "priority, max_concurrent, matrix, stop, progress, artifacts, "
           "restart, max_runtime, executor, slurm");
}

TEST_CASE("a key one level too high says where it belongs") {
  CHECK(invalid_key("    grace: 10s\n")
        == "experiments[0].grace (line 4, column 5): unknown key 'grace'; it "
           "belongs under stop:");
  CHECK(invalid_key("    checkpoints: \"*.pt\"\n")
        == "experiments[0].checkpoints (line 4, column 5): unknown key "
           "'checkpoints'; it belongs under artifacts:");
  CHECK(invalid_key("    policy: always\n")
        == "experiments[0].policy (line 4, column 5): unknown key 'policy'; "
           "it belongs under restart:");
  CHECK(invalid_key("    exclude: []\n")
        == "experiments[0].exclude (line 4, column 5): unknown key 'exclude'; "
           "it belongs under matrix:");
}

TEST_CASE("an unknown key wins over a missing required one") {
  CHECK_THAT(invalid("experiments:\n  - name: a\n    cmd: [x]\n"),
             Catch::StartsWith("experiments[0].cmd (line 3, column 5): unknown "
                               "key 'cmd'"));
}

TEST_CASE("a missing name or command names the experiment and its line") {
  CHECK(invalid(R"(experiments:
  - name: a
    command: [x]
  - name: b
    gpus: 1
)")
        == "experiments[1] (line 4, column 5): experiment 'b' is missing "
           "required key 'command'");
  CHECK(invalid(R"(experiments:
  - command: [x]
)") == "experiments[0] (line 2, column 5): missing required key 'name'");
}

TEST_CASE("duplicate experiment names are refused") {
  CHECK(invalid(R"(experiments:
  - name: a
    command: [x]
  - command: [y]
    name: a
)")
        == "experiments[1].name (line 5, column 11): experiment name 'a' is "
           "already used by experiments[0] (line 2)");
}

TEST_CASE("duplicate keys in a map are refused") {
  CHECK(
      invalid(R"(experiments:
  - name: a
    command: [x]
    gpus: 1
    gpus: 2
)")
      == "experiments[0].gpus (line 5, column 5): duplicate key 'gpus' (first "
         "on line 4)");
  CHECK(invalid_key("    env: {A: 1, A: 2}\n")
        == "experiments[0].env.A (line 4, column 17): duplicate key 'A' (first "
           "on line 4)");
}

TEST_CASE("invalid experiment names are refused") {
  for (auto name : {"PPO", "a b", "\"\"", "-a", ".a", "_a", "a/b", "über"}) {
    auto message = invalid("experiments:\n  - name: " + std::string{name}
                           + "\n    command: [x]\n");
    CHECK_THAT(message, Catch::StartsWith("experiments[0].name (line 2, "
                                          "column 11): invalid name '"));
  }
  CHECK_THAT(invalid("experiments:\n  - name: " + std::string(101, 'a')
                     + "\n    command: [x]\n"),
             Catch::Contains("at most 100 characters"));
  CHECK(one_run("experiments:\n  - name: v1.2_b-3\n    command: [x]\n").id_base
        == "v1.2_b-3");
}

// ---- executors and slurm ----

TEST_CASE("a slurm experiment reads every sbatch setting", "[slurm]") {
  auto runs = runs_of(R"(experiments:
  - name: big
    command: [python3, train.py]
    executor: slurm
    gpus: 2
    matrix: {seed: [1, 2]}
    slurm:
      partition: gpu,gpu-long
      account: proj-42
      qos: high
      time: 1-00:00:00
      extra_args: [--constraint=a100, --exclusive, -Cfast, --mem-per-cpu=2G,
                   --time-min=10, -Q]
)");
  REQUIRE(runs.size() == 2);
  for (auto& aut : runs) {
    CHECK(aut.executor == "slurm");
    CHECK(aut.slurm.partition == "gpu,gpu-long");
    CHECK(aut.slurm.account == "proj-42");
    CHECK(aut.slurm.qos == "high");
    CHECK(aut.slurm.time == "1-00:00:00");
    CHECK(aut.slurm.extra_args
          == std::vector<std::string>{"--constraint=a100", "--exclusive",
                                      "-Cfast", "--mem-per-cpu=2G",
                                      "--time-min=10", "-Q"});
  }
}

TEST_CASE("slurm: without executor is left to the daemon's default",
          "[slurm]") {
  auto aut = one_run("experiments:\n"
                     "  - name: a\n"
                     "    command: [x]\n"
                     "    slurm: {partition: gpu}\n");
  CHECK(aut.executor.empty());
  CHECK(aut.slurm.partition == "gpu");
  CHECK(aut.slurm.account.empty());
  CHECK(aut.slurm.extra_args.empty());
  CHECK(one_run("experiments:\n"
                "  - name: a\n"
                "    command: [x]\n"
                "    slurm: {}\n")
            .slurm
        == slurm_spec{});
}

TEST_CASE("executor is local or slurm", "[slurm]") {
  CHECK(one_run("experiments:\n  - name: a\n    command: [x]\n"
                "    executor: slurm\n")
            .executor
        == "slurm");
  CHECK(invalid_key("    executor: pbs\n")
        == "experiments[0].executor (line 4, column 15): unknown executor "
           "'pbs' (use local or slurm)");
  CHECK(invalid_key("    executor: [local]\n")
        == "experiments[0].executor (line 4, column 15): expected an executor "
           "name, got a list");
}

TEST_CASE("slurm: with executor local is refused", "[slurm]") {
  auto message = "experiments[0].slurm (line 4, column 5): slurm: applies "
                 "only to executor: slurm (this experiment sets executor: "
                 "local)";
  CHECK(invalid_key("    slurm: {partition: gpu}\n    executor: local\n")
        == message);
  CHECK(invalid_key("    slurm: {}\n    executor: local\n") == message);
}

TEST_CASE("slurm takes only its own keys, as a map", "[slurm]") {
  CHECK(invalid_key("    slurm: {partition: gpu, nodes: 2}\n")
        == "experiments[0].slurm.nodes (line 4, column 29): unknown key "
           "'nodes'; expected one of: partition, account, qos, time, "
           "extra_args");
  CHECK(invalid_key("    slurm: {partiton: gpu}\n")
        == "experiments[0].slurm.partiton (line 4, column 13): unknown key "
           "'partiton'; did you mean 'partition'?");
  CHECK(invalid_key("    slurm: gpu\n")
        == "experiments[0].slurm (line 4, column 12): expected a map of "
           "sbatch settings, got 'gpu'");
  CHECK(invalid_key("    partition: gpu\n")
        == "experiments[0].partition (line 4, column 5): unknown key "
           "'partition'; it belongs under slurm:");
}

TEST_CASE("partition, account and qos are single words sbatch cannot "
          "mistake",
          "[slurm]") {
  CHECK(invalid_key("    slurm: {partition: \"\"}\n")
        == "experiments[0].slurm.partition (line 4, column 24): expected a "
           "partition name, got an empty string");
  CHECK(invalid_key("    slurm: {partition: \"gpu long\"}\n")
        == "experiments[0].slurm.partition (line 4, column 24): invalid "
           "partition 'gpu long': it must not contain spaces or control "
           "characters");
  CHECK(invalid_key("    slurm: {account: -x}\n")
        == "experiments[0].slurm.account (line 4, column 22): invalid "
           "account '-x': it must not start with '-'");
  CHECK(invalid_key("    slurm: {qos: \"a,b\"}\n")
        == "experiments[0].slurm.qos (line 4, column 18): invalid QOS 'a,b': "
           "name one QOS, without commas");
  CHECK(invalid_key("    slurm: {account: [a]}\n")
        == "experiments[0].slurm.account (line 4, column 22): expected an "
           "account name, got a list");
}

TEST_CASE("slurm.time takes Slurm's own formats", "[slurm]") {
  for (auto time :
       {"30", "0", "10:00", "1:00:00", "1-00:00:00", "2-12", "1-12:30",
        "100:00:00", "UNLIMITED", "INFINITE", "unlimited"}) {
    INFO(time);
    CHECK(one_run("experiments:\n  - name: a\n    command: [x]\n"
                  "    slurm: {time: \""
                  + std::string{time} + "\"}\n")
              .slurm.time
          == time);
  }
  // Unquoted, YAML keeps the text as written.
  CHECK(one_run("experiments:\n  - name: a\n    command: [x]\n"
                "    slurm:\n      time: 1:30:00\n")
            .slurm.time
        == "1:30:00");
  for (auto time : {"1 day", "1-", "::", "", "1h", "-1", "1:2:3:4", "1-2-3",
                    "1-1:2:3:4", ":30", "30:", "1.5"}) {
    INFO(time);
    auto message
        = invalid_key("    slurm: {time: \"" + std::string{time} + "\"}\n");
    CHECK_THAT(message,
               Catch::StartsWith("experiments[0].slurm.time (line 4, column "
                                 "19): invalid time '"
                                 + std::string{time} + "'"));
    CHECK_THAT(message, Catch::Contains("90") && Catch::Contains("10:00")
                            && Catch::Contains("D-H:M:S (1-00:00:00)")
                            && Catch::Contains("UNLIMITED"));
  }
}

TEST_CASE("slurm.extra_args is a list of sbatch options", "[slurm]") {
  CHECK(invalid_key("    slurm: {extra_args: --exclusive}\n")
        == "experiments[0].slurm.extra_args (line 4, column 25): expected a "
           "list of strings (sbatch options, one per item), got "
           "'--exclusive'; write [--exclusive]");
  CHECK(invalid_key("    slurm: {extra_args: {a: b}}\n")
        == "experiments[0].slurm.extra_args (line 4, column 25): expected a "
           "list of strings (sbatch options, one per item), got a map");
  CHECK(invalid_key("    slurm: {extra_args: [xyz]}\n")
        == "experiments[0].slurm.extra_args[0] (line 4, column 26): 'xyz' is "
           "not an sbatch option; extra_args are passed to sbatch as "
           "separate arguments, not through a shell, so give an option its "
           "value with '=' (--constraint=a100)");
  CHECK(invalid_key("    slurm: {extra_args: [--constraint, a100]}\n")
        == "experiments[0].slurm.extra_args[1] (line 4, column 40): 'a100' "
           "is not an sbatch option; extra_args are passed to sbatch as "
           "separate arguments, not through a shell; write "
           "--constraint=a100");
  CHECK_THAT(invalid_key("    slurm: {extra_args: [\"--constraint a100\"]}\n"),
             Catch::StartsWith("experiments[0].slurm.extra_args[0] (line 4, "
                               "column 26): '--constraint a100' is one "
                               "argument with a space in it"));
  CHECK_THAT(invalid_key("    slurm: {extra_args: [\"-C a100\"]}\n"),
             Catch::Contains("'-C a100' is one argument with a space"));
  for (auto arg : {"-", "--", "\"\""})
    CHECK_THAT(
        invalid_key("    slurm: {extra_args: [" + std::string{arg} + "]}\n"),
        Catch::Contains("is not an sbatch option"));
  CHECK(invalid_key("    slurm: {extra_args: [[a]]}\n")
        == "experiments[0].slurm.extra_args[0] (line 4, column 26): expected "
           "an sbatch option, got a list");
}

TEST_CASE("extra_args cannot set what Corral sets itself", "[slurm]") {
  auto refused = [](const std::string& arg) {
    return invalid_key("    slurm: {extra_args: [--exclusive, \"" + arg
                       + "\"]}\n");
  };
  auto at = std::string{"experiments[0].slurm.extra_args[1] (line 4, column "
                        "39): "};
  CHECK(refused("--mem=4G")
        == at + "'--mem=4G' (--mem) is set by Corral; use memory: instead");
  CHECK(refused("--mem")
        == at + "'--mem' is set by Corral; use memory: instead");
  CHECK(refused("-o/tmp/x")
        == at
               + "'-o/tmp/x' (--output) is set by Corral; Corral collects the "
                 "job's output into the run's logs");
  // What each option family is told to use instead.
  struct family {
    std::vector<std::string> forms;
    std::string long_name;
    std::string instead;
  };
  std::vector<family> families = {
      {{"--output", "--output=x", "-o", "-ox", "--outp=x", "-Qo", "-vvox"},
       "--output",
       "Corral collects the job's output"},
      {{"--error=x", "-e", "-ex"}, "--error", "Corral collects the job's"},
      {{"--parsable"}, "--parsable", "Corral reads sbatch's answer"},
      {{"--wrap=python x.py"}, "--wrap", "the experiment's command"},
      {{"--chdir=/x", "-D", "-D/x"}, "--chdir", "use cwd:"},
      {{"--export=ALL", "--export"}, "--export", "use env:"},
      {{"--gres=gpu:2", "--gres"}, "--gres", "use gpus:"},
      {{"--gpus=2", "-G", "-G2"}, "--gpus", "use gpus:"},
      {{"--cpus-per-task=4", "-c", "-c4"}, "--cpus-per-task", "use cpus:"},
      {{"--mem=8G", "--mem"}, "--mem", "use memory:"},
      {{"--partition=gpu", "-p", "-pgpu"},
       "--partition",
       "use slurm.partition"},
      {{"--account=x", "-A", "-Ax"}, "--account", "use slurm.account"},
      {{"--qos=high", "-q", "-qhigh"}, "--qos", "use slurm.qos"},
      {{"--time=10", "-t", "-t10"}, "--time", "use slurm.time"},
      {{"--job-name=x", "-J", "-Jx"},
       "--job-name",
       "Corral names the job after the run"},
      {{"--array=1-4", "-a", "-a1-4"}, "--array", "one job per run"},
  };
  for (auto& f : families)
    for (auto& form : f.forms) {
      INFO(form);
      auto message = refused(form);
      CHECK_THAT(message, Catch::StartsWith(at + "'" + form + "'"));
      CHECK_THAT(message, Catch::Contains(f.long_name)
                              && Catch::Contains("is set by Corral")
                              && Catch::Contains(f.instead));
    }
  // Options that only resemble refused ones pass.
  auto aut = one_run("experiments:\n  - name: a\n    command: [x]\n"
                     "    slurm:\n      extra_args: [--mem-per-gpu=8G, "
                     "--gres-flags=enforce-binding, --time-min=5, "
                     "--export-file=/x, -Cgpu, --gpus-per-node=1, -v]\n");
  CHECK(aut.slurm.extra_args.size() == 7);
}

// ---- types and values ----

TEST_CASE("wrong types and impossible values name the key, line and column") {
  SECTION("command") {
    CHECK(
        invalid(
            "experiments:\n  - name: a\n    command: python train.py --lr 3\n")
        == "experiments[0].command (line 3, column 14): expected a list of "
           "strings (an argv; no shell runs it), got 'python train.py --lr "
           "3'; write [python, train.py, --lr, 3]");
    CHECK(invalid("experiments:\n  - name: a\n    command: []\n")
          == "experiments[0].command (line 3, column 14): expected a non-empty "
             "list of strings: the program and its arguments");
    CHECK(invalid("experiments:\n  - name: a\n    command: [x, [y]]\n")
          == "experiments[0].command[1] (line 3, column 18): expected a "
             "string, got a list");
    CHECK(invalid("experiments:\n  - name: a\n    command: [x, {y: 1}]\n")
          == "experiments[0].command[1] (line 3, column 18): expected a "
             "string, got a map");
    CHECK(invalid("experiments:\n  - name: a\n    command: [\"\", y]\n")
          == "experiments[0].command[0] (line 3, column 15): the program name "
             "must not be empty");
    CHECK(invalid("experiments:\n  - name: a\n    matrix: {lr: [1]}\n"
                  "    command: [x, {lr}]\n")
          == "experiments[0].command[1] (line 4, column 18): expected a "
             "string, got a map; write \"{lr}\" in quotes, or YAML reads it as "
             "a map");
    CHECK(invalid("experiments:\n  - name: a\n    command: [x, ~]\n")
          == "experiments[0].command[1] (line 3, column 18): expected a "
             "string, got no value");
  }
  SECTION("a missing value points at its key, not the next line") {
    CHECK(invalid("experiments:\n  - name: a\n    command:\n    gpus: 1\n")
          == "experiments[0].command (line 3, column 5): expected a non-empty "
             "list of strings, got no value");
  }
  SECTION("numbers") {
    CHECK(invalid_key("    gpus: -1\n")
          == "experiments[0].gpus (line 4, column 11): expected an integer >= "
             "0, got '-1'");
    CHECK(invalid_key("    gpus: 1.5\n")
          == "experiments[0].gpus (line 4, column 11): expected an integer >= "
             "0, got '1.5'");
    CHECK(invalid_key("    gpus: [1]\n")
          == "experiments[0].gpus (line 4, column 11): expected an integer >= "
             "0, got a list");
    CHECK(invalid_key("    gpus: 99999999999\n")
          == "experiments[0].gpus (line 4, column 11): expected an integer >= "
             "0, got '99999999999'");
    CHECK(invalid_key("    cpus: 0\n")
          == "experiments[0].cpus (line 4, column 11): expected a number > 0, "
             "got '0'");
    CHECK(invalid_key("    cpus: many\n")
          == "experiments[0].cpus (line 4, column 11): expected a number > 0, "
             "got 'many'");
    CHECK(invalid_key("    priority: high\n")
          == "experiments[0].priority (line 4, column 15): expected an "
             "integer, got 'high'");
    CHECK(invalid_key("    max_concurrent: 0\n")
          == "experiments[0].max_concurrent (line 4, column 21): expected an "
             "integer >= 1, got '0'");
  }
  SECTION("memory") {
    CHECK(invalid_key("    memory: 8X\n")
          == "experiments[0].memory (line 4, column 13): invalid size '8X' "
             "(use bytes or a K, M, G or T suffix: 512K, 100M, 8G)");
    CHECK(invalid_key("    memory: 0\n")
          == "experiments[0].memory (line 4, column 13): expected a size > 0, "
             "got '0'");
    CHECK(invalid_key("    memory: -1G\n")
          == "experiments[0].memory (line 4, column 13): invalid size '-1G': "
             "must not be negative");
  }
  SECTION("env") {
    CHECK(invalid_key("    env: [A=1]\n")
          == "experiments[0].env (line 4, column 10): expected a map of NAME: "
             "value, got a list");
    CHECK(invalid_key("    env:\n      A: [1]\n")
          == "experiments[0].env.A (line 5, column 10): expected a string "
             "value, got a list");
    CHECK(invalid_key("    env:\n      A:\n")
          == "experiments[0].env.A (line 5, column 7): expected a string "
             "value, got no value");
    CHECK(invalid_key("    env: {\"A=B\": 1}\n")
          == "experiments[0].env.A=B (line 4, column 11): invalid variable "
             "name 'A=B'");
    CHECK(invalid_key("    env: {CUDA_VISIBLE_DEVICES: \"0\"}\n")
          == "experiments[0].env.CUDA_VISIBLE_DEVICES (line 4, column 11): "
             "CUDA_VISIBLE_DEVICES is set by Corral from the GPUs it assigns; "
             "ask for them with gpus: N");
    CHECK(invalid_key("    cwd: \"a\\0b\"\n")
          == "experiments[0].cwd (line 4, column 10): contains a NUL "
             "character");
  }
  SECTION("stop") {
    CHECK(invalid_key("    stop: SIGTERM\n")
          == "experiments[0].stop (line 4, column 11): expected a map, got "
             "'SIGTERM'");
    CHECK(invalid_key("    stop: {signal: SIGFOO}\n")
          == "experiments[0].stop.signal (line 4, column 20): unknown signal "
             "'SIGFOO' (use a name like SIGTERM or SIGUSR1, or a number)");
    CHECK(invalid_key("    stop: {signal: 0}\n")
          == "experiments[0].stop.signal (line 4, column 20): unknown signal "
             "'0' (use a name like SIGTERM or SIGUSR1, or a number)");
    CHECK(invalid_key("    stop: {signal: SIGSTOP}\n")
          == "experiments[0].stop.signal (line 4, column 20): SIGSTOP pauses "
             "or resumes a process; it cannot ask it to stop");
    CHECK(invalid_key("    stop: {checkpoint_signal: KILL}\n")
          == "experiments[0].stop.checkpoint_signal (line 4, column 31): "
             "SIGKILL cannot be caught, so no checkpoint could be saved");
    CHECK(invalid_key("    stop: {checkpoint_signal: SIGUSR1}\n")
          == "experiments[0].stop (line 4, column 11): checkpoint_signal "
             "needs artifacts.checkpoints, the pattern that shows when the "
             "checkpoint is saved");
    CHECK(invalid_key("    stop: {mode: group}\n")
          == "experiments[0].stop.mode (line 4, column 18): expected main or "
             "tree, got 'group'");
    CHECK(invalid_key("    stop: {checkpoint_timeout: -1s}\n")
          == "experiments[0].stop.checkpoint_timeout (line 4, column 32): "
             "invalid duration '-1s': must not be negative");
  }
  SECTION("the grace example of the brief") {
    CHECK(invalid(R"(experiments:
  - name: a
    command: [x]
    gpus: 0
    cwd: .
    env: {}
    priority: 1
    stop:
      grace:     abc
)")
          == "experiments[0].stop.grace (line 9, column 18): invalid duration "
             "'abc' (use 500ms, 30s, 5m, 1h30m or seconds)");
  }
  SECTION("restart and max_runtime") {
    CHECK(invalid_key("    restart: {policy: on_failure}\n")
          == "experiments[0].restart.policy (line 4, column 23): expected "
             "never, on-failure or always, got 'on_failure'");
    CHECK(invalid_key("    restart: {max: -1}\n")
          == "experiments[0].restart.max (line 4, column 20): expected an "
             "integer >= 0, got '-1'");
    CHECK(invalid_key("    restart: {backoff: soon}\n")
          == "experiments[0].restart.backoff (line 4, column 24): invalid "
             "duration 'soon' (use 500ms, 30s, 5m, 1h30m or seconds)");
    CHECK(invalid_key("    max_runtime: 0\n")
          == "experiments[0].max_runtime (line 4, column 18): expected a "
             "duration > 0, got '0'");
    CHECK(invalid_key("    max_runtime: 1d\n")
          == "experiments[0].max_runtime (line 4, column 18): invalid "
             "duration '1d' (use 500ms, 30s, 5m, 1h30m or seconds)");
  }
  SECTION("artifacts") {
    CHECK(invalid_key("    artifacts: {videos: \"\"}\n")
          == "experiments[0].artifacts.videos (line 4, column 25): expected a "
             "glob pattern, got an empty string");
    CHECK(invalid_key("    artifacts: {videos: [a, b]}\n")
          == "experiments[0].artifacts.videos (line 4, column 25): expected a "
             "glob pattern, got a list");
  }
}

TEST_CASE("progress needs a known format and the keys that format uses") {
  CHECK(invalid_key("    progress: {format: tensorboard}\n")
        == "experiments[0].progress.format (line 4, column 24): unknown "
           "format 'tensorboard' (use sb3, jsonl, kv, csv or regex)");
  CHECK(invalid_key("    progress: {counter: step}\n")
        == "experiments[0].progress (line 4, column 15): missing key 'format' "
           "(sb3, jsonl, kv, csv or regex)");
  CHECK(invalid_key("    progress: {format: csv}\n")
        == "experiments[0].progress (line 4, column 15): format csv needs "
           "'file' (the CSV file to follow, relative to cwd)");
  CHECK(invalid_key("    progress: {format: jsonl, file: m.jsonl}\n")
        == "experiments[0].progress.file (line 4, column 31): 'file' applies "
           "only to format csv; jsonl reads the run's output");
  CHECK(invalid_key("    progress: {format: regex}\n")
        == "experiments[0].progress (line 4, column 15): format regex needs "
           "'pattern' (a regex with named groups, like step=(?<step>\\d+))");
  CHECK(invalid_key("    progress: {format: kv, pattern: x}\n")
        == "experiments[0].progress.pattern (line 4, column 28): 'pattern' "
           "applies only to format regex");
  CHECK(invalid_key("    progress: {format: regex, pattern: 'step=(\\d+)'}\n")
        == "experiments[0].progress.pattern (line 4, column 40): the pattern "
           "names no group; name the values to read, like step=(?<step>\\d+)");
  CHECK_THAT(
      invalid_key("    progress: {format: regex, pattern: '(?<step>\\d+'}\n"),
      Catch::StartsWith("experiments[0].progress.pattern (line 4, "
                        "column 40): invalid regex: "));
  CHECK(
      invalid_key("    progress: {format: regex, pattern: '(?<a>x)(?<a>y)'}\n")
      == "experiments[0].progress.pattern (line 4, column 40): group name "
         "'a' is used twice");
  CHECK(invalid_key("    progress:\n"
                    "      format: regex\n"
                    "      pattern: 'step=(?<step>\\d+) loss=(?<loss>\\S+)'\n"
                    "      counter: steps\n")
        == "experiments[0].progress.counter (line 7, column 16): 'steps' is "
           "not a group of the pattern; groups: step, loss");
  CHECK(invalid_key("    progress: {format: sb3, total: 100}\n")
        == "experiments[0].progress.total (line 4, column 29): 'total' needs "
           "'counter' (the metric that counts toward it)");
  CHECK(invalid_key("    progress: {format: sb3, counter: s, total: 0}\n")
        == "experiments[0].progress.total (line 4, column 48): expected a "
           "number > 0, got '0'");
}

// ---- matrix ----

TEST_CASE("a matrix is the product of its lists, first key slowest") {
  auto runs = runs_of(R"(experiments:
  - name: m
    command: [x, "{b}", "{a}"]
    matrix:
      b: [x, y]
      a: [1, 2, 3]
)");
  CHECK(ids(runs)
        == std::vector<std::string>{"m-bx-a1", "m-bx-a2", "m-bx-a3", "m-by-a1",
                                    "m-by-a2", "m-by-a3"});
}

TEST_CASE("exclude removes every point that matches all its keys") {
  auto runs = runs_of(R"(experiments:
  - name: m
    command: [x]
    matrix:
      a: [1, 2]
      b: [x, y]
      c: [p, q]
      exclude:
        - {a: 1, b: y}
        - {c: q}
)");
  CHECK(ids(runs)
        == std::vector<std::string>{"m-a1-bx-cp", "m-a2-bx-cp", "m-a2-by-cp"});
}

TEST_CASE("values that read as the same number match across spellings") {
  auto runs = runs_of(R"(experiments:
  - name: m
    command: [x]
    matrix:
      lr: [0.001, 0.01]
      exclude: [{lr: 1e-3}]
      include: [{lr: 1.0e-2}, {lr: 5e-1}]
)");
  CHECK(ids(runs) == std::vector<std::string>{"m-lr0.01", "m-lr5e-1"});
}

TEST_CASE("include appends points without repeating an existing one") {
  auto runs = runs_of(R"(experiments:
  - name: m
    command: [x]
    matrix:
      a: [1, 2]
      b: [x]
      exclude: [{a: 2}]
      include:
        - {b: x, a: 1}
        - {a: 2, b: x}
        - {a: 3, b: z}
        - {a: 3, b: z}
        - {a: 1}
        - {a: 1, b: x, opt: adam}
        - {a: 1.0, b: x, opt: adam}
)");
  CHECK(ids(runs)
        == std::vector<std::string>{"m-a1-bx", "m-a2-bx", "m-a3-bz", "m-a1",
                                    "m-a1-bx-optadam"});
  CHECK(runs[4].matrix
        == std::map<std::string, std::string>{
            {"a", "1"}, {"b", "x"}, {"opt", "adam"}});
}

TEST_CASE("a matrix of includes only has one run per include") {
  auto runs = runs_of(R"(experiments:
  - name: m
    command: [x, "{model}"]
    matrix:
      include:
        - {model: small, lr: 0.1}
        - {model: big, lr: 0.01}
)");
  CHECK(ids(runs)
        == std::vector<std::string>{"m-modelsmall-lr0.1", "m-modelbig-lr0.01"});
}

TEST_CASE("run ids keep to lowercase letters, digits, dot, dash and "
          "underscore") {
  auto runs = runs_of(R"(experiments:
  - name: m
    command: [x]
    matrix:
      Data: ["/data/Set A", "ÿ", "", "x!!y"]
)");
  CHECK(ids(runs)
        == std::vector<std::string>{"m-data_data_set_a", "m-data_", "m-data",
                                    "m-datax_y"});
  CHECK(runs[0].matrix.at("Data") == "/data/Set A");
}

TEST_CASE("a matrix that cannot give runs is refused, naming the spot") {
  auto matrix = [](std::string body) {
    return invalid("experiments:\n  - name: m\n    command: [x]\n    matrix:\n"
                   + body);
  };
  CHECK(matrix("      lr: []\n")
        == "experiments[0].matrix.lr (line 5, column 11): expected a "
           "non-empty list of values, got an empty list");
  CHECK(matrix("      lr: 0.1\n")
        == "experiments[0].matrix.lr (line 5, column 11): expected a "
           "non-empty list of values, got '0.1' (write [0.1])");
  CHECK(matrix("      lr: [[1]]\n")
        == "experiments[0].matrix.lr[0] (line 5, column 12): expected a value "
           "(a string or a number), got a list");
  CHECK(matrix("      seed: [1, 2, 1.0]\n")
        == "experiments[0].matrix.seed[2] (line 5, column 20): value '1.0' "
           "repeats seed[0]");
  CHECK(matrix("      learning-rate: [1]\n")
        == "experiments[0].matrix.learning-rate (line 5, column 7): matrix key "
           "'learning-rate' must work as a placeholder: letters, digits and _, "
           "not starting with a digit");
  CHECK(matrix("      run: [1]\n")
        == "experiments[0].matrix.run (line 5, column 7): matrix key 'run' is "
           "reserved: Corral fills {run} itself");
  CHECK(matrix("      a: [1]\n      exclude: [{b: 1}]\n")
        == "experiments[0].matrix.exclude[0].b (line 6, column 18): 'b' is not "
           "a matrix key; defined: a");
  CHECK(matrix("      a: [1, 2]\n      exclude: [{a: 3}]\n")
        == "experiments[0].matrix.exclude[0].a (line 6, column 21): '3' is not "
           "one of matrix.a's values: 1, 2");
  CHECK(matrix("      a: [1, 2]\n      exclude: [{a: 1}, {a: 2}]\n")
        == "experiments[0].matrix (line 5, column 7): the matrix excludes "
           "every point");
  CHECK(matrix("      a: [1]\n      exclude: {a: 1}\n")
        == "experiments[0].matrix.exclude (line 6, column 16): expected a list "
           "of maps of matrix values, got a map");
  CHECK(matrix("      a: [1]\n      exclude: [{}]\n")
        == "experiments[0].matrix.exclude[0] (line 6, column 17): an empty "
           "exclude would remove every point; name at least one matrix key");
  CHECK(matrix("      include: [{run: 1}]\n")
        == "experiments[0].matrix.include[0].run (line 5, column 18): matrix "
           "key 'run' is reserved: Corral fills {run} itself");
  CHECK(matrix("      include: [{a: [1]}]\n")
        == "experiments[0].matrix.include[0].a (line 5, column 21): expected a "
           "value (a string or a number), got a list");
  CHECK(invalid("experiments:\n  - name: m\n    command: [x]\n    matrix: {}\n")
        == "experiments[0].matrix (line 4, column 13): the matrix defines no "
           "values: give name: [values] lists or include");
}

TEST_CASE("matrix lists too long to be meant are refused") {
  std::string values;
  for (int i = 0; i <= 10'000; ++i)
    values += (i ? ", " : "") + std::to_string(i);
  CHECK(invalid("experiments:\n  - name: m\n    command: [x]\n    matrix:\n"
                "      a: ["
                + values + "]\n")
        == "experiments[0].matrix.a (line 5, column 10): the list has more "
           "than 10000 entries");
  std::string excludes;
  for (int i = 0; i <= 1'000; ++i)
    excludes += (i ? ", " : "") + std::string{"{a: 1}"};
  CHECK(invalid("experiments:\n  - name: m\n    command: [x]\n    matrix:\n"
                "      a: [1, 2]\n      exclude: ["
                + excludes + "]\n")
        == "experiments[0].matrix.exclude (line 6, column 16): the list has "
           "more than 1000 entries; list the points to run with include "
           "instead");
}

TEST_CASE("a matrix too large to be meant is refused") {
  std::string values = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
  CHECK(invalid("experiments:\n  - name: m\n    command: [x]\n    matrix:\n"
                "      a: "
                + values + "\n      b: " + values + "\n      c: " + values
                + "\n      d: " + values + "\n      e: " + values + "\n")
        == "experiments[0].matrix (line 5, column 7): the matrix expands to "
           "more than 10000 runs");
}

// ---- placeholders ----

TEST_CASE("an unknown placeholder names itself, where it is, and what is "
          "defined") {
  CHECK(invalid(R"(experiments:
  - name: m
    matrix: {lr: [1], seed: [2]}
    command: [python3, x.py, --lr, "{lrr}"]
)")
        == "experiments[0].command[3] (line 4, column 36): unknown placeholder "
           "{lrr}; defined: lr, seed, run, experiment, latest_checkpoint; did "
           "you "
           "mean {lr}?");
  CHECK(
      invalid(R"(experiments:
  - name: m
    command: [bash, -c, "echo ${HOME}"]
)")
      == "experiments[0].command[2] (line 3, column 25): unknown placeholder "
         "{HOME}; defined: run, experiment, latest_checkpoint; write {{HOME}} "
         "for literal braces");
}

TEST_CASE("placeholders are checked in env values, cwd, artifacts and the csv "
          "file") {
  CHECK_THAT(invalid_key("    env: {OUT: \"/o/{runn}\"}\n"),
             Catch::StartsWith("experiments[0].env.OUT (line 4, column 16): "
                               "unknown placeholder {runn}; defined: run, "
                               "experiment, latest_checkpoint; did you mean "
                               "{run}?"));
  CHECK_THAT(invalid_key("    cwd: \"runs/{seed}\"\n"),
             Catch::StartsWith("experiments[0].cwd (line 4, column 10): "
                               "unknown placeholder {seed}"));
  CHECK_THAT(invalid_key("    artifacts: {checkpoints: \"{ckpt}/*.pt\"}\n"),
             Catch::StartsWith("experiments[0].artifacts.checkpoints (line 4, "
                               "column 30): unknown placeholder {ckpt}"));
  CHECK_THAT(invalid_key("    progress: {format: csv, file: \"{x}.csv\"}\n"),
             Catch::StartsWith("experiments[0].progress.file (line 4, column "
                               "35): unknown placeholder {x}"));
}

TEST_CASE("env names and other keys are not templates") {
  auto aut = one_run(R"(experiments:
  - name: a
    command: [x]
    env: {"{A}": "1"}
    stop: {signal: TERM}
)");
  CHECK(aut.env.at("{A}") == "1");
}

TEST_CASE("an included point must define every placeholder too") {
  CHECK(invalid(R"(experiments:
  - name: m
    command: [x, "{lr}", "{seed}"]
    matrix:
      lr: [1]
      seed: [1]
      include: [{lr: 2}]
)")
        == "experiments[0].command[2] (line 3, column 26): unknown placeholder "
           "{seed}; defined: lr, run, experiment, latest_checkpoint (at the "
           "point "
           "from matrix.include[0]); write {{seed}} for literal braces");
}

TEST_CASE("literal braces and escapes pass validation and stay templates") {
  auto aut = one_run(R"yaml(experiments:
  - name: a
    command: [python3, -c, "print({'a': 1})", "{{run}}", "{run}", "{}"]
    env: {J: '{"k": [1]}'}
)yaml");
  CHECK(aut.command[2] == "print({'a': 1})");
  CHECK(aut.command[3] == "{{run}}");
  CHECK(aut.command[4] == "{run}");
  CHECK(aut.env.at("J") == R"({"k": [1]})");
}

// ---- expansion ----

TEST_CASE("expanding a run's placeholders resolves every template in one "
          "pass") {
  auto runs = runs_of(R"(experiments:
  - name: ppo
    command: [python3, train.py, --lr, "{lr}", --out, "runs/{run}", "{{run}}",
              --resume, "{latest_checkpoint}", "{experiment}", "{{{lr}}}"]
    cwd: "work/{experiment}/"
    env: {RUN: "{run}", LR: "{lr}", LIT: "{{lr}}"}
    matrix: {lr: [3.0e-4]}
    artifacts: {checkpoints: "ckpt/{run}/*.pt", videos: "v/{lr}/*.mp4"}
    progress: {format: csv, file: "logs/{run}.csv"}
)");
  REQUIRE(runs.size() == 1);
  auto aut = runs.front();
  expand_run_placeholders(aut, "ppo-lr3.0e-4-2", "/ckpt/{run}.pt");
  CHECK(aut.command
        == std::vector<std::string>{"python3", "train.py", "--lr", "3.0e-4",
                                    "--out", "runs/ppo-lr3.0e-4-2", "{run}",
                                    "--resume", "/ckpt/{run}.pt", "ppo",
                                    "{3.0e-4}"});
  CHECK(aut.env
        == std::map<std::string, std::string>{
            {"RUN", "ppo-lr3.0e-4-2"}, {"LR", "3.0e-4"}, {"LIT", "{lr}"}});
  CHECK(aut.cwd == "/home/u/proj/work/ppo");
  CHECK(aut.artifacts.checkpoints == "ckpt/ppo-lr3.0e-4-2/*.pt");
  CHECK(aut.artifacts.videos == "v/3.0e-4/*.mp4");
  CHECK(aut.progress.file == "logs/ppo-lr3.0e-4-2.csv");
  CHECK(aut.base_env == shell_env);
}

TEST_CASE("latest_checkpoint expands to nothing when there is none") {
  auto aut = one_run(R"(experiments:
  - name: a
    command: [x, "--resume={latest_checkpoint}"]
)");
  expand_run_placeholders(aut, "a", "");
  CHECK(aut.command[1] == "--resume=");
}

TEST_CASE("expansion makes cwd absolute and normal against base_dir") {
  auto cwd_for = [](std::string cwd) {
    auto text = "experiments:\n  - name: a\n    command: [x]\n"
                + (cwd.empty() ? std::string{} : "    cwd: \"" + cwd + "\"\n");
    auto aut = one_run(text);
    expand_run_placeholders(aut, "a", "");
    return aut.cwd;
  };
  CHECK(cwd_for("") == "/home/u/proj");
  CHECK(cwd_for(".") == "/home/u/proj");
  CHECK(cwd_for("./projects/rl") == "/home/u/proj/projects/rl");
  CHECK(cwd_for("projects/rl/") == "/home/u/proj/projects/rl");
  CHECK(cwd_for("../other/./x") == "/home/u/other/x");
  CHECK(cwd_for("/abs/dir/") == "/abs/dir");
  CHECK(cwd_for("/") == "/");
  CHECK(cwd_for("runs/{run}") == "/home/u/proj/runs/a");
}
