// The Slurm pieces that need no cluster: the batch job a run becomes, what
// squeue's JSON says, and how a job's end is classified. The real cluster
// is in tests/integration/slurm_test.cpp.

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "services/command.hpp"
#include "services/exit_record.hpp"
#include "services/run_machine.hpp"
#include "services/slurm.hpp"
#include "services/slurm_executor.hpp"
#include "tests/temp_dir.hpp"

using namespace corral;
using corral::test::temp_dir;

namespace {

executor_config slurm_cfg() {
  executor_config cfg;
  cfg.shim_path = "/opt/corral/corral-shim";
  cfg.slurm_dir = "/shared/corral";
  return cfg;
}

run_spec spec_of(std::vector<std::string> command) {
  run_spec s;
  s.experiment = "ppo";
  s.command = std::move(command);
  s.cwd = "/home/me/exp";
  s.executor = "slurm";
  return s;
}

bool has(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// What /bin/sh makes of the script's exec line: the argv it would run.
std::vector<std::string> argv_via_sh(const std::string& script) {
  temp_dir dir;
  auto path = dir.path() + "/job.sh";
  // The same script, with the shim replaced by a printer of its argv.
  auto exec_at = script.find("\nexec ");
  REQUIRE(exec_at != std::string::npos);
  auto first_word_end = script.find(' ', exec_at + 6);
  auto text = script.substr(0, exec_at + 6) + "printf '%s\\n'"
              + script.substr(first_word_end);
  std::ofstream{path} << text;
  auto out = run_command({"/bin/sh", path}, std::chrono::seconds{10});
  REQUIRE(out);
  REQUIRE(out->ok());
  std::vector<std::string> words;
  std::string line;
  std::istringstream in(out->out);
  while (std::getline(in, line))
    words.push_back(line);
  return words;
}

} // namespace

TEST_CASE("shell_quote makes any text one literal word", "[slurm]") {
  CHECK(shell_quote("plain") == "'plain'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("") == "''");
}

TEST_CASE("the batch script runs the shim with the command exactly as "
          "written: no shell interprets what the user wrote",
          "[slurm]") {
  auto spec = spec_of({"python3", "train.py", "--name", "a b; rm -rf / #",
                       "$(touch /tmp/pwned)", "`id`", "it's", "*", "\"q\"",
                       "{x}", "line\nbreak"});
  spec.env = {{"LR", "3e-4 $(id)"}, {"NOTE", "it's"}};
  auto job = make_batch_job(slurm_cfg(), "ppo-1", spec);
  CHECK(job.script.rfind("#!/bin/sh\n", 0) == 0);
  auto words = argv_via_sh(job.script);
  // The shim's own options first, then -- and the command untouched.
  auto dashes = std::find(words.begin(), words.end(), "--");
  REQUIRE(dashes != words.end());
  std::vector<std::string> command(dashes + 1, words.end());
  // getline splits the one argument that holds a newline.
  std::vector<std::string> expected(spec.command.begin(),
                                    spec.command.end() - 1);
  expected.push_back("line");
  expected.push_back("break");
  CHECK(command == expected);
  std::vector<std::string> opts(words.begin(), dashes);
  CHECK(has(opts, "--run-dir"));
  CHECK(has(opts, "/shared/corral/ppo-1"));
  CHECK(has(opts, "--exit-like-main"));
  CHECK(has(opts, "--suspend-file"));
  CHECK(has(opts, "/shared/corral/ppo-1/suspended"));
  CHECK(has(opts, "--forward"));
  CHECK(has(opts, std::to_string(SIGTERM)));
  // The environment is exported, quoted; Slurm's GPU choice is left alone.
  CHECK(job.script.find("export 'LR=3e-4 $(id)'") != std::string::npos);
  CHECK(job.script.find("export 'NOTE=it'\\''s'") != std::string::npos);
  CHECK(job.script.find("export 'CORRAL_RUN_ID=ppo-1'") != std::string::npos);
  CHECK(job.script.find("CUDA_VISIBLE_DEVICES") == std::string::npos);
}

TEST_CASE("the checkpoint signal is forwarded too, and slurm.shim names the "
          "shim the nodes run",
          "[slurm]") {
  auto cfg = slurm_cfg();
  cfg.slurm_shim = "/shared/bin/corral-shim";
  auto spec = spec_of({"python3", "train.py"});
  spec.stop.checkpoint_signal = SIGUSR1;
  auto job = make_batch_job(cfg, "ppo-1", spec);
  auto words = argv_via_sh(job.script);
  CHECK(job.script.find("\nexec '/shared/bin/corral-shim' '--run-dir'")
        != std::string::npos);
  auto fwd = std::find(words.begin(), words.end(), "--forward");
  REQUIRE(fwd + 1 < words.end());
  CHECK(fwd[1] == std::to_string(SIGTERM) + "," + std::to_string(SIGUSR1));
}

TEST_CASE("experiment keys become sbatch options", "[slurm]") {
  auto spec = spec_of({"python3", "train.py"});
  auto bare = make_batch_job(slurm_cfg(), "ppo-1", spec).sbatch_args;
  CHECK(has(bare, "--parsable"));
  CHECK(has(bare, "--job-name=corral-ppo-1"));
  CHECK(has(bare, "--output=/shared/corral/ppo-1/slurm-%j.out"));
  CHECK(has(bare, "--error=/shared/corral/ppo-1/slurm-%j.err"));
  CHECK(has(bare, "--chdir=/home/me/exp"));
  CHECK(has(bare, "--no-requeue"));
  for (auto& a : bare) {
    CHECK(a.rfind("--gres", 0) != 0);
    CHECK(a.rfind("--partition", 0) != 0);
  }

  spec.gpus = 2;
  spec.cpus = 3.5;
  spec.memory_bytes = 8ull * 1024 * 1024 * 1024 + 1;
  spec.slurm.partition = "gpu";
  spec.slurm.account = "lab";
  spec.slurm.qos = "high";
  spec.slurm.time = "1-00:00:00";
  spec.slurm.extra_args = {"--constraint=a100", "--exclusive"};
  auto full = make_batch_job(slurm_cfg(), "ppo-1", spec).sbatch_args;
  CHECK(has(full, "--gres=gpu:2"));
  CHECK(has(full, "--cpus-per-task=4"));
  CHECK(has(full, "--mem=8193M"));
  CHECK(has(full, "--partition=gpu"));
  CHECK(has(full, "--account=lab"));
  CHECK(has(full, "--qos=high"));
  CHECK(has(full, "--time=1-00:00:00"));
  // extra_args go last, as given.
  REQUIRE(full.size() >= 2);
  CHECK(full[full.size() - 2] == "--constraint=a100");
  CHECK(full.back() == "--exclusive");
}

TEST_CASE("squeue --json of Slurm 22.05: states, node, wait status",
          "[slurm]") {
  // Trimmed from what 22.05.8 printed (tests/slurm/cluster.sh).
  auto text = R"({"meta": {"Slurm": {"release": "22.05.8"}}, "errors": [],
    "jobs": [
      {"job_id": 2, "job_state": "PENDING", "state_reason": "Resources",
       "nodes": "", "batch_host": "", "exit_code": 0},
      {"job_id": 3, "job_state": "RUNNING", "state_reason": "None",
       "nodes": "vm", "batch_host": "vm", "exit_code": 0},
      {"job_id": 4, "job_state": "FAILED", "state_reason": "NonZeroExitCode",
       "nodes": "vm", "batch_host": "vm", "exit_code": 768},
      {"job_id": 5, "job_state": "CANCELLED", "state_reason": "None",
       "nodes": "vm", "batch_host": "vm", "exit_code": 9},
      {"job_id": 6, "job_state": "COMPLETED", "state_reason": "None",
       "nodes": "vm", "batch_host": "vm", "exit_code": 0}]})";
  auto jobs = parse_squeue_json(text);
  REQUIRE(jobs);
  REQUIRE(jobs->size() == 5);
  auto& j = *jobs;
  CHECK(j[0].id == "2");
  CHECK(j[0].state == "PENDING");
  CHECK(j[0].reason == "Resources");
  CHECK(j[0].node.empty());
  CHECK_FALSE(j[0].exit_code);
  CHECK(j[1].node == "vm");
  CHECK_FALSE(j[1].exit_code); // not final: no exit status yet
  CHECK(j[2].exit_code == 3);
  CHECK_FALSE(j[2].signal);
  CHECK(j[3].signal == 9);
  CHECK(j[4].exit_code == 0);

