// The shim's Slurm mode, run for real: --forward, --suspend-file,
// --report-file and --exit-like-main. Under Slurm the daemon reaches the
// run only through the signals Slurm delivers to the shim (scancel
// --batch, scontrol suspend/resume) and the files of the shared run dir;
// here the test sends those signals to the shim itself.

#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "services/exit_record.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "tests/services/shim_process.hpp"
#include "tests/temp_dir.hpp"

using namespace corral;
using namespace std::chrono_literals;
using corral::test::shim_process;
using corral::test::spawn_shim;
using corral::test::temp_dir;

namespace {

/// Every wait in these tests is bounded by this.
constexpr auto patience = 20s;

std::string slurp(const std::string& path) {
  return read_small_file(path).value_or("");
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

/// Polls pred every few ms; false if it is still false after limit.
bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds limit = patience) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

std::vector<std::string> shim_args(const temp_dir& run_dir,
                                   const std::vector<std::string>& extra,
                                   const std::vector<std::string>& command) {
  std::vector<std::string> args{"--run-dir",    run_dir.path(),  "--cwd",
                                run_dir.path(), "--stop-signal", "15",
                                "--grace-ms",   "5000"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.emplace_back("--");
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

/// A process slurm_trainer.py told us about.
struct tree_process {
  int pid = 0;
  std::uint64_t starttime = 0;
};

/// role ("main", "child", "grandchild") → process, from the pids file.
std::map<std::string, tree_process> read_tree(const std::string& pids_file) {
  std::map<std::string, tree_process> procs;
  std::istringstream in{slurp(pids_file)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words{line};
    std::string role;
    tree_process p;
    if (words >> role >> p.pid >> p.starttime)
      procs[role] = p;
  }
  return procs;
}

/// The process's state letter; 'X' once it is gone (or its pid recycled).
char state_of(const tree_process& p) {
  auto st = read_proc_stat(p.pid);
  return st && st->starttime == p.starttime ? st->state : 'X';
}

bool alive(const tree_process& p) {
  auto s = state_of(p);
  return s != 'X' && s != 'Z';
}

/// SIGKILLs, on the way out (of a failed test too), whatever the fixture
/// recorded; stopped processes die of SIGKILL as well.
struct tree_guard {
  std::string pids_file;
  ~tree_guard() {
    for (auto& [role, p] : read_tree(pids_file))
      (void)signal_process_safely(p.pid, p.starttime, SIGKILL);
  }
};

/// The number of the last "step N" line of the trainer's stdout; 0 if none.
int last_step(const temp_dir& dir) {
  auto out = slurp(dir / "stdout.log");
  auto at = out.rfind("step ");
  if (at == std::string::npos)
    return 0;
  return std::atoi(out.c_str() + at + 5);
}

/// Starts slurm_trainer.py under a shim with the extra flags and waits
/// (bounded) until its three processes are recorded and it counts.
struct slurm_run {
  temp_dir dir;
  tree_guard guard{dir / "pids"};
  shim_process shim;
  std::map<std::string, tree_process> tree;

  explicit slurm_run(const std::vector<std::string>& extra)
      : shim{spawn_shim(
          shim_args(dir, extra,
                    {"/usr/bin/python3",
                     CORRAL_FIXTURES_DIR "/slurm_trainer.py", dir / "pids"}))} {
    REQUIRE(shim.read_status(patience).rfind("started ", 0) == 0);
    REQUIRE(wait_until([&] {
      tree = read_tree(dir / "pids");
      return tree.size() == 3 && last_step(dir) >= 1;
    }));
  }

  /// Ends the trainer as a user would (SIGTERM to the main process, which
  /// prints "term" and exits 0) and waits for the shim.
  void end() {
    REQUIRE(signal_process_safely(tree["main"].pid, tree["main"].starttime,
                                  SIGTERM));
    REQUIRE(shim.wait_exit(patience));
  }
};

std::string host_name() {
  char host[256] = {};
  REQUIRE(::gethostname(host, sizeof host - 1) == 0);
  return host;
}

} // namespace

TEST_CASE("with --forward the shim passes those signals on to the main "
          "process",
          "[shim][integration][shim-slurm]") {
  slurm_run run{{"--forward", "10,15"}};
  auto main = run.tree["main"];

  REQUIRE(::kill(run.shim.pid, SIGUSR1) == 0);
  REQUIRE(wait_until(
      [&] { return contains(slurp(run.dir / "stdout.log"), "\nckpt\n"); }));
  // The shim is still there, and so is the trainer.
  CHECK(alive(main));
  CHECK_FALSE(run.shim.wait_exit(0ms));

  REQUIRE(::kill(run.shim.pid, SIGTERM) == 0);
  REQUIRE(run.shim.wait_exit(patience));
  REQUIRE(WIFEXITED(*run.shim.wait_status));
  CHECK(WEXITSTATUS(*run.shim.wait_status) == 0);
  auto out = slurp(run.dir / "stdout.log");
  auto ckpt = out.find("\nckpt\n"), term = out.find("\nterm\n");
  REQUIRE(ckpt != std::string::npos);
  REQUIRE(term != std::string::npos);
  CHECK(ckpt < term);
  auto rec = read_exit_record(run.dir.path());
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->code == 0);
  CHECK(rec->pid == main.pid);
  // The leftovers got the stop signal once the main process had exited.
  for (auto& [role, p] : run.tree) {
    INFO(role);
    CHECK_FALSE(alive(p));
  }
  auto log = slurp(run.dir / "shim.log");
  auto pid = std::to_string(main.pid);
  CHECK(contains(log, "forwards SIGUSR1 to main process " + pid));
  CHECK(contains(log, "forwards SIGTERM to main process " + pid));
}

TEST_CASE("the shim forwards any catchable signal it is told to",
          "[shim][integration][shim-slurm]") {
  temp_dir dir;
  int sig = GENERATE(SIGHUP, SIGINT, SIGQUIT, SIGUSR2, SIGALRM, SIGWINCH,
                     SIGRTMIN + 2, SIGRTMAX);
  INFO("signal " << sig);
  // Prints "got N" for the signal and exits 0.
  auto script = "import signal, sys, time\n"
                "got = []\n"
                "signal.signal(int(sys.argv[1]), lambda s, f: got.append(s))\n"
                "print('ready', flush=True)\n"
                "while not got:\n"
                "    time.sleep(0.01)\n"
                "print('got %d' % got[0], flush=True)\n";
  auto shim = spawn_shim(
      shim_args(dir, {"--forward", std::to_string(sig), "--exit-like-main"},
                {"/usr/bin/python3", "-c", script, std::to_string(sig)}));
  REQUIRE(shim.read_status(patience).rfind("started ", 0) == 0);
  REQUIRE(wait_until(
      [&] { return contains(slurp(dir / "stdout.log"), "ready\n"); }));
  REQUIRE(::kill(shim.pid, sig) == 0);
  REQUIRE(shim.wait_exit(patience));
  CHECK(shim.exit_code() == 0);
  CHECK(slurp(dir / "stdout.log")
        == "ready\ngot " + std::to_string(sig) + "\n");
}

TEST_CASE("once the main process has exited the shim forwards nothing",
          "[shim][integration][shim-slurm]") {
  temp_dir dir;
  auto pids_file = dir / "pids";
  tree_guard guard{pids_file};
  // shim_tree.py: leftovers that ignore SIGTERM keep the shim in its
  // grace period until SIGKILL.
  auto args
      = shim_args(dir, {"--forward", "15"},
                  {"/usr/bin/python3", CORRAL_FIXTURES_DIR "/shim_tree.py",
                   pids_file, "ignore", "-"});
  auto grace = std::find(args.begin(), args.end(), "--grace-ms");
  REQUIRE(grace != args.end());
  *(grace + 1) = "2000";
  auto shim = spawn_shim(args);
  REQUIRE(shim.read_status(patience).rfind("started ", 0) == 0);
  REQUIRE(wait_until([&] {
    return contains(slurp(dir / "shim.log"), "leftover processes; SIGKILL in");
  }));
  REQUIRE(::kill(shim.pid, SIGTERM) == 0);
  auto main = read_tree(pids_file)["main"];
  CHECK(wait_until([&] {
    return contains(slurp(dir / "shim.log"), "ignores SIGTERM: main process "
                                                 + std::to_string(main.pid)
                                                 + " has exited");
  }));
  REQUIRE(shim.wait_exit(patience));
  CHECK(shim.exit_code() == 0);
  auto rec = read_exit_record(dir.path());
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->code == 0);
  CHECK_FALSE(contains(slurp(dir / "shim.log"), "forwards SIGTERM"));
}

