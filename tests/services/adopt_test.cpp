// A restarted daemon takes back runs whose daemon died: local_executor's
// identity() and adopt(), with the real shim and real processes. "The
// daemon dies" is the executor object going away without a kill; in these
// tests the shim stays our child, so the test reaps it where init would.

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "services/cgroup.hpp"
#include "services/local_executor.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "tests/temp_dir.hpp"

using namespace corral;
using namespace std::chrono_literals;
using corral::test::temp_dir;

namespace {

/// Every wait in these tests is bounded by this.
constexpr auto patience = 10s;

/// Prints a counter every 50 ms and forks a child that idles. On SIGTERM
/// the main process exits with code 7. With an argument n >= 0 it exits
/// with code n after four lines, leaving its child to the shim; a second
/// argument makes that child ignore SIGTERM, so the shim waits its grace.
constexpr const char* trainer_py = R"(import os, signal, sys, time
code = int(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: os._exit(7))
if os.fork() == 0:
    ignores_term = len(sys.argv) > 2
    signal.signal(signal.SIGTERM, signal.SIG_IGN if ignores_term else signal.SIG_DFL)
    while True:
        time.sleep(0.05)
i = 0
while True:
    print(i, flush=True)
    i += 1
    if code >= 0 and i >= 4:
        sys.exit(code)
    time.sleep(0.05)
)";

bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = patience) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(10ms);
  }
}

bool readable(int fd, std::chrono::milliseconds limit = patience) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

/// A parent for the runs' cgroups of one test, under the v2 mount; its
/// runs' cgroups are killed and it is removed at the end, also when the
/// test fails. `path` is nullopt where cgroup v2 is not writable.
struct cgroup_parent {
  std::optional<std::string> path;
  std::string mount;

  cgroup_parent() {
    static int n = 0;
    auto m = find_cgroup2_mount();
    if (!m)
      return;
    mount = *m;
    auto dir = mount + "/corral-test-adopt-" + std::to_string(::getpid()) + "-"
               + std::to_string(n++);
    if (::mkdir(dir.c_str(), 0755) != 0)
      return;
    if (::access((dir + "/cgroup.procs").c_str(), W_OK) != 0) {
      ::rmdir(dir.c_str());
      return;
    }
    path = dir;
  }
  ~cgroup_parent() {
    if (!path)
      return;
    std::error_code err;
    for (auto& entry : std::filesystem::directory_iterator{*path, err}) {
      if (!entry.is_directory())
        continue;
      cgroup cg{entry.path().string()};
      (void)cg.kill();
      (void)eventually([&] {
        auto ev = cg.events();
        return !ev || !ev->populated;
      });
      (void)cg.remove();
    }
    (void)cgroup{*path}.remove();
  }
};

/// The shim a test launched: SIGKILLed with its tree and reaped if the test
/// fails before it exits.
struct shim_guard {
  int pid = 0;
  bool reaped = false;

  explicit shim_guard(int p) : pid(p) {}
  shim_guard(const shim_guard&) = delete;
  shim_guard& operator=(const shim_guard&) = delete;
  ~shim_guard() {
    if (reaped || pid <= 0)
      return;
    for (auto kid : descendants_of(pid))
      if (auto st = read_proc_stat(kid))
        (void)signal_process_safely(kid, st->starttime, SIGKILL);
    ::kill(pid, SIGKILL); // our unreaped child: the pid is still its
    ::waitpid(pid, nullptr, 0);
  }

  /// Waits (bounded) for the shim to exit, then reaps it as init would.
  bool wait_and_reap(std::chrono::milliseconds limit = patience) {
    auto fd = pidfd::open(pid);
    if (!fd || !readable(fd->fd(), limit))
      return false;
    reap();
    return true;
  }
  void reap() {
    REQUIRE(::waitpid(pid, nullptr, 0) == pid);
    reaped = true;
  }
};

/// One test's runs: a directory, the trainer script and the config.
struct fixture {
  temp_dir dir;
  cgroup_parent cgroups;
  executor_config cfg;

  explicit fixture(bool want_cgroup) {
    dir.write("trainer.py", trainer_py);
    std::filesystem::create_directories(dir / "runs");
    cfg.shim_path = CORRAL_SHIM_BINARY;
    cfg.runs_dir = dir / "runs";
    if (want_cgroup && cgroups.path) {
      cfg.cgroup_parent = cgroups.path;
      cfg.cgroup_mount = cgroups.mount;
    }
  }

