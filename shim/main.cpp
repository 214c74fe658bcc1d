/// corral-shim: one per run (DESIGN.md, "Every run has a shim"). It is the
/// trainer's parent and subreaper, relays its output into the run's log
/// files, ends what is left of the tree once the main process exited, and
/// leaves the exit file behind. It never dies of a stray signal and is
/// never part of the run's cgroup, so pause and stop cannot touch it.

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "services/cgroup.hpp"
#include "services/exit_record.hpp"
#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "services/unique_fd.hpp"
#include "shim/io.hpp"
#include "shim/leftovers.hpp"
#include "shim/log.hpp"
#include "shim/options.hpp"
#include "shim/rotating_log.hpp"
#include "shim/suspend.hpp"
#include "shim/trainer.hpp"

namespace corral::shim {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

/// The write end of the daemon's status pipe, by contract.
constexpr int status_fd = 3;
/// Large reads: a chatty trainer costs one syscall per 64 KiB, not per line.
constexpr std::size_t relay_chunk = 64 * 1024;
/// A bigger pipe lets a fast writer run ahead of us without blocking.
constexpr int pipe_capacity = 1 << 20;
/// Once the tree is gone, only a process outside it (one that was handed
/// the pipe) could hold the pipes open; don't wait for it forever.
constexpr auto drain_limit = 5s;
/// How long a suspend waits for the tree to show stopped. (Slurm stops or
/// freezes the job about 2 s after its SIGTSTP anyway.)
constexpr auto suspend_limit = 5s;

/// One output stream of the tree: the pipe it writes and the log file.
struct stream {
  const char* name = "";
  unique_fd pipe;
  std::optional<rotating_log> file;
};

/// The trainer's main process and, once reaped, how it ended.
struct main_process {
  int pid = 0;
  std::optional<int> wait_status;
  std::int64_t ended_at_ms = 0;
};

/// Nothing of the daemon may leak into the run: close every descriptor
/// but stdio and the status pipe (Linux 5.9+). Make sure 0-3 are open, so
/// no file the shim opens later lands on them by accident.
void detach_from_starter() {
  (void)::close_range(4, ~0U, 0);
  for (int fd = 0; fd <= status_fd; ++fd)
    if (::fcntl(fd, F_GETFD) < 0)
      (void)::open("/dev/null", O_RDWR); // the lowest free fd: this one
  // The trainer must not hold the status pipe: the daemon reads its EOF
  // as "the shim is done talking".
  (void)::fcntl(status_fd, F_SETFD, FD_CLOEXEC);
}

/// The shim outlives every signal a user or the daemon might send to the
/// run's session by mistake. (Fatal faults keep their defaults: those are
/// bugs, not strays.)
void ignore_stray_signals() {
  struct sigaction ign {};
  ign.sa_handler = SIG_IGN;
  for (int sig : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGPIPE, SIGUSR1, SIGUSR2,
                  SIGALRM, SIGTSTP, SIGTTIN, SIGTTOU, SIGXCPU, SIGXFSZ,
                  SIGVTALRM, SIGPROF, SIGIO, SIGPWR, SIGSTKFLT})
    (void)::sigaction(sig, &ign, nullptr);
  for (int sig = SIGRTMIN; sig <= SIGRTMAX; ++sig)
    (void)::sigaction(sig, &ign, nullptr);
}

/// The report to the daemon: on the status pipe (fd 3, which need not be a
/// pipe, or even open), and into --report-file when there is one.
/// `file_suffix` is appended to the file's line only.
void report(const options& opts, logger& log, unique_fd& status,
            const std::string& line, const std::string& file_suffix = {}) {
  if (status)
    (void)write_all(status.get(), line + "\n");
  if (opts.report_file
      && !write_file_atomically(*opts.report_file, line + file_suffix + "\n"))
    log.warn("cannot write the report file %s: %s", opts.report_file->c_str(),
             std::strerror(errno));
}

/// " <host name>": where the run is, for a daemon that asked Slurm to
/// place it.
std::string host_suffix() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0)
    return " unknown";
  return std::string{" "} + host;
}

std::string join(const std::vector<std::string>& argv) {
  std::string out;
  for (auto& a : argv)
    out += (out.empty() ? "" : " ") + a;
  return out;
}