  CHECK(parse_squeue_json(R"({"jobs": []})")->empty());
  auto bad = parse_squeue_json("slurm_load_jobs error: Unable to contact");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("JSON") != std::string::npos);
  CHECK_FALSE(parse_squeue_json(R"({"errors": []})"));
}

TEST_CASE("final Slurm states", "[slurm]") {
  for (auto s : {"PENDING", "RUNNING", "SUSPENDED", "COMPLETING", ""})
    CHECK_FALSE(is_final_slurm_state(s));
  for (auto s : {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY",
                 "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"})
    CHECK(is_final_slurm_state(s));
}

TEST_CASE("a Slurm job's end: Corral's intent first, then Slurm's state, "
          "then the exit record",
          "[slurm]") {
  exit_facts f;
  f.job_id = "42";
  f.recorded = true;

  SECTION("COMPLETED with exit 0 is finished, as locally") {
    f.cluster_state = "COMPLETED";
    auto e = classify_ending(f, std::nullopt);
    CHECK(e.state == run_state::finished);
    CHECK(e.reason == "exit");
    CHECK(e.exit_code == 0);
  }
  SECTION("FAILED is failed with reason slurm_FAILED and the exit code") {
    f.cluster_state = "FAILED";
    f.code = 3;
    auto e = classify_ending(f, std::nullopt);
    CHECK(e.state == run_state::failed);
    CHECK(e.reason == "slurm_FAILED");
    CHECK(e.exit_code == 3);
    CHECK(e.message.find("job 42") != std::string::npos);
  }
  SECTION("OUT_OF_MEMORY and NODE_FAIL name the state; without a record "
          "the exit status is Slurm's") {
    f.recorded = false;
    f.cluster_state = "NODE_FAIL";
    f.cluster_signal = SIGKILL;
    auto e = classify_ending(f, std::nullopt);
    CHECK(e.state == run_state::failed);
    CHECK(e.reason == "slurm_NODE_FAIL");
    CHECK(e.signal == "SIGKILL");
    f.cluster_state = "OUT_OF_MEMORY";
    f.cluster_signal.reset();
    f.cluster_exit_code = 0;
    CHECK(classify_ending(f, std::nullopt).reason == "slurm_OUT_OF_MEMORY");
  }
  SECTION("TIMEOUT is failed with reason timeout") {
    f.cluster_state = "TIMEOUT";
    f.signaled = true;
    f.code = SIGTERM;
    auto e = classify_ending(f, std::nullopt);
    CHECK(e.state == run_state::failed);
    CHECK(e.reason == "timeout");
    CHECK(e.message.find("time limit") != std::string::npos);
  }
  SECTION("CANCELLED: stopped when Corral cancelled it, failed otherwise") {
    f.cluster_state = "CANCELLED";
    f.recorded = false;
    auto mine = classify_ending(f, std::string{"user"});
    CHECK(mine.state == run_state::stopped);
    CHECK(mine.reason == "user");
    CHECK(mine.message.find("job 42") != std::string::npos);
    auto theirs = classify_ending(f, std::nullopt);
    CHECK(theirs.state == run_state::failed);
    CHECK(theirs.reason == "slurm_CANCELLED");
  }
  SECTION("a main process that exits 0 on Corral's SIGTERM shows COMPLETED; "
          "Corral's intent makes it stopped") {
    f.cluster_state = "COMPLETED";
    auto e = classify_ending(f, std::string{"user"});
    CHECK(e.state == run_state::stopped);
    CHECK(e.reason == "user");
  }
  SECTION("an exec error stays an exec error") {
    f.cluster_state = "FAILED";
    f.exec_error = true;
    f.code = 127;
    f.message = "no such file";
    auto e = classify_ending(f, std::nullopt);
    CHECK(e.reason == "exec_error");
  }
  SECTION("COMPLETED without an exit record is lost") {
    f.cluster_state = "COMPLETED";
    f.recorded = false;
    CHECK(classify_ending(f, std::nullopt).reason == "lost");
  }
}

