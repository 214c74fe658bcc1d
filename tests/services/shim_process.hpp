#pragma once
/// The per-run shim started by a test exactly as the daemon starts it (own
/// session, empty signal mask, stdio on /dev/null, fd 3 the status pipe, an
/// explicit environment), and reaped whatever the test's outcome.

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "services/pidfd.hpp"
#include "services/unique_fd.hpp"

namespace corral::test {

using namespace std::chrono_literals;

/// A shim we started; killed and reaped if a test fails before it exits.
struct shim_process {
  int pid = 0;
  unique_fd status; // the daemon's end of the status pipe
  std::optional<int> wait_status;

  shim_process() = default;
  shim_process(shim_process&&) = default;
  ~shim_process() {
    if (pid > 0 && !wait_status) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  /// Waits (bounded) for the shim to exit and reaps it.
  bool wait_exit(std::chrono::milliseconds limit = 10s) {
    if (wait_status)
      return true;
    auto fd = pidfd::open(pid);
    REQUIRE(fd);
    pollfd p{fd->fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) != 1)
      return false;
    int ws = 0;
    REQUIRE(::waitpid(pid, &ws, 0) == pid);
    wait_status = ws;
    return true;
  }

  /// The exit code once reaped; -1 if a signal killed it.
  int exit_code() const {
    return wait_status && WIFEXITED(*wait_status) ? WEXITSTATUS(*wait_status)
                                                  : -1;
  }

  /// The next line on the status pipe; "<eof>" or "<timeout>" otherwise.
  std::string read_status(std::chrono::milliseconds limit = 10s) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{status.get(), POLLIN, 0};
      if (left.count() <= 0
          || ::poll(&p, 1, static_cast<int>(left.count())) != 1)
        return "<timeout>";
      char c = 0;
      auto n = ::read(status.get(), &c, 1);
      if (n == 0)
        return line.empty() ? "<eof>" : line;
      if (n < 0)
        continue;
      if (c == '\n')
        return line;
      line += c;
    }
  }
};

/// The environment a run would get: the shim's own is the run's.
inline std::vector<std::string> run_env() {
  return {"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8"};
}

/// Starts the shim the way the daemon does.
inline shim_process spawn_shim(const std::vector<std::string>& args,
                               const std::vector<std::string>& env
                               = run_env()) {
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  shim_process shim;
  shim.status.reset(fds[0]);
  unique_fd status_w{fds[1]};

  std::vector<std::string> argv_s{CORRAL_SHIM_BINARY};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  auto env_s = env;
  std::vector<char*> envp;
  for (auto& e : env_s)
    envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_init(&actions);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK
                                      | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  for (int fd : {0, 1, 2})
    posix_spawn_file_actions_addopen(&actions, fd, "/dev/null",
                                     fd == 0 ? O_RDONLY : O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, status_w.get(), 3);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, CORRAL_SHIM_BINARY, &actions, &attr, argv.data(),
                         envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  REQUIRE(rc == 0);
  shim.pid = pid;
  return shim;
}

} // namespace corral::test