/// The run never started: tell the daemon and leave the exit file.
int fail_to_start(const options& opts, logger& log, unique_fd& status,
                  const std::string& message) {
  log.warn("cannot start the run: %s", message.c_str());
  exit_record rec{"exec_error", 127, 0, message, unix_time_ms()};
  bool written = write_exit_record(opts.run_dir, rec);
  if (!written)
    log.warn("cannot write the exit file in %s: %s", opts.run_dir.c_str(),
             std::strerror(errno));
  report(opts, log, status, "exec_error " + message);
  if (opts.exit_like_main)
    return rec.code;
  return written ? 0 : 1;
}

/// Moves what the pipe holds into the log file. Returns false at EOF (or
/// on a read error, which ends the stream too).
bool relay(stream& s, logger& log, char* buf) {
  // Bounded, so the other stream and SIGCHLD get their turn.
  for (int round = 0; round < 16; ++round) {
    auto n = ::read(s.pipe.get(), buf, relay_chunk);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && errno == EAGAIN)
      return true;
    if (n < 0) {
      log.warn("cannot read the %s pipe: %s", s.name, std::strerror(errno));
      return false;
    }
    if (n == 0)
      return false;
    auto size = static_cast<std::size_t>(n);
    // A full disk must not block the trainer: the file says so once and
    // we keep reading.
    s.file->write({buf, size}, unix_time_ms(), log);
    if (size < relay_chunk)
      return true; // the pipe is empty: spare the EAGAIN round trip
  }
  return true;
}

/// Reaps every exited child: the main process, and orphans of its tree
/// that were reparented to the shim as their subreaper.
void reap(main_process& main, logger& log) {
  for (;;) {
    int ws = 0;
    pid_t pid = ::waitpid(-1, &ws, WNOHANG);
    if (pid < 0 && errno == EINTR)
      continue;
    if (pid <= 0)
      return;
    if (pid != main.pid)
      continue;
    main.wait_status = ws;
    main.ended_at_ms = unix_time_ms();
    if (WIFSIGNALED(ws))
      log.info("sees main process %d die of %s", pid,
               signal_name(WTERMSIG(ws)).c_str());
    else
      log.info("sees main process %d exit with code %d", pid, WEXITSTATUS(ws));
  }
}

/// Every signal the signalfd holds, in the order read.
std::vector<int> drain_signalfd(int fd) {
  std::vector<int> sigs;
  signalfd_siginfo info[8];
  for (;;) {
    auto n = ::read(fd, info, sizeof info);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return sigs;
    for (std::size_t i = 0; i < static_cast<std::size_t>(n) / sizeof info[0];
         ++i)
      sigs.push_back(static_cast<int>(info[i].ssi_signo));
  }
}

/// Acts on a signal the shim was sent (other than SIGCHLD): suspend,
/// resume, or passing it on to the main process (--forward). Runs before
/// reap() in the same round, so an unreaped main process cannot have a
/// recycled pid.
void on_signal(const options& opts, const main_process& main, int sig,
               logger& log) {
  if (opts.suspend_file && sig == SIGTSTP) {
    suspend_tree(*opts.suspend_file, suspend_limit, log);
  } else if (opts.suspend_file && sig == SIGCONT) {
    resume_tree(*opts.suspend_file, log);
  } else if (std::binary_search(opts.forward.begin(), opts.forward.end(),
                                sig)) {
    if (main.wait_status) {
      // The shim is ending the leftovers already (or has).
      log.info("ignores %s: main process %d has exited",
               signal_name(sig).c_str(), main.pid);
    } else if (::kill(main.pid, sig) == 0) {
      log.info("forwards %s to main process %d", signal_name(sig).c_str(),
               main.pid);
    } else {
      log.warn("cannot forward %s to main process %d: %s",
               signal_name(sig).c_str(), main.pid, std::strerror(errno));
    }
  }
}

