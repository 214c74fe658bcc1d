#include "services/run_machine.hpp"

#include "services/pidfd.hpp"

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

run_ending classify_ending(const exit_facts& facts,
                           const std::optional<std::string>& stop_reason) {
  run_ending out;
  if (!facts.recorded) {
    out.state = stop_reason ? run_state::stopped : run_state::failed;
    out.reason = stop_reason ? *stop_reason : "lost";
    out.message = "the run's shim exited without recording how the run ended";
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

status check_supported(const run_spec& spec) {
  auto refuse = [&](const std::string& key, const std::string& why) {
    return make_error(ec::invalid_spec, "experiment " + spec.experiment + ": "
                                            + key + " is not supported yet ("
                                            + why + ")");
  };
  if (spec.gpus > 0)
    return refuse("gpus: " + std::to_string(spec.gpus),
                  "GPU placement comes with the scheduler; runs get "
                  "CUDA_VISIBLE_DEVICES=\"\" until then");
  if (spec.cpus || spec.memory_bytes)
    return refuse(spec.cpus ? "cpus" : "memory",
                  "placement comes with the scheduler");
  if (spec.max_concurrent)
    return refuse("max_concurrent", "it comes with the scheduler");
  if (spec.max_runtime)
    return refuse("max_runtime", "it comes with the scheduler");
  if (spec.restart.policy != restart_policy::never)
    return refuse("restart.policy", "restart policies come with the "
                                    "scheduler; only 'never' works now");
  return ok;
}

} // namespace corral