TEST_CASE("a local directory is not a network filesystem", "[slurm]") {
  temp_dir dir;
  std::string name;
  CHECK_FALSE(is_network_filesystem(dir.path(), &name));
  CHECK(name.empty());
}

TEST_CASE("run_command keeps stdout, stderr and the exit code, and kills "
          "what runs too long",
          "[slurm]") {
  auto ok = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"},
                        std::chrono::seconds{10});
  REQUIRE(ok);
  CHECK(ok->code == 3);
  CHECK(ok->out == "out\n");
  CHECK(ok->err == "err\n");
  CHECK(ok->failure() == "err");
  auto slow = run_command({"sleep", "30"}, std::chrono::milliseconds{200});
  REQUIRE(slow);
  CHECK(slow->timed_out);
  CHECK_FALSE(slow->ok());
  auto missing = run_command({"no-such-program-xyz"}, std::chrono::seconds{5});
  // posix_spawnp reports a missing program either way: as an error, or as
  // the child's exit 127.
  CHECK((!missing || missing->code == 127));
  CHECK(on_path("sh"));
  CHECK_FALSE(on_path("no-such-program-xyz"));
}

namespace {

// A Slurm executor whose commands are kept, not run: the protocol alone.
struct recorded_executor {
  temp_dir dir;
  std::vector<slurm_request> sent;
  std::unique_ptr<slurm_executor> exec;

