#pragma once
/// The slurm actor: every Slurm command of the daemon goes through it, and
/// it polls squeue once per interval for all watched jobs.

#include "actors/actors.hpp"

#include <map>
#include <string>

namespace corral {

struct slurm_config {
  /// How often squeue is asked about every watched job.
  millis poll = std::chrono::seconds{2};
  /// A Slurm command that takes longer is killed and counts as failed.
  millis command_timeout = std::chrono::seconds{30};
};

struct slurm_state {
  static inline const char* name = "slurm";

  slurm_config cfg;
  std::map<std::string, run_actor> watched; // job id → its run
  /// The last squeue failure, logged once until squeue works again.
  std::string last_failure;
  /// squeue answers --json (else its --format lines are read).
  bool json = true;
};

slurm_actor::behavior_type
slurm_client(slurm_actor::stateful_pointer<slurm_state> self, slurm_config cfg);

} // namespace corral
