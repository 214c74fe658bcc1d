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
};

/// How a run ended.
struct run_ending {
  run_state state = run_state::failed;
  std::string reason; // exit, signal, exec_error, user, lost, daemon_exit
  std::string message;
  std::optional<int> exit_code;
  std::optional<std::string> signal;
};

/// Classifies a run's end. `stop_reason` is set when Corral was asked to
/// stop the run ("user", "daemon_exit"): then any end is `stopped`.
run_ending classify_ending(const exit_facts& facts,
                           const std::optional<std::string>& stop_reason);

} // namespace corral

namespace corral {

/// Refuses what a spec may say but this version cannot honour yet (GPU
/// placement, concurrency limits, runtime limits, restart policies), so
/// nothing a user asks for is silently ignored. ec::invalid_spec.
status check_supported(const run_spec& spec);

} // namespace corral