TEST_CASE("without --forward the shim ignores SIGUSR1 and SIGTERM",
          "[shim][integration][shim-slurm]") {
  slurm_run run{{}};
  REQUIRE(::kill(run.shim.pid, SIGUSR1) == 0);
  REQUIRE(::kill(run.shim.pid, SIGTERM) == 0);
  // Nothing to wait for: give a forward that should not happen the time
  // to show.
  std::this_thread::sleep_for(1s);
  CHECK_FALSE(run.shim.wait_exit(0ms));
  CHECK(alive(run.tree["main"]));
  run.end();
  auto out = slurp(run.dir / "stdout.log");
  CHECK_FALSE(contains(out, "ckpt"));
  CHECK(contains(out, "\nterm\n"));
  CHECK_FALSE(contains(slurp(run.dir / "shim.log"), "forwards"));
}

TEST_CASE("with --suspend-file SIGTSTP stops the whole tree and SIGCONT "
          "continues it",
          "[shim][integration][shim-slurm]") {
  temp_dir files; // the suspend file lives outside the run dir here
  auto suspended = files / "suspended";
  slurm_run run{{"--suspend-file", suspended}};
  REQUIRE(run.tree.size() == 3);
  auto all_stopped = [&] {
    for (auto& [role, p] : run.tree)
      if (state_of(p) != 'T')
        return false;
    return true;
  };
  auto none_stopped = [&] {
    for (auto& [role, p] : run.tree)
      if (state_of(p) == 'T' || !alive(p))
        return false;
    return true;
  };

  REQUIRE(::kill(run.shim.pid, SIGTSTP) == 0);
  REQUIRE(wait_until([&] { return std::filesystem::exists(suspended); }));
  auto text = slurp(suspended);
  INFO("suspend file: " << text);
  CHECK(text.rfind("stopped 3 ", 0) == 0);
  CHECK(text.back() == '\n');
  CHECK_FALSE(std::filesystem::exists(suspended + ".tmp"));
  // The file is written only once every process shows stopped.
  for (auto& [role, p] : run.tree) {
    INFO(role);
    CHECK(state_of(p) == 'T');
  }
  // The shim itself goes on (it relays, and must see the SIGCONT).
  auto shim_state = read_proc_stat(run.shim.pid);
  REQUIRE(shim_state);
  CHECK(shim_state->state != 'T');
  // Stopped, the trainer counts no more.
  std::this_thread::sleep_for(300ms);
  int frozen_at = last_step(run.dir);
  std::this_thread::sleep_for(500ms);
  CHECK(last_step(run.dir) == frozen_at);

  if (GENERATE(false, true)) {
    INFO("a second SIGTSTP while stopped writes the file anew");
    REQUIRE(::kill(run.shim.pid, SIGTSTP) == 0);
    CHECK(wait_until([&] {
      auto again = slurp(suspended);
      return again != text && again.rfind("stopped 3 ", 0) == 0;
    }));
    CHECK(all_stopped());
  }

  REQUIRE(::kill(run.shim.pid, SIGCONT) == 0);
  CHECK(wait_until([&] { return !std::filesystem::exists(suspended); }));
  CHECK(wait_until(none_stopped));
  CHECK(wait_until([&] { return last_step(run.dir) > frozen_at; }));
  auto log = slurp(run.dir / "shim.log");
  CHECK(contains(log, "stops the 3 processes of the tree"));
  CHECK(contains(log, "continues the tree: SIGCONT to 3 stopped processes"));

  run.end();
  auto rec = read_exit_record(run.dir.path());
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->code == 0);
}

