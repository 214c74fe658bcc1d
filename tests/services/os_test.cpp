// /proc parsing, cgroup discovery, pidfds and the reactor, on the real OS.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <optional>
#include <thread>

#include "services/cgroup.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "services/reactor.hpp"

using namespace corral;
using namespace std::chrono_literals;

namespace {

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(2ms);
  }
  return pred();
}

pid_t spawn_sleeper() {
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sleep", "sleep", "30", nullptr);
    ::_exit(127);
  }
  return pid;
}

/// A fresh cgroup of this test process; nullopt (with a warning) where no
/// writable cgroup v2 hierarchy is.
std::optional<cgroup> test_cgroup(const std::string& name) {
  auto mount = find_cgroup2_mount();
  if (!mount || ::access((*mount + "/cgroup.procs").c_str(), W_OK) != 0) {
    WARN("no writable cgroup v2 hierarchy here; skipped");
    return std::nullopt;
  }
  auto cg = cgroup::create(*mount + "/corral-test-" + name + "-"
                           + std::to_string(::getpid()));
  REQUIRE(cg);
  return *cg;
}

} // namespace

TEST_CASE("a stat line with spaces and parens in comm parses") {
  auto st = parse_proc_stat(
      "4242 (my (odd) proc) T 1 4242 4242 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 "
      "1 0 123456 1000000 250 18446744073709551615");
  REQUIRE(st);
  CHECK(st->pid == 4242);
  CHECK(st->comm == "my (odd) proc");
  CHECK(st->state == 'T');
  CHECK(st->ppid == 1);
  CHECK(st->utime == 17);
  CHECK(st->stime == 5);
  CHECK(st->starttime == 123456);
  CHECK(st->rss_pages == 250);
  CHECK_FALSE(parse_proc_stat("garbage"));
}

TEST_CASE("our own process reads back from /proc") {
  auto st = read_proc_stat(::getpid());
  REQUIRE(st);
  CHECK(st->ppid == ::getppid());
  CHECK(read_cmdline(::getpid()).find("services_tests") != std::string::npos);
  CHECK_FALSE(read_proc_stat(0));
}

TEST_CASE("descendants include grandchildren") {
  pid_t child = ::fork();
  if (child == 0) {
    pid_t grandchild = spawn_sleeper();
    ::waitpid(grandchild, nullptr, 0);
    ::_exit(0);
  }
  std::vector<int> found;
  REQUIRE(eventually([&] {
    found = descendants_of(::getpid());
    return found.size() >= 2;
  }));
  CHECK(std::count(found.begin(), found.end(), child) == 1);
  for (auto pid : found)
    ::kill(pid, SIGKILL);
  ::waitpid(child, nullptr, 0);
}

TEST_CASE("the cgroup v2 mount is found on hybrid and pure machines") {
  auto hybrid
      = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw\n"
        "37 31 0:34 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 "
        "rw\n";
  CHECK(find_cgroup2_mount(hybrid) == "/sys/fs/cgroup/unified");
  auto pure
      = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 "
        "rw,nsdelegate\n";
  CHECK(find_cgroup2_mount(pure) == "/sys/fs/cgroup");
  CHECK_FALSE(find_cgroup2_mount("22 1 0:5 / /proc rw - proc proc rw\n"));
}

TEST_CASE("signal names read both ways") {
  CHECK(parse_signal("SIGTERM") == SIGTERM);
  CHECK(parse_signal("term") == SIGTERM);
  CHECK(parse_signal("10") == SIGUSR1);
  CHECK_FALSE(parse_signal("SIGNOPE"));
  CHECK_FALSE(parse_signal("0"));
  CHECK(signal_name(SIGKILL) == "SIGKILL");
  CHECK(signal_name(45) == "SIG45");
}

TEST_CASE("a pidfd refuses a process whose start time does not match",
          "[integration]") {
  auto pid = spawn_sleeper();
  auto st = read_proc_stat(pid);
  REQUIRE(st);
  CHECK(pidfd::open(pid, st->starttime));
  auto wrong = pidfd::open(pid, st->starttime + 1);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code == ec::not_found);
  auto fd = pidfd::open(pid, st->starttime);
  REQUIRE(fd);
  CHECK_FALSE(fd->exited());
  CHECK(fd->send_signal(SIGKILL));
  CHECK(eventually([&] { return fd->exited(); }));
  ::waitpid(pid, nullptr, 0);
  // Reaped: the descriptor still names the old process, never a new one.
  auto again = fd->send_signal(SIGKILL);
  REQUIRE_FALSE(again);
  CHECK(again.error().code == ec::not_found);
  CHECK_FALSE(signal_process_safely(pid, st->starttime, SIGKILL));
}

