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
  /// CPUs the run asks for (fractions allowed); 0 asks for none. Placement
  /// only: the scheduler counts them, nothing pins or limits the process.
  double cpus = 0;
  /// Memory the run asks for, in bytes; 0 asks for none. Placement only.
  std::uint64_t memory = 0;
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
  /// `cpu_capacity`, `memory_capacity` (bytes): what started runs may ask
  /// for in total; 0 means not accounted, and requests for it are ignored.
  scheduler(std::vector<int> gpus, std::optional<int> max_concurrent,
            std::chrono::milliseconds starvation_timeout,
            double cpu_capacity = 0, std::uint64_t memory_capacity = 0);

  /// Adds a run to the queue; `now` starts its wait. A request for more
  /// than the node holds can never run: check with fits_ever().
  void enqueue(sched_request req, clock::time_point now);
  /// True if the inventory could ever hold this many GPUs.
  bool fits_ever(int gpus) const;
  /// True if the node could ever hold the request's GPUs, CPUs and memory
  /// (the last two only where accounted).
  bool fits_ever(const sched_request& req) const;
  /// Why the request can never fit, for the user (e.g. "asks for 64 CPUs
  /// but this node has 16"); several reasons are joined by "; ". Empty when
  /// fits_ever(req).
  std::string why_never(const sched_request& req) const;
  /// Drops a queued run (stopped before it started); false if not queued.
  bool dequeue(const std::string& id);
  /// A started run ended: its GPUs and slots are free again.
  void release(const std::string& id);
  /// Marks a run that is already running (re-adopted after a daemon
  /// restart) as holding `gpus` and its slot, CPUs and memory, as if
  /// schedule() had placed it. Devices outside the inventory are ignored.
  void adopt(const sched_request& req, const std::vector<int>& gpus);

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
  /// CPUs held by started runs (0 when CPUs are not accounted).
  double cpus_in_use() const;
  /// Bytes of memory held by started runs (0 when not accounted).
  std::uint64_t memory_in_use() const { return memory_used_; }
  /// When the next starvation deadline passes (to schedule again then even
  /// if nothing else happens); nullopt if no queued run can starve.
  std::optional<clock::time_point> next_deadline() const;

private:
  struct queued {
    sched_request req;
    clock::time_point since;
  };
  /// What a started run holds besides devices, to give back on release.
  struct active_run {
    std::string experiment;
    std::int64_t millicpus = 0;
    std::uint64_t memory = 0;
  };
  /// The request's CPUs and memory as this node accounts them (0 where
  /// not accounted), so every check and sum agrees on one value.
  std::int64_t millicpus(const sched_request& req) const;
  std::uint64_t memory(const sched_request& req) const;
  /// True if the run would hold something that can run out, i.e. it can
  /// fail to fit and so starve.
  bool needs_capacity(const sched_request& req) const;
  /// Marks `gpus` and the request's slot, CPUs and memory as held by it.
  void hold(const sched_request& req, const std::vector<int>& gpus);

  std::vector<int> inventory_;
  std::optional<int> max_concurrent_;
  std::chrono::milliseconds starvation_timeout_;
  // CPUs are counted in thousandths so sums are exact: with doubles, three
  // runs of 0.1 could exceed a capacity of 0.3 by rounding.
  std::int64_t cpu_capacity_ = 0;     // millicpus; 0: not accounted
  std::uint64_t memory_capacity_ = 0; // bytes; 0: not accounted
  std::int64_t cpu_used_ = 0;
  std::uint64_t memory_used_ = 0;
  std::vector<queued> queue_;                // kept in queue order
  std::map<int, std::string> held_;          // gpu → run id
  std::map<std::string, active_run> active_; // run id → what it holds
  /// The latest time enqueue() or schedule() was given: deadlines at or
  /// before it have passed, so next_deadline() skips them.
  clock::time_point last_now_{};
};

} // namespace corral