  explicit recorded_executor(bool look_first = false) {
    executor_config cfg;
    cfg.shim_path = "/opt/corral-shim";
    cfg.slurm_dir = dir.path();
    auto spec = spec_of({"python3", "train.py"});
    spec.cwd = dir.path();
    auto launched = slurm_executor::launch(
        cfg, "r1", spec, false, [this](slurm_request r) { sent.push_back(r); },
        look_first);
    REQUIRE(launched);
    exec = std::move(*launched);
  }
  static result<command_output> answer(int code, std::string out = "",
                                       std::string err = "") {
    command_output o;
    o.code = code;
    o.out = std::move(out);
    o.err = std::move(err);
    return o;
  }
  std::string run_file(const std::string& name) const {
    return dir.path() + "/r1/" + name;
  }
  const std::vector<std::string>& last() const {
    return sent.back().commands.back();
  }
};

slurm_job job_in(std::string state) {
  slurm_job j;
  j.id = "42";
  j.state = std::move(state);
  j.node = "gpu07";
  return j;
}

} // namespace

TEST_CASE("a Slurm attempt: sbatch of the written script, then the job id "
          "from --parsable",
          "[slurm]") {
  recorded_executor r;
  REQUIRE(r.sent.size() == 1);
  CHECK(r.sent[0].tag == "submit");
  auto& sbatch = r.sent[0].commands.at(0);
  CHECK(sbatch.front() == "sbatch");
  CHECK(sbatch.back() == r.run_file("batch.sh"));
  CHECK(std::filesystem::exists(r.run_file("batch.sh")));
  auto refused = r.exec->on_answer(
      "submit", recorded_executor::answer(1, "",
                                          "sbatch: error: invalid "
                                          "partition specified: gpu\n"));
  REQUIRE(refused.failure);
  CHECK(refused.failure->message
        == "sbatch refused the job: sbatch: error: invalid partition "
           "specified: gpu");
  auto ok = r.exec->on_answer("submit", recorded_executor::answer(0, "42\n"));
  CHECK(ok.submitted);
  CHECK(r.exec->job_id() == "42");
  CHECK(r.exec->identity_json()["job_id"] == "42");
  CHECK(slurm_executor::names_slurm(r.exec->identity_json()));
}

