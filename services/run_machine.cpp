#include "services/run_machine.hpp"

#include "services/pidfd.hpp"

#include <algorithm>

namespace corral {

namespace {

error refuse(const std::string& id, run_state s, std::string_view what) {
  return make_error(ec::invalid_transition, "run " + id + " is "
                                                + std::string{to_string(s)}
                                                + "; " + std::string{what});
}

} // namespace

status check_pause(const std::string& id, run_state s) {
  if (s == run_state::running)
    return ok;
  return refuse(id, s, "only a running run can be paused");
}

status check_resume(const std::string& id, run_state s) {
  if (s == run_state::paused)
    return ok;
  return refuse(id, s, "only a paused run can be resumed");
}

status check_stop(const std::string& id, run_state s) {
  if (!is_ended(s))
    return ok;
  return refuse(id, s, "it has already ended");
}

status check_remove(const std::string& id, run_state s) {
  if (is_ended(s))
    return ok;
  return refuse(id, s, "only an ended run can be deleted; stop it first");
}

namespace {

// A Slurm job that ended without Corral asking (see classify_ending).
std::optional<run_ending> classify_slurm(const exit_facts& facts) {
  auto& state = facts.cluster_state;
  if (state == "COMPLETED" && facts.recorded)
    return std::nullopt; // the exit record says it all, as locally
  run_ending out;
  out.state = run_state::failed;
  auto job = "Slurm job " + facts.job_id + " ended " + state;
  if (facts.recorded && !facts.exec_error) {
    if (facts.signaled)
      out.signal = signal_name(facts.code);
    else
      out.exit_code = facts.code;
  } else if (facts.cluster_signal) {
    out.signal = signal_name(*facts.cluster_signal);
  } else {
    out.exit_code = facts.cluster_exit_code;
  }
  auto how = out.signal      ? "; main process killed by " + *out.signal
             : out.exit_code ? "; exit code " + std::to_string(*out.exit_code)
                             : std::string{};
  if (state == "TIMEOUT") {
    out.reason = "timeout";
    out.message = job + ": its time limit passed" + how;
  } else if (state == "CANCELLED") {
    out.reason = "slurm_CANCELLED";
    out.message = job
                  + ": cancelled outside Corral (scancel, or an "
                    "administrator)"
                  + how;
  } else if (state == "COMPLETED") {
    out.reason = "lost";
    out.message = job + " but its shim left no exit record";
  } else {
    out.reason = "slurm_" + state;
    out.message = job + how;
  }
  return out;
}

} // namespace

run_ending classify_ending(const exit_facts& facts,
                           const std::optional<std::string>& stop_reason) {
  run_ending out;
  if (!facts.cluster_state.empty() && !stop_reason
      && !(facts.recorded && facts.exec_error))
    if (auto slurm = classify_slurm(facts))
      return *slurm;
  if (!facts.recorded) {
    out.state = stop_reason && *stop_reason != "timeout" ? run_state::stopped
                                                         : run_state::failed;
    out.reason = stop_reason ? *stop_reason : "lost";
    out.message
        = facts.cluster_state.empty()
              ? "the run's shim exited without recording how the run ended"
              : "Slurm job " + facts.job_id + " ended " + facts.cluster_state
                    + " without an exit record (cancelled before it started, "
                      "or its shim was killed)";
    return out;
  }
  if (facts.exec_error) {
    out.state = run_state::failed;
    out.reason = "exec_error";
    out.message = facts.message;
    out.exit_code = facts.code;
    return out;
  }
  auto how
      = facts.signaled
            ? "main process was killed by " + signal_name(facts.code)
            : "main process exited with code " + std::to_string(facts.code);
  if (facts.signaled)
    out.signal = signal_name(facts.code);
  else
    out.exit_code = facts.code;
  if (stop_reason == "timeout") {
    out.state = run_state::failed;
    out.reason = "timeout";
    out.message = "exceeded max_runtime and was stopped; " + how;
    return out;
  }
  if (stop_reason) {
    out.state = run_state::stopped;
    out.reason = *stop_reason;
    out.message = (*stop_reason == "daemon_exit" ? "stopped at daemon exit; "
                                                 : "stopped on request; ")
                  + how;
    return out;
  }
  if (!facts.signaled && facts.code == 0) {
    out.state = run_state::finished;
    out.reason = "exit";
    out.message = how;
    return out;
  }
  out.state = run_state::failed;
  out.reason = facts.signaled ? "signal" : "exit";
  out.message = how;
  return out;
}

} // namespace corral

namespace corral {

bool should_restart(const restart_spec& policy, const run_ending& ending,
                    int restarts_done) {
  if (restarts_done >= policy.max || ending.state == run_state::stopped
      || ending.reason == "exec_error")
    return false;
  switch (policy.policy) {
    case restart_policy::never:
      return false;
    case restart_policy::on_failure:
      return ending.state == run_state::failed;
    case restart_policy::always:
      return true;
  }
  return false;
}

millis restart_backoff(const restart_spec& policy, int restarts_done) {
  // Capped so a long series cannot overflow; a day is already absurd.
  auto wait = policy.backoff;
  for (int i = 0; i < restarts_done && wait < std::chrono::hours{24}; ++i)
    wait *= 2;
  return std::min<millis>(wait, std::chrono::hours{24});
}

} // namespace corral