TEST_CASE("a suspend that cannot stop every process says which part "
          "stopped",
          "[shim][integration][shim-slurm]") {
  if (!std::filesystem::exists(CORRAL_VFORK_HOLDER)) {
    WARN("no " CORRAL_VFORK_HOLDER " (cmake --build --target vfork_holder); "
         "skipped");
    return;
  }
  temp_dir dir, files;
  auto suspended = files / "suspended";
  // vfork_holder: its main process waits in vfork() (state D: a SIGSTOP
  // waits with it) while its child sleeps.
  auto shim = spawn_shim(
      shim_args(dir, {"--suspend-file", suspended}, {CORRAL_VFORK_HOLDER}));
  auto started = shim.read_status(patience);
  REQUIRE(started.rfind("started ", 0) == 0);
  std::istringstream words{started.substr(8)};
  tree_process main, child;
  REQUIRE(words >> main.pid >> main.starttime);
  struct guard {
    std::vector<tree_process*> procs;
    ~guard() {
      for (auto* p : procs)
        if (p->pid > 0)
          (void)signal_process_safely(p->pid, p->starttime, SIGKILL);
    }
  } guard{{&main, &child}};
  REQUIRE(wait_until([&] {
    auto kids = read_small_file("/proc/" + std::to_string(main.pid) + "/task/"
                                + std::to_string(main.pid) + "/children");
    if (!kids || std::atoi(kids->c_str()) <= 0 || state_of(main) != 'D')
      return false;
    auto st = read_proc_stat(std::atoi(kids->c_str()));
    if (!st)
      return false;
    child = {st->pid, st->starttime};
    return true;
  }));

  REQUIRE(::kill(shim.pid, SIGTSTP) == 0);
  // The shim gives up on the main process after 5 s.
  REQUIRE(wait_until([&] { return std::filesystem::exists(suspended); }));
  auto text = slurp(suspended);
  INFO("suspend file: " << text);
  CHECK(text.rfind("partial 1/2 ", 0) == 0);
  CHECK(state_of(child) == 'T');
  CHECK(state_of(main) == 'D');
  CHECK(contains(slurp(dir / "shim.log"),
                 "stops 1 of 2 processes of the tree (SIGTSTP); not stopped "
                 "after 5000 ms: "
                     + std::to_string(main.pid)));

  REQUIRE(::kill(shim.pid, SIGCONT) == 0);
  CHECK(wait_until([&] { return !std::filesystem::exists(suspended); }));
  CHECK(wait_until([&] { return state_of(child) == 'S'; }));
  // The main process lost its pending SIGSTOP to the resume's SIGCONT.
  CHECK(contains(slurp(dir / "shim.log"),
                 "continues the tree: SIGCONT to 2 stopped processes"));

  // SIGKILL ends a vfork() wait; the shim ends the child as a leftover.
  REQUIRE(signal_process_safely(main.pid, main.starttime, SIGKILL));
  REQUIRE(shim.wait_exit(patience));
  auto rec = read_exit_record(dir.path());
  REQUIRE(rec);
  CHECK(rec->status == "signaled");
  CHECK(rec->code == SIGKILL);
  CHECK_FALSE(alive(child));
}