TEST_CASE("the reactor turns pipe readiness and file changes into callbacks",
          "[integration]") {
  reactor aut;
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  std::atomic<int> reads{0};
  REQUIRE(aut.watch(fds[0], 0x001 /* EPOLLIN */, [&](std::uint32_t) {
    char buf[16];
    while (::read(fds[0], buf, sizeof buf) > 0)
      ++reads;
  }));
  REQUIRE(::write(fds[1], "x", 1) == 1);
  CHECK(eventually([&] { return reads.load() == 1; }));

  char path[] = "/tmp/corral-reactor-XXXXXX";
  int file = ::mkstemp(path);
  REQUIRE(file >= 0);
  std::atomic<int> changes{0};
  auto id = aut.watch_path(path, [&] { ++changes; });
  REQUIRE(id >= 0);
  REQUIRE(::write(file, "y", 1) == 1);
  CHECK(eventually([&] { return changes.load() >= 1; }));
  aut.unwatch_path(id);
  aut.unwatch(fds[0]);
  ::close(file);
  ::unlink(path);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("several subscribers of one path each hear of changes",
          "[integration]") {
  reactor aut;
  char path[] = "/tmp/corral-reactor-XXXXXX";
  REQUIRE(::mkdtemp(path) != nullptr);
  std::string dir = path;
  std::atomic<int> a{0};
  std::atomic<int> b{0};
  // One directory, two subscribers with different masks (IN_CREATE,
  // IN_MODIFY): one inotify watch serves both.
  auto ia = aut.watch_path(
      dir, [&] { ++a; }, 0x00000100 /* IN_CREATE */);
  auto ib = aut.watch_path(
      dir, [&] { ++b; }, 0x00000002 /* IN_MODIFY */);
  REQUIRE(ia >= 0);
  REQUIRE(ib >= 0);
  CHECK(ia != ib);
  int fd = ::open((dir + "/f").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  REQUIRE(fd >= 0);
  CHECK(eventually([&] { return a.load() >= 1 && b.load() >= 1; }));
  // Dropping one leaves the other listening.
  aut.unwatch_path(ia);
  auto before_a = a.load();
  auto before_b = b.load();
  REQUIRE(::write(fd, "x", 1) == 1);
  CHECK(eventually([&] { return b.load() > before_b; }));
  CHECK(a.load() == before_a);
  aut.unwatch_path(ib);
  ::close(fd);
  ::unlink((dir + "/f").c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("a cgroup freezes, reports it, thaws and kills its members",
          "[integration]") {
  auto mount = find_cgroup2_mount();
  auto cg = test_cgroup("os");
  if (!cg)
    return;
  auto pid = spawn_sleeper();
  {
    std::ofstream procs{cg->path() + "/cgroup.procs"};
    procs << pid;
  }
  REQUIRE(cg->procs().value() == std::vector<int>{pid});
  CHECK(proc_cgroup2_path(pid) == cg->relative_to(*mount));
  REQUIRE(cg->freeze());
  CHECK(eventually([&] { return cg->events()->frozen; }));
  CHECK(read_proc_stat(pid)->state != 'T'); // frozen tasks are not "stopped"
  REQUIRE(cg->thaw());
  CHECK(eventually([&] { return !cg->events()->frozen; }));
  REQUIRE(cg->kill());
  ::waitpid(pid, nullptr, 0);
  CHECK(eventually([&] { return !cg->events()->populated; }));
  CHECK(cg->remove());
}

TEST_CASE("a kept-open stat file tells stopped from running and fails once "
          "the process is reaped",
          "[integration]") {
  auto pid = spawn_sleeper();
  int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(),
                  O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(eventually([&] { return read_proc_state(fd) == 'S'; }));
  ::kill(pid, SIGSTOP);
  CHECK(eventually([&] { return read_proc_state(fd) == 'T'; }));
  ::kill(pid, SIGCONT);
  CHECK(eventually([&] { return read_proc_state(fd) == 'S'; }));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  // The pid may be reused now; the open file still means the old process.
  CHECK_FALSE(read_proc_state(fd));
  ::close(fd);
}

TEST_CASE("a one-shot watch calls once until it is armed again",
          "[integration]") {
  reactor aut;
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  std::atomic<int> calls{0};
  constexpr std::uint32_t in_once = 0x001 | (1u << 30); // EPOLLONESHOT
  // Does not read: a level-triggered watch would call again and again.
  REQUIRE(aut.watch(fds[0], in_once, [&](std::uint32_t) { ++calls; }));
  REQUIRE(::write(fds[1], "x", 1) == 1);
  CHECK(eventually([&] { return calls.load() == 1; }));
  std::this_thread::sleep_for(50ms);
  CHECK(calls.load() == 1);
  REQUIRE(aut.rearm(fds[0], in_once));
  CHECK(eventually([&] { return calls.load() == 2; }));
  aut.unwatch(fds[0]);
  CHECK_FALSE(aut.rearm(fds[0], in_once));
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("a cgroup's cpu.stat counts the CPU its members used",
          "[integration]") {
  auto cg = test_cgroup("cpu");
  if (!cg)
    return;
  auto stat = cg->open_cpu_stat();
  REQUIRE(stat);
  auto before = read_cpu_usage_usec(stat.get());
  REQUIRE(before);
  CHECK(*before == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    // Joins the cgroup, then spins for ~50 ms of CPU.
    std::ofstream{cg->path() + "/cgroup.procs"} << ::getpid();
    auto end = std::chrono::steady_clock::now() + 50ms;
    while (std::chrono::steady_clock::now() < end) {
    }
    ::_exit(0);
  }
  ::waitpid(pid, nullptr, 0);
  auto after = read_cpu_usage_usec(stat.get());
  REQUIRE(after);
  CHECK(*after >= 10000);
  stat.reset();
  CHECK(cg->remove());
}
