#pragma once
/// A snapshot of one run as the API shows it (DESIGN.md, "A run object").

#include "services/run_state.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral {

using sys_time = std::chrono::system_clock::time_point;

/// One live process of a run's tree, read from /proc.
struct process_info {
  int pid = 0;
  int ppid = 0;
  char state = '?'; // /proc/<pid>/stat state letter
  bool frozen = false;
  std::string cmd;
  double cpu_pct = 0;
  std::uint64_t rss_bytes = 0;
};

struct run_view {
  std::string id;
  std::string experiment;
  run_state state = run_state::queued;
  std::string reason; // "" → null
  std::string message;
  std::optional<int> pid;
  /// Only filled for a single-run GET; a summary has null.
  std::optional<std::vector<process_info>> processes;
  int process_count = 0;
  std::string pause_mechanism; // cgroup-v2, cgroup-v1, signals
  std::string executor = "local";
  /// Slurm runs: the job of the current attempt, and the node it runs on.
  std::optional<std::string> slurm_job_id;
  std::optional<std::string> node;
  std::optional<int> exit_code;
  std::optional<std::string> signal; // "SIGKILL"
  std::vector<int> gpus;
  int attempt = 1;
  std::optional<std::string> restart_of;
  std::optional<sys_time> retry_at;
  std::optional<int> queue_position;
  sys_time created_at{};
  std::optional<sys_time> started_at;
  std::optional<sys_time> ended_at;
  double active_s = 0;
  std::string cwd;
  std::vector<std::string> command;
  double cpu_pct = 0;
  std::uint64_t rss_bytes = 0;
  std::optional<std::uint64_t> gpu_memory_bytes;
  nlohmann::json metrics = nlohmann::json::object();
  std::optional<double> fraction;
  std::optional<double> eta_s;
};

/// Something that happened to a run: a state change, a signal, a restart.
struct run_event {
  /// Position in the stream it is read from (per run, or daemon-wide);
  /// SSE's `id:`.
  std::uint64_t seq = 0;
  std::string run; // the run's id
  sys_time t{};
  std::string type;    // state, signal, checkpoint, artifact, pause_timeout
  std::string cause;   // user, external, exit, restart, scheduled, ...
  std::string message; // for people
  nlohmann::json data = nlohmann::json::object();
};

/// {"seq", "run", "t", "type", "cause", "message", "data"}
nlohmann::json to_json(const run_event& e);

/// RFC 3339 UTC with milliseconds: 2026-11-28T15:13:00.123Z
std::string format_time(sys_time t);

/// The API's JSON for a run; absent values are null, never omitted.
nlohmann::json to_json(const run_view& v);

} // namespace corral
