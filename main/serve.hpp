#pragma once
/// `corral serve`: the daemon's life from start to ordered shutdown.

#include <optional>
#include <string>

namespace corral {

/// Flags of `corral serve`; unset ones come from the config file, then
/// from the defaults.
struct serve_flags {
  std::optional<std::string> listen;
  std::optional<std::string> state_dir;
  std::optional<std::string> config_file;
  std::optional<std::string> token_file;
  std::optional<std::string> cgroup;
  std::optional<std::string> gpus;
  std::optional<std::string> executor;
  std::optional<std::string> slurm_log_dir;
  bool no_auth = false;
  bool stop_runs_on_exit = false;
};

/// Runs the daemon until SIGTERM or SIGINT; returns the exit code.
int serve(const serve_flags& flags);

} // namespace corral
