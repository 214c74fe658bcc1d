#include "services/run_record.hpp"

namespace corral {

namespace {

using nlohmann::json;

json opt_ms(const std::optional<sys_time>& t) {
  return t ? json(to_unix_ms(*t)) : json(nullptr);
}

std::optional<sys_time> read_ms(const json& j, const char* key) {
  auto& v = j.at(key);
  if (v.is_null())
    return std::nullopt;
  return from_unix_ms(v.get<std::int64_t>());
}

template <class T>
std::optional<T> read_opt(const json& j, const char* key) {
  auto& v = j.at(key);
  if (v.is_null())
    return std::nullopt;
  return v.get<T>();
}

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

} // namespace

std::int64_t to_unix_ms(sys_time t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             t.time_since_epoch())
      .count();
}

sys_time from_unix_ms(std::int64_t ms) {
  return sys_time{std::chrono::milliseconds{ms}};
}

json view_to_record(const run_view& v) {
  return {
      {"id", v.id},
      {"experiment", v.experiment},
      {"state", std::string(to_string(v.state))},
      {"reason", v.reason},
      {"message", v.message},
      {"pid", opt(v.pid)},
      {"pause_mechanism", v.pause_mechanism},
      {"executor", v.executor},
      {"slurm_job_id", opt(v.slurm_job_id)},
      {"node", opt(v.node)},
      {"exit_code", opt(v.exit_code)},
      {"signal", opt(v.signal)},
      {"gpus", v.gpus},
      {"attempt", v.attempt},
      {"restart_of", opt(v.restart_of)},
      {"retry_at", opt_ms(v.retry_at)},
      {"created_at", to_unix_ms(v.created_at)},
      {"started_at", opt_ms(v.started_at)},
      {"ended_at", opt_ms(v.ended_at)},
      {"active_s", v.active_s},
      {"cwd", v.cwd},
      {"command", v.command},
  };
}

result<run_view> view_from_record(const json& j) {
  try {
    run_view v;
    j.at("id").get_to(v.id);
    j.at("experiment").get_to(v.experiment);
    auto state = parse_run_state(j.at("state").get<std::string>());
    if (!state)
      return make_error(ec::internal,
                        "stored run " + v.id + " has an unknown state '"
                            + j.at("state").get<std::string>() + "'");
    v.state = *state;
    j.at("reason").get_to(v.reason);
    j.at("message").get_to(v.message);
    v.pid = read_opt<int>(j, "pid");
    j.at("pause_mechanism").get_to(v.pause_mechanism);
    j.at("executor").get_to(v.executor);
    // Absent in records of daemons before Slurm support.
    v.slurm_job_id = read_opt<std::string>(j, "slurm_job_id");
    v.node = read_opt<std::string>(j, "node");
    v.exit_code = read_opt<int>(j, "exit_code");
    v.signal = read_opt<std::string>(j, "signal");
    j.at("gpus").get_to(v.gpus);
    j.at("attempt").get_to(v.attempt);
    v.restart_of = read_opt<std::string>(j, "restart_of");
    v.retry_at = read_ms(j, "retry_at");
    v.created_at = from_unix_ms(j.at("created_at").get<std::int64_t>());
    v.started_at = read_ms(j, "started_at");
    v.ended_at = read_ms(j, "ended_at");
    j.at("active_s").get_to(v.active_s);
    j.at("cwd").get_to(v.cwd);
    j.at("command").get_to(v.command);
    return v;
  } catch (const json::exception& e) {
    return make_error(ec::internal,
                      std::string{"stored run is unreadable: "} + e.what());
  }
}

json event_to_record(const run_event& e) {
  return {{"seq", e.seq},   {"run", e.run},     {"t", to_unix_ms(e.t)},
          {"type", e.type}, {"cause", e.cause}, {"message", e.message},
          {"data", e.data}};
}

result<run_event> event_from_record(const json& j) {
  try {
    run_event e;
    j.at("seq").get_to(e.seq);
    j.at("run").get_to(e.run);
    e.t = from_unix_ms(j.at("t").get<std::int64_t>());
    j.at("type").get_to(e.type);
    j.at("cause").get_to(e.cause);
    j.at("message").get_to(e.message);
    e.data = j.at("data");
    return e;
  } catch (const json::exception& e) {
    return make_error(ec::internal,
                      std::string{"stored event is unreadable: "} + e.what());
  }
}

json artifacts_to_record(const std::vector<artifact>& files) {
  json out = json::array();
  for (auto& a : files)
    out.push_back(
        {{"kind", a.kind},
         {"name", a.name},
         {"path", a.path},
         {"size", a.size},
         {"mtime_ns", std::chrono::duration_cast<std::chrono::nanoseconds>(
                          a.mtime.time_since_epoch())
                          .count()}});
  return out;
}

result<std::vector<artifact>> artifacts_from_record(const json& j) {
  try {
    std::vector<artifact> out;
    for (auto& e : j) {
      artifact a;
      e.at("kind").get_to(a.kind);
      e.at("name").get_to(a.name);
      e.at("path").get_to(a.path);
      e.at("size").get_to(a.size);
      a.mtime = std::chrono::system_clock::time_point{
          std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::nanoseconds{e.at("mtime_ns").get<std::int64_t>()})};
      out.push_back(std::move(a));
    }
    return out;
  } catch (const json::exception& e) {
    return make_error(ec::internal, std::string{"stored artifact list is "
                                                "unreadable: "}
                                        + e.what());
  }
}

} // namespace corral
