#pragma once
/// One run's cgroup v2 directory: freeze, thaw, kill and list its members.
/// The kernel does the tree walking: a process that left its session or
/// process group is still in the cgroup it was born into.

#include "services/result.hpp"
#include "services/unique_fd.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace corral {

/// Where the cgroup v2 hierarchy is mounted, read from mountinfo text
/// (/proc/self/mountinfo): "/sys/fs/cgroup" on a pure v2 machine,
/// "/sys/fs/cgroup/unified" on a hybrid one.
std::optional<std::string> find_cgroup2_mount(const std::string& mountinfo);
std::optional<std::string> find_cgroup2_mount();

/// The parsed cgroup.events file.
struct cgroup_events {
  bool populated = false;
  bool frozen = false;
};

class cgroup {
public:
  cgroup() = default;
  /// Adopts an existing directory (no ownership: nothing is removed).
  explicit cgroup(std::string path) : path_(std::move(path)) {}

  /// Creates the directory (and missing parents). An existing empty one is
  /// reused.
  static result<cgroup> create(const std::string& path);
  /// Opens a cgroup that must exist already (a run's, found again after a
  /// daemon restart): creates nothing and moves no process. ec::not_found
  /// when the directory is gone.
  static result<cgroup> open_existing(const std::string& path);

  const std::string& path() const { return path_; }
  std::string events_path() const { return path_ + "/cgroup.events"; }
  /// The path as /proc/<pid>/cgroup shows it, given the mount point.
  std::string relative_to(const std::string& mount) const;

  status freeze() const;
  status thaw() const;
  result<cgroup_events> events() const;
  /// SIGKILL to every member at once (cgroup.kill, Linux 5.14+); falls
  /// back to signalling each member through a pidfd.
  status kill() const;
  /// Signals every member through pinned pidfds.
  void signal_all(int sig) const;
  /// cpu.stat, opened for repeated reads with read_cpu_usage_usec.
  unique_fd open_cpu_stat() const;
  /// The pids in cgroup.procs.
  result<std::vector<int>> procs() const;
  /// Removes the (empty) directory.
  status remove() const;

private:
  std::string path_;
};

/// usage_usec from an open cpu.stat (there without the cpu controller):
/// the CPU time of every process that ever ran in the cgroup, so one pread
/// says whether a tree did anything since the last look.
std::optional<std::uint64_t> read_cpu_usage_usec(int cpu_stat_fd);

} // namespace corral