  run_spec spec(int exit_code = -1, bool ignores_term = false) const {
    run_spec s;
    s.command = {"python3", dir / "trainer.py", std::to_string(exit_code)};
    if (ignores_term)
      s.command.push_back("ignores_term");
    s.cwd = dir.path();
    s.base_env
        = {{"PATH", "/usr/local/bin:/usr/bin:/bin"}, {"LANG", "C.UTF-8"}};
    // A ignores_term child holds the shim in its grace until the test ends it.
    s.stop.grace = ignores_term ? 30s : 2s;
    return s;
  }

  /// Launches a run and waits for its report and its forked child.
  std::unique_ptr<local_executor> launch(const std::string& run_id,
                                         int exit_code = -1,
                                         bool ignores_term = false) {
    auto exec
        = local_executor::launch(cfg, run_id, spec(exit_code, ignores_term));
    REQUIRE(exec);
    auto& e = *exec;
    REQUIRE(readable(e->status_fd()));
    std::optional<shim_report> report;
    REQUIRE(
        eventually([&] { return (report = e->read_report()).has_value(); }));
    REQUIRE(report->started);
    REQUIRE(e->adopt_main(report->pid, report->starttime));
    if (exit_code < 0)
      REQUIRE(eventually([&] { return e->process_count() == 2; }));
    return std::move(e);
  }

  std::string stdout_path(const std::string& run_id) const {
    return cfg.runs_dir + "/" + run_id + "/stdout.log";
  }
};

std::vector<int> pids_of(local_executor& exec) {
  std::vector<int> out;
  for (auto& p : exec.processes())
    out.push_back(p.pid);
  std::sort(out.begin(), out.end());
  return out;
}

std::uintmax_t size_of(const std::string& path) {
  std::error_code err;
  auto n = std::filesystem::file_size(path, err);
  return err ? 0 : n;
}

bool frozen_soon(local_executor& exec, bool want) {
  return eventually([&] { return exec.frozen() == want; });
}

/// Launch, lose the executor, adopt, and drive the adopted run to its end.
void adopt_a_live_run(bool want_cgroup) {
  fixture f{want_cgroup};
  if (want_cgroup && !f.cfg.cgroup_parent) {
    WARN("no writable cgroup v2 hierarchy here; the cgroup case is skipped");
    return;
  }
  auto exec = f.launch("live");
  shim_guard guard{exec->identity().shim_pid};
  auto id = exec->identity();
  auto before = pids_of(*exec);
  REQUIRE(before.size() == 2);
  CHECK(id.main_pid == *exec->main_pid());
  CHECK(id.main_starttime != 0);
  CHECK(id.shim_starttime == read_proc_stat(id.shim_pid)->starttime);
  CHECK(id.cgroup == (want_cgroup ? *f.cfg.cgroup_parent + "/live" : ""));
  exec.reset(); // the daemon dies; the run goes on

  auto adopted = local_executor::adopt(f.cfg, "live", id);
  REQUIRE(adopted);
  REQUIRE(adopted->exec);
  CHECK_FALSE(adopted->ended);
  CHECK_FALSE(adopted->lost());
  auto& aut = *adopted->exec;
  CHECK_FALSE(aut.shim_is_child());
  CHECK(aut.mechanism() == (want_cgroup ? "cgroup-v2" : "signals"));
  CHECK(aut.status_fd() == -1);
  CHECK(aut.status_closed());
  CHECK_FALSE(aut.read_report());
  CHECK(aut.main_pid() == id.main_pid);
  CHECK(aut.main_fd() >= 0);
  CHECK(aut.identity() == id);
  CHECK(pids_of(aut) == before);
  CHECK_FALSE(readable(aut.shim_fd(), 0ms));

  // Pause and resume work as before the restart.
  REQUIRE(aut.freeze());
  CHECK(frozen_soon(aut, true));
  REQUIRE(aut.thaw());
  aut.continue_stopped();
  CHECK(frozen_soon(aut, false));
  auto size = size_of(f.stdout_path("live"));
  CHECK(eventually([&] { return size_of(f.stdout_path("live")) > size; }));

  // Stop: the main process's handler exits with 7, the shim ends the rest.
  REQUIRE(aut.signal_main(SIGTERM));
  REQUIRE(readable(aut.main_fd()));
  REQUIRE(readable(aut.shim_fd()));
  auto facts = aut.collect_exit();
  CHECK(facts.recorded);
  CHECK_FALSE(facts.signaled);
  CHECK(facts.code == 7);
  CHECK(aut.process_count() == 0);
  aut.cleanup();
  if (want_cgroup)
    CHECK_FALSE(std::filesystem::exists(id.cgroup));
  // Not its parent: the adopted executor left the shim to be reaped.
  auto st = read_proc_stat(id.shim_pid);
  REQUIRE(st);
  CHECK(st->state == 'Z');
  guard.reap();
}

} // namespace

