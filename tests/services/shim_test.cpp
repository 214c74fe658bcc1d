// The per-run shim, run for real: started with posix_spawn exactly as the
// daemon starts it (own session, empty signal mask, stdio on /dev/null,
// fd 3 the status pipe, an explicit environment).

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "services/cgroup.hpp"
#include "services/exit_record.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "services/unique_fd.hpp"
#include "tests/services/shim_process.hpp"

using namespace corral;
using namespace std::chrono_literals;
using corral::test::run_env;
using corral::test::shim_process;
using corral::test::spawn_shim;

namespace {

/// Every wait in these tests is bounded by this.
constexpr auto patience = 10s;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/corral-shim-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code err;
    std::filesystem::remove_all(path, err);
  }
  std::string operator/(const std::string& name) const {
    return path + "/" + name;
  }
};

std::string slurp(const std::string& path) {
  return read_small_file(path).value_or("<missing " + path + ">");
}

std::vector<std::string> shim_args(const temp_dir& run_dir,
                                   const std::string& cwd, int grace_ms,
                                   const std::vector<std::string>& command,
                                   const std::string& cgroup_dir = {}) {
  std::vector<std::string> args{"--run-dir", run_dir.path};
  if (!cgroup_dir.empty())
    args.insert(args.end(), {"--cgroup", cgroup_dir});
  args.insert(args.end(), {"--cwd", cwd, "--stop-signal", "15", "--grace-ms",
                           std::to_string(grace_ms), "--"});
  args.insert(args.end(), command.begin(), command.end());
  return args;
}

/// What tests/fixtures/shim_output.py writes.
std::pair<std::string, std::string> expected_output() {
  std::string out = "hello stdout\n", err = "hello stderr\n";
  char line[64];
  for (int chunk = 0; chunk < 10; ++chunk) {
    for (int i = chunk * 10000; i < (chunk + 1) * 10000; ++i) {
      std::snprintf(line, sizeof line,
                    "out %08d abcdefghijklmnopqrstuvwxyz0123456789\n", i);
      out += line;
    }
    std::snprintf(line, sizeof line, "err %08d\n", chunk);
    err += line;
  }
  out += "no newline at the end";
  err += "stderr tail";
  return {out, err};
}

/// A process a fixture told us about.
struct tree_process {
  int pid = 0;
  std::uint64_t starttime = 0;
};

/// Reads a shim_tree.py pids file: role → process, and the roles that
/// left on SIGTERM.
struct tree_record {
  std::map<std::string, tree_process> procs;
  std::vector<std::string> termed;

  static tree_record read(const std::string& path) {
    tree_record rec;
    std::istringstream in{read_small_file(path).value_or("")};
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream words{line};
      std::string role;
      words >> role;
      if (role == "term") {
        words >> role;
        rec.termed.push_back(role);
        continue;
      }
      tree_process p;
      if (words >> p.pid >> p.starttime)
        rec.procs[role] = p;
    }
    return rec;
  }
};

bool alive(const tree_process& p) {
  auto st = read_proc_stat(p.pid);
  return st && st->starttime == p.starttime && st->state != 'Z';
}

/// SIGKILLs, on the way out of a failed test, whatever a fixture recorded.
struct tree_guard {
  std::string pids_file;
  ~tree_guard() {
    for (auto& [role, p] : tree_record::read(pids_file).procs)
      (void)signal_process_safely(p.pid, p.starttime, SIGKILL);
  }
};

/// Waits (bounded) until the fixture recorded every role.
tree_record wait_for_tree(const std::string& pids_file) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    auto rec = tree_record::read(pids_file);
    if (rec.procs.size() == 4)
      return rec;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(10ms);
  }
}

/// A cgroup of our own under the v2 mount; emptied and removed at the
/// end, also when the test fails.
struct test_cgroup {
  std::optional<cgroup> cg;
  std::string rel; // as /proc/<pid>/cgroup names it

