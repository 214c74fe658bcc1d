// Runs handed to a real single-node Slurm (tests/slurm/cluster.sh, started
// by ctest's slurm_cluster fixture; SLURM_CONF names it). The same trainer
// trees as the local tests, through the same API.

#include <catch2/catch.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "services/command.hpp"
#include "services/slurm.hpp"
#include "tests/integration/checks.hpp"

using namespace corral::test;
using json = nlohmann::json;

namespace {

// A daemon whose experiments default to Slurm, polling squeue often so
// the tests do not wait on the 2 s default.
struct slurm_daemon {
  temp_dir conf_dir;
  std::string conf = write_conf(conf_dir, "");
  test_daemon d{{"--config", conf}};

  static std::string write_conf(const temp_dir& dir, const std::string& more) {
    auto path = dir.path() + "/corral.yaml";
    std::ofstream{path} << "executor: slurm\nslurm:\n  poll: 300ms\n" << more;
    return path;
  }
};

void require_cluster() {
  INFO("the [slurm] tests run against tests/slurm/cluster.sh: ctest starts "
       "one (fixture slurm_cluster), or export SLURM_CONF yourself");
  REQUIRE(std::getenv("SLURM_CONF") != nullptr);
}

// squeue's own word on a job.
std::string squeue_state(const std::string& job) {
  auto out = corral::run_command({"squeue", "--json"}, 30s);
  REQUIRE(out);
  REQUIRE(out->ok());
  auto jobs = corral::parse_squeue_json(out->out);
  REQUIRE(jobs);
  for (auto& j : *jobs)
    if (j.id == job)
      return j.state;
  return "";
}

std::string logs_of(test_daemon& d, const std::string& id) {
  auto r = d.call("GET", "/api/v1/runs/" + id + "/logs?tail=1000");
  if (r.status != 200)
    return "(logs answered " + std::to_string(r.status) + ": " + r.raw + ")";
  std::string text;
  for (auto& l : r.body["lines"])
    text += l["text"].get<std::string>() + "\n";
  return text;
}

// A daemon that defaults to Slurm, with one tree_trainer run running and
// every process of its tree started.
struct running_tree {
  slurm_daemon s;
  temp_dir dir;
  trainer_dir t{dir.path()};
  std::string id, job;

  explicit running_tree(const std::string& name) {
    require_cluster();
    id = submit_one(s.d, trainer_yaml(name, dir.path()));
    auto run = wait_state(s.d, id, {"running"});
    REQUIRE(run["slurm_job_id"].is_string());
    job = run["slurm_job_id"].get<std::string>();
    REQUIRE(t.wait_all_started(60s));
  }
};

// A user's stop, waited for: the run ends stopped.
void stop_and_wait(test_daemon& d, const std::string& id) {
  auto r = d.call("POST", "/api/v1/runs/" + id + "/stop", R"({"wait": true})");
  INFO(r.raw);
  REQUIRE(r.status == 200);
  CHECK(r.body["state"] == "stopped");
  CHECK(r.body["reason"] == "user");
}

bool counters_frozen(const trainer_dir& t) {
  std::map<std::string, long> before;
  for (auto& r : trainer_dir::roles)
    before[r] = t.count(r);
  std::this_thread::sleep_for(500ms);
  for (auto& r : trainer_dir::roles)
    if (t.count(r) != before[r])
      return false;
  return true;
}

} // namespace

