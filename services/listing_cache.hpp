#pragma once
/// The serialized answers of GET /api/v1/runs, kept while nothing changed.
/// A listing asks every run actor for its view and turns a hundred views
/// into JSON: about 2 ms, which capped a dashboard-and-scripts load at a
/// few hundred listings a second. Every event of any run (a state change
/// above all) and every delete counts as a change, made before the answer
/// that caused it is sent, so a client that pauses a run and then lists
/// sees the pause. Progress and resources change without events: an
/// answer is served again for at most `max_age`.

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

  /// The answer to `query`, if one was made since the last change and
  /// within max_age.
  std::optional<std::string> find(const std::string& query,
                                  clock::time_point now = clock::now()) const;
  /// Keeps `body`, the answer to `query` from runs read after
  /// `generation` was taken.
  void store(const std::string& query, std::uint64_t generation,
             std::string body, clock::time_point now = clock::now());

private:
  struct entry {
    std::uint64_t generation = 0;
    clock::time_point made;
    std::string body;
  };
  std::chrono::milliseconds max_age_;
  std::atomic<std::uint64_t> generation_{0};
  mutable std::mutex mtx_;
  std::map<std::string, entry> entries_;
};

} // namespace corral
