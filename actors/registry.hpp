#pragma once
/// The registry actor: knows every run by id, creates and forgets them, and
/// starts queued runs as the scheduler places them on GPUs.

#include "actors/actors.hpp"
#include "actors/run.hpp"
#include "services/event_log.hpp"
#include "services/scheduler.hpp"

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace corral {

struct registry_config {
  executor_config exec;
  reactor* events = nullptr;
  /// Kept answers of GET /api/v1/runs (outlives every actor); null: none.
  listing_cache* listings = nullptr;
  millis pause_timeout = std::chrono::seconds{10};
  /// The node's GPUs; outlives every actor. Null: no GPUs.
  gpu_inventory* inventory = nullptr;
  std::optional<int> max_concurrent;
  millis starvation_timeout = std::chrono::minutes{10};
  /// How often every active run looks at its processes (observe ticks).
  millis observe_interval = std::chrono::seconds{1};
  /// Where runs and events are kept across restarts; null: nowhere.
  store_actor store;
  /// The Slurm client; null when this daemon found no Slurm commands.
  slurm_actor slurm;
  /// The executor of experiments that do not name one: local or slurm.
  std::string default_executor = "local";
  /// What the store held at start: every run (creation order), each run's
  /// recent events, and the daemon-wide stream.
  std::vector<stored_run> restored;
  std::map<std::string, std::vector<run_event>> restored_events;
  std::vector<run_event> restored_global;
};

struct registry_state {
  static inline const char* name = "registry";

  registry_config cfg;
  std::unique_ptr<scheduler> sched;
  /// Slurm runs: the cluster places them, so this one only keeps each
  /// experiment's max_concurrent (no devices, no global limit).
  std::unique_ptr<scheduler> slurm_sched;
  std::map<std::string, run_actor> runs;
  std::map<std::string, sched_request> requests; // what each run asks for
  /// Each run's spec as submitted and as expanded, for restarts.
  std::map<std::string, run_spec> templates;
  std::map<std::string, run_spec> specs;
  /// Every run's events in the order they arrived, bounded; `seq` is
  /// renumbered daemon-wide.
  event_log events{10000};
  node_sampler node;
  struct event_waiter {
    std::uint64_t id;
    event_query query;
    caf::typed_response_promise<event_page_result> rp;
  };
  std::vector<event_waiter> event_waiters;
  std::uint64_t next_waiter = 0;
  std::vector<std::string> order; // creation order, for listings
  std::set<std::string> ended;
  std::uint64_t next_seq = 0;
  std::vector<caf::typed_response_promise<ok_result>> shutdown_waiters;
  bool shutting_down = false;
  /// When the pending wake-up for a starvation deadline fires, if any.
  std::optional<scheduler::clock::time_point> tick_at;
};

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         registry_config cfg);

/// The id a run gets: the base, or base-2, base-3... when taken.
std::string unique_run_id(const std::string& base,
                          const std::set<std::string>& taken);

} // namespace corral
