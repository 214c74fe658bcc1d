// The daemon dies (SIGKILL, SIGTERM) and a new one on the same state dir
// takes its runs back: states, pids, exit codes, log lines and metrics are
// what they must be. Real daemons, real process trees, real HTTP.
//
// Seeds: the random timings come from a seeded PRNG; the seed is printed
// with every failure and can be forced with CORRAL_RESTART_SEED.

#include <catch2/catch.hpp>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <iostream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "services/cgroup.hpp"
#include "services/proc.hpp"
#include "tests/integration/checks.hpp"

using namespace corral::test;
using nlohmann::json;

namespace {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

constexpr auto counter_trainer = CORRAL_FIXTURES_DIR "/counter_trainer.py";

std::uint32_t pick_seed() {
  if (auto* s = std::getenv("CORRAL_RESTART_SEED"))
    return static_cast<std::uint32_t>(std::stoul(s));
  return std::random_device{}();
}

long ms_since(clock_type::time_point t) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_type::now()
                                                            - t)
          .count());
}

// One counter_trainer run; `extra_keys` are more YAML lines of the
// experiment (indented by four spaces).
std::string counter_yaml(const std::string& name,
                         const std::vector<std::string>& args = {},
                         const std::string& extra_keys = "") {
  json cmd = {"python3", counter_trainer};
  for (auto& a : args)
    cmd.push_back(a);
  return "experiments:\n  - name: " + name + "\n    command: " + cmd.dump()
         + "\n    progress: {format: regex, pattern: 'step (?<step>\\d+)', "
           "counter: step}\n"
         + extra_keys;
}

bool ended(const std::string& state) {
  return state == "stopped" || state == "finished" || state == "failed";
}

std::string state_of(const json& run) {
  return run.contains("state") && run["state"].is_string()
             ? run["state"].get<std::string>()
             : "(no state: " + run.dump() + ")";
}

int pid_of(const json& run) {
  return run.contains("pid") && run["pid"].is_number() ? run["pid"].get<int>()
                                                       : 0;
}

// The latest value of the run's step counter, -1 before the first.
long step_of(const json& run) {
  if (!run.contains("progress") || !run["progress"].is_object())
    return -1;
  auto& m = run["progress"]["metrics"];
  if (!m.is_object() || !m.contains("step") || !m["step"].is_number())
    return -1;
  return m["step"].get<long>();
}

std::set<int> process_pids(const json& run) {
  std::set<int> out;
  if (run.contains("processes") && run["processes"].is_array())
    for (auto& p : run["processes"])
      out.insert(p["pid"].get<int>());
  return out;
}

// The directory of the process's cgroup v2, or "" when there is none.
std::string cgroup_dir_of(int pid) {
  auto mount = corral::find_cgroup2_mount();
  auto rel = corral::proc_cgroup2_path(pid);
  if (!mount || !rel || *rel == "/")
    return "";
  return *mount + *rel;
}

// The daemons here pause with the cgroup freezer and the tests read it
// (and use cgroup.kill): without a writable v2 hierarchy they cannot run.
bool cgroups_usable() {
  auto mount = corral::find_cgroup2_mount();
  if (mount && ::access((*mount + "/cgroup.procs").c_str(), W_OK) == 0)
    return true;
  WARN("no writable cgroup v2 hierarchy here; the restart tests need one");
  return false;
}

// cgroup.events of the process's cgroup says frozen 1.
bool cgroup_frozen(int pid) {
  auto dir = cgroup_dir_of(pid);
  if (dir.empty())
    return false;
  auto events = corral::read_small_file(dir + "/cgroup.events");
  return events && events->find("frozen 1") != std::string::npos;
}

// The process runs with CORRAL_RUN_ID=<id> in its environment: one of the
// run's, and not a recycled pid of someone else.
bool belongs_to_run(int pid, const std::string& id) {
  auto env
      = corral::read_small_file("/proc/" + std::to_string(pid) + "/environ");
  if (!env)
    return false;
  std::string want = "CORRAL_RUN_ID=" + id;
  std::size_t at = 0;
  while (at < env->size()) {
    auto end = env->find('\0', at);
    if (end == std::string::npos)
      end = env->size();
    if (env->compare(at, end - at, want) == 0)
      return true;
    at = end + 1;
  }
  return false;
}

