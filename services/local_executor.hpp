#pragma once
/// One run's processes on this machine: its shim, its cgroup (or the
/// signals fallback) and its main process, held by pidfds. Plain C++ with
/// no timing of its own: the run actor decides when to call what.

#include "services/cgroup.hpp"
#include "services/log_index.hpp"
#include "services/pidfd.hpp"
#include "services/result.hpp"
#include "services/run_machine.hpp"
#include "services/run_spec.hpp"
#include "services/run_view.hpp"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace corral {

struct executor_config {
  std::string shim_path; // corral-shim
  std::string runs_dir;  // <state-dir>/runs
  /// Parent directory of the runs' cgroups; nullopt: signals fallback.
  std::optional<std::string> cgroup_parent;
  std::string cgroup_mount; // the v2 mount, to name paths as /proc does
  /// The shim rotates a run's log file before it grows past this...
  std::uint64_t log_max_bytes = default_log_max_bytes;
  /// ...and keeps this many rotated files per stream.
  int log_keep = default_log_keep;
};

/// What the shim said on its status pipe.
struct shim_report {
  bool started = false; // false: exec_error
  int pid = 0;
  std::uint64_t starttime = 0;
  std::string message;
};

/// Parses one status line: "started <pid> <starttime>" or
/// "exec_error <message>".
std::optional<shim_report> parse_shim_report(const std::string& line);

/// The environment a run gets: base, then the experiment's env, then
/// Corral's own variables (DESIGN.md, "Environment of a run").
/// `gpus` are the NVML indices the scheduler placed the run on.
std::map<std::string, std::string>
run_environment(const run_spec& spec, const std::string& run_id,
                const std::vector<int>& gpus);

class local_executor {
public:
  /// Spawns the shim for a run whose placeholders are expanded, on the
  /// given GPUs. A restart (`next_attempt`) keeps the run's directory, so
  /// its logs go on; a first attempt moves a leftover one aside.
  static result<std::unique_ptr<local_executor>>
  launch(const executor_config& cfg, const std::string& run_id,
         const run_spec& spec, const std::vector<int>& gpus = {},
         bool next_attempt = false);
  ~local_executor();

  /// "cgroup-v2" or "signals".
  std::string mechanism() const;
  /// True when the tree lives in its own cgroup (else: signals fallback).
  bool uses_cgroup() const { return cgroup_.has_value(); }
  std::string run_dir() const { return run_dir_; }
  /// Readable when the shim wrote its report (or died).
  int status_fd() const { return status_.get(); }
  /// Readable when the shim exited.
  int shim_fd() const { return shim_.fd(); }
  /// Readable when the main process exited (after adopt_main).
  int main_fd() const { return main_.fd(); }
  /// cgroup.events, to watch for frozen/populated changes; "" in fallback.
  std::string events_path() const;

  /// Reads what is on the status pipe; nullopt while nothing complete.
  std::optional<shim_report> read_report();
  /// True once the shim closed the status pipe (after its report, or
  /// without one if it died).
  bool status_closed() const { return status_closed_; }
  /// Holds the main process by pidfd, checking its start time.
  status adopt_main(int pid, std::uint64_t starttime);
  std::optional<int> main_pid() const;

  /// Starts freezing the whole tree. cgroup: one write. Fallback: SIGSTOP
  /// to every process, repeated until no new process appears.
  status freeze();
  /// True once every process of the tree is frozen (cgroup.events says
  /// frozen 1) or, in the fallback, shows state T.
  bool frozen() const;
  /// Thaws the cgroup and continues the main process if a signal stopped
  /// it. In the fallback every process is continued here; with a cgroup,
  /// call continue_stopped() next for the rest of the tree.
  status thaw();
  /// SIGCONT to every process of the tree that a signal stopped (state T),
  /// so a run paused from outside resumes whole.
  void continue_stopped();
  /// True when the main process shows state T (stopped by anyone).
  bool main_stopped() const;
  /// Processes that did not freeze, for a pause timeout's message.
  std::vector<process_info> unfrozen_processes() const;

  status signal_main(int sig);
  void signal_tree(int sig);
  void kill_tree();

  /// The live tree with CPU (since the previous call) and RSS.
  std::vector<process_info> processes();
  /// Number of live processes in the tree (cheap).
  int process_count() const;

  /// Reaps the exited shim and reads its exit record.
  exit_facts collect_exit();
  /// Removes the cgroup (the tree is gone).
  void cleanup();

private:
  local_executor() = default;
  std::vector<int> tree_pids() const;

  std::string run_id_;
  std::string run_dir_;
  std::optional<cgroup> cgroup_;
  std::string cgroup_rel_;
  unique_fd status_;
  std::string status_buf_;
  bool status_closed_ = false;
  pidfd shim_;
  pidfd main_;
  std::uint64_t main_start_ = 0;
  struct cpu_sample {
    std::uint64_t ticks = 0;
    std::int64_t at_ns = 0;
  };
  std::map<int, cpu_sample> cpu_;
  bool reaped_ = false;
};

} // namespace corral
