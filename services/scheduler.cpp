#include "services/scheduler.hpp"

#include <algorithm>
#include <utility>

namespace corral {

namespace {

/// Queue order: higher priority first, then earlier submission.
bool before(const sched_request& a, const sched_request& b) {
  if (a.priority != b.priority)
    return a.priority > b.priority;
  return a.seq < b.seq;
}

} // namespace

scheduler::scheduler(std::vector<int> gpus, std::optional<int> max_concurrent,
                     std::chrono::milliseconds starvation_timeout)
    : inventory_(std::move(gpus)), max_concurrent_(max_concurrent),
      starvation_timeout_(starvation_timeout) {
  // Placement takes the lowest free indices, so keep them sorted and unique.
  std::sort(inventory_.begin(), inventory_.end());
  inventory_.erase(std::unique(inventory_.begin(), inventory_.end()),
                   inventory_.end());
}

void scheduler::enqueue(sched_request req, clock::time_point now) {
  last_now_ = std::max(last_now_, now);
  // A run queued twice (a restart racing a stop) must not run twice.
  dequeue(req.id);
  auto at = std::upper_bound(
      queue_.begin(), queue_.end(), req,
      [](const sched_request& r, const queued& q) { return before(r, q.req); });
  queue_.insert(at, queued{std::move(req), now});
}

bool scheduler::fits_ever(int gpus) const {
  return gpus <= static_cast<int>(inventory_.size());
}

bool scheduler::dequeue(const std::string& id) {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const queued& q) { return q.req.id == id; });
  if (it == queue_.end())
    return false;
  queue_.erase(it);
  return true;
}

void scheduler::release(const std::string& id) {
  active_.erase(id);
  std::erase_if(held_, [&](const auto& entry) { return entry.second == id; });
}

std::vector<placement> scheduler::schedule(clock::time_point now) {
  last_now_ = std::max(last_now_, now);
  std::vector<placement> started;

  std::vector<int> free;
  for (int gpu : inventory_)
    if (!held_.contains(gpu))
      free.push_back(gpu);

  std::map<std::string, int> per_experiment;
  for (const auto& [id, experiment] : active_)
    ++per_experiment[experiment];

  for (auto it = queue_.begin(); it != queue_.end();) {
    const sched_request& req = it->req;
    // The global limit blocks every run alike, so nothing later can start
    // either; a run waiting on it is not "starving" for devices.
    if (max_concurrent_ && static_cast<int>(active_.size()) >= *max_concurrent_)
      break;
    // A run held back by its own experiment's limit could not use freed
    // devices anyway, so it neither starts nor keeps devices from others.
    if (req.max_concurrent
        && per_experiment[req.experiment] >= *req.max_concurrent) {
      ++it;
      continue;
    }
    // A request larger than the inventory can never start; keeping devices
    // free for it would idle them forever (callers check fits_ever()).
    if (!fits_ever(req.gpus)) {
      ++it;
      continue;
    }
    if (req.gpus > static_cast<int>(free.size())) {
      // Everything after it in the queue has lower or equal priority, so a
      // starving run ends the walk: devices stay free for it as they free up.
      if (now - it->since >= starvation_timeout_)
        break;
      ++it;
      continue;
    }
    placement p{req.id, {free.begin(), free.begin() + req.gpus}};
    free.erase(free.begin(), free.begin() + req.gpus);
    for (int gpu : p.gpus)
      held_[gpu] = req.id;
    active_[req.id] = req.experiment;
    ++per_experiment[req.experiment];
    started.push_back(std::move(p));
    it = queue_.erase(it);
  }
  return started;
}

std::optional<int> scheduler::queue_position(const std::string& id) const {
  for (std::size_t i = 0; i < queue_.size(); ++i)
    if (queue_[i].req.id == id)
      return static_cast<int>(i) + 1;
  return std::nullopt;
}

std::optional<std::string> scheduler::holder(int gpu) const {
  auto it = held_.find(gpu);
  if (it == held_.end())
    return std::nullopt;
  return it->second;
}

std::vector<int> scheduler::held_by(const std::string& id) const {
  std::vector<int> gpus;
  for (const auto& [gpu, run] : held_)
    if (run == id)
      gpus.push_back(gpu);
  return gpus;
}

std::optional<scheduler::clock::time_point> scheduler::next_deadline() const {
  std::optional<clock::time_point> earliest;
  for (const auto& q : queue_) {
    // Runs that need no devices, or more than exist, never starve anyone.
    if (q.req.gpus <= 0 || !fits_ever(q.req.gpus))
      continue;
    auto deadline = q.since + starvation_timeout_;
    if (deadline <= last_now_)
      continue;
    if (!earliest || deadline < *earliest)
      earliest = deadline;
  }
  return earliest;
}

} // namespace corral
