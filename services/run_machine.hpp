#pragma once
/// The run state machine's decisions, free of actors and the OS: which
/// requests each state allows, and how a run's end is classified.

#include "services/result.hpp"
#include "services/run_spec.hpp"
#include "services/run_state.hpp"

#include <optional>
#include <string>

namespace corral {

/// Pause is legal only from running.
status check_pause(const std::string& id, run_state s);
/// Resume is legal only from paused.
status check_resume(const std::string& id, run_state s);
/// Stop is legal until the run has ended.
status check_stop(const std::string& id, run_state s);
/// DELETE is legal only once the run has ended.
status check_remove(const std::string& id, run_state s);

/// What the shim recorded (services/exit_record.hpp), reduced to what
/// classification needs.
struct exit_facts {
  bool recorded = false; // false: the shim left no exit record
  bool exec_error = false;
  bool signaled = false;
  int code = 0; // exit code, or signal number when signaled
  std::string message;
  /// Slurm runs: the job's final state ("" for a local run), its id, and
  /// the exit status Slurm reports (used when the shim left no record).
  std::string cluster_state;
  std::string job_id;
  std::optional<int> cluster_exit_code;
  std::optional<int> cluster_signal;
};

/// How a run ended.
struct run_ending {
  run_state state = run_state::failed;
  std::string reason; // exit, signal, exec_error, user, lost, daemon_exit
  std::string message;
  std::optional<int> exit_code;
  std::optional<std::string> signal;
};

/// Classifies a run's end. `stop_reason` is set when Corral stopped the
/// run: "user" and "daemon_exit" end `stopped`, "timeout" (max_runtime)
/// ends `failed` with reason timeout. A Slurm run's final job state says
/// nothing about who stopped it, so Corral's intent decides as above;
/// without one, TIMEOUT is `failed`/timeout, COMPLETED goes by the exit
/// record like a local run, and any other state (FAILED, OUT_OF_MEMORY,
/// NODE_FAIL, CANCELLED from outside...) is `failed` with reason
/// `slurm_<STATE>` and the exit code.
run_ending classify_ending(const exit_facts& facts,
                           const std::optional<std::string>& stop_reason);

} // namespace corral

namespace corral {

/// Whether a run that ended so is started again by its restart policy,
/// after `restarts_done` restarts already. A user's stop (or the daemon's
/// exit) is never restarted; an exec error is not either, since the same
/// command cannot start the next time.
bool should_restart(const restart_spec& policy, const run_ending& ending,
                    int restarts_done);

/// The wait before restart number restarts_done + 1: backoff, doubling
/// each time.
millis restart_backoff(const restart_spec& policy, int restarts_done);

} // namespace corral
