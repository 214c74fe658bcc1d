#pragma once
/// The shim's command line, as the daemon writes it:
///   corral-shim --run-dir DIR [--cgroup CGROUP_DIR] --cwd DIR
///               --stop-signal N --grace-ms N
///               [--log-max-bytes N] [--log-keep N]
///               [--forward SIG[,SIG...]] [--suspend-file PATH]
///               [--report-file PATH] [--exit-like-main] -- ARGV0 ARGS...
///
/// The last four are for Slurm, where the daemon (maybe on another
/// machine) reaches the run only through Slurm and the shared run dir:
///   --forward SIG[,SIG...]  signals (numbers or names, e.g. "10,15") the
///       shim passes on to the main process instead of ignoring them
///       ("scancel --batch --signal=X" reaches only the shim). Once the main
///       process has exited they are ignored: the shim is ending the
///       leftovers already. SIGKILL, SIGSTOP, SIGCONT, SIGTSTP, SIGCHLD and
///       glibc's reserved 32 and 33 are refused. May be repeated.
///   --suspend-file PATH  SIGTSTP (scontrol suspend) makes the shim SIGSTOP
///       every process of its tree but itself, wait (bounded) until each
///       shows stopped, and write PATH atomically:
///       "stopped <count> <unix_ms>\n", or "partial <stopped>/<total>
///       <unix_ms>\n" when some did not stop in time. SIGCONT (scontrol
///       resume) removes PATH and continues every stopped process of the
///       tree (and those in state D, which may still hold the SIGSTOP).
///       Without the flag SIGTSTP is ignored.
///   --report-file PATH  the report of the status pipe also goes into PATH,
///       written atomically: "started <pid> <starttime> <hostname>\n" or
///       "exec_error <message>\n".
///   --exit-like-main  the shim exits as the main process did: its exit
///       code, 128 + the signal that killed it, 127 when it did not start
///       (the exit file is written first all the same). Without it the
///       shim exits 0 once the exit file is written.

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
  /// Signals passed on to the main process (--forward); sorted, unique.
  std::vector<int> forward;
  /// Where a suspend (SIGTSTP) is confirmed; nullopt: SIGTSTP is ignored.
  std::optional<std::string> suspend_file;
  /// A file that gets the status pipe's report too (--report-file).
  std::optional<std::string> report_file;
  /// Exit as the main process did (--exit-like-main); else 0 once the exit
  /// file is written.
  bool exit_like_main = false;
  /// The trainer's argv; argv[0] is looked up in PATH.
  std::vector<std::string> argv;
};

/// Parses argv; the error message names the flag that is wrong.
result<options> parse_options(int argc, char** argv);

} // namespace corral::shim
