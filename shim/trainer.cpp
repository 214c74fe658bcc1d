#include "shim/trainer.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <vector>

namespace corral::shim {

namespace {

/// The step of the child's setup that failed.
enum class step : int { join_cgroup, setsid, chdir, stdio, exec };

/// What a failed child writes into the exec-error pipe: 8 bytes, far
/// below PIPE_BUF, so the parent reads all or nothing.
struct failure {
  step what;
  int err;
};

[[noreturn]] void fail(int pipe_fd, step what) {
  failure f{what, errno};
  (void)!::write(pipe_fd, &f, sizeof f);
  ::_exit(127);
}

/// The child between fork and exec. Only async-signal-safe calls: the
/// strings and argv were built by the parent. (glibc's execvp searches
/// PATH on the stack, without malloc, which is why posix_spawnp can use
/// it too.)
[[noreturn]] void run_child(const char* procs_path, const char* cwd,
                            char* const* argv, int devnull, int out_w,
                            int err_w, int error_w) {
  if (procs_path != nullptr) {
    // "0" means the writer: the trainer is in the run's cgroup from its
    // first instruction on, and so is everything it forks. The shim
    // itself never joins.
    int fd = ::open(procs_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1)
      fail(error_w, step::join_cgroup);
    ::close(fd);
  }
  // Its own session and process group: the daemon's or a terminal's
  // signals to a group do not reach it.
  if (::setsid() < 0)
    fail(error_w, step::setsid);
  if (::chdir(cwd) != 0)
    fail(error_w, step::chdir);
  // dup2 clears close-on-exec on the copies; the originals close at exec.
  if (::dup2(devnull, 0) < 0 || ::dup2(out_w, 1) < 0 || ::dup2(err_w, 2) < 0)
    fail(error_w, step::stdio);
  // The shim ignores and blocks signals for itself; the trainer must
  // start from the defaults (ignored dispositions survive exec).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig)
    (void)::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  (void)::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execvp(argv[0], argv);
  fail(error_w, step::exec);
}

std::string describe(const options& opts, const failure& f) {
  std::string reason = std::strerror(f.err);
  std::string text;
  switch (f.what) {
    case step::join_cgroup:
      text = "cannot join cgroup " + *opts.cgroup_dir + ": " + reason;
      break;
    case step::setsid:
      text = "cannot start a new session: " + reason;
      break;
    case step::chdir:
      text = "cannot change to working directory '" + opts.cwd + "': " + reason;
      break;
    case step::stdio:
      text = "cannot set up standard input and output: " + reason;
      break;
    case step::exec:
      text = "cannot start '" + opts.argv[0] + "': " + reason;
      break;
  }
  // The message travels as one line (status pipe, exit file).
  for (auto& c : text)
    if (c == '\n' || c == '\r')
      c = ' ';
  return text;
}

} // namespace

started_trainer start_trainer(const options& opts, const unique_fd& stdout_w,
                              const unique_fd& stderr_w) {
  // Everything the child needs is built here: after fork it may not
  // allocate.
  std::string procs_path;
  if (opts.cgroup_dir)
    procs_path = *opts.cgroup_dir + "/cgroup.procs";
  std::vector<std::string> args = opts.argv;
  std::vector<char*> argv;
  for (auto& a : args)
    argv.push_back(a.data());
  argv.push_back(nullptr);

  unique_fd devnull{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  if (!devnull)
    return {0, std::string{"cannot open /dev/null: "} + std::strerror(errno)};
  // Close-on-exec: a successful exec closes the write end, so EOF without
  // a report means the trainer runs.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return {0, std::string{"cannot create a pipe: "} + std::strerror(errno)};
  unique_fd error_r{fds[0]}, error_w{fds[1]};

  pid_t pid = ::fork();
  if (pid < 0)
    return {0, std::string{"cannot fork: "} + std::strerror(errno)};
  if (pid == 0)
    run_child(opts.cgroup_dir ? procs_path.c_str() : nullptr, opts.cwd.c_str(),
              argv.data(), devnull.get(), stdout_w.get(), stderr_w.get(),
              error_w.get());
  error_w.reset();

  failure f{};
  ssize_t n = 0;
  do
    n = ::read(error_r.get(), &f, sizeof f);
  while (n < 0 && errno == EINTR);
  if (n == 0)
    return {pid, {}};
  if (n != sizeof f)
    f = {step::exec, n < 0 ? errno : EIO};
  // The child exits right after its report; reap it so it leaves no
  // zombie and no trace in the tree.
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  return {0, describe(opts, f)};
}

} // namespace corral::shim
