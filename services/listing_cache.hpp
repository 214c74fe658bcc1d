#pragma once
/// The serialized answers of GET /api/v1/runs, kept while nothing changed.
/// A listing asks every run actor for its view and turns a hundred views
/// into JSON: about 2 ms, which capped a dashboard-and-scripts load at a
/// few hundred listings a second. Every event of any run (a state change
/// above all) and every delete counts as a change, made before the answer
/// that caused it is sent, so a client that pauses a run and then lists
/// sees the pause. Progress and resources change without events: an
/// answer older than `max_age` is still served, once, while its caller
/// makes a new one in the background (so no client waits for a thousand
/// runs' views while nothing changed); one older than twice max_age is
/// not served at all.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace corral {

class listing_cache {
public:
  using clock = std::chrono::steady_clock;

  explicit listing_cache(std::chrono::milliseconds max_age)
      : max_age_(max_age) {}

  /// A run changed: answers made before are not served again.
  void changed() { generation_.fetch_add(1, std::memory_order_acq_rel); }
  /// Take it before reading the runs; store the answer under it.
  std::uint64_t generation() const {
    return generation_.load(std::memory_order_acquire);
  }

  struct hit {
    std::string body;
    /// Older than max_age and nobody is making a new one yet: the caller
    /// should (and store it).
    bool refresh = false;
  };
  /// The answer to `query`, if one was made since the last change and is
  /// young enough.
  std::optional<hit> find(const std::string& query,
                          clock::time_point now = clock::now());
  /// Keeps `body`, the answer to `query` from runs read after
  /// `generation` was taken.
  void store(const std::string& query, std::uint64_t generation,
             std::string body, clock::time_point now = clock::now());

private:
  struct entry {
    std::uint64_t generation = 0;
    clock::time_point made;
    std::string body;
    bool refreshing = false;
  };
  std::chrono::milliseconds max_age_;
  std::atomic<std::uint64_t> generation_{0};
  mutable std::mutex mtx_;
  std::map<std::string, entry> entries_;
};

} // namespace corral