/// The one loop: relays output and reaps until the main process exited,
/// then ends what is left of its tree (stop signal, grace, SIGKILL) and
/// drains the pipes. False when it cannot go on (poll failed).
bool supervise(const options& opts, main_process& main, stream& out,
               stream& err, const unique_fd& sigfd, logger& log) {
  enum class phase { running, grace, killing, draining };
  phase ph = phase::running;
  std::optional<leftovers> tree;
  auto deadline = steady::time_point::max(); // grace end, or drain limit
  auto next_scan = steady::time_point::max();
  bool scan = false;
  std::vector<char> buf(relay_chunk);

  for (;;) {
    auto now = steady::now();
    if (ph == phase::running && main.wait_status) {
      // The main process is gone. What is left of its tree gets the stop
      // signal and the grace period (DESIGN.md, "Stop", "No orphans").
      tree.emplace(opts.cgroup_dir ? std::optional<cgroup>{*opts.cgroup_dir}
                                   : std::nullopt);
      if (tree->empty()) {
        ph = phase::draining;
        deadline = now + drain_limit;
      } else {
        int n = tree->signal_new(opts.stop_signal);
        log.info("sends %s to %d leftover processes; SIGKILL in %lld ms",
                 signal_name(opts.stop_signal).c_str(), n,
                 static_cast<long long>(opts.grace.count()));
        ph = phase::grace;
        deadline = now + opts.grace;
        next_scan = now + tree->rescan_interval();
      }
    } else if (ph == phase::grace || ph == phase::killing) {
      if (scan || now >= next_scan) {
        reap(main, log);
        if (tree->empty()) {
          log.info("sees the tree empty");
          ph = phase::draining;
          deadline = now + drain_limit;
        } else {
          // New forks may race a kill; each look kills again.
          if (ph == phase::killing)
            tree->kill();
          next_scan = now + tree->rescan_interval();
        }
      }
      if (ph == phase::grace && now >= deadline) {
        log.info("sends SIGKILL to what is left after the grace period");
        tree->kill();
        ph = phase::killing;
        deadline = steady::time_point::max(); // only rescans from now on
        next_scan = now + tree->rescan_interval();
      }
    }
    if (ph == phase::draining) {
      if (!out.pipe && !err.pipe)
        break;
      if (now >= deadline) {
        log.warn("stops waiting for the end of output: a process outside "
                 "the run holds its pipes");
        break;
      }
    }
    scan = false;

    pollfd fds[4];
    nfds_t nfds = 0;
    fds[nfds++] = {sigfd.get(), POLLIN, 0};
    for (auto* s : {&out, &err})
      if (s->pipe)
        fds[nfds++] = {s->pipe.get(), POLLIN, 0};
    bool watching
        = (ph == phase::grace || ph == phase::killing) && tree->watch_fd() >= 0;
    if (watching)
      fds[nfds++] = {tree->watch_fd(), POLLIN, 0};
    auto wake = steady::time_point::max();
    if (ph != phase::running)
      wake = std::min(deadline, ph == phase::draining ? wake : next_scan);
    int timeout = -1;
    if (wake != steady::time_point::max())
      timeout = static_cast<int>(std::max<long long>(
          0, std::chrono::ceil<std::chrono::milliseconds>(wake - now).count()));

    if (::poll(fds, nfds, timeout) < 0) {
      if (errno == EINTR)
        continue;
      log.warn("cannot poll: %s", std::strerror(errno));
      return false;
    }
    for (nfds_t i = 0; i < nfds; ++i) {
      if (fds[i].revents == 0)
        continue;
      if (fds[i].fd == sigfd.get()) {
        for (int sig : drain_signalfd(sigfd.get()))
          if (sig != SIGCHLD)
            on_signal(opts, main, sig, log);
        reap(main, log);
        // A reaped orphan may have been the last of the tree.
        scan = true;
      } else if (watching && fds[i].fd == tree->watch_fd()) {
        tree->drain_watch();
        scan = true;
      } else {
        auto& s = fds[i].fd == out.pipe.get() ? out : err;
        if (!relay(s, log, buf.data()))
          s.pipe.reset();
      }
    }
  }

  return true;
}

/// Leaves the exit file and says goodbye; the shim's exit code: 0 (1 when
/// the exit file could not be written), or with --exit-like-main the main
/// process's exit code, 128 + the signal that killed it.
int finish(const options& opts, main_process& main, logger& log) {
  reap(main, log);
  int ws = *main.wait_status;
  exit_record rec;
  rec.status = WIFSIGNALED(ws) ? "signaled" : "exited";
  rec.code = WIFSIGNALED(ws) ? WTERMSIG(ws) : WEXITSTATUS(ws);
  rec.pid = main.pid;
  rec.ended_at_ms = main.ended_at_ms;
  int code = 0;
  if (opts.exit_like_main)
    code = WIFSIGNALED(ws) ? 128 + WTERMSIG(ws) : WEXITSTATUS(ws);
  if (!write_exit_record(opts.run_dir, rec)) {
    log.warn("cannot write the exit file in %s: %s", opts.run_dir.c_str(),
             std::strerror(errno));
    // Slurm's exit code still tells what the trainer did.
    return opts.exit_like_main ? code : 1;
  }
  log.info("writes the exit file (%s, code %d) and exits with %d",
           rec.status.c_str(), rec.code, code);
  return code;
}