TEST_CASE("an adopted run in a cgroup is watched paused and stopped as before",
          "[adopt][integration][cgroup]") {
  adopt_a_live_run(true);
}

TEST_CASE("an adopted run without a cgroup is watched paused and stopped as "
          "before",
          "[adopt][integration]") {
  adopt_a_live_run(false);
}

TEST_CASE("adopt finds the main process among the shim's children when the "
          "report never arrived",
          "[adopt][integration]") {
  fixture f{true};
  auto exec = f.launch("unreported");
  shim_guard guard{exec->identity().shim_pid};
  auto real = exec->identity();
  auto id = real;
  id.main_pid = 0;
  id.main_starttime = 0;
  exec.reset();

  auto adopted = local_executor::adopt(f.cfg, "unreported", id);
  REQUIRE(adopted);
  REQUIRE(adopted->exec);
  auto& aut = *adopted->exec;
  CHECK(aut.main_pid() == real.main_pid);
  CHECK(aut.identity().main_starttime == real.main_starttime);
  CHECK(aut.main_fd() >= 0);
  CHECK_THAT(adopted->message, Catch::Contains("among the shim's children"));

  aut.kill_tree();
  REQUIRE(readable(aut.shim_fd()));
  auto facts = aut.collect_exit();
  CHECK(facts.recorded);
  CHECK(facts.signaled);
  CHECK(facts.code == SIGKILL);
  aut.cleanup();
  guard.reap();
}

TEST_CASE("a run that no record names is found by the tree in its cgroup",
          "[adopt][integration]") {
  fixture f{true};
  if (!f.cfg.cgroup_parent) {
    WARN("no writable cgroup v2 hierarchy here; the case is skipped");
    return;
  }
  // The daemon died between starting the shim and saving who it was.
  auto exec = f.launch("unnamed");
  shim_guard guard{exec->identity().shim_pid};
  auto real = exec->identity();
  exec.reset();

  auto found = local_executor::find_identity(f.cfg, "unnamed");
  REQUIRE(found);
  CHECK(*found == real);
  CHECK_FALSE(local_executor::find_identity(f.cfg, "nobody"));
  CHECK_FALSE(local_executor::find_identity(fixture{false}.cfg, "unnamed"));

  auto adopted = local_executor::adopt(f.cfg, "unnamed", *found);
  REQUIRE(adopted);
  REQUIRE(adopted->exec);
  auto& aut = *adopted->exec;
  aut.kill_tree();
  REQUIRE(readable(aut.shim_fd()));
  CHECK(aut.collect_exit().recorded);
  aut.cleanup();
  guard.reap();
  // Over: no tree to find, and the exit record says how it ended.
  CHECK_FALSE(local_executor::find_identity(f.cfg, "unnamed"));
  auto facts = local_executor::recorded_exit(f.cfg, "unnamed");
  CHECK(facts.recorded);
  CHECK(facts.signaled);
  CHECK_FALSE(local_executor::recorded_exit(f.cfg, "nobody").recorded);
}

TEST_CASE("a run that ended while no daemon watched is adopted as ended "
          "with its exit code",
          "[adopt][integration]") {
  fixture f{true};
  auto exec = f.launch("ended", 3);
  auto id = exec->identity();
  shim_guard guard{id.shim_pid};
  exec.reset();
  REQUIRE(guard.wait_and_reap()); // init's part

  auto adopted = local_executor::adopt(f.cfg, "ended", id);
  REQUIRE(adopted);
  CHECK_FALSE(adopted->exec);
  REQUIRE(adopted->ended);
  CHECK(adopted->ended->recorded);
  CHECK_FALSE(adopted->ended->signaled);
  CHECK_FALSE(adopted->ended->exec_error);
  CHECK(adopted->ended->code == 3);
  // The shim emptied the cgroup before it exited; adopt removed it.
  if (!id.cgroup.empty())
    CHECK_FALSE(std::filesystem::exists(id.cgroup));
}

