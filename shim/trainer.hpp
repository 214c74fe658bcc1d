#pragma once
/// Starting the trainer: fork, join the run's cgroup, exec — and the
/// user-facing message when any step of that fails.

#include "services/unique_fd.hpp"
#include "shim/options.hpp"

#include <string>

namespace corral::shim {

/// A trainer that runs, or the reason it does not.
struct started_trainer {
  /// The main process (our child); 0 when it did not start.
  int pid = 0;
  /// Empty on success; else one line a user can act on, e.g.
  /// "cannot start 'python4': No such file or directory". The failed
  /// child is reaped by then.
  std::string error;
};

/// Forks the trainer with stdout/stderr on the given pipe ends and waits
/// until it has exec'd (or failed to). SIGCHLD must be blocked.
started_trainer start_trainer(const options& opts, const unique_fd& stdout_w,
                              const unique_fd& stderr_w);

} // namespace corral::shim