int run(int argc, char** argv) {
  detach_from_starter();
  unique_fd status{status_fd};
  ignore_stray_signals();
  // SIGCHLD arrives through a signalfd; blocked before the fork, so not
  // one is lost.
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  (void)::sigprocmask(SIG_BLOCK, &chld, nullptr);

  auto parsed = parse_options(argc, argv);
  if (!parsed) {
    if (status)
      (void)write_all(status.get(),
                      "exec_error " + parsed.error().message + "\n");
    return 2;
  }
  const auto& opts = *parsed;
  // The signals the shim acts on come through the signalfd too; blocked
  // now, before the fork (the child empties its mask before exec). Blocked
  // signals are queued even while their disposition is "ignore", and
  // blocking SIGCONT does not keep it from continuing the shim.
  sigset_t caught = chld;
  for (int sig : opts.forward)
    sigaddset(&caught, sig);
  if (opts.suspend_file) {
    sigaddset(&caught, SIGTSTP);
    sigaddset(&caught, SIGCONT);
  }
  (void)::sigprocmask(SIG_BLOCK, &caught, nullptr);

  logger log;
  (void)log.open(opts.run_dir + "/shim.log");
  log.info("starts in %s%s%s: %s", opts.cwd.c_str(),
           opts.cgroup_dir ? " with cgroup " : " without a cgroup",
           opts.cgroup_dir ? opts.cgroup_dir->c_str() : "",
           join(opts.argv).c_str());
  if (!opts.forward.empty()) {
    std::string names;
    for (int sig : opts.forward)
      names += " " + signal_name(sig);
    log.info("forwards to the main process:%s", names.c_str());
  }
  // Orphans of the tree (setsid() escapees whose parents died) come to us,
  // not to init: we reap them and can still find them to end them.
  if (::prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    log.warn("cannot become a subreaper: %s", std::strerror(errno));

  stream out{"stdout", {}, {}};
  stream err{"stderr", {}, {}};
  rotating_log::limits limits{opts.log_max_bytes, opts.log_keep};
  for (auto [s, which] :
       {std::pair{&out, log_stream::out}, std::pair{&err, log_stream::err}}) {
    auto file = rotating_log::open(opts.run_dir, which, limits);
    if (!file)
      return fail_to_start(opts, log, status, file.error().message);
    s->file.emplace(std::move(*file));
  }
  unique_fd out_w, err_w;
  for (auto [s, w] : {std::pair{&out, &out_w}, std::pair{&err, &err_w}}) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0)
      return fail_to_start(opts, log, status,
                           std::string{"cannot create a pipe: "}
                               + std::strerror(errno));
    s->pipe.reset(fds[0]);
    w->reset(fds[1]);
    (void)::fcntl(fds[0], F_SETPIPE_SZ, pipe_capacity); // best effort
    // Only our end: the trainer's end stays blocking, as programs expect.
    (void)::fcntl(fds[0], F_SETFL, O_NONBLOCK);
  }

  unique_fd sigfd{::signalfd(-1, &caught, SFD_NONBLOCK | SFD_CLOEXEC)};
  if (!sigfd)
    return fail_to_start(opts, log, status,
                         std::string{"cannot create a signalfd: "}
                             + std::strerror(errno));

  auto started = start_trainer(opts, out_w, err_w);
  // Only the tree may hold the write ends: EOF then means it is gone.
  out_w.reset();
  err_w.reset();
  if (!started.error.empty())
    return fail_to_start(opts, log, status, started.error);

  main_process main{started.pid, {}, 0};
  // Unreaped, the child cannot vanish: its stat is readable even if it
  // already exited, and (pid, start time) names it for good.
  auto st = read_proc_stat(main.pid);
  if (!st)
    log.warn("cannot read the start time of pid %d", main.pid);
  auto starttime = st ? st->starttime : 0;
  log.info("starts main process %d (start time %llu)", main.pid,
           static_cast<unsigned long long>(starttime));
  report(opts, log, status,
         "started " + std::to_string(main.pid) + " "
             + std::to_string(starttime),
         host_suffix());
  status.reset();

  if (!supervise(opts, main, out, err, sigfd, log))
    return 1;
  return finish(opts, main, log);
}

} // namespace

} // namespace corral::shim

int main(int argc, char** argv) {
  return corral::shim::run(argc, argv);
}
