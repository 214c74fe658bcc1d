#pragma once
/// A bounded, numbered history of events: one per run, and the daemon-wide
/// one behind GET /api/v1/events. Followers ask for what came after the
/// last sequence number they saw.

#include "services/run_view.hpp"

#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <vector>

namespace corral {

class event_log {
public:
  explicit event_log(std::size_t capacity) : capacity_(capacity) {}

  /// Numbers the event (seq = previous + 1), keeps it, and returns it; the
  /// oldest is dropped beyond the capacity.
  const run_event& push(run_event e) {
    e.seq = ++last_;
    events_.push_back(std::move(e));
    if (events_.size() > capacity_)
      events_.pop_front();
    return events_.back();
  }

  /// The events numbered above `after` (all kept ones without it).
  std::vector<run_event> after(std::optional<std::uint64_t> after) const {
    std::vector<run_event> out;
    for (auto& e : events_)
      if (!after || e.seq > *after)
        out.push_back(e);
    return out;
  }

  /// Takes back events a previous daemon numbered (oldest first, from the
  /// state store): numbering goes on after the newest of them.
  void restore(std::vector<run_event> events) {
    for (auto& e : events) {
      last_ = std::max(last_, e.seq);
      events_.push_back(std::move(e));
      if (events_.size() > capacity_)
        events_.pop_front();
    }
  }

  /// The newest sequence number given out, 0 before the first.
  std::uint64_t last() const { return last_; }

private:
  std::size_t capacity_;
  std::deque<run_event> events_;
  std::uint64_t last_ = 0;
};

} // namespace corral