  test_cgroup() {
    static int n = 0;
    auto mount = find_cgroup2_mount();
    if (!mount)
      return;
    auto path = *mount + "/corral-test-" + std::to_string(::getpid()) + "-"
                + std::to_string(n++);
    if (::mkdir(path.c_str(), 0755) != 0)
      return;
    cg = cgroup{path};
    rel = cg->relative_to(*mount);
  }
  ~test_cgroup() {
    if (!cg)
      return;
    (void)cg->kill();
    auto deadline = std::chrono::steady_clock::now() + patience;
    while (std::chrono::steady_clock::now() < deadline) {
      auto ev = cg->events();
      if (!ev || !ev->populated)
        break;
      std::this_thread::sleep_for(10ms);
    }
    (void)cg->remove();
  }
};

void touch(const std::string& path) {
  std::ofstream{path} << "go";
}

/// SIGSTOPs a process and waits (bounded) until it shows state T.
void stop_and_wait(const tree_process& p) {
  REQUIRE(signal_process_safely(p.pid, p.starttime, SIGSTOP));
  auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    auto st = read_proc_stat(p.pid);
    REQUIRE(st);
    if (st->state == 'T')
      return;
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(2ms);
  }
}

} // namespace

TEST_CASE("exit records survive a round trip through their text", "[shim]") {
  exit_record rec{"signaled", 9, 4242, "", 1700000000123};
  auto back = parse_exit_record(format_exit_record(rec));
  REQUIRE(back);
  CHECK(back->status == "signaled");
  CHECK(back->code == 9);
  CHECK(back->pid == 4242);
  CHECK(back->message.empty());
  CHECK(back->ended_at_ms == 1700000000123);

  SECTION("a message keeps its '=' and loses its line breaks") {
    rec = {"exec_error", 127, 0, "cannot start 'a=b':\nnope", 1};
    auto text = format_exit_record(rec);
    CHECK(text
          == "status=exec_error\ncode=127\npid=0\nmessage=cannot start "
             "'a=b': nope\nended_at_ms=1\n");
    CHECK(parse_exit_record(text)->message == "cannot start 'a=b': nope");
  }
  SECTION("a record with a missing key or a bad number is refused") {
    CHECK_FALSE(parse_exit_record("status=exited\ncode=0\npid=1\n"));
    CHECK_FALSE(parse_exit_record(
        "status=exited\ncode=x\npid=1\nmessage=\nended_at_ms=1\n"));
  }
  SECTION("unknown keys are ignored") {
    CHECK(parse_exit_record(
        "status=exited\ncode=0\npid=1\nmessage=\nended_at_ms=1\nnew=1\n"));
  }
  SECTION("it is written atomically into the run directory") {
    temp_dir dir;
    CHECK_FALSE(read_exit_record(dir.path));
    REQUIRE(write_exit_record(dir.path, rec));
    CHECK_FALSE(std::filesystem::exists(dir / "exit.tmp"));
    auto read = read_exit_record(dir.path);
    REQUIRE(read);
    CHECK(read->pid == 4242);
  }
}

TEST_CASE("the shim relays stdout and stderr byte-exact and records a clean "
          "exit",
          "[shim][integration]") {
  temp_dir dir;
  auto shim = spawn_shim(shim_args(
      dir, dir.path, 1000,
      {"python3", CORRAL_FIXTURES_DIR "/shim_output.py", dir / "info"}));

  auto started = shim.read_status();
  REQUIRE(started.rfind("started ", 0) == 0);
  // The status pipe ends after the report: the trainer does not hold it.
  CHECK(shim.read_status() == "<eof>");
  REQUIRE(shim.wait_exit());
  REQUIRE(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == 0);

  // The fixture read its own pid and start time from /proc/self/stat.
  CHECK(started == "started " + slurp(dir / "info"));
  auto [out, err] = expected_output();
  auto got_out = slurp(dir / "stdout.log");
  auto got_err = slurp(dir / "stderr.log");
  CHECK(got_out.size() == out.size());
  CHECK(got_out == out); // not REQUIRE: a 5 MB diff helps nobody
  CHECK(got_err == err);

  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->code == 0);
  CHECK("started " + std::to_string(rec->pid) + " "
            + slurp(dir / "info").substr(slurp(dir / "info").find(' ') + 1)
        == started);
  CHECK(rec->message.empty());
  CHECK(rec->ended_at_ms <= now_ms());
  CHECK(rec->ended_at_ms > now_ms() - 60000);
  CHECK_FALSE(std::filesystem::exists(dir / "exit.tmp"));
  CHECK(slurp(dir / "shim.log").find("INFO shim starts") != std::string::npos);
}

