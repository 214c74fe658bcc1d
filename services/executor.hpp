#pragma once
/// What the run actor drives: one attempt of a run on some backend. The
/// local executor holds the tree itself (shim, cgroup, pidfds); the Slurm
/// executor hands it to a cluster and learns about it from squeue and the
/// files the shim leaves on the shared filesystem. Both report the same
/// states through the same calls, so the run actor's state machine is one.
///
/// Calls that act (freeze, thaw, signals) return at once. With a local
/// tree they have acted when they return; with Slurm they have been sent,
/// and the outcome shows in later observations (frozen(), the job's
/// state), so the run actor always waits for an observation, never for
/// the call.

#include "services/result.hpp"
#include "services/run_machine.hpp"
#include "services/run_view.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace corral {

/// What the shim said on its status pipe (or in its report file).
struct shim_report {
  bool started = false; // false: exec_error
  int pid = 0;
  std::uint64_t starttime = 0;
  std::string message;
};

class executor {
public:
  virtual ~executor() = default;

  /// "local" or "slurm": the run object's `executor`.
  virtual std::string kind() const = 0;
  /// How a pause stops the tree: "cgroup-v2", "signals" or "slurm".
  virtual std::string mechanism() const = 0;
  /// What a later daemon needs to find the run again (persisted).
  virtual nlohmann::json identity_json() const = 0;
  /// Where the shim writes the logs and the exit file.
  virtual std::string run_dir() const = 0;

  // What the run actor watches with the reactor; -1 or "" where the
  // backend has nothing of the kind (Slurm: its news come from polls).
  virtual int status_fd() const { return -1; }
  virtual int shim_fd() const { return -1; }
  virtual int main_fd() const { return -1; }
  virtual std::string events_path() const { return {}; }
  /// The shim's report, once; nullopt while there is none.
  virtual std::optional<shim_report> read_report() { return std::nullopt; }
  virtual bool status_closed() const { return true; }
  /// Holds the main process the shim reported (pid and start time).
  virtual status adopt_main(int pid, std::uint64_t starttime) = 0;

  /// Starts stopping the whole tree; frozen() says when it is.
  virtual status freeze() = 0;
  /// True once every process of the tree is stopped.
  virtual bool frozen() const = 0;
  /// Continues the tree (a stop from outside included, for the main
  /// process); continue_stopped() the rest.
  virtual status thaw() = 0;
  virtual void continue_stopped() = 0;
  /// True when the main process is stopped (by anyone).
  virtual bool main_stopped() const = 0;
  /// True when a freeze from outside shows in events_path() at once.
  virtual bool uses_cgroup() const = 0;
  /// Processes that did not freeze, for a pause timeout's message.
  virtual std::vector<process_info> unfrozen_processes() const = 0;

  virtual status signal_main(int sig) = 0;
  virtual void signal_tree(int sig) = 0;
  /// Ends everything now (SIGKILL, or the cluster's own cancel).
  virtual void kill_tree() = 0;

  /// The main process's pid once known (on the node that runs it).
  virtual std::optional<int> main_pid() const = 0;
  /// The live tree with CPU and RSS (empty where it cannot be seen).
  virtual std::vector<process_info> processes(bool details) = 0;
  virtual int process_count() const = 0;
  /// The tree's CPU time so far; nullopt where unknown.
  virtual std::optional<std::uint64_t> cpu_usage_usec() = 0;

  /// How the attempt ended; call once it has.
  virtual exit_facts collect_exit() = 0;
  /// Gives back what the attempt held (cgroup, files of the cluster).
  virtual void cleanup() = 0;
};

} // namespace corral
