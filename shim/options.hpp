#pragma once
/// The shim's command line, as the daemon writes it:
///   corral-shim --run-dir DIR [--cgroup CGROUP_DIR] --cwd DIR
///               --stop-signal N --grace-ms N
///               [--log-max-bytes N] [--log-keep N] -- ARGV0 ARGS...

#include "services/log_index.hpp"
#include "services/result.hpp"

#include <chrono>
#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace corral::shim {

/// One run, as the shim is told it.
struct options {
  /// Where the logs, shim.log and the exit file go.
  std::string run_dir;
  /// The run's cgroup v2 directory; nullopt: the signals fallback.
  std::optional<std::string> cgroup_dir;
  /// The trainer's working directory.
  std::string cwd;
  /// Sent to what is left of the tree once the main process exited.
  int stop_signal = SIGTERM;
  /// How long leftovers get between the stop signal and SIGKILL.
  std::chrono::milliseconds grace{30000};
  /// A log file is rotated before it grows past this (at least 1).
  std::uint64_t log_max_bytes = default_log_max_bytes;
  /// Rotated log files kept per stream (at least 1).
  int log_keep = default_log_keep;
  /// The trainer's argv; argv[0] is looked up in PATH.
  std::vector<std::string> argv;
};

/// Parses argv; the error message names the flag that is wrong.
result<options> parse_options(int argc, char** argv);

} // namespace corral::shim