TEST_CASE("the shim records exit codes and deaths by signal",
          "[shim][integration]") {
  temp_dir dir;
  std::string script, status;
  int code = 0;
  SECTION("a non-zero exit code") {
    script = "exit 3";
    status = "exited";
    code = 3;
  }
  SECTION("SIGKILL") {
    script = "kill -KILL $$";
    status = "signaled";
    code = SIGKILL;
  }
  SECTION("SIGSEGV") {
    script = "ulimit -c 0; kill -SEGV $$";
    status = "signaled";
    code = SIGSEGV;
  }
  auto shim = spawn_shim(shim_args(dir, dir.path, 1000, {"sh", "-c", script}));
  auto started = shim.read_status();
  REQUIRE(started.rfind("started ", 0) == 0);
  REQUIRE(shim.wait_exit());
  CHECK(WIFEXITED(*shim.wait_status));
  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == status);
  CHECK(rec->code == code);
  CHECK(started.rfind("started " + std::to_string(rec->pid) + " ", 0) == 0);
}

TEST_CASE("the shim reports commands that cannot start as exec_error",
          "[shim][integration]") {
  temp_dir dir;
  std::vector<std::string> command{"true"};
  std::string cwd = dir.path, message;
  SECTION("a missing command") {
    command = {"corral-no-such-command", "--flag"};
    message = "cannot start 'corral-no-such-command': No such file or "
              "directory";
  }
  SECTION("a file that is not executable") {
    std::ofstream{dir / "plain.txt"} << "echo hi\n";
    ::chmod((dir / "plain.txt").c_str(), 0644);
    command = {dir / "plain.txt"};
    message = "cannot start '" + dir / "plain.txt" + "': Permission denied";
  }
  SECTION("a working directory that does not exist") {
    cwd = "/nope-corral-test";
    message = "cannot change to working directory '/nope-corral-test': No "
              "such file or directory";
  }
  auto shim = spawn_shim(shim_args(dir, cwd, 1000, command));
  CHECK(shim.read_status() == "exec_error " + message);
  REQUIRE(shim.wait_exit());
  REQUIRE(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == 0);
  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == "exec_error");
  CHECK(rec->code == 127);
  CHECK(rec->pid == 0);
  CHECK(rec->message == message);
  CHECK(rec->ended_at_ms > now_ms() - 60000);
}

TEST_CASE("the shim reports a cgroup it cannot join as exec_error",
          "[shim][integration]") {
  temp_dir dir;
  auto missing = dir / "no-such-cgroup";
  auto shim = spawn_shim(shim_args(dir, dir.path, 1000, {"true"}, missing));
  CHECK(shim.read_status()
        == "exec_error cannot join cgroup " + missing
               + ": No such file or directory");
  REQUIRE(shim.wait_exit());
  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == "exec_error");
}

