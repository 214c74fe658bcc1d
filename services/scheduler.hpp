#pragma once
/// Which queued runs start now, and on which GPUs (DESIGN.md, the
/// scheduler): plain logic over a clock the caller passes in, so every rule
/// is unit-tested without processes or time passing.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace corral {

/// One run waiting for devices and slots.
struct sched_request {
  std::string id;
  std::string experiment;
  int gpus = 0;
  int priority = 0;
  /// Submission order; earlier first among equal priorities.
  std::uint64_t seq = 0;
  /// The experiment's max_concurrent (runs of it active at once).
  std::optional<int> max_concurrent;
};

/// A run to start now with these devices (NVML indices, ascending).
struct placement {
  std::string id;
  std::vector<int> gpus;
};

class scheduler {
public:
  using clock = std::chrono::steady_clock;

  /// `gpus`: the inventory's device indices. `max_concurrent`: the global
  /// limit on active runs (nullopt: unlimited). `starvation_timeout`: how
  /// long a run that does not fit may be passed by smaller ones.
  scheduler(std::vector<int> gpus, std::optional<int> max_concurrent,
            std::chrono::milliseconds starvation_timeout);

  /// Adds a run to the queue; `now` starts its wait. A request for more
  /// GPUs than the inventory holds can never run: check with fits_ever().
  void enqueue(sched_request req, clock::time_point now);
  /// True if the inventory could ever hold this many GPUs.
  bool fits_ever(int gpus) const;
  /// Drops a queued run (stopped before it started); false if not queued.
  bool dequeue(const std::string& id);
  /// A started run ended: its GPUs and slots are free again.
  void release(const std::string& id);

  /// Picks the runs that start now, in queue order, and marks their GPUs
  /// and slots as held. Order: priority (higher first), then seq. A run
  /// that does not fit is passed by later ones that do, until it has
  /// waited starvation_timeout; from then on no run of lower or equal
  /// priority starts before it (devices are kept free for it as they are
  /// released), while higher-priority runs still may.
  std::vector<placement> schedule(clock::time_point now);

  /// 1-based position in queue order; nullopt when not queued.
  std::optional<int> queue_position(const std::string& id) const;
  /// The run holding a device, if any.
  std::optional<std::string> holder(int gpu) const;
  /// The devices a started run holds.
  std::vector<int> held_by(const std::string& id) const;
  /// The inventory, ascending.
  const std::vector<int>& inventory() const { return inventory_; }
  /// When the next starvation deadline passes (to schedule again then even
  /// if nothing else happens); nullopt if no queued run can starve.
  std::optional<clock::time_point> next_deadline() const;

private:
  struct queued {
    sched_request req;
    clock::time_point since;
  };
  std::vector<int> inventory_;
  std::optional<int> max_concurrent_;
  std::chrono::milliseconds starvation_timeout_;
  std::vector<queued> queue_;                 // kept in queue order
  std::map<int, std::string> held_;           // gpu → run id
  std::map<std::string, std::string> active_; // run id → experiment
  /// The latest time enqueue() or schedule() was given: deadlines at or
  /// before it have passed, so next_deadline() skips them.
  clock::time_point last_now_{};
};

} // namespace corral