TEST_CASE("a Slurm run: running from squeue, pause stops every process, "
          "resume continues them, stop leaves nothing",
          "[slurm]") {
  running_tree r{"tree"};
  auto& [s, dir, t, id, job] = r;
  auto run = s.d.run(id);
  CHECK(run["executor"] == "slurm");
  CHECK(run["pause_mechanism"] == "slurm");
  REQUIRE(wait_until([&] { return s.d.run(id)["node"].is_string(); }, 20s));
  CHECK(squeue_state(job) == "RUNNING");
  // The same tailer follows the job's output on the shared directory.
  REQUIRE(wait_until(
      [&] { return logs_of(s.d, id).find("step ") != std::string::npos; },
      20s));

  auto paused = s.d.call("POST", "/api/v1/runs/" + id + "/pause");
  INFO(paused.raw);
  REQUIRE(paused.status == 200);
  CHECK(paused.body["state"] == "paused");
  // Slurm suspended the job, and every process (the setsid escapee too)
  // is stopped: its counter stands still.
  CHECK(squeue_state(job) == "SUSPENDED");
  for (auto pid : t.pids()) {
    auto st = proc_state(pid);
    CHECK((st == 'T' || st == 'D'));
  }
  CHECK(counters_frozen(t));

  auto resumed = s.d.call("POST", "/api/v1/runs/" + id + "/resume");
  INFO(resumed.raw);
  REQUIRE(resumed.status == 200);
  CHECK(resumed.body["state"] == "running");
  REQUIRE(counters_advance(t));
  CHECK(squeue_state(job) == "RUNNING");

  stop_and_wait(s.d, id);
  // The shim passed the stop signal to the main process, which ran its
  // handler; what was left of the tree went with the job.
  CHECK(t.has("main.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("a stop on Slurm asks for a checkpoint first through the shim",
          "[slurm]") {
  require_cluster();
  slurm_daemon s;
  temp_dir dir;
  auto id = submit_one(
      s.d,
      "experiments:\n  - name: ckpt\n    command: [python3, "
      "\"" CORRAL_SOURCE_DIR
      "/config/examples/toy_trainer.py\", --ckpt-dir, \"ckpt/{run}\", "
      "--workers, \"1\"]\n"
      "    stop: {checkpoint_signal: SIGUSR1, checkpoint_timeout: 30s, "
      "grace: 20s}\n"
      "    artifacts: {checkpoints: \"ckpt/{run}/*.zip\"}\n",
      dir.path());
  wait_state(s.d, id, {"running"});
  REQUIRE(wait_until(
      [&] { return logs_of(s.d, id).find("Using cpu") != std::string::npos; },
      60s));
  stop_and_wait(s.d, id);
  json saved;
  auto events = s.d.call("GET", "/api/v1/runs/" + id + "/events").body;
  for (auto& e : events["events"])
    if (e["type"] == "checkpoint")
      saved = e;
  INFO(events.dump(1));
  REQUIRE(saved["data"]["saved"] == true);
  CHECK(saved["data"]["name"].get<std::string>().starts_with("ckpt/" + id));
  CHECK(logs_of(s.d, id).find("(SIGUSR1)") != std::string::npos);
}

TEST_CASE(
    "a Slurm sweep is one job per run, and exit codes and failure reasons "
    "come from the shim's exit file and Slurm",
    "[slurm]") {
  require_cluster();
  // Followed by polling, as on NFS.
  temp_dir conf_dir;
  auto conf = slurm_daemon::write_conf(conf_dir, "  log_watch: poll\n");
  test_daemon d{{"--config", conf}};
  temp_dir dir;
  auto r = d.submit("experiments:\n  - name: sweep\n    command: [sh, -c, "
                    "\"echo hello {code}; exit {code}\"]\n"
                    "    matrix: {code: [0, 3]}\n",
                    dir.path());
  INFO(r.raw);
  REQUIRE(r.status == 201);
  REQUIRE(r.body["runs"].size() == 2);
  std::map<std::string, json> ended;
  std::set<std::string> jobs;
  for (auto& run : r.body["runs"]) {
    auto id = run["id"].get<std::string>();
    ended[id] = wait_state(d, id, {"finished", "failed", "stopped"});
    jobs.insert(ended[id]["slurm_job_id"].get<std::string>());
  }
  CHECK(jobs.size() == 2);
  for (auto& [id, run] : ended) {
    INFO(run.dump(1));
    INFO(logs_of(d, id));
    if (id.ends_with("code0")) {
      CHECK(run["state"] == "finished");
      CHECK(run["exit_code"] == 0);
      CHECK(logs_of(d, id).find("hello 0") != std::string::npos);
    } else {
      CHECK(run["state"] == "failed");
      CHECK(run["reason"] == "slurm_FAILED");
      CHECK(run["exit_code"] == 3);
      CHECK(logs_of(d, id).find("hello 3") != std::string::npos);
    }
  }
}

TEST_CASE("a job cancelled outside Corral fails with reason slurm_CANCELLED",
          "[slurm]") {
  running_tree r{"outside"};
  auto& [s, dir, t, id, job] = r;
  auto out = corral::run_command({"scancel", job}, 30s);
  REQUIRE(out);
  REQUIRE(out->ok());
  auto run = wait_state(s.d, id, {"failed", "stopped", "finished"});
  INFO(run.dump(1));
  CHECK(run["state"] == "failed");
  CHECK(run["reason"] == "slurm_CANCELLED");
  REQUIRE(wait_until(
      [&] {
        for (auto pid : t.pids())
          if (alive(pid))
            return false;
        return true;
      },
      30s));
  check_tree_gone(t);
}

TEST_CASE("a restarted daemon follows its Slurm jobs again", "[slurm]") {
  require_cluster();
  temp_dir state;
  temp_dir conf_dir;
  auto conf = slurm_daemon::write_conf(conf_dir, "");
  temp_dir dir;
  trainer_dir t{dir.path()};
  std::string id, job;
  {
    test_daemon first{state.path(), {"--config", conf}, false};
    id = submit_one(first, trainer_yaml("again", dir.path()));
    job = wait_state(first, id, {"running"})["slurm_job_id"].get<std::string>();
    REQUIRE(t.wait_all_started(60s));
    first.kill9();
  }
  // The job went on without a daemon.
  REQUIRE(counters_advance(t));
  // A daemon without Slurm's commands could not follow the job: it refuses
  // to start rather than end the run as lost (and says so even when it
  // does not default to Slurm).
  auto local_conf = conf_dir / "local.yaml";
  std::ofstream{local_conf} << "executor: local\n";
  auto refused = run_corral({"serve", "--listen", "127.0.0.1:0", "--state-dir",
                             state.path(), "--config", local_conf},
                            {"PATH=/nonexistent"});
  INFO(refused.err);
  CHECK(refused.exit_code != 0);
  CHECK(refused.err.find("1 Slurm run(s) that have not ended (" + id + ")")
        != std::string::npos);
  test_daemon second{state.path(), {"--config", conf}, true};
  auto run = wait_state(second, id, {"running"});
  CHECK(run["slurm_job_id"] == job);
  auto events = second.call("GET", "/api/v1/runs/" + id + "/events").body;
  bool restart_seen = false;
  for (auto& e : events["events"])
    restart_seen = restart_seen || e["type"] == "daemon";
  CHECK(restart_seen);
  // Pause and stop work on the job it took back.
  auto paused = second.call("POST", "/api/v1/runs/" + id + "/pause");
  INFO(paused.raw);
  REQUIRE(paused.status == 200);
  CHECK(counters_frozen(t));
  stop_and_wait(second, id);
  CHECK(t.has("main.sigterm"));
  check_tree_gone(t);
}

TEST_CASE("a run whose job is still pending is queued, and a stop cancels "
          "the job",
          "[slurm]") {
  require_cluster();
  slurm_daemon s;
  temp_dir dir;
  // Held back by Slurm for an hour: PENDING, reason BeginTime.
  auto id = submit_one(s.d, trainer_yaml("later", dir.path(), "",
                                         "    slurm: {extra_args: "
                                         "[\"--begin=now+1hour\"]}\n"));
  REQUIRE(
      wait_until([&] { return s.d.run(id)["slurm_job_id"].is_string(); }, 30s));
  auto job = s.d.run(id)["slurm_job_id"].get<std::string>();
  REQUIRE(wait_until([&] { return squeue_state(job) == "PENDING"; }, 30s));
  CHECK(s.d.run(id)["state"] == "queued");
  // The pending reason is an event.
  REQUIRE(wait_until(
      [&] {
        auto events = s.d.call("GET", "/api/v1/runs/" + id + "/events").body;
        for (auto& e : events["events"])
          if (e["type"] == "slurm" && e["cause"] == "slurm")
            return true;
        return false;
      },
      30s));
  auto paused = s.d.call("POST", "/api/v1/runs/" + id + "/pause");
  CHECK(paused.status == 409);
  stop_and_wait(s.d, id);
  auto st = squeue_state(job);
  CHECK((st == "CANCELLED" || st.empty()));
  CHECK_FALSE(trainer_dir{dir.path()}.has("main.pid"));
}

TEST_CASE("a restart by policy is a new Slurm job of the same run", "[slurm]") {
  require_cluster();
  slurm_daemon s;
  temp_dir dir;
  auto id = submit_one(s.d,
                       "experiments:\n  - name: again\n    command: [sh, -c, "
                       "\"echo attempt; exit 3\"]\n"
                       "    restart: {policy: on-failure, max: 1, backoff: "
                       "500ms}\n",
                       dir.path());
  auto run = wait_state(s.d, id, {"failed"});
  REQUIRE(wait_until(
      [&] {
        run = s.d.run(id);
        return run["attempt"] == 2 && run["state"] == "failed";
      },
      60s));
  INFO(run.dump(1));
  CHECK(run["reason"] == "slurm_FAILED");
  std::set<std::string> jobs;
  auto events = s.d.call("GET", "/api/v1/runs/" + id + "/events").body;
  for (auto& e : events["events"])
    if (e["type"] == "slurm" && e["cause"] == "submitted")
      jobs.insert(e["data"]["job"].get<std::string>());
  INFO(events.dump(1));
  CHECK(jobs.size() == 2);
  CHECK(jobs.count(run["slurm_job_id"].get<std::string>()) == 1);
  // One log across both attempts.
  auto logs = logs_of(s.d, id);
  CHECK(logs.find("attempt\nattempt\n") != std::string::npos);
}

TEST_CASE("scontrol suspend and resume from outside show as paused and "
          "running, and the whole tree goes on",
          "[slurm]") {
  running_tree r{"outside"};
  auto& [s, dir, t, id, job] = r;
  auto suspend = corral::run_command({"scontrol", "suspend", job}, 30s);
  REQUIRE(suspend);
  REQUIRE(suspend->ok());
  auto run = wait_state(s.d, id, {"paused"}, 30s);
  CHECK(run["state"] == "paused");
  // Slurm's SIGTSTP reached the shim, which stopped the tree; Slurm froze
  // the rest 2 s later.
  REQUIRE(wait_until([&] { return counters_frozen(t); }, 20s));
  auto resume = corral::run_command({"scontrol", "resume", job}, 30s);
  REQUIRE(resume);
  REQUIRE(resume->ok());
  wait_state(s.d, id, {"running"}, 30s);
  REQUIRE(counters_advance(t));
  auto events = s.d.call("GET", "/api/v1/runs/" + id + "/events").body;
  int external = 0;
  for (auto& e : events["events"])
    if (e["type"] == "state" && e["cause"] == "external")
      ++external;
  INFO(events.dump(1));
  CHECK(external == 2);
}

TEST_CASE("a daemon killed before sbatch answered finds the job instead of "
          "submitting it twice",
          "[slurm]") {
  require_cluster();
  REQUIRE(std::filesystem::exists("/usr/bin/sbatch"));
  temp_dir state, conf_dir, dir, bin;
  auto conf = slurm_daemon::write_conf(conf_dir, "");
  // An sbatch that answers 3 s late: the daemon dies while it waits.
  auto wrapper = bin / "sbatch";
  std::ofstream{wrapper} << "#!/bin/sh\ntouch '" << bin / "called"
                         << "'\nsleep 3\nexec /usr/bin/sbatch \"$@\"\n";
  std::filesystem::permissions(wrapper, std::filesystem::perms::owner_all);
  std::string path = std::getenv("PATH");
  std::string id;
  {
    ::setenv("PATH", (bin.path() + ":" + path).c_str(), 1);
    test_daemon first{state.path(), {"--config", conf}, false};
    ::setenv("PATH", path.c_str(), 1);
    id = submit_one(first, trainer_yaml("lost", dir.path()));
    REQUIRE(wait_until([&] { return std::filesystem::exists(bin / "called"); },
                       30s));
    first.kill9();
  }
  auto script = state.path() + "/slurm/" + id + "/batch.sh";
  auto jobs_of_run = [&] {
    auto out = corral::run_command({"squeue", "--json"}, 30s);
    REQUIRE(out);
    auto jobs = corral::parse_squeue_json(out->out);
    REQUIRE(jobs);
    std::vector<std::string> ids;
    for (auto& j : *jobs)
      if (j.script == script)
        ids.push_back(j.id);
    return ids;
  };
  // The late sbatch went through without the daemon.
  REQUIRE(wait_until([&] { return jobs_of_run().size() == 1; }, 30s));
  auto job = jobs_of_run().front();

  test_daemon second{state.path(), {"--config", conf}, true};
  auto run = wait_state(second, id, {"running"});
  CHECK(run["slurm_job_id"] == job);
  CHECK(jobs_of_run() == std::vector<std::string>{job});
  stop_and_wait(second, id);
  check_tree_gone(trainer_dir{dir.path()});
}
