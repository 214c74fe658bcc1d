#pragma once
/// What the HTTP router needs from the daemon, in plain C++: the gateway
/// stays free of CAF, and the router is unit-tested against a fake.

#include "services/gpu_inventory.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"
#include "services/run_view.hpp"

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace corral {

struct run_filter {
  std::vector<run_state> states; // empty: all
  std::string experiment;        // empty: all
};

struct stop_request {
  std::optional<millis> grace; // overrides the spec's stop.grace
  bool force = false;
  bool wait = false; // answer only once the run has ended
};

/// The node's GPUs and which run holds each (GET /api/v1/gpus).
struct gpu_report {
  std::string source; // "nvml" or "config"
  struct row {
    gpu_info gpu;
    std::optional<std::string> run; // the run holding it
  };
  std::vector<row> gpus;
};

/// Every call answers exactly once through its callback, possibly from
/// another thread; callers must not block waiting for it.
class api_backend {
public:
  template <class T>
  using reply = std::function<void(result<T>)>;

  virtual ~api_backend() = default;

  /// Creates (or with dry_run only names) the runs; answers their views.
  virtual void submit(std::vector<run_spec> runs, bool dry_run,
                      reply<std::vector<run_view>> done)
      = 0;
  /// Summaries (processes null) of every known run matching the filter.
  virtual void list_runs(run_filter filter, reply<std::vector<run_view>> done)
      = 0;
  /// One run with its processes.
  virtual void get_run(std::string id, reply<run_view> done) = 0;
  /// Answers after the kernel confirms every process stopped.
  virtual void pause(std::string id, reply<run_view> done) = 0;
  virtual void resume(std::string id, reply<run_view> done) = 0;
  virtual void stop(std::string id, stop_request req, reply<run_view> done) = 0;
  /// Forgets an ended run.
  virtual void remove(std::string id, reply<ok_t> done) = 0;
  /// The run's events, oldest first (a bounded recent history).
  virtual void events(std::string id, reply<std::vector<run_event>> done) = 0;
  /// The GPU inventory with each device's holder.
  virtual void gpus(reply<gpu_report> done) = 0;
};

} // namespace corral