TEST_CASE("in cgroup mode the trainer is born in the run's cgroup and its "
          "leftovers are ended after it exits",
          "[shim][integration][cgroup]") {
  temp_dir dir;
  test_cgroup cg;
  if (!cg.cg) {
    WARN("cannot create a test cgroup under the cgroup v2 mount; skipped");
    return;
  }
  auto pids_file = dir / "pids";
  tree_guard guard{pids_file};
  bool ignore = GENERATE(false, true);
  INFO((ignore ? "leftovers ignore SIGTERM" : "leftovers exit on SIGTERM"));
  // Leftovers that obey SIGTERM must not wait for the grace period.
  int grace_ms = ignore ? 300 : 5000;
  auto shim = spawn_shim(
      shim_args(dir, dir.path, grace_ms,
                {"python3", CORRAL_FIXTURES_DIR "/shim_tree.py", pids_file,
                 ignore ? "ignore" : "term", dir / "go"},
                cg.cg->path()));
  auto started = shim.read_status();
  REQUIRE(started.rfind("started ", 0) == 0);

  auto tree = wait_for_tree(pids_file);
  CHECK(started.rfind("started " + std::to_string(tree.procs["main"].pid) + " "
                          + std::to_string(tree.procs["main"].starttime),
                      0)
        == 0);
  // The kernel says where each process lives: the whole tree in the run's
  // cgroup, the shim outside it.
  for (auto& [role, p] : tree.procs) {
    INFO(role);
    CHECK(proc_cgroup2_path(p.pid) == cg.rel);
  }
  CHECK(proc_cgroup2_path(shim.pid) != cg.rel);
  CHECK(read_proc_stat(tree.procs["escapee"].pid)->sid
        == tree.procs["escapee"].pid);

  // A stopped leftover acts on the stop signal too: the shim sends SIGCONT
  // after it.
  if (!ignore)
    stop_and_wait(tree.procs["grandchild"]);
  touch(dir / "go");
  // The exit file appears only once the cgroup is empty.
  auto deadline = std::chrono::steady_clock::now() + patience;
  while (!std::filesystem::exists(dir / "exit")) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    std::this_thread::sleep_for(2ms);
  }
  auto events = cg.cg->events();
  REQUIRE(events);
  CHECK_FALSE(events->populated);
  REQUIRE(shim.wait_exit());
  auto exited_at = now_ms();
  CHECK(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == 0);
  CHECK(cg.cg->procs()->empty());

  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->code == 0);
  CHECK(rec->pid == tree.procs["main"].pid);
  for (auto& [role, p] : tree.procs) {
    INFO(role);
    CHECK_FALSE(alive(p));
  }
  tree = tree_record::read(pids_file);
  if (ignore) {
    CHECK(tree.termed.empty());
    CHECK(exited_at - rec->ended_at_ms >= grace_ms - 20);
  } else {
    std::sort(tree.termed.begin(), tree.termed.end());
    CHECK(tree.termed
          == std::vector<std::string>{"child", "escapee", "grandchild"});
    CHECK(exited_at - rec->ended_at_ms < grace_ms - 1000);
  }
  CHECK(slurp(dir / "stdout.log") == "main exits\n");
}

TEST_CASE("without a cgroup the shim ends the leftovers of the tree, "
          "setsid() escapees included",
          "[shim][integration]") {
  temp_dir dir;
  auto pids_file = dir / "pids";
  tree_guard guard{pids_file};
  bool ignore = GENERATE(false, true);
  INFO((ignore ? "leftovers ignore SIGTERM" : "leftovers exit on SIGTERM"));
  int grace_ms = ignore ? 300 : 5000;
  auto shim = spawn_shim(
      shim_args(dir, dir.path, grace_ms,
                {"python3", CORRAL_FIXTURES_DIR "/shim_tree.py", pids_file,
                 ignore ? "ignore" : "term", dir / "go"}));
  REQUIRE(shim.read_status().rfind("started ", 0) == 0);
  auto tree = wait_for_tree(pids_file);
  // Its parent died: the escapee now belongs to the shim, its subreaper.
  auto escapee = read_proc_stat(tree.procs["escapee"].pid);
  REQUIRE(escapee);
  CHECK(escapee->ppid == shim.pid);
  CHECK(escapee->sid == tree.procs["escapee"].pid);
  if (!ignore)
    stop_and_wait(tree.procs["grandchild"]);

  touch(dir / "go");
  REQUIRE(shim.wait_exit());
  auto exited_at = now_ms();
  CHECK(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == 0);
  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->pid == tree.procs["main"].pid);
  for (auto& [role, p] : tree.procs) {
    INFO(role);
    CHECK_FALSE(alive(p));
  }
  tree = tree_record::read(pids_file);
  if (ignore) {
    CHECK(tree.termed.empty());
    CHECK(exited_at - rec->ended_at_ms >= grace_ms - 20);
  } else {
    std::sort(tree.termed.begin(), tree.termed.end());
    CHECK(tree.termed
          == std::vector<std::string>{"child", "escapee", "grandchild"});
    CHECK(exited_at - rec->ended_at_ms < grace_ms - 1000);
  }
}