TEST_CASE("without --suspend-file the shim ignores SIGTSTP",
          "[shim][integration][shim-slurm]") {
  slurm_run run{{}};
  REQUIRE(::kill(run.shim.pid, SIGTSTP) == 0);
  std::this_thread::sleep_for(1s);
  for (auto& [role, p] : run.tree) {
    INFO(role);
    CHECK(alive(p));
    CHECK(state_of(p) != 'T');
  }
  auto shim_state = read_proc_stat(run.shim.pid);
  REQUIRE(shim_state);
  CHECK(shim_state->state != 'T');
  int step = last_step(run.dir);
  CHECK(wait_until([&] { return last_step(run.dir) > step; }));
  run.end();
}

TEST_CASE("the --report-file gets the report of the status pipe and the host",
          "[shim][integration][shim-slurm]") {
  temp_dir dir;
  auto report = dir / "report";
  SECTION("started") {
    auto shim = spawn_shim(
        shim_args(dir, {"--report-file", report}, {"sh", "-c", "exit 0"}));
    auto started = shim.read_status(patience);
    REQUIRE(started.rfind("started ", 0) == 0);
    REQUIRE(shim.wait_exit(patience));
    auto text = slurp(report);
    CHECK(text == started + " " + host_name() + "\n");
    CHECK(text.rfind("started "
                         + std::to_string(read_exit_record(dir.path())->pid)
                         + " ",
                     0)
          == 0);
  }
  SECTION("exec_error") {
    auto shim = spawn_shim(
        shim_args(dir, {"--report-file", report}, {"corral-no-such-command"}));
    auto line = shim.read_status(patience);
    REQUIRE(line.rfind("exec_error ", 0) == 0);
    REQUIRE(shim.wait_exit(patience));
    CHECK(slurp(report) == line + "\n");
  }
  CHECK_FALSE(std::filesystem::exists(report + ".tmp"));
}

