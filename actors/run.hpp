#pragma once
/// The run actor: one per run, owner of its executor and state machine.

#include "actors/actors.hpp"
#include "services/reactor.hpp"

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace corral {

/// Everything a run actor needs, validated before it is spawned.
struct run_config {
  std::string id;
  run_spec spec; // placeholders expanded
  executor_config exec;
  reactor* events = nullptr; // outlives every actor
  /// For the GPU memory of the run's processes; null without NVML.
  gpu_inventory* inventory = nullptr;
  millis pause_timeout = std::chrono::seconds{10};
  millis observe_interval = std::chrono::milliseconds{250};
  registry_actor registry; // told when the run ends
};

struct run_actor_state {
  static inline const char* name = "run";

  run_config cfg;
  run_view view;
  std::unique_ptr<local_executor> exec;
  std::chrono::steady_clock::time_point running_since;
  double active_before_s = 0; // time spent running before running_since
  bool paused_by_request = false;
  std::vector<caf::typed_response_promise<view_result>> pause_waiters;
  std::vector<caf::typed_response_promise<view_result>> end_waiters;
  std::uint64_t pause_generation = 0;
  std::uint64_t stop_generation = 0;
  std::optional<std::string> stop_reason;   // user, daemon_exit
  std::optional<stop_request> pending_stop; // asked while starting
  millis stop_grace{0};
  std::optional<std::int64_t> checkpoint_baseline_ns;
  int events_watch = -1;
  /// Recent events, oldest first; bounded so a flapping run cannot grow it.
  std::deque<run_event> history;
  int restarts = 0;                     // restarts by policy so far
  std::uint64_t attempt_generation = 0; // ties max_runtime timers to an attempt
  double attempt_active_base = 0;       // active seconds before this attempt
  std::optional<std::uint64_t> gpu_memory; // latest sample, for summaries
  unsigned ticks = 0;                      // observation ticks so far
  /// Tree totals from the latest resource sample, for summaries.
  double cpu_pct = 0;
  std::uint64_t rss_bytes = 0;
  int watched_fds[3] = {-1, -1, -1}; // status, shim, main

  ~run_actor_state();
  /// Stops watching every descriptor of this run in the reactor.
  void unwatch_all();
};

/// The run's behavior. It starts `queued`; atom::start from the registry
/// launches the shim.
run_actor::behavior_type run(run_actor::stateful_pointer<run_actor_state> self,
                             run_config cfg);

} // namespace corral
