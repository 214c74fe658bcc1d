#pragma once
/// The exit file a run's shim leaves in the run directory: how the main
/// process ended, written once and atomically, so it survives a daemon
/// restart (conmon keeps exit codes the same way).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace corral {

/// One run's ending, as the file `<run-dir>/exit` holds it in key=value
/// lines.
struct exit_record {
  /// "exited", "signaled" or "exec_error".
  std::string status;
  /// Exit code; signal number when signaled; 127 for exec_error.
  int code = 0;
  /// The main process; 0 when it never ran (exec_error).
  int pid = 0;
  /// Why the command could not start; empty otherwise. One line.
  std::string message;
  /// Unix time in ms when the main process exited (or failed to start).
  std::int64_t ended_at_ms = 0;
};

/// The text of an exit file. Line breaks in the message become spaces, so
/// the record stays one key per line.
std::string format_exit_record(const exit_record& rec);
/// Parses the text of an exit file; nullopt when a key is missing or a
/// number is malformed. Unknown keys are ignored (newer shims may add some).
std::optional<exit_record> parse_exit_record(std::string_view text);

/// Reads `<run_dir>/exit`; nullopt when there is none (the shim has not
/// finished) or it is malformed.
std::optional<exit_record> read_exit_record(const std::string& run_dir);
/// Writes `<run_dir>/exit` atomically: exit.tmp, fsync, rename, fsync of
/// the directory. A reader sees no file or the whole record, never a part.
bool write_exit_record(const std::string& run_dir, const exit_record& rec);

} // namespace corral
