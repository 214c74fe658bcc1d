#include "services/pidfd.hpp"

#include <poll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <string>
#include <utility>

#include "services/proc.hpp"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace corral {

result<pidfd> pidfd::open(int pid, std::optional<std::uint64_t> starttime) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) {
    auto code = errno == ESRCH ? ec::not_found : ec::internal;
    return make_error(code, "pidfd_open " + std::to_string(pid) + ": "
                                + std::strerror(errno));
  }
  pidfd out;
  out.fd_.reset(fd);
  out.pid_ = pid;
  // pidfd_open is close-on-exec by definition. The process it pins may be
  // a newer one than the caller meant: its start time tells.
  if (starttime) {
    auto st = read_proc_stat(pid);
    if (!st || st->starttime != *starttime)
      return make_error(ec::not_found, "process " + std::to_string(pid)
                                           + " is gone (pid reused)");
  }
  return out;
}

status pidfd::send_signal(int sig) const {
  if (::syscall(SYS_pidfd_send_signal, fd_.get(), sig, nullptr, 0) < 0) {
    auto code = errno == ESRCH ? ec::not_found : ec::internal;
    return make_error(code, "signal " + signal_name(sig) + " to pid "
                                + std::to_string(pid_) + ": "
                                + std::strerror(errno));
  }
  return ok;
}

bool pidfd::exited() const {
  pollfd p{fd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

bool signal_process_safely(int pid, std::uint64_t starttime, int sig) {
  auto fd = pidfd::open(pid, starttime);
  if (!fd)
    return false;
  return static_cast<bool>(fd->send_signal(sig));
}

namespace {

constexpr std::array<std::pair<int, std::string_view>, 31> signal_names{{
    {SIGHUP, "SIGHUP"},       {SIGINT, "SIGINT"},       {SIGQUIT, "SIGQUIT"},
    {SIGILL, "SIGILL"},       {SIGTRAP, "SIGTRAP"},     {SIGABRT, "SIGABRT"},
    {SIGBUS, "SIGBUS"},       {SIGFPE, "SIGFPE"},       {SIGKILL, "SIGKILL"},
    {SIGUSR1, "SIGUSR1"},     {SIGSEGV, "SIGSEGV"},     {SIGUSR2, "SIGUSR2"},
    {SIGPIPE, "SIGPIPE"},     {SIGALRM, "SIGALRM"},     {SIGTERM, "SIGTERM"},
    {SIGSTKFLT, "SIGSTKFLT"}, {SIGCHLD, "SIGCHLD"},     {SIGCONT, "SIGCONT"},
    {SIGSTOP, "SIGSTOP"},     {SIGTSTP, "SIGTSTP"},     {SIGTTIN, "SIGTTIN"},
    {SIGTTOU, "SIGTTOU"},     {SIGURG, "SIGURG"},       {SIGXCPU, "SIGXCPU"},
    {SIGXFSZ, "SIGXFSZ"},     {SIGVTALRM, "SIGVTALRM"}, {SIGPROF, "SIGPROF"},
    {SIGWINCH, "SIGWINCH"},   {SIGIO, "SIGIO"},         {SIGPWR, "SIGPWR"},
    {SIGSYS, "SIGSYS"},
}};

} // namespace

std::string signal_name(int sig) {
  for (auto& [num, name] : signal_names)
    if (num == sig)
      return std::string{name};
  return "SIG" + std::to_string(sig);
}

std::optional<int> parse_signal(std::string_view text) {
  int num = 0;
  auto [ptr, err]
      = std::from_chars(text.data(), text.data() + text.size(), num);
  if (err == std::errc{} && ptr == text.data() + text.size())
    return num > 0 && num < NSIG ? std::optional<int>{num} : std::nullopt;
  std::string upper{text};
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  if (upper.rfind("SIG", 0) != 0)
    upper = "SIG" + upper;
  for (auto& [sig, name] : signal_names)
    if (name == upper)
      return sig;
  return std::nullopt;
}

} // namespace corral
