#pragma once
/// One run's processes on this machine: its shim, its cgroup (or the
/// signals fallback) and its main process, held by pidfds. Plain C++ with
/// no timing of its own: the run actor decides when to call what.

#include "services/cgroup.hpp"
#include "services/executor.hpp"
#include "services/log_index.hpp"
#include "services/pidfd.hpp"
#include "services/result.hpp"
#include "services/run_machine.hpp"
#include "services/run_spec.hpp"
#include "services/run_view.hpp"

#include <nlohmann/json.hpp>

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
  /// Slurm runs: the directory the nodes share, for batch scripts, logs
  /// and exit files (`slurm.log_dir`).
  std::string slurm_dir;
  /// The shim as the nodes see it (`slurm.shim`; "" = shim_path).
  std::string slurm_shim;
  /// Follow logs under slurm_dir by their size each second: inotify does
  /// not see what another node writes over NFS.
  bool slurm_poll_logs = false;
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

/// The shim's exit record in `run_dir` as exit_facts; `recorded = false`
/// without one.
exit_facts facts_from_record(const std::string& run_dir);

/// Moves a run directory left by a deleted run or an earlier daemon into
/// `archive` (as <name>-<unix ms>), so a new run of the same id starts
/// clean and the old logs are kept. Nothing there: nothing to do.
status archive_run_dir(const std::string& dir, const std::string& archive);

/// What a later daemon needs to find a run's processes again (persisted
/// as JSON).
struct executor_identity {
  int shim_pid = 0;
  std::uint64_t shim_starttime = 0;
  int main_pid = 0; // 0 until the shim reported the trainer
  std::uint64_t main_starttime = 0;
  /// Absolute path of the run's cgroup; "" in the signals fallback.
  std::string cgroup;

  nlohmann::json to_json() const;
  /// nullopt when a field is missing or has the wrong type or range.
  static std::optional<executor_identity> from_json(const nlohmann::json& j);
  bool operator==(const executor_identity&) const = default;
};

struct adoption;

class local_executor final : public executor {
public:
  /// Spawns the shim for a run whose placeholders are expanded, on the
  /// given GPUs. A restart (`next_attempt`) keeps the run's directory, so
  /// its logs go on; a first attempt moves a leftover one aside.
  static result<std::unique_ptr<local_executor>>
  launch(const executor_config& cfg, const std::string& run_id,
         const run_spec& spec, const std::vector<int>& gpus = {},
         bool next_attempt = false);
  /// Takes back a run whose daemon died, from the identity that daemon
  /// saved. The shim counts as alive only if its pid still names a live
  /// process that started at shim_starttime (a recycled pid is not it).
  /// Alive: the result holds an executor that watches it by pidfd but is
  /// not its parent (no status pipe; collect_exit() does not reap). Gone:
  /// `ended` holds its exit record if it left one, and whatever is left in
  /// the run's cgroup is killed and the cgroup removed (without a cgroup,
  /// nothing can be found safely: nothing is killed). An error only when
  /// the identity is unusable or the OS refuses; then nothing was touched.
  static result<adoption> adopt(const executor_config& cfg,
                                const std::string& run_id,
                                const executor_identity& id);
  /// The identity of a run whose launch no record names (the daemon died
  /// between starting the shim and saving who it was): the main process is
  /// the member of the run's cgroup whose parent is outside it, and that
  /// parent is the shim. nullopt without a cgroup or a live tree in it.
  static std::optional<executor_identity>
  find_identity(const executor_config& cfg, const std::string& run_id);
  /// How the run ended by its exit record (`recorded` false without one).
  static exit_facts recorded_exit(const executor_config& cfg,
                                  const std::string& run_id);
  ~local_executor() override;

  /// What a later daemon needs to adopt this run (main_* are 0 until the
  /// main process is known).
  executor_identity identity() const;
  nlohmann::json identity_json() const override { return identity().to_json(); }
  std::string kind() const override { return "local"; }
  /// False for an adopted run: the shim is another process's child.
  bool shim_is_child() const { return shim_is_child_; }

