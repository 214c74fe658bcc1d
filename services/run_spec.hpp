#pragma once
/// What one run is asked to do: the validated, expanded form of one
/// experiment (or one matrix point of it). Actors receive this, never YAML.

#include <chrono>
#include <csignal>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace corral {

using millis = std::chrono::milliseconds;

enum class stop_mode { main, tree };
enum class restart_policy { never, on_failure, always };

struct stop_spec {
  int signal = SIGTERM;
  stop_mode mode = stop_mode::main;
  millis grace = std::chrono::seconds{30};
  std::optional<int> checkpoint_signal;
  millis checkpoint_timeout = std::chrono::seconds{60};
};

struct progress_spec {
  std::string format;  // "" (none), sb3, jsonl, kv, csv, regex
  std::string counter; // metric key that counts progress
  std::optional<double> total;
  std::string file;    // csv: file to follow (relative to cwd)
  std::string pattern; // regex: named groups
};

struct artifacts_spec {
  std::string checkpoints; // glob relative to cwd, placeholders expanded
  std::string videos;
};

struct restart_spec {
  restart_policy policy = restart_policy::never;
  int max = 3;
  millis backoff = std::chrono::seconds{10};
};

/// `slurm:` of an experiment (sbatch options); "" = Slurm's default.
struct slurm_spec {
  std::string partition;
  std::string account;
  std::string qos;
  std::string time;                    // Slurm's own format, e.g. "1-00:00:00"
  std::vector<std::string> extra_args; // more sbatch options, as argv
  bool operator==(const slurm_spec&) const = default;
};

/// One run to create. As parse_experiments() returns it, command, env
/// values, cwd and artifact patterns are still templates (placeholders
/// validated, not expanded: `{{` escapes must be undone exactly once);
/// expand_run_placeholders() resolves them once the registry has chosen the
/// run id, and makes cwd absolute against base_dir.
struct run_spec {
  std::string id_base;    // name or name-<matrix values>; registry adds -2...
  std::string experiment; // the experiment's name
  std::vector<std::string> command;
  std::string cwd;      // absolute once expanded
  std::string base_dir; // the submitted file's directory (absolute)
  std::map<std::string, std::string>
      env; // the experiment's env, laid over base_env
  std::map<std::string, std::string> base_env; // submitting shell's or daemon's
  int gpus = 0;
  std::optional<double> cpus;
  std::optional<std::uint64_t> memory_bytes;
  int priority = 0;
  std::optional<int> max_concurrent;
  stop_spec stop;
  progress_spec progress;
  artifacts_spec artifacts;
  restart_spec restart;
  std::optional<millis> max_runtime;
  std::string executor; // "local", "slurm"; "" = the daemon's default
  slurm_spec slurm;
  /// Matrix values of this point, as written in the file.
  std::map<std::string, std::string> matrix;
};

} // namespace corral
