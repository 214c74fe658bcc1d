#include "services/command.hpp"

#include "services/unique_fd.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

extern char** environ;

namespace corral {

std::string command_output::failure() const {
  if (timed_out)
    return "timed out and was killed";
  auto text = err.empty() ? out : err;
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  if (auto nl = text.rfind('\n'); nl != std::string::npos)
    text = text.substr(nl + 1);
  if (!text.empty())
    return text;
  return code > 128 ? "killed by signal " + std::to_string(code - 128)
                    : "exited with code " + std::to_string(code);
}

namespace {

struct spawn_attrs {
  posix_spawnattr_t attr;
  posix_spawn_file_actions_t actions;
  spawn_attrs() {
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_init(&actions);
  }
  ~spawn_attrs() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  spawn_attrs(const spawn_attrs&) = delete;
  spawn_attrs& operator=(const spawn_attrs&) = delete;
};

} // namespace

result<command_output> run_command(const std::vector<std::string>& argv,
                                   std::chrono::milliseconds timeout) {
  if (argv.empty())
    return make_error(ec::internal, "run_command: empty argv");
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    return make_error(ec::internal, std::string{"cannot create a pipe: "}
                                        + std::strerror(errno));
  unique_fd out_r{out_pipe[0]}, out_w{out_pipe[1]};
  if (::pipe2(err_pipe, O_CLOEXEC) != 0)
    return make_error(ec::internal, std::string{"cannot create a pipe: "}
                                        + std::strerror(errno));
  unique_fd err_r{err_pipe[0]}, err_w{err_pipe[1]};

  spawn_attrs sa;
  // The daemon blocks the signals it waits for: its children must not.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&sa.attr, &none);
  posix_spawnattr_setsigdefault(&sa.attr, &all);
  posix_spawnattr_setflags(&sa.attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_addopen(&sa.actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&sa.actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&sa.actions, err_w.get(), 2);

  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, args[0], &sa.actions, &sa.attr, args.data(),
                          environ);
  if (rc != 0)
    return make_error(ec::internal,
                      "cannot run " + argv[0] + ": " + std::strerror(rc));
  out_w.reset();
  err_w.reset();

  command_output result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[8192];
  while (out_r || err_r) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd fds[2];
    nfds_t n = 0;
    if (out_r)
      fds[n++] = {out_r.get(), POLLIN, 0};
    if (err_r)
      fds[n++] = {err_r.get(), POLLIN, 0};
    if (::poll(fds, n, static_cast<int>(left.count())) < 0) {
      if (errno == EINTR)
        continue;
      result.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    for (nfds_t i = 0; i < n; ++i) {
      if (fds[i].revents == 0)
        continue;
      bool is_out = out_r && fds[i].fd == out_r.get();
      auto got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0)
        (is_out ? result.out : result.err)
            .append(buf, static_cast<std::size_t>(got));
      else if (got == 0 || (errno != EINTR && errno != EAGAIN))
        (is_out ? out_r : err_r).reset();
    }
  }
  int ws = 0;
  while (::waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
  }
  result.code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  return result;
}

bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path || name.empty())
    return false;
  std::string dirs = path;
  std::size_t start = 0;
  while (start <= dirs.size()) {
    auto end = dirs.find(':', start);
    if (end == std::string::npos)
      end = dirs.size();
    auto dir = dirs.substr(start, end - start);
    if (dir.empty())
      dir = ".";
    if (::access((dir + "/" + name).c_str(), X_OK) == 0)
      return true;
    start = end + 1;
  }
  return false;
}

} // namespace corral
