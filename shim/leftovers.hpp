#pragma once
/// What is left of a run's process tree once its main process exited, and
/// the means to end it: the run's cgroup when there is one, else every
/// descendant of the shim (it is their subreaper, so processes whose
/// parents died, setsid() escapees included, are still its descendants).

#include "services/cgroup.hpp"
#include "services/proc.hpp"
#include "services/unique_fd.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace corral::shim {

/// Every live process of the shim's tree (its descendants, zombies left
/// out), from one walk of /proc. Each stat is tied to the walk by its
/// parent being in the tree: a pid that a process outside the run
/// recycled meanwhile has a parent outside it and is left out.
std::vector<proc_stat> tree_processes();

class leftovers {
public:
  /// nullopt: the fallback, by /proc scans.
  explicit leftovers(std::optional<cgroup> cg);

  /// Readable when cgroup.events may have changed (inotify); -1 when
  /// there is nothing to watch and only rescans tell.
  int watch_fd() const { return watch_.get(); }
  /// Consumes what made watch_fd() readable.
  void drain_watch();
  /// How long to wait before looking again without an event: short in the
  /// fallback (no event tells when a process dies), a safety net with a
  /// cgroup.
  std::chrono::milliseconds rescan_interval() const;

  /// True when no process of the tree is alive (zombies do not count).
  bool empty();
  /// Sends sig (and SIGCONT, so stopped processes act on it) to every
  /// process of the tree that has not had it yet, and looks again until a
  /// pass finds no new one, so a process forked during the walk is not
  /// missed. Returns how many got it.
  int signal_new(int sig);
  /// SIGKILL to everything left (cgroup.kill with a cgroup).
  void kill();

private:
  /// (pid, start time): a pid alone may be recycled.
  using identity = std::pair<int, std::uint64_t>;
  int signal_pass(int sig);

  std::optional<cgroup> cg_;
  std::string cg_rel_; // as /proc/<pid>/cgroup names it
  unique_fd watch_;
  std::set<identity> signalled_;
};

} // namespace corral::shim