TEST_CASE("a run whose main process exited is adopted while its shim "
          "finishes",
          "[adopt][integration]") {
  fixture f{true};
  auto exec = f.launch("finishing", 5, true);
  auto id = exec->identity();
  shim_guard guard{id.shim_pid};
  REQUIRE(readable(exec->main_fd())); // its child ignores the stop signal
  exec.reset();

  auto adopted = local_executor::adopt(f.cfg, "finishing", id);
  REQUIRE(adopted);
  REQUIRE(adopted->exec);
  auto& aut = *adopted->exec;
  CHECK(aut.main_fd() == -1);
  CHECK(aut.main_pid() == id.main_pid);
  CHECK(aut.identity() == id);
  CHECK_FALSE(aut.signal_main(SIGTERM));
  // The ignores_term child, in its grace.
  CHECK(eventually([&] { return aut.process_count() == 1; }));
  CHECK_FALSE(readable(aut.shim_fd(), 0ms));

  aut.kill_tree();
  REQUIRE(readable(aut.shim_fd()));
  auto facts = aut.collect_exit();
  CHECK(facts.recorded);
  CHECK_FALSE(facts.signaled);
  CHECK(facts.code == 5);
  aut.cleanup();
  guard.reap();
}

TEST_CASE("a shim killed without its exit record is lost and its leftovers "
          "are killed",
          "[adopt][integration][cgroup]") {
  fixture f{true};
  if (!f.cfg.cgroup_parent) {
    WARN("no writable cgroup v2 hierarchy here; skipped");
    return;
  }
  auto exec = f.launch("crashed");
  auto id = exec->identity();
  shim_guard guard{id.shim_pid};
  std::vector<pidfd> tree;
  std::optional<pidfd> idler; // the trainer's child, which never writes
  for (auto pid : pids_of(*exec)) {
    auto st = read_proc_stat(pid);
    REQUIRE(st);
    auto fd = pidfd::open(pid, st->starttime);
    REQUIRE(fd);
    if (pid != id.main_pid)
      idler = pidfd::open(pid, st->starttime).value();
    tree.push_back(std::move(*fd));
  }
  REQUIRE(tree.size() == 2);
  REQUIRE(idler);
  exec.reset();
  REQUIRE(::kill(id.shim_pid, SIGKILL) == 0); // our unreaped child
  guard.reap();
  // The main process may die of its next print into the shim's closed
  // pipe (EPIPE); the idle child outlives the shim.
  REQUIRE_FALSE(idler->exited());

  auto adopted = local_executor::adopt(f.cfg, "crashed", id);
  REQUIRE(adopted);
  CHECK(adopted->lost());
  CHECK_THAT(adopted->message, Catch::Contains("processes left in cgroup"));
  for (auto& p : tree)
    CHECK(readable(p.fd()));
  CHECK_FALSE(std::filesystem::exists(id.cgroup));
}

TEST_CASE("a recycled shim pid is not adopted", "[adopt][integration]") {
  // Signals fallback: with a cgroup, a shim taken for gone would have its
  // (here very much alive) cgroup cleared, which is right for a real
  // recycled pid but would end this test's run.
  fixture f{false};
  auto exec = f.launch("recycled");
  auto id = exec->identity();
  shim_guard guard{id.shim_pid};
  auto wrong = id;
  wrong.shim_starttime += 1;

  auto adopted = local_executor::adopt(f.cfg, "recycled", wrong);
  REQUIRE(adopted);
  CHECK_FALSE(adopted->exec);
  CHECK(adopted->lost()); // the real shim is alive: there is no record
  // Nothing was signalled: the run goes on.
  CHECK_FALSE(readable(exec->shim_fd(), 200ms));
  CHECK(exec->process_count() == 2);

  REQUIRE(exec->signal_main(SIGTERM));
  REQUIRE(readable(exec->shim_fd()));
  auto facts = exec->collect_exit(); // ours: reaps the shim
  guard.reaped = true;
  CHECK(facts.recorded);
  CHECK(facts.code == 7);
}

