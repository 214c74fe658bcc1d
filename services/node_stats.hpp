#pragma once
/// The machine as GET /api/v1/node shows it: CPU count and load, memory,
/// read from /proc. Plain C++; the registry owns one sampler.

#include "services/result.hpp"

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

namespace corral {

struct node_stats {
  int cpus = 0;
  /// Share of all CPUs busy, 0–100, since the previous sample (since boot
  /// for the first).
  double cpu_pct = 0;
  std::array<double, 3> load{}; // 1, 5, 15 minutes
  std::uint64_t memory_total = 0;
  std::uint64_t memory_used = 0; // MemTotal - MemAvailable
};

/// Busy and total jiffies of the "cpu" line of /proc/stat.
struct cpu_times {
  std::uint64_t busy = 0;
  std::uint64_t total = 0;
};

std::optional<cpu_times> parse_proc_stat_cpu(std::string_view proc_stat);
/// MemTotal and MemTotal - MemAvailable, in bytes.
std::optional<std::pair<std::uint64_t, std::uint64_t>>
parse_meminfo(std::string_view meminfo);
std::optional<std::array<double, 3>> parse_loadavg(std::string_view loadavg);

class node_sampler {
public:
  /// Reads /proc now; cpu_pct covers the time since the previous call.
  result<node_stats> sample();

private:
  std::optional<cpu_times> last_;
};

} // namespace corral