  /// "cgroup-v2" or "signals".
  std::string mechanism() const override;
  /// True when the tree lives in its own cgroup (else: signals fallback).
  bool uses_cgroup() const override { return cgroup_.has_value(); }
  std::string run_dir() const override { return run_dir_; }
  /// Readable when the shim wrote its report (or died); -1 for an adopted
  /// run, whose report went to the daemon that died.
  int status_fd() const override { return status_.get(); }
  /// Readable when the shim exited.
  int shim_fd() const override { return shim_.fd(); }
  /// Readable when the main process exited (after adopt_main); -1 when it
  /// is not held (not reported yet, or adopted after it had exited).
  int main_fd() const override { return main_.fd(); }
  /// cgroup.events, to watch for frozen/populated changes; "" in fallback.
  std::string events_path() const override;

  /// Reads what is on the status pipe; nullopt while nothing complete.
  std::optional<shim_report> read_report() override;
  /// True once the shim closed the status pipe (after its report, or
  /// without one if it died).
  bool status_closed() const override { return status_closed_; }
  /// Holds the main process by pidfd, checking its start time.
  status adopt_main(int pid, std::uint64_t starttime) override;
  /// The main process's pid once known, also after it exited.
  std::optional<int> main_pid() const override;

  /// Starts freezing the whole tree. cgroup: one write. Fallback: SIGSTOP
  /// to every process, repeated until no new process appears.
  status freeze() override;
  /// True once every process of the tree is frozen (cgroup.events says
  /// frozen 1) or, in the fallback, shows state T.
  bool frozen() const override;
  /// The tree's CPU time from its cgroup; nullopt without one.
  std::optional<std::uint64_t> cpu_usage_usec() override;
  /// Thaws the cgroup and continues the main process if a signal stopped
  /// it. In the fallback every process is continued here; with a cgroup,
  /// call continue_stopped() next for the rest of the tree.
  status thaw() override;
  /// SIGCONT to every process of the tree that a signal stopped (state T),
  /// so a run paused from outside resumes whole.
  void continue_stopped() override;
  /// True when the main process shows state T (stopped by anyone).
  bool main_stopped() const override;
  /// Processes that did not freeze, for a pause timeout's message.
  std::vector<process_info> unfrozen_processes() const override;

  status signal_main(int sig) override;
  void signal_tree(int sig) override;
  void kill_tree() override;

  /// The live tree with CPU (since the previous call) and RSS.
  /// Without `details`, cmd and frozen are left out (two reads fewer per
  /// process, for the summaries' CPU and RSS).
  std::vector<process_info> processes(bool details = true) override;
  /// Number of live processes in the tree (cheap).
  int process_count() const override;

  /// Waits for the shim's exit (reaping it if it is our child), then reads
  /// its exit record. Without a record the facts say `recorded = false`
  /// (the run is lost). Call it once shim_fd() is readable.
  exit_facts collect_exit() override;
  /// Removes the cgroup (the tree is gone).
  void cleanup() override;

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
  std::uint64_t shim_start_ = 0;
  bool shim_is_child_ = true;
  pidfd main_;
  unique_fd main_stat_; // /proc/<main>/stat, kept open for main_stopped()
  unique_fd cpu_stat_;  // the cgroup's cpu.stat, for cpu_usage_usec()
  int main_pid_ = 0;
  std::uint64_t main_start_ = 0;
  struct cpu_sample {
    std::uint64_t ticks = 0;
    std::int64_t at_ns = 0;
  };
  std::map<int, cpu_sample> cpu_;
  bool reaped_ = false;
};

/// What became of a run while no daemon watched it.
struct adoption {
  /// The shim lives: held again by pidfd (pid and start time checked).
  std::unique_ptr<local_executor> exec;
  /// The shim is gone and left its exit record.
  std::optional<exit_facts> ended;
  // Neither set: lost, the shim is gone without an exit record.

  /// What adopt() found or did beyond that, for the log (leftover
  /// processes killed, a cgroup it could not remove); "" when nothing.
  std::string message;

  bool lost() const { return !exec && !ended; }
};

} // namespace corral
