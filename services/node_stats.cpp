#include "services/node_stats.hpp"

#include "services/proc.hpp"

#include <unistd.h>

#include <sstream>
#include <string>

namespace corral {

std::optional<cpu_times> parse_proc_stat_cpu(std::string_view proc_stat) {
  auto line = proc_stat.substr(0, proc_stat.find('\n'));
  if (!line.starts_with("cpu "))
    return std::nullopt;
  std::istringstream in{std::string(line.substr(4))};
  // user nice system idle iowait irq softirq steal (guest time is already
  // counted in user and nice)
  std::uint64_t v[8] = {};
  int n = 0;
  while (n < 8 && in >> v[n])
    ++n;
  if (n < 4)
    return std::nullopt;
  cpu_times t;
  for (int i = 0; i < n; ++i)
    t.total += v[i];
  auto idle = v[3] + (n > 4 ? v[4] : 0);
  t.busy = t.total - idle;
  return t;
}

std::optional<std::pair<std::uint64_t, std::uint64_t>>
parse_meminfo(std::string_view meminfo) {
  std::optional<std::uint64_t> total, available;
  std::istringstream in{std::string(meminfo)};
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemTotal:")
      total = kib * 1024;
    else if (key == "MemAvailable:")
      available = kib * 1024;
  }
  if (!total || !available || *available > *total)
    return std::nullopt;
  return std::pair{*total, *total - *available};
}

std::optional<std::array<double, 3>> parse_loadavg(std::string_view loadavg) {
  std::istringstream in{std::string(loadavg)};
  std::array<double, 3> out{};
  if (!(in >> out[0] >> out[1] >> out[2]))
    return std::nullopt;
  return out;
}

result<node_stats> node_sampler::sample() {
  auto stat = read_small_file("/proc/stat");
  auto meminfo = read_small_file("/proc/meminfo");
  auto loadavg = read_small_file("/proc/loadavg");
  auto cpu = stat ? parse_proc_stat_cpu(*stat) : std::nullopt;
  auto memory = meminfo ? parse_meminfo(*meminfo) : std::nullopt;
  auto load = loadavg ? parse_loadavg(*loadavg) : std::nullopt;
  if (!cpu || !memory || !load)
    return make_error(ec::internal,
                      "cannot read the node's load from /proc (stat, meminfo, "
                      "loadavg)");
  node_stats s;
  s.cpus = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  auto from = last_.value_or(cpu_times{});
  if (cpu->total > from.total)
    s.cpu_pct = 100.0 * static_cast<double>(cpu->busy - from.busy)
                / static_cast<double>(cpu->total - from.total);
  last_ = cpu;
  s.load = *load;
  s.memory_total = memory->first;
  s.memory_used = memory->second;
  return s;
}

} // namespace corral
