#include "services/run_view.hpp"

#include <ctime>

#include <fmt/format.h>

namespace corral {

std::string format_time(sys_time t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  auto secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec, ms % 1000);
}

namespace {

template <class T>
nlohmann::json opt(const std::optional<T>& x) {
  return x ? nlohmann::json(*x) : nlohmann::json(nullptr);
}

nlohmann::json opt_time(const std::optional<sys_time>& t) {
  return t ? nlohmann::json(format_time(*t)) : nlohmann::json(nullptr);
}

nlohmann::json opt_str(const std::string& s) {
  return s.empty() ? nlohmann::json(nullptr) : nlohmann::json(s);
}

} // namespace

nlohmann::json to_json(const run_event& e) {
  return {{"seq", e.seq},
          {"run", e.run},
          {"t", format_time(e.t)},
          {"type", e.type},
          {"cause", opt_str(e.cause)},
          {"message", e.message},
          {"data", e.data}};
}

nlohmann::json to_json(const run_view& v) {
  nlohmann::json processes = nullptr;
  if (v.processes) {
    processes = nlohmann::json::array();
    for (auto& p : *v.processes)
      processes.push_back({
          {"pid", p.pid},
          {"ppid", p.ppid},
          {"state", std::string(1, p.state)},
          {"frozen", p.frozen},
          {"cmd", p.cmd},
          {"cpu_pct", p.cpu_pct},
          {"rss_bytes", p.rss_bytes},
      });
  }
  return {
      {"id", v.id},
      {"experiment", v.experiment},
      {"state", std::string(to_string(v.state))},
      {"reason", opt_str(v.reason)},
      {"message", opt_str(v.message)},
      {"pid", opt(v.pid)},
      {"processes", processes},
      {"process_count", v.process_count},
      {"pause_mechanism", opt_str(v.pause_mechanism)},
      {"executor", v.executor},
      {"slurm_job_id", opt(v.slurm_job_id)},
      {"node", opt(v.node)},
      {"exit_code", opt(v.exit_code)},
      {"signal", opt(v.signal)},
      {"gpus", v.gpus},
      {"attempt", v.attempt},
      {"restart_of", opt(v.restart_of)},
      {"retry_at", opt_time(v.retry_at)},
      {"queue_position", opt(v.queue_position)},
      {"created_at", format_time(v.created_at)},
      {"started_at", opt_time(v.started_at)},
      {"ended_at", opt_time(v.ended_at)},
      {"active_s", v.active_s},
      {"cwd", v.cwd},
      {"command", v.command},
      {"resources",
       {{"cpu_pct", v.cpu_pct},
        {"rss_bytes", v.rss_bytes},
        {"gpu_memory_bytes", opt(v.gpu_memory_bytes)}}},
      {"progress",
       {{"metrics", v.metrics},
        {"fraction", opt(v.fraction)},
        {"eta_s", opt(v.eta_s)}}},
  };
}

} // namespace corral
