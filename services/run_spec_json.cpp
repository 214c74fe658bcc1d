#include "services/run_spec_json.hpp"

namespace corral {

namespace {

using nlohmann::json;

template <class T>
json optional_json(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

template <class T>
void read_optional(const json& j, const char* key, std::optional<T>& out) {
  auto& v = j.at(key);
  if (v.is_null())
    out.reset();
  else
    out = v.get<T>();
}

} // namespace

json spec_to_json(const run_spec& s) {
  json max_runtime = nullptr;
  if (s.max_runtime)
    max_runtime = s.max_runtime->count();
  return {
      {"id_base", s.id_base},
      {"experiment", s.experiment},
      {"command", s.command},
      {"cwd", s.cwd},
      {"base_dir", s.base_dir},
      {"env", s.env},
      {"base_env", s.base_env},
      {"gpus", s.gpus},
      {"cpus", optional_json(s.cpus)},
      {"memory_bytes", optional_json(s.memory_bytes)},
      {"priority", s.priority},
      {"max_concurrent", optional_json(s.max_concurrent)},
      {"stop",
       {{"signal", s.stop.signal},
        {"mode", s.stop.mode == stop_mode::tree ? "tree" : "main"},
        {"grace_ms", s.stop.grace.count()},
        {"checkpoint_signal", optional_json(s.stop.checkpoint_signal)},
        {"checkpoint_timeout_ms", s.stop.checkpoint_timeout.count()}}},
      {"progress",
       {{"format", s.progress.format},
        {"counter", s.progress.counter},
        {"total", optional_json(s.progress.total)},
        {"file", s.progress.file},
        {"pattern", s.progress.pattern}}},
      {"artifacts",
       {{"checkpoints", s.artifacts.checkpoints},
        {"videos", s.artifacts.videos}}},
      {"restart",
       {{"policy", s.restart.policy == restart_policy::always ? "always"
                   : s.restart.policy == restart_policy::on_failure
                       ? "on_failure"
                       : "never"},
        {"max", s.restart.max},
        {"backoff_ms", s.restart.backoff.count()}}},
      {"max_runtime_ms", max_runtime},
      {"executor", s.executor},
      {"slurm",
       {{"partition", s.slurm.partition},
        {"account", s.slurm.account},
        {"qos", s.slurm.qos},
        {"time", s.slurm.time},
        {"extra_args", s.slurm.extra_args}}},
      {"matrix", s.matrix},
  };
}

result<run_spec> spec_from_json(const json& j) {
  try {
    run_spec s;
    j.at("id_base").get_to(s.id_base);
    j.at("experiment").get_to(s.experiment);
    j.at("command").get_to(s.command);
    j.at("cwd").get_to(s.cwd);
    j.at("base_dir").get_to(s.base_dir);
    j.at("env").get_to(s.env);
    j.at("base_env").get_to(s.base_env);
    j.at("gpus").get_to(s.gpus);
    read_optional(j, "cpus", s.cpus);
    read_optional(j, "memory_bytes", s.memory_bytes);
    j.at("priority").get_to(s.priority);
    read_optional(j, "max_concurrent", s.max_concurrent);
    auto& stop = j.at("stop");
    stop.at("signal").get_to(s.stop.signal);
    s.stop.mode = stop.at("mode").get<std::string>() == "tree"
                      ? stop_mode::tree
                      : stop_mode::main;
    s.stop.grace = millis{stop.at("grace_ms").get<std::int64_t>()};
    read_optional(stop, "checkpoint_signal", s.stop.checkpoint_signal);
    s.stop.checkpoint_timeout
        = millis{stop.at("checkpoint_timeout_ms").get<std::int64_t>()};
    auto& progress = j.at("progress");
    progress.at("format").get_to(s.progress.format);
    progress.at("counter").get_to(s.progress.counter);
    read_optional(progress, "total", s.progress.total);
    progress.at("file").get_to(s.progress.file);
    progress.at("pattern").get_to(s.progress.pattern);
    j.at("artifacts").at("checkpoints").get_to(s.artifacts.checkpoints);
    j.at("artifacts").at("videos").get_to(s.artifacts.videos);
    auto& restart = j.at("restart");
    auto policy = restart.at("policy").get<std::string>();
    s.restart.policy = policy == "always"       ? restart_policy::always
                       : policy == "on_failure" ? restart_policy::on_failure
                                                : restart_policy::never;
    restart.at("max").get_to(s.restart.max);
    s.restart.backoff = millis{restart.at("backoff_ms").get<std::int64_t>()};
    if (auto& m = j.at("max_runtime_ms"); !m.is_null())
      s.max_runtime = millis{m.get<std::int64_t>()};
    j.at("executor").get_to(s.executor);
    // Records written before Slurm support have no "slurm".
    if (auto it = j.find("slurm"); it != j.end()) {
      auto& slurm = *it;
      slurm.at("partition").get_to(s.slurm.partition);
      slurm.at("account").get_to(s.slurm.account);
      slurm.at("qos").get_to(s.slurm.qos);
      slurm.at("time").get_to(s.slurm.time);
      slurm.at("extra_args").get_to(s.slurm.extra_args);
    }
    j.at("matrix").get_to(s.matrix);
    return s;
  } catch (const json::exception& e) {
    return make_error(ec::internal,
                      std::string{"stored run spec is unreadable: "}
                          + e.what());
  }
}

} // namespace corral
