#pragma once
/// The run actor: one per run, owner of its executor and state machine.

#include "actors/actors.hpp"
#include "services/artifact_watch.hpp"
#include "services/event_log.hpp"
#include "services/listing_cache.hpp"
#include "services/reactor.hpp"
#include "services/run_output.hpp"

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace corral {

/// Everything a run actor needs, validated before it is spawned.
struct run_config {
  std::string id;
  run_spec spec; // placeholders expanded
  /// The spec as submitted, placeholders unexpanded: a restart by policy
  /// binds {latest_checkpoint} to this run's newest checkpoint again.
  run_spec tmpl;
  /// The run a POST .../restart made this one from.
  std::optional<std::string> restart_of;
  executor_config exec;
  reactor* events = nullptr; // outlives every actor
  /// Told of every event, so no cached listing outlives a change; null:
  /// nothing is cached. Outlives every actor.
  listing_cache* listings = nullptr;
  /// For the GPU memory of the run's processes; null without NVML.
  gpu_inventory* inventory = nullptr;
  millis pause_timeout = std::chrono::seconds{10};
  registry_actor registry; // told when the run ends
  /// Runs Slurm's commands and polls squeue; null without Slurm.
  slurm_actor slurm;
  /// Creation order, as the registry numbered it (kept in the store).
  std::int64_t seq = 0;
  /// Where the run's state is kept across daemon restarts; null: nowhere.
  store_actor store;
  /// Set when a restarted daemon takes the run back from the store.
  std::optional<stored_run> restored;
  std::vector<run_event> restored_events;
};

struct run_actor_state {
  static inline const char* name = "run";

  run_config cfg;
  run_view view;
  std::unique_ptr<executor> exec;
  std::chrono::steady_clock::time_point running_since;
  double active_before_s = 0; // time spent running before running_since
  bool paused_by_request = false;
  std::vector<caf::typed_response_promise<view_result>> pause_waiters;
  std::vector<caf::typed_response_promise<view_result>> end_waiters;
  /// Resumes of a Slurm run wait for Slurm's answer.
  std::vector<caf::typed_response_promise<view_result>> resume_waiters;
  /// Why the Slurm job waits, as last recorded (an event per change).
  std::string slurm_reason;
  /// Restored with an sbatch whose answer was lost: look for its job
  /// before submitting.
  bool slurm_lookup = false;
  /// The logs are on a filesystem inotify cannot watch: read every tick.
  bool poll_output = false;
  std::uint64_t pause_generation = 0;
  std::uint64_t stop_generation = 0;
  std::optional<std::string> stop_reason;   // user, daemon_exit
  std::optional<stop_request> pending_stop; // asked while starting
  millis stop_grace{0};
  std::optional<std::int64_t> checkpoint_baseline_ns;
  /// A stop sent the checkpoint signal and waits for the checkpoint.
  bool awaiting_checkpoint = false;
  int events_watch = -1;
  /// Recent events; bounded so a flapping run cannot grow it.
  event_log history{1000};
  /// Ended, and no restart will follow.
  bool final = false;
  /// Followers waiting for lines or events (GET ...?follow=1).
  struct log_waiter {
    std::uint64_t id;
    log_query query;
    caf::typed_response_promise<logs_result> rp;
  };
  struct event_waiter {
    std::uint64_t id;
    event_query query;
    caf::typed_response_promise<event_page_result> rp;
  };
  std::vector<log_waiter> log_waiters;
  std::vector<event_waiter> event_waiters;
  std::uint64_t next_waiter = 0;
  /// The run's output: log tailer and progress metrics.
  std::unique_ptr<run_output> output;
  /// Set by the reactor, cleared by the actor: one message per burst.
  std::shared_ptr<std::atomic<bool>> output_pending
      = std::make_shared<std::atomic<bool>>(false);
  int output_watch = -1;
  std::unique_ptr<artifact_watch> files;
  std::shared_ptr<std::atomic<bool>> files_pending
      = std::make_shared<std::atomic<bool>>(false);
  std::vector<int> files_watches;
  std::vector<std::string> files_dirs;
  int restarts = 0;                     // restarts by policy so far
  std::uint64_t attempt_generation = 0; // ties max_runtime timers to an attempt
  double attempt_active_base = 0;       // active seconds before this attempt
  std::optional<std::uint64_t> gpu_memory; // latest sample, for summaries
  unsigned ticks = 0;                      // observation ticks so far
  nlohmann::json spec_json;    // cfg.spec as saved; null: to be made
  nlohmann::json tmpl_json;    // cfg.tmpl as saved
  unsigned resources_tick = 0; // when cpu_pct/rss_bytes were read
  std::optional<std::uint64_t> tree_cpu_usec; // the cgroup's, at that time
  /// Tree totals from the latest resource sample, for summaries.
  double cpu_pct = 0;
  std::uint64_t rss_bytes = 0;
  int watched_fds[3] = {-1, -1, -1}; // status, shim, main
  /// Events not yet sent to the store.
  std::vector<run_event> unsaved_events;
  /// Something in the record changed since it was last sent to the store.
  bool dirty = false;
  /// The artifact list changed since it was last sent to the store.
  bool artifacts_dirty = false;
  /// Output lines read so far, and as of the last save of the metrics.
  std::uint64_t output_lines = 0;
  std::uint64_t saved_output_lines = 0;
  /// When a stop's SIGKILL is due (kept, so a restarted daemon keeps it).
  std::optional<sys_time> kill_at;

  ~run_actor_state();
  /// Stops watching every descriptor of this run in the reactor.
  void unwatch_all();
  /// Stops watching the run's output and artifact directories (the run
  /// has ended for good: an inotify watch per ended run would add up).
  void unwatch_files();
};

/// The run's behavior. It starts `queued`; atom::start from the registry
/// launches the shim.
run_actor::behavior_type run(run_actor::stateful_pointer<run_actor_state> self,
                             run_config cfg);

} // namespace corral
