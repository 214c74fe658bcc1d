#include "services/scheduler.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <sstream>
#include <utility>

namespace corral {

namespace {

/// Queue order: higher priority first, then earlier submission.
bool before(const sched_request& a, const sched_request& b) {
  if (a.priority != b.priority)
    return a.priority > b.priority;
  return a.seq < b.seq;
}

/// CPUs in thousandths. NaN and negatives ask for nothing; the cap keeps
/// llround defined for absurd values (they still fit nowhere).
std::int64_t to_millicpus(double cpus) {
  if (!(cpus > 0))
    return 0;
  return std::llround(std::min(cpus, 1e12) * 1000);
}

std::string format_number(double value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

/// Bytes in the largest binary unit they reach, e.g. "1.5 GiB".
std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 5> units{"bytes", "KiB", "MiB",
                                                    "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < units.size()) {
    value /= 1024;
    ++unit;
  }
  std::ostringstream out;
  out.precision(4);
  out << value << ' ' << units[unit];
  return out.str();
}

std::string plural(const std::string& count, const char* noun) {
  return count + " " + noun + (count == "1" ? "" : "s");
}

} // namespace

scheduler::scheduler(std::vector<int> gpus, std::optional<int> max_concurrent,
                     std::chrono::milliseconds starvation_timeout,
                     double cpu_capacity, std::uint64_t memory_capacity)
    : inventory_(std::move(gpus)), max_concurrent_(max_concurrent),
      starvation_timeout_(starvation_timeout),
      // A capacity below one millicpu must not read as "not accounted".
      cpu_capacity_(cpu_capacity > 0
                        ? std::max<std::int64_t>(1, to_millicpus(cpu_capacity))
                        : 0),
      memory_capacity_(memory_capacity) {
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

bool scheduler::fits_ever(const sched_request& req) const {
  // Unaccounted capacities are 0 and so are the amounts counted against
  // them, so these hold trivially there.
  return fits_ever(req.gpus) && millicpus(req) <= cpu_capacity_
         && memory(req) <= memory_capacity_;
}

std::string scheduler::why_never(const sched_request& req) const {
  std::vector<std::string> reasons;
  if (!fits_ever(req.gpus))
    reasons.push_back("asks for " + plural(std::to_string(req.gpus), "GPU")
                      + " but this node has "
                      + std::to_string(inventory_.size()));
  if (millicpus(req) > cpu_capacity_)
    reasons.push_back(
        "asks for " + plural(format_number(req.cpus), "CPU")
        + " but this node has "
        + format_number(static_cast<double>(cpu_capacity_) / 1000));
  if (memory(req) > memory_capacity_) {
    auto asked = format_bytes(req.memory);
    auto has = format_bytes(memory_capacity_);
    // Rounded to the same figure, the message would read as a contradiction.
    if (asked == has) {
      asked += " (" + std::to_string(req.memory) + " bytes)";
      has += " (" + std::to_string(memory_capacity_) + " bytes)";
    }
    reasons.push_back("asks for " + asked + " of memory but this node has "
                      + has);
  }
  std::string out;
  for (const auto& reason : reasons)
    out += (out.empty() ? "" : "; ") + reason;
  return out;
}

double scheduler::cpus_in_use() const {
  return static_cast<double>(cpu_used_) / 1000;
}

std::int64_t scheduler::millicpus(const sched_request& req) const {
  return cpu_capacity_ > 0 ? to_millicpus(req.cpus) : 0;
}

std::uint64_t scheduler::memory(const sched_request& req) const {
  return memory_capacity_ > 0 ? req.memory : 0;
}

bool scheduler::needs_capacity(const sched_request& req) const {
  return req.gpus > 0 || millicpus(req) > 0 || memory(req) > 0;
}

bool scheduler::dequeue(const std::string& id) {
  auto it = std::find_if(queue_.begin(), queue_.end(),
                         [&](const queued& q) { return q.req.id == id; });
  if (it == queue_.end())
    return false;
  queue_.erase(it);
  return true;
}

void scheduler::adopt(const sched_request& req, const std::vector<int>& gpus) {
  std::vector<int> known;
  for (int gpu : gpus)
    if (std::find(inventory_.begin(), inventory_.end(), gpu)
        != inventory_.end())
      known.push_back(gpu);
  hold(req, known);
}

void scheduler::hold(const sched_request& req, const std::vector<int>& gpus) {
  for (int gpu : gpus)
    held_[gpu] = req.id;
  auto cpus = millicpus(req);
  auto mem = memory(req);
  // Added to, not overwritten: should an id start again before its
  // release, release() must still give back everything it holds, as it
  // does with devices.
  auto& held = active_[req.id];
  held.experiment = req.experiment;
  held.millicpus += cpus;
  held.memory += mem;
  cpu_used_ += cpus;
  memory_used_ += mem;
}

void scheduler::release(const std::string& id) {
  auto it = active_.find(id);
  if (it != active_.end()) {
    cpu_used_ -= it->second.millicpus;
    memory_used_ -= it->second.memory;
    active_.erase(it);
  }
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
  for (const auto& [id, run] : active_)
    ++per_experiment[run.experiment];

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
    // A request larger than the node can never start; keeping devices free
    // for it would idle them forever (callers check fits_ever()).
    if (!fits_ever(req)) {
      ++it;
      continue;
    }
    auto cpus = millicpus(req);
    auto mem = memory(req);
    // Used never exceeds capacity, so the differences cannot wrap; where
    // not accounted both sides are 0.
    bool fits = req.gpus <= static_cast<int>(free.size())
                && cpus <= cpu_capacity_ - cpu_used_
                && mem <= memory_capacity_ - memory_used_;
    if (!fits) {
      // Everything after it in the queue has lower or equal priority, so a
      // starving run ends the walk: devices, CPUs and memory stay free for
      // it as they free up.
      if (now - it->since >= starvation_timeout_)
        break;
      ++it;
      continue;
    }
    placement p{req.id, {free.begin(), free.begin() + req.gpus}};
    free.erase(free.begin(), free.begin() + req.gpus);
    hold(req, p.gpus);
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
    // Runs that need nothing that runs out, or more than exists, never
    // starve anyone.
    if (!needs_capacity(q.req) || !fits_ever(q.req))
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
