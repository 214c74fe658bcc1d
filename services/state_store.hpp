#pragma once
/// The daemon's durable memory (DESIGN.md, "store"): one SQLite database
/// in the state dir, `<state-dir>/corral.db`, in WAL mode. Runs, their
/// events, metric state, artifact lists and log cursors survive a daemon
/// restart or a SIGKILL; a kill at any moment leaves the last committed
/// batch readable. Plain C++ (no CAF): the store actor owns one and
/// commits a batch about once a second.

#include "services/result.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace corral {

/// One run as stored: `record` is the run actor's own state, opaque here.
struct stored_run {
  std::string id;
  /// Creation order, as the registry numbered it (runs list in this order).
  std::int64_t seq = 0;
  /// Ended for good (no restart will follow): history only.
  bool ended = false;
  nlohmann::json record;
  /// Latest put_metrics / put_artifacts for the run, or null.
  nlohmann::json metrics;
  nlohmann::json artifacts;
};

/// One event as stored: `scope` is a run id, or "" for the daemon-wide
/// stream; `seq` numbers the events within their scope.
struct stored_event {
  std::string scope;
  std::uint64_t seq = 0;
  nlohmann::json event;
};

/// Changes to commit together, in one transaction. Later entries for the
/// same run win. A batch applies `removed` first, then `runs`, `metrics`,
/// `artifacts` and `events` in their order: a batch that both removes and
/// writes a run id ends with what it writes (remove, then re-add). merge()
/// keeps that true across batches by dropping this batch's entries for the
/// runs that the newer batch removes.
struct store_batch {
  struct run_row {
    std::string id;
    std::int64_t seq = 0;
    bool ended = false;
    nlohmann::json record;
  };
  struct blob {
    std::string id;
    nlohmann::json value;
  };
  std::vector<run_row> runs;
  std::vector<blob> metrics;
  std::vector<blob> artifacts;
  std::vector<stored_event> events;
  /// Runs to forget, with everything stored for them (DELETE /runs/{id}).
  /// An empty id is ignored: "" is the daemon's event stream, not a run.
  std::vector<std::string> removed;

  /// Nothing to commit.
  bool empty() const;
  /// Appends `other` (which is newer) to this batch. Everything here for a
  /// run that `other` removes is dropped (see above), and so are rows and
  /// blobs that `other` writes again, so retried batches stay small.
  void merge(store_batch&& other);
};

class state_store {
public:
  /// The schema this build writes. Older databases are migrated on open
  /// (inside one transaction); newer ones are refused.
  static constexpr int schema_version = 2;

  /// Opens or creates the database at `path`. Refused, with a message that
  /// names the file and what to do, and never modified: a file that is not
  /// a SQLite database or fails its integrity check, a database of a newer
  /// schema version, a database another program wrote (no Corral
  /// metadata).
  static result<std::unique_ptr<state_store>> open(const std::string& path);
  ~state_store();
  state_store(const state_store&) = delete;
  state_store& operator=(const state_store&) = delete;

  /// Commits `batch` in one transaction; nothing of it on failure.
  status commit(const store_batch& batch);

  /// Every stored run, in `seq` order, with its latest metrics and
  /// artifacts.
  result<std::vector<stored_run>> load_runs() const;
  /// The last `limit` events of `scope` (a run id, or "" for the
  /// daemon-wide stream), oldest first.
  result<std::vector<stored_event>> load_events(const std::string& scope,
                                                std::size_t limit) const;
  /// Drops all but the last `keep` events of each scope (run: 1000,
  /// daemon: 10000), so the database stays bounded like the memory.
  status trim_events(std::size_t keep_per_run, std::size_t keep_daemon);

  /// The file's schema version as found at open (before migrating).
  int found_version() const;
  std::string path() const;

private:
  state_store() = default;
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace corral
