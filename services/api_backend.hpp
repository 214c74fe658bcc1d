#pragma once
/// What the HTTP router needs from the daemon, in plain C++: the gateway
/// stays free of CAF, and the router is unit-tested against a fake.

#include "services/artifacts.hpp"
#include "services/gpu_inventory.hpp"
#include "services/listing_cache.hpp"
#include "services/log_files.hpp"
#include "services/node_stats.hpp"
#include "services/result.hpp"
#include "services/run_spec.hpp"
#include "services/run_view.hpp"

#include <cstdint>
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

/// GET /api/v1/node: the machine's load and its GPUs.
struct node_report {
  node_stats node;
  gpu_report gpus;
};

/// GET /runs/{id}/logs: a tail, or what follows a cursor.
struct log_query {
  log_selection streams;
  /// Lines after this position; nullopt: the last `tail` lines.
  std::optional<log_cursor> since;
  std::size_t tail = 100;
  /// Most lines one answer carries.
  std::size_t limit = 1000;
  /// Follow: answer only once there is a line, the run has ended, or
  /// `wait_timeout` passed (then with no line: a heartbeat).
  bool wait = false;
  millis wait_timeout = std::chrono::seconds{15};
};

struct log_answer {
  std::vector<log_line> lines;
  log_cursor cursor; // where the next query continues
  /// The run has ended for good and every line up to its end was sent.
  bool ended = false;
};

/// GET /runs/{id}/events and /events: what follows a sequence number.
struct event_query {
  /// Events with a sequence number above this; nullopt: the whole history.
  std::optional<std::uint64_t> after;
  /// Follow: answer only once there is an event, the run has ended for
  /// good (per-run queries only), or `wait_timeout` passed.
  bool wait = false;
  millis wait_timeout = std::chrono::seconds{15};
};

struct event_answer {
  std::vector<run_event> events; // oldest first
  /// The newest sequence number given out so far (the next `after`).
  std::uint64_t last = 0;
  /// Per run: it has ended for good and every event was sent.
  bool ended = false;
};

/// GET /runs/{id}/artifacts: what the patterns match now.
struct artifact_report {
  std::vector<artifact> files;
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
  /// A new run of an ended run's spec, with restart_of set and
  /// {latest_checkpoint} bound to that run's newest checkpoint.
  virtual void restart(std::string id, reply<run_view> done) = 0;
  /// The run's events (a bounded recent history); an empty id: every
  /// run's events, in the order the daemon saw them.
  virtual void events(std::string id, event_query q, reply<event_answer> done)
      = 0;
  /// The run's output lines.
  virtual void logs(std::string id, log_query q, reply<log_answer> done) = 0;
  /// {"latest": {...}, "series": {...}} (DESIGN.md, GET .../metrics).
  virtual void metrics(std::string id, reply<nlohmann::json> done) = 0;
  /// The run's checkpoints and videos.
  virtual void artifacts(std::string id, reply<artifact_report> done) = 0;
  /// The file of one artifact, if `name` may be served (403/404 if not).
  virtual void artifact_file(std::string id, std::string name,
                             reply<artifact> done)
      = 0;
  /// The GPU inventory with each device's holder.
  virtual void gpus(reply<gpu_report> done) = 0;
  /// CPU, memory and GPU load of the machine.
  virtual void node(reply<node_report> done) = 0;
  /// Where GET /api/v1/runs answers may be kept while no run changed;
  /// null: every listing asks the runs.
  virtual listing_cache* listings() { return nullptr; }
};

} // namespace corral