TEST_CASE("with --exit-like-main the shim exits as the main process did",
          "[shim][integration][shim-slurm]") {
  temp_dir dir;
  std::vector<std::string> command;
  bool like_main = true;
  int expected = 0;
  std::string status;
  SECTION("exit code 3") {
    command = {"sh", "-c", "exit 3"};
    expected = 3;
    status = "exited";
  }
  SECTION("exit code 0") {
    command = {"sh", "-c", "exit 0"};
    expected = 0;
    status = "exited";
  }
  SECTION("killed by SIGKILL") {
    command = {"sh", "-c", "kill -KILL $$"};
    expected = 128 + SIGKILL;
    status = "signaled";
  }
  SECTION("a command that cannot start") {
    command = {"corral-no-such-command"};
    expected = 127;
    status = "exec_error";
  }
  SECTION("without the flag, exit code 3 still makes the shim exit 0") {
    command = {"sh", "-c", "exit 3"};
    like_main = false;
    expected = 0;
    status = "exited";
  }
  SECTION("without the flag, SIGKILL still makes the shim exit 0") {
    command = {"sh", "-c", "kill -KILL $$"};
    like_main = false;
    expected = 0;
    status = "signaled";
  }
  std::vector<std::string> extra;
  if (like_main)
    extra.emplace_back("--exit-like-main");
  auto shim = spawn_shim(shim_args(dir, extra, command));
  REQUIRE(shim.wait_exit(patience));
  REQUIRE(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == expected);
  // The exit file is there all the same.
  auto rec = read_exit_record(dir.path());
  REQUIRE(rec);
  CHECK(rec->status == status);
}

TEST_CASE("the shim refuses bad --forward values",
          "[shim][integration][shim-slurm]") {
  temp_dir dir;
  auto value
      = GENERATE(as<std::string>{}, "9", "19", "17", "18", "20", "abc", "",
                 "10,", ",10", "10,,15", "0", "65", "32", "SIGKILL", "10,STOP");
  INFO("--forward '" << value << "'");
  auto shim = spawn_shim(
      shim_args(dir, {"--forward", value}, {"sh", "-c", "exit 0"}));
  auto line = shim.read_status(patience);
  CHECK(line.rfind("exec_error corral-shim: --forward ", 0) == 0);
  REQUIRE(shim.wait_exit(patience));
  REQUIRE(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == 2);
  CHECK_FALSE(std::filesystem::exists(dir / "exit"));
}

TEST_CASE("the shim takes signal names and numbers for --forward and needs "
          "paths for its files",
          "[shim][integration][shim-slurm]") {
  temp_dir dir;
  SECTION("names and numbers, repeated") {
    auto shim = spawn_shim(
        shim_args(dir, {"--forward", "USR1,SIGTERM", "--forward", "2,1,40"},
                  {"sh", "-c", "exit 0"}));
    CHECK(shim.read_status(patience).rfind("started ", 0) == 0);
    REQUIRE(shim.wait_exit(patience));
    CHECK(contains(slurp(dir / "shim.log"),
                   "forwards to the main process: SIGHUP SIGINT SIGUSR1 "
                   "SIGTERM"));
  }
  for (std::string flag : {"--suspend-file", "--report-file"}) {
    SECTION(flag + " without a path") {
      auto shim
          = spawn_shim(shim_args(dir, {flag, ""}, {"sh", "-c", "exit 0"}));
      CHECK(shim.read_status(patience)
            == "exec_error corral-shim: " + flag + " wants a path"
                   + " (usage: corral-shim --run-dir DIR [--cgroup DIR] --cwd "
                     "DIR --stop-signal N --grace-ms N [--log-max-bytes N] "
                     "[--log-keep N] [--forward SIG[,SIG...]] [--suspend-file "
                     "PATH] [--report-file PATH] [--exit-like-main] -- ARGV0 "
                     "ARGS...)");
      REQUIRE(shim.wait_exit(patience));
      CHECK(shim.exit_code() == 2);
    }
  }
}
