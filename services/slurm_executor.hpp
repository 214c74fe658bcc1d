#pragma once
/// One attempt of a run as a Slurm batch job. It never touches the job's
/// processes: it asks Slurm (sbatch, scontrol, scancel, through the
/// sender the run actor gives it, which runs them off the actor's thread)
/// and the shim on the node (signals Slurm delivers to it), and learns
/// what happened from squeue and the files the shim writes into the run's
/// directory on the shared filesystem: `report` (started), `suspended`
/// (its tree is stopped) and `exit`.

#include "services/command.hpp"
#include "services/executor.hpp"
#include "services/local_executor.hpp"
#include "services/slurm.hpp"

#include <chrono>
#include <functional>
#include <memory>

namespace corral {

/// Commands to run in order, stopping at the first that fails; the answer
/// comes back to slurm_executor::on_answer with the tag.
struct slurm_request {
  std::string tag;
  std::vector<std::vector<std::string>> commands;
};
using slurm_sender = std::function<void(slurm_request)>;

class slurm_executor final : public executor {
public:
  using clock = std::chrono::steady_clock;

  /// Writes the batch script and sends sbatch (tag "submit"). A restart
  /// (`next_attempt`) keeps the run's directory, so its logs go on.
  /// `look_first`: a daemon died after sending sbatch and before its
  /// answer; squeue is asked first (tag "find") for a job of this run's
  /// batch script, which is taken instead of submitting a second one.
  static result<std::unique_ptr<slurm_executor>>
  launch(const executor_config& cfg, const std::string& run_id,
         const run_spec& spec, bool next_attempt, slurm_sender send,
         bool look_first = false);
  /// True when a saved identity names a Slurm job.
  static bool names_slurm(const nlohmann::json& identity);
  /// Takes back the job a previous daemon submitted; its state comes with
  /// the next poll.
  static result<std::unique_ptr<slurm_executor>>
  adopt(const executor_config& cfg, const std::string& run_id,
        const nlohmann::json& identity, slurm_sender send);

  std::string kind() const override { return "slurm"; }
  std::string mechanism() const override { return "slurm"; }
  nlohmann::json identity_json() const override;
  std::string run_dir() const override { return run_dir_; }
  status adopt_main(int, std::uint64_t) override { return ok; }

  /// Pause, step one: SIGTSTP to the shim, which stops its tree and says
  /// so in `suspended`; step two (advance_pause) suspends the job.
  status freeze() override;
  /// Step two, once the shim confirmed: `scontrol suspend`. Call it while
  /// a pause waits; true once it has been sent.
  bool advance_pause();
  /// The shim confirmed its tree stopped, and Slurm suspended the job (or
  /// refused to, and the shim's stop is all there is).
  bool frozen() const override;
  /// `scontrol resume` (if suspended), then SIGCONT to the shim, which
  /// continues its tree (tag "resume").
  status thaw() override;
  /// SIGCONT to the shim, which continues what it stopped: after a resume
  /// from outside (`scontrol resume` only thaws the job).
  void continue_stopped() override;
  /// Slurm shows the job SUSPENDED (from outside, or by us).
  bool main_stopped() const override;
  bool uses_cgroup() const override { return false; }
  std::vector<process_info> unfrozen_processes() const override { return {}; }
  /// `scancel --batch --signal=SIG`: the shim passes it to the main
  /// process.
  status signal_main(int sig) override;
  /// `scancel --full --signal=SIG`: every process of the job.
  void signal_tree(int sig) override;
  /// Plain `scancel`: SIGTERM, then SIGKILL after Slurm's KillWait.
  void kill_tree() override;
  std::optional<int> main_pid() const override;
  std::vector<process_info> processes(bool) override { return {}; }
  int process_count() const override { return 0; }
  std::optional<std::uint64_t> cpu_usage_usec() override {
    return std::nullopt;
  }
  exit_facts collect_exit() override;
  void cleanup() override {}

  /// What an answer means for the run.
  struct outcome {
    bool submitted = false; // sbatch gave the job id: save the identity
    /// The job of a lost submission ran and ended long enough ago that
    /// squeue forgot it: its exit file says how (collect_exit).
    bool ended_unseen = false;
    /// The request failed in a way the run must hear about (sbatch
    /// refused: the run fails; a resume refused: the resume fails).
    std::optional<error> failure;
    /// Something worth an event (a refused suspend and its fallback).
    std::string note;
  };
  outcome on_answer(const std::string& tag,
                    const result<command_output>& answer);

  /// squeue's word on the job; nullopt when it no longer lists it.
  void observe(const std::optional<slurm_job>& job, clock::time_point now);
  const std::string& job_id() const { return job_id_; }
  /// The latest state squeue showed ("" before the first poll).
  const std::string& state() const { return state_; }
  const std::string& reason() const { return reason_; }
  const std::string& node() const { return node_; }
  /// The attempt is over: Slurm shows a final state (or forgot the job)
  /// and the exit file is there, or a few seconds passed without it (the
  /// shim was killed, or the shared filesystem is slow).
  bool ended(clock::time_point now) const;

private:
  slurm_executor() = default;
  void send(std::string tag, std::vector<std::vector<std::string>> commands);
  /// Writes batch.sh and sends sbatch.
  status submit();
  std::vector<std::string> scancel(std::vector<std::string> args) const;

  std::string run_id_;
  std::string run_dir_;
  std::string job_id_;
  batch_job job_; // what submit() gives sbatch
  slurm_sender send_;
  std::string state_, reason_, node_;
  std::optional<int> exit_code_, signal_;
  bool listed_ = false;       // squeue listed it at least once
  bool suspend_sent_ = false; // scontrol suspend went out
  bool suspended_ = false;    // ...and Slurm took it
  bool suspend_refused_ = false;
  bool pausing_ = false;
  std::optional<clock::time_point> over_since_;
  mutable std::optional<int> main_pid_;
};

} // namespace corral