TEST_CASE("a Slurm pause waits for the shim's word, then suspends; resume "
          "continues through Slurm and the shim",
          "[slurm]") {
  recorded_executor r;
  r.exec->on_answer("submit", recorded_executor::answer(0, "42\n"));
  auto now = slurm_executor::clock::now();
  r.exec->observe(job_in("RUNNING"), now);
  CHECK(r.exec->node() == "gpu07");

  REQUIRE(r.exec->freeze());
  CHECK(r.sent.back().tag == "tstp");
  CHECK(
      r.last()
      == std::vector<std::string>{"scancel", "--batch", "--signal=TSTP", "42"});
  CHECK_FALSE(r.exec->advance_pause()); // the shim has not answered
  CHECK_FALSE(r.exec->frozen());
  std::ofstream{r.run_file("suspended")} << "partial 1/3 1700000000000\n";
  CHECK_FALSE(r.exec->advance_pause()); // not every process stopped
  std::ofstream{r.run_file("suspended")} << "stopped 3 1700000000000\n";
  CHECK(r.exec->advance_pause());
  CHECK(r.last() == std::vector<std::string>{"scontrol", "suspend", "42"});
  CHECK_FALSE(r.exec->frozen()); // Slurm has not answered
  r.exec->on_answer("suspend", recorded_executor::answer(0));
  CHECK(r.exec->frozen());
  CHECK(r.exec->main_stopped());

  REQUIRE(r.exec->thaw());
  CHECK(r.sent.back().tag == "resume");
  REQUIRE(r.sent.back().commands.size() == 2);
  CHECK(r.sent.back().commands[0]
        == std::vector<std::string>{"scontrol", "resume", "42"});
  CHECK(
      r.last()
      == std::vector<std::string>{"scancel", "--batch", "--signal=CONT", "42"});
  auto resumed = r.exec->on_answer("resume", recorded_executor::answer(0));
  CHECK_FALSE(resumed.failure);
  // A poll from before the resume can no longer read as a suspend.
  CHECK_FALSE(r.exec->main_stopped());
}

TEST_CASE("without operator rights the shim's stop is the pause, and the "
          "run says so",
          "[slurm]") {
  recorded_executor r;
  r.exec->on_answer("submit", recorded_executor::answer(0, "42\n"));
  REQUIRE(r.exec->freeze());
  std::ofstream{r.run_file("suspended")} << "stopped 2 1700000000000\n";
  REQUIRE(r.exec->advance_pause());
  auto out = r.exec->on_answer(
      "suspend", recorded_executor::answer(
                     1, "", "Access/permission denied for job 42\n"));
  CHECK(out.note.find("scontrol suspend was refused") != std::string::npos);
  CHECK(out.note.find("RUNNING") != std::string::npos);
  CHECK(r.exec->frozen());
  // A restarted daemon sees the same pause.
  auto again = slurm_executor::adopt(executor_config{}, "r1",
                                     r.exec->identity_json(), nullptr);
  REQUIRE(again);
  CHECK((*again)->frozen());
  REQUIRE(r.exec->thaw());
  // Nothing to resume in Slurm: only the shim continues its tree.
  REQUIRE(r.sent.back().commands.size() == 1);
  CHECK(
      r.last()
      == std::vector<std::string>{"scancel", "--batch", "--signal=CONT", "42"});
}

TEST_CASE("stop signals go to the shim, the tree signal to the whole step, "
          "and the kill is a plain scancel",
          "[slurm]") {
  recorded_executor r;
  r.exec->on_answer("submit", recorded_executor::answer(0, "42\n"));
  REQUIRE(r.exec->signal_main(SIGUSR1));
  CHECK(
      r.last()
      == std::vector<std::string>{"scancel", "--batch", "--signal=USR1", "42"});
  r.exec->signal_tree(SIGTERM);
  CHECK(
      r.last()
      == std::vector<std::string>{"scancel", "--full", "--signal=TERM", "42"});
  r.exec->kill_tree();
  CHECK(r.last() == std::vector<std::string>{"scancel", "42"});
}

