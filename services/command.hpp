#pragma once
/// Runs a program to its end and keeps what it printed: the Slurm client
/// commands (sbatch, squeue, scontrol, scancel). argv goes to execvp as
/// is: nothing is interpreted by a shell.

#include "services/result.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace corral {

struct command_output {
  /// Exit code; 128 + signal when killed (a timeout shows as SIGKILL).
  int code = 0;
  bool timed_out = false;
  std::string out;
  std::string err;

  bool ok() const { return code == 0 && !timed_out; }
  /// "sbatch: error: ..." for a message: stderr's last non-empty line, or
  /// the exit status when it printed nothing.
  std::string failure() const;
};

/// Runs argv[0] (looked up in PATH) with stdin from /dev/null, the
/// daemon's environment and a clean signal mask, and waits for it; killed
/// after `timeout`. An error only when it cannot be started at all (the
/// message names the program).
result<command_output> run_command(const std::vector<std::string>& argv,
                                   std::chrono::milliseconds timeout);

/// True when `name` is an executable file in one of PATH's directories.
bool on_path(const std::string& name);

} // namespace corral
