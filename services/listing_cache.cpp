#include "services/listing_cache.hpp"

namespace corral {

std::optional<listing_cache::hit> listing_cache::find(const std::string& query,
                                                      clock::time_point now) {
  auto current = generation();
  std::lock_guard guard{mtx_};
  auto it = entries_.find(query);
  if (it == entries_.end() || it->second.generation != current)
    return std::nullopt;
  auto age = now - it->second.made;
  if (age < max_age_)
    return hit{it->second.body, false};
  if (age >= 2 * max_age_)
    return std::nullopt;
  bool refresh = !it->second.refreshing;
  it->second.refreshing = true;
  return hit{it->second.body, refresh};
}

void listing_cache::store(const std::string& query, std::uint64_t generation,
                          std::string body, clock::time_point now) {
  std::lock_guard guard{mtx_};
  // Filters are few in practice, but a client can make up endless ones:
  // stale answers go whenever the map grows.
  if (entries_.size() >= 64)
    std::erase_if(entries_, [&](const auto& kv) {
      return kv.second.generation != this->generation()
             || now - kv.second.made >= max_age_;
    });
  if (entries_.size() >= 64)
    entries_.clear();
  entries_[query] = {generation, now, std::move(body), false};
}

} // namespace corral
