#pragma once
/// The daemon's settings: flags of `corral serve` and the config file
/// (DESIGN.md, "Daemon"), validated with the experiments' error rules.

#include "services/log_index.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace corral {

struct daemon_config {
  std::string listen;    // host:port
  std::string state_dir; // absolute
  std::string token_file;
  bool no_auth = false;
  millis pause_timeout{0};
  /// "auto": a cgroup per run where the v2 hierarchy is writable, else
  /// the signals fallback; "off": always the signals fallback.
  std::string cgroup = "auto";
  bool stop_runs_on_exit = false;
  /// The configured GPU inventory; nullopt: ask NVML.
  std::optional<std::vector<int>> gpus;
  /// Active runs at once across all experiments; nullopt: unlimited.
  std::optional<int> max_concurrent;
  millis starvation_timeout{0};
  /// `log_rotate: {size, count}`: a run's log file is rotated before it
  /// grows past `size`; `count` rotated files are kept per stream.
  std::uint64_t log_max_bytes = default_log_max_bytes;
  int log_keep = default_log_keep;
  /// The executor of experiments that do not name one: "local" or "slurm".
  std::string executor = "local";
  /// `slurm: {log_dir, poll, log_watch, shim}`.
  struct slurm_settings {
    /// Batch scripts, job output and exit files; on a filesystem the nodes
    /// share. "" = <state_dir>/slurm.
    std::string log_dir;
    /// How often one squeue asks about every job.
    millis poll{2000};
    /// How the logs under log_dir are followed: "auto" (inotify on a local
    /// filesystem, polling by size on NFS/Lustre/etc.), "inotify" or
    /// "poll".
    std::string log_watch = "auto";
    /// The shim as the nodes see it; "" = the daemon's own corral-shim.
    std::string shim;
  } slurm;
};

/// Defaults, with the state dir from $XDG_STATE_HOME or ~/.local/state.
daemon_config default_daemon_config();

/// Lays a config file's keys over `cfg`. Unknown keys, wrong types and
/// settings this version cannot honour are errors naming key, line and
/// column.
status apply_config_file(daemon_config& cfg, std::string_view yaml_text,
                         const std::string& file_name);

/// Splits "host:port" ("[::1]:8700" for IPv6); errors name the text.
result<std::pair<std::string, std::uint16_t>>
parse_listen(const std::string& text);

/// True for 127.0.0.0/8, ::1 and "localhost".
bool is_loopback(const std::string& host);

} // namespace corral