std::string slurp(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The complete lines of a text (an unterminated last one may be half
// written).
std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (auto nl = text.find('\n'); nl != std::string::npos;
       nl = text.find('\n', at)) {
    out.push_back(text.substr(at, nl - at));
    at = nl + 1;
  }
  return out;
}

// "step N" lines must be exactly 1, 2, ..., K: `problem` names the first
// gap or duplicate; other lines are skipped.
struct step_lines {
  long count = 0;
  std::string problem;
};

step_lines check_steps(const std::vector<std::string>& lines) {
  step_lines out;
  for (auto& l : lines) {
    if (l.rfind("step ", 0) != 0)
      continue;
    long n = std::stol(l.substr(5));
    if (n != out.count + 1 && out.problem.empty())
      out.problem = "after step " + std::to_string(out.count) + " comes '" + l
                    + "' (" + (n <= out.count ? "a duplicate" : "a gap") + ")";
    out.count = std::max(out.count, n);
  }
  return out;
}

long count_prefix(const std::vector<std::string>& lines,
                  const std::string& prefix) {
  long n = 0;
  for (auto& l : lines)
    if (l.rfind(prefix, 0) == 0)
      ++n;
  return n;
}

// Polls `pred` every 20 ms until it holds or `limit` passes.
bool poll(const std::function<bool()>& pred,
          std::chrono::milliseconds limit = 20s) {
  auto end = clock_type::now() + limit;
  while (clock_type::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

// Successive daemons on one state dir, and the runs' pids as the API
// listed them, so that whatever is left at the end can be stopped.
class daemon_lives {
public:
  daemon_lives() = default;
  daemon_lives(const daemon_lives&) = delete;
  daemon_lives& operator=(const daemon_lives&) = delete;
  ~daemon_lives() {
    if (cleaned_)
      return;
    try {
      clean_up();
    } catch (...) {
    }
  }

  const std::string& dir() const { return dir_.path(); }
  std::string run_dir(const std::string& id) const {
    return dir_ / ("runs/" + id);
  }
  test_daemon& d() { return *d_; }
  // The end of what the daemons on this state dir logged.
  std::string log_tail(std::size_t n = 4000) const {
    auto all = slurp(dir_ / "daemon.err");
    return all.size() > n ? "…" + all.substr(all.size() - n) : all;
  }

  // A daemon on the state dir (the previous one must be gone).
  test_daemon& start(bool stop_runs_on_exit = false) {
    d_.reset();
    d_.emplace(dir_.path(), std::vector<std::string>{}, stop_runs_on_exit);
    return *d_;
  }
  void kill9() {
    if (d_)
      d_->kill9();
    d_.reset();
  }
  int terminate() {
    int rc = d_ ? d_->terminate() : -1;
    d_.reset();
    return rc;
  }

  json get(const std::string& id) {
    auto r = d_->call("GET", "/api/v1/runs/" + id);
    note(r.body);
    return r.body;
  }
  // GET /api/v1/runs: the runs by id, in the order listed.
  std::vector<json> list(int* status = nullptr) {
    auto r = d_->call("GET", "/api/v1/runs");
    if (status)
      *status = r.status;
    std::vector<json> out;
    if (r.status == 200 && r.body.contains("runs"))
      for (auto& run : r.body["runs"]) {
        note(run);
        out.push_back(run);
      }
    return out;
  }
  std::string submit(const std::string& yaml) {
    auto r = d_->submit(yaml);
    INFO("submit answered " << r.status << ": " << r.raw);
    REQUIRE(r.status == 201);
    REQUIRE(r.body["runs"].size() == 1);
    note(r.body["runs"][0]);
    return r.body["runs"][0]["id"].get<std::string>();
  }
  json events(const std::string& id) {
    return d_->call("GET", "/api/v1/runs/" + id + "/events").body["events"];
  }
  // Waits until the run satisfies pred; fails naming `what` and what the
  // API said last.
  json wait_for(const std::string& id, const std::string& what,
                const std::function<bool(const json&)>& pred,
                std::chrono::milliseconds limit = 20s) {
    json run;
    bool ok = poll(
        [&] {
          run = get(id);
          return pred(run);
        },
        limit);
    INFO("waited " << limit.count() << " ms for run " << id << " to be " << what
                   << "; the API said last: " << run.dump());
    REQUIRE(ok);
    return run;
  }
  json wait_running(const std::string& id) {
    // Running and counting: its SIGTERM handler is installed by then.
    return wait_for(id, "running with a first step", [](const json& r) {
      return state_of(r) == "running" && pid_of(r) > 0 && step_of(r) >= 1;
    });
  }
  void note(const json& run) {
    if (!run.is_object() || !run.contains("id") || !run["id"].is_string())
      return;
    auto& pids = pids_[run["id"].get<std::string>()];
    if (auto p = pid_of(run)) {
      pids.insert(p);
      if (cgroup_parent_.empty()) {
        auto cg = cgroup_dir_of(p);
        if (cg.find("/corral-") != std::string::npos)
          cgroup_parent_ = fs::path{cg}.parent_path().string();
      }
    }
    for (auto p : process_pids(run))
      pids.insert(p);
  }

  // Every stdout line of the run through the API, page by page from the
  // start (since=0-0).
  std::vector<std::string> api_stdout(const std::string& id) {
    std::vector<std::string> out;
    std::string cursor = "0-0";
    for (int page = 0; page < 100000; ++page) {
      auto r = d_->call("GET", "/api/v1/runs/" + id
                                   + "/logs?stream=stdout&since=" + cursor);
      INFO("logs of " << id << " since " << cursor << ": " << r.status << " "
                      << r.raw.substr(0, 300));
      REQUIRE(r.status == 200);
      auto& lines = r.body["lines"];
      if (lines.empty())
        break;
      for (auto& l : lines)
        out.push_back(l["text"].get<std::string>());
      auto next = r.body["cursor"].get<std::string>();
      REQUIRE(next != cursor);
      cursor = next;
    }
    return out;
  }
  std::vector<std::string> file_stdout(const std::string& id) const {
    return split_lines(slurp(run_dir(id) + "/stdout.log"));
  }

  // Stops every run through the API (forced, waited for), ends the
  // daemon, then kills whatever of the runs the API listed is still
  // alive, through its cgroup. Returns what had to be killed so.
  std::vector<std::string> clean_up() {
    cleaned_ = true;
    if (!d_ || !d_->running()) {
      d_.reset();
      try {
        start(false);
      } catch (const std::exception&) {
        d_.reset();
      }
    }
    if (d_) {
      for (auto& run : list())
        if (!ended(state_of(run)))
          d_->call("POST",
                   "/api/v1/runs/" + run["id"].get<std::string>() + "/stop",
                   R"({"force": true, "wait": true})");
      poll(
          [&] {
            for (auto& run : list())
              if (!ended(state_of(run)))
                return false;
            return true;
          },
          10s);
      terminate();
    }
    std::vector<std::string> killed;
    for (auto& [id, pids] : pids_)
      for (int pid : pids) {
        if (!alive(pid) || !belongs_to_run(pid, id))
          continue;
        auto cg = cgroup_dir_of(pid);
        killed.push_back(id + ":" + std::to_string(pid)
                         + (cg.empty() ? "" : " in " + cg));
        if (!cg.empty() && cg.find("/corral-") != std::string::npos)
          std::ofstream{cg + "/cgroup.kill"} << "1";
        else
          ::kill(pid, SIGKILL);
      }
    poll(
        [&] {
          for (auto& [id, pids] : pids_)
            for (int pid : pids)
              if (alive(pid) && belongs_to_run(pid, id))
                return false;
          return true;
        },
        5s);
    pids_.clear();
    // The daemons' cgroup (named after this state dir) and what is left
    // in it: empty directories only (rmdir refuses a cgroup with members).
    if (!cgroup_parent_.empty() && fs::exists(cgroup_parent_)) {
      std::error_code ignored;
      for (auto& entry : fs::directory_iterator{cgroup_parent_, ignored})
        if (entry.is_directory())
          fs::remove(entry.path(), ignored);
      fs::remove(cgroup_parent_, ignored);
    }
    return killed;
  }

  // The end of a test: nothing may be left behind.
  void finish() {
    auto killed = clean_up();
    std::string list;
    for (auto& k : killed)
      list += " " + k;
    INFO("processes left after every run was stopped:" << list);
    CHECK(killed.empty());
  }

private:
  temp_dir dir_;
  std::optional<test_daemon> d_;
  std::map<std::string, std::set<int>> pids_;
  std::string cgroup_parent_;
  bool cleaned_ = false;
};

// The run's daemon/restart events, after checking that the events are
// numbered 1, 2, ... with neither gap nor repeat.
std::vector<json> restart_events(daemon_lives& e, const std::string& id) {
  auto events = e.events(id);
  std::vector<json> out;
  std::uint64_t expect = 0;
  for (auto& ev : events) {
    auto seq = ev["seq"].get<std::uint64_t>();
    INFO("events of " << id << ": " << events.dump());
    if (expect != 0)
      CHECK(seq == expect);
    expect = seq + 1;
    if (ev["type"] == "daemon" && ev["cause"] == "restart")
      out.push_back(ev);
  }
  return out;
}

// Every step line of a run that has ended (or is paused) is there once,
// through the API as in the log file; returns K.
long check_all_lines(daemon_lives& e, const std::string& id) {
  auto api = check_steps(e.api_stdout(id));
  auto file = check_steps(e.file_stdout(id));
  INFO("run " << id);
  CHECK(api.problem == "");
  CHECK(file.problem == "");
  CHECK(api.count == file.count);
  return api.count;
}

// The metric series of the step counter never repeats a step.
void check_series(daemon_lives& e, const std::string& id) {
  auto r = e.d().call("GET", "/api/v1/runs/" + id + "/metrics");
  REQUIRE(r.status == 200);
  auto& series = r.body["series"]["step"];
  REQUIRE(series.is_array());
  double last = 0;
  std::string problem;
  for (auto& point : series) {
    double step = point[1].get<double>();
    if (step <= last && problem.empty())
      problem
          = "step " + std::to_string(step) + " after " + std::to_string(last);
    if (point[2].get<double>() != step && problem.empty())
      problem = "value " + point[2].dump() + " at step " + point[1].dump();
    last = step;
  }
  INFO("metrics series of run " << id);
  CHECK(problem == "");
  CHECK(!series.empty());
}

} // namespace

TEST_CASE("a SIGKILLed daemon's running, paused and stopping runs are taken "
          "back by the next one with their pids, exit codes and every log "
          "line",
          "[restart]") {
  if (!cgroups_usable())
    return;
  auto seed = pick_seed();
  INFO("seed " << seed << " (CORRAL_RESTART_SEED=" << seed << " repeats it)");
  std::mt19937 rng{seed};
  auto delay_ms = std::uniform_int_distribution<int>{0, 1500}(rng);
  INFO("the SIGKILL comes " << delay_ms << " ms after the last action");

  daemon_lives e;
  e.start();
  // Checkpoints go to a directory of this test's own (runs' cwd is shared).
  temp_dir ckpt_dir;
  auto a = e.submit(counter_yaml("a", {},
                                 "    artifacts: {checkpoints: \""
                                     + ckpt_dir.path() + "/*.pt\"}\n"));
  auto b = e.submit(counter_yaml("b"));
  auto c = e.submit(
      counter_yaml("c", {"--ignore-term"}, "    stop: {grace: 60s}\n"));
  // D ends by itself with code 7 about a second after the SIGKILL.
  auto d_steps = (delay_ms + 1500) / 20;
  auto d = e.submit(counter_yaml(
      "d", {"--steps", std::to_string(d_steps), "--exit-code", "7"}));
  for (auto& id : {a, b, c, d})
    e.wait_running(id);

  auto paused = e.d().call("POST", "/api/v1/runs/" + b + "/pause");
  REQUIRE(paused.status == 200);
  REQUIRE(paused.body["state"] == "paused");
  auto stopping = e.d().call("POST", "/api/v1/runs/" + c + "/stop");
  REQUIRE(stopping.status == 200);
  REQUIRE(stopping.body["state"] == "stopping");
  auto last_action = clock_type::now();

  std::map<std::string, json> before;
  for (auto& id : {a, b, c, d})
    before[id] = e.get(id);
  std::this_thread::sleep_for(
      std::chrono::milliseconds{delay_ms}
      - std::chrono::milliseconds{ms_since(last_action)});
  e.kill9();
  auto killed_at = clock_type::now();
  INFO("killed " << ms_since(last_action) << " ms after the stop of " << c);

  // Nobody watches now: the trees go on as they were.
  for (auto& id : {a, b, c}) {
    INFO("run " << id << " before the kill: " << before[id].dump());
    for (int pid : process_pids(before[id]))
      CHECK(alive(pid));
  }
  CHECK(cgroup_frozen(pid_of(before[b])));
  CHECK_FALSE(cgroup_frozen(pid_of(before[a])));
  auto a_lines_at_kill = count_prefix(e.file_stdout(a), "step ");
  // D ends while the daemon is down: its shim writes the exit record.
  {
    bool d_ended = poll([&] { return fs::exists(e.run_dir(d) + "/exit"); });
    INFO("run " << d << " did not end within 20 s of the kill");
    REQUIRE(d_ended);
  }
  CHECK_FALSE(alive(pid_of(before[d])));
  CHECK(count_prefix(e.file_stdout(a), "step ") > a_lines_at_kill);
  // A checkpoint written while no daemon watches is news to the next one.
  std::ofstream{ckpt_dir.path() + "/while-down.pt"} << "weights";
  INFO("the daemon was down for " << ms_since(killed_at) << " ms");

  e.start();
  INFO("daemon log: " << e.log_tail());
  // The first request already sees every run as it is.
  std::map<std::string, json> listed;
  for (auto& run : e.list())
    listed[run["id"].get<std::string>()] = run;
  REQUIRE(listed.size() == 4);
  CHECK(state_of(listed[a]) == "running");
  CHECK(state_of(listed[b]) == "paused");
  CHECK(state_of(listed[c]) == "stopping");
  CHECK(state_of(listed[d]) == "failed");
  CHECK(listed[d]["exit_code"] == 7);
  CHECK(listed[d]["reason"] == "exit");
  CHECK(listed[d]["signal"].is_null());
  {
    bool announced = poll([&] {
      for (auto& ev : e.events(a))
        if (ev["type"] == "artifact"
            && ev["data"]["path"] == ckpt_dir.path() + "/while-down.pt"
            && ev["data"]["change"] == "new")
          return true;
      return false;
    });
    INFO("events of " << a << ": " << e.events(a).dump());
    CHECK(announced);
  }
  for (auto& id : {a, b, c}) {
    auto run = e.get(id);
    INFO("run " << id << " before: " << before[id].dump()
                << "\nafter: " << run.dump());
    CHECK(pid_of(run) == pid_of(before[id]));
    CHECK(process_pids(run) == process_pids(before[id]));
    CHECK(run["pause_mechanism"] == before[id]["pause_mechanism"]);
  }
  CHECK(cgroup_frozen(pid_of(before[b])));
  std::map<std::string, std::string> found{
      {a, "running"}, {b, "paused"}, {c, "stopping"}};
  for (auto& id : {a, b, c, d}) {
    auto restarts = restart_events(e, id);
    INFO("run " << id);
    REQUIRE(restarts.size() == 1);
    if (id != d) {
      CHECK(restarts[0]["data"]["state"] == found[id]);
      CHECK(restarts[0]["data"]["pid"] == pid_of(before[id]));
    }
  }
  // C got its stop signal once: the new daemon goes on with the old
  // deadline and does not send it again.
  {
    INFO("a second 'ignoring SIGTERM' means the new daemon sent the stop "
         "signal again and began a new grace period instead of keeping "
         "the original SIGKILL deadline");
    CHECK(count_prefix(e.file_stdout(c), "ignoring SIGTERM") == 1);
  }

  // A counts on, in the same process, and the daemon reads on. Its
  // progress may lag at the first request (the store keeps the metrics of
  // up to a second before the kill; the rest is read from the log again).
  auto a_step = step_of(before[a]);
  e.wait_for(a, "counting past step " + std::to_string(a_step + 10),
             [&](const json& r) { return step_of(r) > a_step + 10; });
  CHECK(pid_of(e.get(a)) == pid_of(before[a]));

  // B is frozen where it was; resumed, it counts on from there.
  auto b_lines = count_prefix(e.file_stdout(b), "step ");
  std::this_thread::sleep_for(200ms);
  CHECK(count_prefix(e.file_stdout(b), "step ") == b_lines);
  CHECK(check_all_lines(e, b) == b_lines);
  auto resumed = e.d().call("POST", "/api/v1/runs/" + b + "/resume");
  REQUIRE(resumed.status == 200);
  CHECK(resumed.body["state"] == "running");
  e.wait_for(b, "counting past step " + std::to_string(b_lines + 5),
             [&](const json& r) { return step_of(r) > b_lines + 5; });

  // C's stop, taken over, can be forced.
  auto forced = e.d().call("POST", "/api/v1/runs/" + c + "/stop",
                           R"({"force": true, "wait": true})");
  REQUIRE(forced.status == 200);
  CHECK(forced.body["state"] == "stopped");
  CHECK(forced.body["reason"] == "user");
  CHECK(forced.body["signal"] == "SIGKILL");
  for (int pid : process_pids(before[c]))
    CHECK_FALSE(alive(pid));

  // Every line, once: D's all of them, A's up to its stop.
  CHECK(check_all_lines(e, d) == d_steps);
  check_series(e, d);
  auto stopped_a
      = e.d().call("POST", "/api/v1/runs/" + a + "/stop", R"({"wait": true})");
  REQUIRE(stopped_a.status == 200);
  CHECK(stopped_a.body["state"] == "stopped");
  CHECK(stopped_a.body["reason"] == "user");
  CHECK(stopped_a.body["exit_code"] == 0);
  auto a_total = check_all_lines(e, a);
  CHECK(a_total > a_lines_at_kill);
  auto a_file = e.file_stdout(a);
  REQUIRE(!a_file.empty());
  CHECK(a_file.back() == "stopping at " + std::to_string(a_total));
  check_series(e, a);
  CHECK(step_of(e.get(a)) == a_total);
  for (int pid : process_pids(before[a]))
    CHECK_FALSE(alive(pid));
  e.finish();
}

namespace {

enum class kind { forever, stopper, short_exit };

// What the test knows of one run, to judge what a restarted daemon says.
struct model_run {
  std::string id;
  kind k = kind::forever;
  std::set<std::string> allowed; // states acceptable at the next check
  bool maybe_absent = false;     // a SIGKILL cut its submission short
  int pid = 0;
  std::set<int> pids;
  int restart_events = 0; // daemon/restart events it must have
  std::string state;      // as last seen
  long last_step = 0;     // the counter as last seen
  std::optional<clock_type::time_point> stop_sent;
};

const std::set<std::string> short_states{"starting", "running", "stopping",
                                         "failed"};

} // namespace

TEST_CASE("twenty SIGKILLs at random moments, each followed by a restart on "
          "the same state dir, lose no run, no state and no log line",
          "[restart]") {
  if (!cgroups_usable())
    return;
  auto seed = pick_seed();
  INFO("seed " << seed << " (CORRAL_RESTART_SEED=" << seed << " repeats it)");
  std::mt19937 rng{seed};
  auto uniform = [&](int lo, int hi) {
    return std::uniform_int_distribution<int>{lo, hi}(rng);
  };
  constexpr int kills = 20;
  constexpr int short_steps = 15; // about 0.3 s, then exit 7

  daemon_lives e;
  std::vector<model_run> model; // in creation order
  auto find = [&](const std::string& id) -> model_run* {
    for (auto& m : model)
      if (m.id == id)
        return &m;
    return nullptr;
  };
  std::string trace;
  int names = 0;

  for (int i = 0; i <= kills; ++i) {
    INFO("seed " << seed << ", restart " << i << "; so far:" << trace);
    auto started = clock_type::now();
    e.start();
    if (i == 0) {
      for (auto name : {"long", "other"}) {
        auto id = e.submit(counter_yaml(name));
        model_run m;
        m.id = id;
        m.k = kind::forever;
        model.push_back(m);
      }
      for (auto& m : model) {
        auto run = e.wait_running(m.id);
        m.state = "running";
        m.pid = pid_of(run);
        m.pids = process_pids(run);
        m.allowed = {"running"};
      }
    } else {
      // The first request: every run created so far, each as it must be.
      int status = 0;
      auto runs = e.list(&status);
      INFO("daemon log: " << e.log_tail(2500));
      REQUIRE(status == 200);
      std::map<std::string, json> listed;
      for (auto& r : runs)
        listed[r["id"].get<std::string>()] = r;
      for (auto& [id, r] : listed) {
        INFO("the daemon lists a run the test never made: " << r.dump());
        CHECK(find(id) != nullptr);
      }
      for (auto it = model.begin(); it != model.end();) {
        auto& m = *it;
        INFO("run " << m.id << " (last seen " << m.state << ", pid " << m.pid
                    << ")");
        if (!listed.count(m.id)) {
          INFO("the restarted daemon does not know run "
               << m.id << ", whose creation was "
               << (m.maybe_absent ? "cut by the SIGKILL" : "acknowledged"));
          CHECK(m.maybe_absent);
          it = model.erase(it);
          continue;
        }
        m.maybe_absent = false;
        auto& r = listed[m.id];
        auto s = state_of(r);
        std::string allowed;
        for (auto& a : m.allowed)
          allowed += " " + a;
        INFO("state " << s << ", allowed:" << allowed << "; " << r.dump());
        CHECK(m.allowed.count(s) == 1);
        if (!ended(m.state) && m.k != kind::short_exit)
          ++m.restart_events;
        m.state = s;
        ++it;
      }
      // Then each run in detail.
      for (auto& m : model) {
        auto run = e.get(m.id);
        INFO("run " << m.id << ": " << run.dump());
        auto s = state_of(run);
        if (m.k != kind::short_exit && !ended(s)) {
          CHECK(pid_of(run) == m.pid);
          CHECK(alive(m.pid));
          CHECK(process_pids(run) == m.pids);
          CHECK(cgroup_frozen(m.pid) == (s == "paused"));
        }
        if (m.k == kind::stopper && s == "stopping")
          CHECK(count_prefix(e.file_stdout(m.id), "ignoring SIGTERM") >= 1);
        if (m.k == kind::short_exit && ended(s)) {
          CHECK(s == "failed");
          CHECK(run["exit_code"] == 7);
          CHECK(run["reason"] == "exit");
        }
        auto restarts = restart_events(e, m.id);
        if (m.k != kind::short_exit) {
          CHECK(restarts.size() == static_cast<std::size_t>(m.restart_events));
          if (!ended(s) && !restarts.empty())
            CHECK(restarts.back()["data"]["state"] == s);
        } else {
          CHECK(restarts.size() <= static_cast<std::size_t>(i));
        }
        m.state = s;
      }
      // The long run counts on in the same process, and the daemon reads
      // its lines on.
      auto& lng = model[0];
      if (lng.state == "running") {
        auto from = std::max(lng.last_step, step_of(e.get(lng.id)));
        e.wait_for(lng.id, "counting past step " + std::to_string(from),
                   [&](const json& r) { return step_of(r) > from; });
      }
      {
        auto api = check_steps(e.api_stdout(lng.id));
        auto file = check_steps(e.file_stdout(lng.id));
        INFO("lines of " << lng.id);
        CHECK(api.problem == "");
        CHECK(file.problem == "");
        CHECK(api.count <= file.count);
        if (lng.state == "paused")
          CHECK(api.count == file.count);
        CHECK(api.count >= lng.last_step);
        lng.last_step = api.count;
      }
    }
    if (i == kills)
      break;

    // Short runs end by themselves, with code 7 and every line.
    for (auto& m : model) {
      if (m.k != kind::short_exit || ended(m.state))
        continue;
      auto run = e.wait_for(m.id, "ended",
                            [](const json& r) { return ended(state_of(r)); });
      m.state = state_of(run);
      CHECK(m.state == "failed");
      CHECK(run["exit_code"] == 7);
      CHECK(check_all_lines(e, m.id) == short_steps);
    }
    // At most two stops under way: the oldest is forced to end.
    std::vector<model_run*> stopping;
    for (auto& m : model)
      if (m.k == kind::stopper && m.state == "stopping")
        stopping.push_back(&m);
    if (stopping.size() >= 2) {
      auto& m = *stopping.front();
      auto r = e.d().call("POST", "/api/v1/runs/" + m.id + "/stop",
                          R"({"force": true, "wait": true})");
      INFO("forced stop of " << m.id << ": " << r.raw);
      CHECK(r.status == 200);
      CHECK(r.body["state"] == "stopped");
      CHECK(r.body["reason"] == "user");
      m.state = "stopped";
      for (int pid : m.pids)
        CHECK_FALSE(alive(pid));
    }
    // Stoppers whose stop never took (the SIGKILL cut it) are left
    // running: stop them for good so they do not pile up.
    for (auto& m : model)
      if (m.k == kind::stopper && m.state == "running") {
        auto r = e.d().call("POST", "/api/v1/runs/" + m.id + "/stop",
                            R"({"force": true, "wait": true})");
        CHECK(r.status == 200);
        m.state = state_of(r.body);
      }

    // The next action, and the SIGKILL at a random moment of it.
    std::vector<std::string> choices{"stop", "submit"};
    std::vector<model_run*> running, paused;
    for (auto& m : model)
      if (m.k == kind::forever) {
        if (m.state == "running")
          running.push_back(&m);
        else if (m.state == "paused")
          paused.push_back(&m);
      }
    if (!running.empty())
      choices.push_back("pause");
    if (!paused.empty())
      choices.push_back("resume");
    auto action = choices[uniform(0, static_cast<int>(choices.size()) - 1)];
    model_run* target = nullptr;
    std::string method = "POST", path, body;
    if (action == "pause") {
      target = running[uniform(0, static_cast<int>(running.size()) - 1)];
      path = "/api/v1/runs/" + target->id + "/pause";
    } else if (action == "resume") {
      target = paused[uniform(0, static_cast<int>(paused.size()) - 1)];
      path = "/api/v1/runs/" + target->id + "/resume";
    } else if (action == "stop") {
      model_run m;
      m.id = e.submit(counter_yaml("stopper-" + std::to_string(++names),
                                   {"--ignore-term"},
                                   "    stop: {grace: 60s}\n"));
      m.k = kind::stopper;
      auto run = e.wait_running(m.id);
      m.pid = pid_of(run);
      m.pids = process_pids(run);
      m.state = "running";
      model.push_back(m);
      target = &model.back();
      path = "/api/v1/runs/" + target->id + "/stop";
    } else {
      model_run m;
      m.id = "short-" + std::to_string(++names);
      m.k = kind::short_exit;
      model.push_back(m);
      target = &model.back();
      path = "/api/v1/experiments";
      body = json{{"spec",
                   counter_yaml(m.id, {"--steps", std::to_string(short_steps),
                                       "--exit-code", "7"})},
                  {"base_dir", "/tmp"}}
                 .dump();
    }
    // Every change so far is committed (answers wait for the store, and
    // background saves come within a second): only the action below races
    // the SIGKILL.
    std::this_thread::sleep_for(400ms);
    auto delay = uniform(0, 3) == 0 ? 0 : uniform(0, 300);
    auto& d = e.d();
    auto sent = clock_type::now();
    auto pending = std::async(std::launch::async, [&d, method, path, body] {
      try {
        auto r = d.call(method, path, body);
        return std::pair{r, clock_type::now()};
      } catch (const std::exception&) {
        // The connection died with the daemon.
        return std::pair{reply{}, clock_type::now()};
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds{delay});
    d.kill9();
    auto killed_at = clock_type::now();
    auto [answer, answered_at] = pending.get(); // before `d` goes
    e.kill9();
    bool acknowledged = answer.status == 200 || answer.status == 201;
    if (answer.status != 0 && !acknowledged) {
      INFO(action << " of " << target->id << " was refused: " << answer.raw);
      CHECK(acknowledged);
    }
    trace += "\n  " + action + " " + target->id + ", SIGKILL after "
             + std::to_string(delay) + " ms ("
             + (acknowledged
                    ? "answered " + std::to_string(answer.status) + " "
                          + std::to_string(std::chrono::duration_cast<
                                               std::chrono::milliseconds>(
                                               killed_at - answered_at)
                                               .count())
                          + " ms before the SIGKILL"
                    : std::string{"no answer"})
             + ", " + std::to_string(ms_since(started)) + " ms after start)";

    // What each run may be after the restart.
    for (auto& m : model) {
      if (m.k == kind::short_exit)
        m.allowed
            = ended(m.state) ? std::set<std::string>{m.state} : short_states;
      else
        m.allowed = {m.state};
      // A stop's grace (60 s) may run out in a long test.
      if (m.stop_sent && clock_type::now() - *m.stop_sent > 55s)
        m.allowed.insert("stopped");
    }
    if (action == "pause")
      target->allowed = acknowledged
                            ? std::set<std::string>{"paused"}
                            : std::set<std::string>{"running", "paused"};
    else if (action == "resume")
      target->allowed = acknowledged
                            ? std::set<std::string>{"running"}
                            : std::set<std::string>{"paused", "running"};
    else if (action == "stop") {
      target->allowed = acknowledged
                            ? std::set<std::string>{"stopping"}
                            : std::set<std::string>{"running", "stopping"};
      target->stop_sent = sent;
    } else {
      target->maybe_absent = !acknowledged;
      target->state = "starting";
    }

    // While no daemon runs, the trees go on as they were.
    std::this_thread::sleep_for(std::chrono::milliseconds{uniform(0, 600)});
    for (auto& m : model) {
      if (m.k == kind::short_exit || ended(m.state))
        continue;
      INFO("run " << m.id << " (" << m.state << ") while no daemon runs");
      CHECK(alive(m.pid));
      if (m.allowed == std::set<std::string>{"paused"})
        CHECK(cgroup_frozen(m.pid));
      if (m.allowed == std::set<std::string>{"running"}
          || m.allowed == std::set<std::string>{"stopping"})
        CHECK_FALSE(cgroup_frozen(m.pid));
    }
  }

  // The end: the long run stops normally, and every line it printed is
  // there once.
  auto& lng = model[0];
  if (lng.state == "paused")
    REQUIRE(e.d().call("POST", "/api/v1/runs/" + lng.id + "/resume").status
            == 200);
  auto stopped = e.d().call("POST", "/api/v1/runs/" + lng.id + "/stop",
                            R"({"wait": true})");
  REQUIRE(stopped.status == 200);
  CHECK(stopped.body["state"] == "stopped");
  CHECK(stopped.body["exit_code"] == 0);
  auto total = check_all_lines(e, lng.id);
  auto lines = e.file_stdout(lng.id);
  REQUIRE(!lines.empty());
  CHECK(lines.back() == "stopping at " + std::to_string(total));
  check_series(e, lng.id);
  e.finish();
  std::cout << "restart loop (seed " << seed << "):" << trace << "\n";
}

TEST_CASE("SIGTERM leaves the runs to the next daemon, unless "
          "--stop-runs-on-exit, which stops them",
          "[restart]") {
  if (!cgroups_usable())
    return;
  daemon_lives e;
  e.start();
  auto x = e.submit(counter_yaml("x"));
  auto y = e.submit(counter_yaml("y"));
  auto rx = e.wait_running(x);
  auto ry = e.wait_running(y);
  REQUIRE(e.d().call("POST", "/api/v1/runs/" + y + "/pause").status == 200);
  auto pids_x = process_pids(rx);
  auto pids_y = process_pids(ry);

  CHECK(e.terminate() == 0);
  CHECK_FALSE(fs::exists(e.dir() + "/endpoint"));
  std::this_thread::sleep_for(300ms);
  for (auto& pids : {pids_x, pids_y})
    for (int pid : pids)
      CHECK(alive(pid));
  CHECK(cgroup_frozen(pid_of(ry)));
  CHECK_FALSE(cgroup_frozen(pid_of(rx)));

  // The next daemon takes them back; with --stop-runs-on-exit its SIGTERM
  // stops them (the paused one is thawed first, so its handler runs).
  e.start(true);
  CHECK(state_of(e.get(x)) == "running");
  CHECK(state_of(e.get(y)) == "paused");
  CHECK(pid_of(e.get(x)) == pid_of(rx));
  CHECK(e.terminate() == 0);
  for (auto& pids : {pids_x, pids_y})
    for (int pid : pids)
      CHECK_FALSE(alive(pid));

  e.start();
  for (auto& id : {x, y}) {
    auto run = e.get(id);
    INFO("run " << id << ": " << run.dump());
    CHECK(state_of(run) == "stopped");
    CHECK(run["reason"] == "daemon_exit");
    CHECK(run["exit_code"] == 0);
    auto total = check_all_lines(e, id);
    auto lines = e.file_stdout(id);
    REQUIRE(!lines.empty());
    CHECK(lines.back() == "stopping at " + std::to_string(total));
  }
  e.finish();
}

TEST_CASE("a run whose processes vanished while no daemon ran is failed with "
          "reason lost",
          "[restart]") {
  if (!cgroups_usable())
    return;
  daemon_lives e;
  e.start();
  auto gone = e.submit(counter_yaml("gone"));
  auto kept = e.submit(counter_yaml("kept"));
  auto rg = e.wait_running(gone);
  auto rk = e.wait_running(kept);
  // Both are in the store by now (their submission was answered after
  // the commit): this test is about processes that vanish, not about
  // commit timing.
  std::this_thread::sleep_for(1s);
  e.kill9();

  // The shim first (so it cannot write an exit record), then the tree.
  int main = pid_of(rg);
  REQUIRE(belongs_to_run(main, gone));
  auto st = corral::read_proc_stat(main);
  REQUIRE(st);
  int shim = st->ppid;
  auto shim_cmd = corral::read_cmdline(shim);
  INFO("shim " << shim << ": " << shim_cmd);
  REQUIRE(shim_cmd.find("corral-shim") != std::string::npos);
  REQUIRE(shim_cmd.find(e.run_dir(gone)) != std::string::npos);
  ::kill(shim, SIGKILL);
  REQUIRE(poll([&] { return !alive(shim); }, 5s));
  auto cg = cgroup_dir_of(main);
  REQUIRE(cg.find("/corral-") != std::string::npos);
  std::ofstream{cg + "/cgroup.kill"} << "1";
  REQUIRE(poll(
      [&] {
        for (int pid : process_pids(rg))
          if (alive(pid))
            return false;
        return true;
      },
      5s));
  REQUIRE_FALSE(fs::exists(e.run_dir(gone) + "/exit"));

  e.start();
  auto run = e.get(gone);
  INFO("run " << gone << ": " << run.dump());
  INFO("daemon log: " << e.log_tail());
  CHECK(state_of(run) == "failed");
  CHECK(run["reason"] == "lost");
  CHECK(run["exit_code"].is_null());
  CHECK(run["ended_at"].is_string());
  auto restarts = restart_events(e, gone);
  REQUIRE(restarts.size() == 1);
  CHECK(restarts[0]["message"].get<std::string>().find("without an exit record")
        != std::string::npos);
  // Its lines up to the end are there, once.
  check_all_lines(e, gone);
  // The other run was not touched.
  auto other = e.get(kept);
  CHECK(state_of(other) == "running");
  CHECK(pid_of(other) == pid_of(rk));
  e.finish();
}

TEST_CASE("a damaged or foreign corral.db is refused, named, and left "
          "byte for byte as it was",
          "[restart]") {
  // A real store with a run in it, to damage below.
  std::string real;
  {
    temp_dir dir;
    {
      test_daemon d{dir.path(), {}, true};
      auto r = d.submit(counter_yaml("one", {"--steps", "3"}));
      REQUIRE(r.status == 201);
      REQUIRE(wait_until([&] { return state_of(d.run("one")) == "finished"; }));
      REQUIRE(d.terminate() == 0);
    }
    real = slurp(dir / "corral.db");
  }
  REQUIRE(real.size() > 8192);
  REQUIRE(real.rfind("SQLite format 3", 0) == 0);

  std::string garbage;
  std::mt19937 rng{42};
  for (int i = 0; i < 10000; ++i)
    garbage.push_back(static_cast<char>(rng()));
  // Pages after the first overwritten: the header still says SQLite.
  std::string damaged = real.substr(0, 4096);
  damaged.append(real.size() - 4096, '\xa5');

  struct variant {
    std::string name;
    std::string bytes; // empty: made by Python's sqlite3 below
  };
  for (auto& v : std::vector<variant>{
           {"random bytes", garbage},
           {"text", std::string(5000, 'x') + "\nnot a database\n"},
           {"a damaged corral.db", damaged},
           {"another program's SQLite file", ""}}) {
    temp_dir dir;
    auto db = dir / "corral.db";
    if (v.bytes.empty()) {
      auto cmd = "python3 -c \"import sqlite3; c = sqlite3.connect('" + db
                 + "'); c.execute('CREATE TABLE notes(x TEXT)'); "
                   "c.execute('INSERT INTO notes VALUES (1)'); c.commit()\"";
      REQUIRE(std::system(cmd.c_str()) == 0);
    } else {
      std::ofstream{db, std::ios::binary} << v.bytes;
    }
    auto before = slurp(db);
    REQUIRE(!before.empty());
    auto r = run_corral_bounded(
        {"serve", "--listen", "127.0.0.1:0", "--state-dir", dir.path()}, 15s);
    INFO(v.name << ": exit " << r.exit_code << " after " << r.took.count()
                << " ms; stderr: " << r.err);
    CHECK_FALSE(r.timed_out);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code != -1);
    CHECK(r.took < 10s);
    CHECK(r.err.find("corral.db") != std::string::npos);
    CHECK(slurp(db) == before);
    CHECK_FALSE(fs::exists(dir / "endpoint"));
    // The refused daemon made its (empty) cgroup before it opened the
    // store, and leaves it: remove it (named as serve names it).
    auto mount = corral::find_cgroup2_mount();
    auto own = corral::proc_cgroup2_path(::getpid());
    if (mount && own) {
      char name[32];
      std::snprintf(name, sizeof name, "corral-%08zx",
                    std::hash<std::string>{}(dir.path()) & 0xffffffffu);
      std::error_code ignored;
      fs::remove(*mount + (*own == "/" ? "" : *own) + "/" + name, ignored);
    }
  }
}