TEST_CASE("the shim ignores SIGTERM, SIGINT and SIGHUP sent to it",
          "[shim][integration]") {
  temp_dir dir;
  auto shim = spawn_shim(shim_args(
      dir, dir.path, 1000,
      {"sh", "-c", "while [ ! -e go ]; do sleep 0.01; done; echo done"}));
  REQUIRE(shim.read_status().rfind("started ", 0) == 0);
  // A fatal signal is acted on when it is sent: had one of these killed
  // the shim, it could not exit normally below.
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGPIPE})
    REQUIRE(::kill(shim.pid, sig) == 0);
  touch(dir / "go");
  REQUIRE(shim.wait_exit());
  REQUIRE(WIFEXITED(*shim.wait_status));
  CHECK(WEXITSTATUS(*shim.wait_status) == 0);
  auto rec = read_exit_record(dir.path);
  REQUIRE(rec);
  CHECK(rec->status == "exited");
  CHECK(rec->code == 0);
  CHECK(slurp(dir / "stdout.log") == "done\n");
}

TEST_CASE("neither the shim nor the trainer inherits its starter's "
          "descriptors",
          "[shim][integration]") {
  temp_dir dir;
  // Not close-on-exec, above the shim's own: posix_spawn hands it over.
  unique_fd opened{::open((dir / "leak").c_str(), O_WRONLY | O_CREAT, 0644)};
  unique_fd leak{::fcntl(opened.get(), F_DUPFD, 10)};
  REQUIRE(leak.get() >= 10);
  auto shim = spawn_shim(
      shim_args(dir, dir.path, 1000,
                {"sh", "-c", "while [ ! -e go ]; do sleep 0.01; done"}));
  auto started = shim.read_status();
  REQUIRE(started.rfind("started ", 0) == 0);
  CHECK(shim.read_status() == "<eof>");
  int trainer = std::stoi(started.substr(8));

  auto fds_of = [](int pid) {
    std::map<int, std::string> out;
    auto dir = "/proc/" + std::to_string(pid) + "/fd";
    for (auto& e : std::filesystem::directory_iterator(dir)) {
      std::error_code err;
      out[std::stoi(e.path().filename().string())]
          = std::filesystem::read_symlink(e.path(), err).string();
    }
    return out;
  };
  for (auto& [fd, target] : fds_of(shim.pid)) {
    INFO("shim fd " << fd << " -> " << target);
    CHECK(target.find("leak") == std::string::npos);
  }
  auto trainer_fds = fds_of(trainer);
  std::vector<int> numbers;
  for (auto& [fd, target] : trainer_fds) {
    INFO("trainer fd " << fd << " -> " << target);
    CHECK(target.find("leak") == std::string::npos);
    numbers.push_back(fd);
  }
  CHECK(numbers == std::vector<int>{0, 1, 2});
  CHECK(trainer_fds[0] == "/dev/null");
  touch(dir / "go");
  REQUIRE(shim.wait_exit());
}