TEST_CASE("an executor identity survives JSON and garbage is refused",
          "[adopt]") {
  executor_identity id{4242, 18446744073709551615ULL, 4300, 123456,
                       "/sys/fs/cgroup/corral-1/run-1"};
  auto back = executor_identity::from_json(
      nlohmann::json::parse(id.to_json().dump()));
  REQUIRE(back);
  CHECK(*back == id);
  auto minimal = executor_identity::from_json(
      nlohmann::json{{"shim_pid", 7}, {"shim_starttime", 9}});
  REQUIRE(minimal);
  CHECK(minimal->main_pid == 0);
  CHECK(minimal->cgroup.empty());

  using nlohmann::json;
  for (auto& garbage : std::vector<json>{
           json::parse("[1, 2]"),
           json{},
           json::object(),
           json{{"shim_pid", "12"}, {"shim_starttime", 1}},
           json{{"shim_pid", 0}, {"shim_starttime", 1}},
           json{{"shim_pid", -3}, {"shim_starttime", 1}},
           json{{"shim_pid", 1LL << 40}, {"shim_starttime", 1}},
           json{{"shim_pid", 5}, {"shim_starttime", 1.5}},
           json{{"shim_pid", 5}},
           json{{"shim_pid", 5}, {"shim_starttime", 1}, {"main_pid", -1}},
           json{{"shim_pid", 5}, {"shim_starttime", 1}, {"cgroup", 3}},
       }) {
    INFO(garbage.dump());
    CHECK_FALSE(executor_identity::from_json(garbage));
  }
}

TEST_CASE("adopt refuses a saved cgroup that is not the run's", "[adopt]") {
  temp_dir dir;
  executor_config cfg;
  cfg.runs_dir = dir.path();
  cfg.cgroup_mount = "/sys/fs/cgroup";
  for (auto path : {"/etc", "/sys/fs/cgroup", "/sys/fs/cgroup/other",
                    "/sys/fs/cgroup/a/../run-1", "sys/fs/cgroup/run-1",
                    "/sys/fs/cgroupx/run-1"}) {
    INFO(path);
    executor_identity id{1, 1, 0, 0, path};
    auto adopted = local_executor::adopt(cfg, "run-1", id);
    CHECK_FALSE(adopted);
  }
}

TEST_CASE("a paused run stays paused across the daemon's death",
          "[adopt][integration]") {
  for (bool want_cgroup : {true, false}) {
    fixture f{want_cgroup};
    if (want_cgroup && !f.cfg.cgroup_parent) {
      WARN("no writable cgroup v2 hierarchy here; the cgroup case is skipped");
      continue;
    }
    INFO((want_cgroup ? "cgroup" : "signals"));
    auto exec = f.launch("paused");
    auto id = exec->identity();
    shim_guard guard{id.shim_pid};
    REQUIRE(exec->freeze());
    REQUIRE(frozen_soon(*exec, true));
    exec.reset();
    std::this_thread::sleep_for(100ms);

    auto adopted = local_executor::adopt(f.cfg, "paused", id);
    REQUIRE(adopted);
    REQUIRE(adopted->exec);
    auto& aut = *adopted->exec;
    CHECK(aut.frozen());
    auto size = size_of(f.stdout_path("paused"));
    std::this_thread::sleep_for(200ms);
    CHECK(size_of(f.stdout_path("paused")) == size);

    REQUIRE(aut.thaw());
    aut.continue_stopped();
    CHECK(frozen_soon(aut, false));
    CHECK(eventually([&] { return size_of(f.stdout_path("paused")) > size; }));
    aut.kill_tree();
    REQUIRE(readable(aut.shim_fd()));
    auto facts = aut.collect_exit();
    CHECK(facts.recorded);
    CHECK(facts.signaled);
    CHECK(facts.code == SIGKILL);
    aut.cleanup();
    guard.reap();
  }
}

TEST_CASE("collect_exit of an adopted shim without a record says lost",
          "[adopt][integration]") {
  fixture f{true};
  if (!f.cfg.cgroup_parent) {
    // Without a cgroup, a trainer whose shim died is out of reach.
    WARN("no writable cgroup v2 hierarchy here; skipped");
    return;
  }
  auto exec = f.launch("vanished");
  auto id = exec->identity();
  shim_guard guard{id.shim_pid};
  exec.reset();
  auto adopted = local_executor::adopt(f.cfg, "vanished", id);
  REQUIRE(adopted);
  REQUIRE(adopted->exec);
  auto& aut = *adopted->exec;
  REQUIRE(::kill(id.shim_pid, SIGKILL) == 0); // our unreaped child
  REQUIRE(readable(aut.shim_fd()));
  auto facts = aut.collect_exit();
  CHECK_FALSE(facts.recorded);
  CHECK(facts.message == "the shim exited without an exit record");
  aut.kill_tree();
  CHECK(eventually([&] { return aut.process_count() == 0; }));
  aut.cleanup();
  guard.reap();
}