TEST_CASE("a Slurm attempt ends with the exit file, or a few seconds after "
          "the final state without one",
          "[slurm]") {
  recorded_executor r;
  r.exec->on_answer("submit", recorded_executor::answer(0, "42\n"));
  auto t0 = slurm_executor::clock::now();
  r.exec->observe(job_in("RUNNING"), t0);
  CHECK_FALSE(r.exec->ended(t0));
  auto done = job_in("FAILED");
  done.exit_code = 3;
  r.exec->observe(done, t0);
  CHECK_FALSE(r.exec->ended(t0)); // the exit file may be on its way
  CHECK(r.exec->ended(t0 + std::chrono::seconds{4}));
  auto facts = r.exec->collect_exit();
  CHECK_FALSE(facts.recorded);
  CHECK(facts.cluster_state == "FAILED");
  CHECK(facts.cluster_exit_code == 3);
  CHECK(facts.job_id == "42");

  exit_record rec{"exited", 3, 77, "", 1};
  REQUIRE(write_exit_record(r.run_file(""), rec));
  CHECK(r.exec->ended(t0));
  facts = r.exec->collect_exit();
  CHECK(facts.recorded);
  CHECK(facts.code == 3);
  CHECK(classify_ending(facts, std::nullopt).reason == "slurm_FAILED");

  // squeue forgot the job (MinJobAge passed while no daemon looked).
  recorded_executor gone;
  gone.exec->on_answer("submit", recorded_executor::answer(0, "43\n"));
  gone.exec->observe(std::nullopt, t0);
  CHECK(gone.exec->ended(t0 + std::chrono::seconds{4}));
  CHECK(gone.exec->collect_exit().cluster_state.empty());
}

TEST_CASE("without --json, squeue's format lines give states, reasons and "
          "hosts",
          "[slurm]") {
  auto jobs = parse_squeue_lines("11|PENDING|BeginTime|n/a\n"
                                 "12|RUNNING|None|gpu07\n"
                                 "13|FAILED|NonZeroExitCode|gpu07\n");
  REQUIRE(jobs);
  REQUIRE(jobs->size() == 3);
  CHECK((*jobs)[0].state == "PENDING");
  CHECK((*jobs)[0].reason == "BeginTime");
  CHECK((*jobs)[0].node.empty());
  CHECK((*jobs)[1].node == "gpu07");
  CHECK((*jobs)[2].state == "FAILED");
  CHECK_FALSE((*jobs)[2].exit_code); // from the exit file instead
  CHECK(parse_squeue_lines("")->empty());
  auto bad = parse_squeue_lines("JOBID PARTITION NAME\n");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("id|state|reason|host") != std::string::npos);

  CHECK(squeue_lacks_json("squeue: unrecognized option '--json'"));
  CHECK_FALSE(squeue_lacks_json("slurm_load_jobs error: Unable to contact "
                                "slurm controller"));
  CHECK(squeue_command(true)[1] == "--json");
  CHECK(squeue_command(false).back() == "--format=%i|%T|%r|%B");
}

TEST_CASE("after a lost sbatch answer, squeue is asked first: the job of "
          "this run's script is taken, an ended one is not run again",
          "[slurm]") {
  auto listing = [](const std::string& script) {
    return R"({"jobs": [{"job_id": 7, "job_state": "RUNNING",
                         "command": "/elsewhere/batch.sh"},
                        {"job_id": 8, "job_state": "PENDING",
                         "command": ")"
           + script + R"("}]})";
  };
  SECTION("found: followed, not submitted again") {
    recorded_executor r{true};
    REQUIRE(r.sent.size() == 1);
    CHECK(r.sent[0].tag == "find");
    CHECK(r.sent[0].commands.at(0).at(1) == "--json");
    auto out = r.exec->on_answer(
        "find", recorded_executor::answer(0, listing(r.run_file("batch.sh"))));
    CHECK(out.submitted);
    CHECK(out.note.find("found Slurm job 8") != std::string::npos);
    CHECK(r.exec->job_id() == "8");
    CHECK(r.sent.size() == 1);
  }
  SECTION("not found: submitted now") {
    recorded_executor r{true};
    auto out = r.exec->on_answer(
        "find", recorded_executor::answer(0, listing("/other/batch.sh")));
    CHECK_FALSE(out.submitted);
    CHECK_FALSE(out.failure);
    REQUIRE(r.sent.size() == 2);
    CHECK(r.sent[1].tag == "submit");
    CHECK(std::filesystem::exists(r.run_file("batch.sh")));
  }
  SECTION("not found, but its exit file is there: it ran and ended") {
    recorded_executor r{true};
    std::filesystem::create_directories(r.run_file(""));
    REQUIRE(
        write_exit_record(r.run_file(""), exit_record{"exited", 0, 5, "", 1}));
    auto out = r.exec->on_answer(
        "find", recorded_executor::answer(0, R"({"jobs": []})"));
    CHECK(out.ended_unseen);
    CHECK(r.sent.size() == 1);
    CHECK(r.exec->collect_exit().recorded);
  }
}
