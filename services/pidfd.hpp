#pragma once
/// A process held by pidfd: signals reach exactly the process that was
/// opened, never a later one that reuses its pid.

#include "services/result.hpp"
#include "services/unique_fd.hpp"

#include <cstdint>
#include <optional>

namespace corral {

class pidfd {
public:
  pidfd() = default;

  /// Opens a pidfd for pid. When starttime is given, also checks that the
  /// process behind the new descriptor started then (so a pid recycled
  /// before the open is refused with ec::not_found).
  static result<pidfd> open(int pid,
                            std::optional<std::uint64_t> starttime = {});

  /// Sends sig through the descriptor. ESRCH (already exited) is an error
  /// with ec::not_found.
  status send_signal(int sig) const;

  /// True once the process has exited (the descriptor polls readable).
  bool exited() const;

  int fd() const { return fd_.get(); }
  int pid() const { return pid_; }
  explicit operator bool() const { return static_cast<bool>(fd_); }

private:
  unique_fd fd_;
  int pid_ = 0;
};

/// Signals a process by pid only after pinning it with a pidfd and checking
/// its start time; a process that is gone is not an error (returns false).
bool signal_process_safely(int pid, std::uint64_t starttime, int sig);

/// "SIGTERM" for 15; "SIG<n>" when unknown.
std::string signal_name(int sig);
/// Accepts "SIGTERM", "TERM", "sigterm" or "15"; nullopt when unknown.
std::optional<int> parse_signal(std::string_view text);

} // namespace corral
