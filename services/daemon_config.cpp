#include "services/daemon_config.hpp"

#include <cstdlib>
#include <filesystem>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include "config/defaults.hpp"
#include "services/gpu_inventory.hpp"
#include "services/units.hpp"

namespace corral {

daemon_config default_daemon_config() {
  daemon_config cfg;
  cfg.listen = std::string{defaults::listen};
  cfg.pause_timeout = defaults::pause_timeout;
  cfg.starvation_timeout = defaults::starvation_timeout;
  if (auto* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg)
    cfg.state_dir = std::string{xdg} + "/corral";
  else if (auto* home = std::getenv("HOME"); home && *home)
    cfg.state_dir = std::string{home} + "/.local/state/corral";
  else
    cfg.state_dir = "/var/lib/corral";
  return cfg;
}

namespace {

std::string where(const std::string& file, const std::string& key,
                  const YAML::Mark& m) {
  return file + ": " + key + " (line " + std::to_string(m.line + 1)
         + ", column " + std::to_string(m.column + 1) + ")";
}

/// Smaller files would rotate on nearly every read of the shim (64 KiB).
constexpr std::uint64_t min_log_size = 64 * 1024;

/// `log_rotate: {size: 100M, count: 3}`; either key may be left out.
status apply_log_rotate(daemon_config& cfg, const YAML::Node& node,
                        const std::string& file, const std::string& at) {
  if (!node.IsMap())
    return make_error(ec::invalid_spec,
                      at + ": expected a map like {size: 100M, count: 3}");
  auto max_bytes = cfg.log_max_bytes;
  auto keep = cfg.log_keep;
  for (auto it = node.begin(); it != node.end(); ++it) {
    auto key = it->first.as<std::string>();
    YAML::Node value = it->second;
    auto here = where(file, "log_rotate." + key, value.Mark());
    if (key == "size") {
      auto size = value.IsScalar() ? parse_size(value.Scalar())
                                   : result<std::uint64_t>{make_error(
                                       ec::invalid_spec, "expected a size")};
      if (!size)
        return make_error(ec::invalid_spec, here + ": " + size.error().message);
      if (*size < min_log_size)
        return make_error(ec::invalid_spec,
                          here + ": " + value.Scalar()
                              + " is too small; use at least 64K");
      max_bytes = *size;
    } else if (key == "count") {
      int n = 0;
      if (!value.IsScalar() || !YAML::convert<int>::decode(value, n) || n < 1
          || n > max_log_keep)
        return make_error(ec::invalid_spec,
                          here
                              + ": expected the number of rotated files to "
                                "keep, from 1 to "
                              + std::to_string(max_log_keep));
      keep = n;
    } else {
      return make_error(ec::invalid_spec,
                        here + ": unknown key '" + key
                            + "' (log_rotate takes size and count)");
    }
  }
  cfg.log_max_bytes = max_bytes;
  cfg.log_keep = keep;
  return ok;
}

constexpr auto min_slurm_poll = std::chrono::milliseconds{100};
constexpr auto max_slurm_poll = std::chrono::minutes{10};

/// `slurm: {log_dir, poll, log_watch, shim}`; any key may be left out.
status apply_slurm(daemon_config& cfg, const YAML::Node& node,
                   const std::string& file, const std::string& at) {
  if (!node.IsMap())
    return make_error(ec::invalid_spec,
                      at
                          + ": expected a map like {log_dir: /shared/corral, "
                            "poll: 2s}");
  auto slurm = cfg.slurm;
  for (auto it = node.begin(); it != node.end(); ++it) {
    if (!it->first.IsScalar())
      return make_error(ec::invalid_spec, where(file, "slurm", it->first.Mark())
                                              + ": expected a key name");
    auto key = it->first.Scalar();
    YAML::Node value = it->second;
    auto here = where(file, "slurm." + key, value.Mark());
    auto text = value.IsScalar() ? value.Scalar() : std::string{};
    if (key == "log_dir" || key == "shim") {
      // Relative paths would depend on the daemon's working directory,
      // which the nodes do not share.
      if (text.empty() || text.front() != '/')
        return make_error(
            ec::invalid_spec,
            here + ": expected an absolute path"
                + (text.empty() ? std::string{} : ", got '" + text + "'"));
      auto path = std::filesystem::path{text}.lexically_normal().string();
      if (path.size() > 1 && path.back() == '/')
        path.pop_back();
      (key == "log_dir" ? slurm.log_dir : slurm.shim) = path;
    } else if (key == "poll") {
      auto d = value.IsScalar() ? parse_duration(text)
                                : result<millis>{make_error(
                                    ec::invalid_spec, "expected a duration")};
      if (!d)
        return make_error(ec::invalid_spec, here + ": " + d.error().message);
      if (*d < min_slurm_poll || *d > max_slurm_poll)
        return make_error(ec::invalid_spec,
                          here + ": " + text
                              + " is out of range; use 100ms to 10m");
      slurm.poll = *d;
    } else if (key == "log_watch") {
      if (text != "auto" && text != "inotify" && text != "poll")
        return make_error(ec::invalid_spec,
                          here + ": expected auto, inotify or poll, got "
                              + (value.IsScalar() ? "'" + text + "'"
                                                  : std::string{"no value"}));
      slurm.log_watch = text;
    } else {
      return make_error(ec::invalid_spec,
                        here + ": unknown key '" + key
                            + "' (slurm takes log_dir, poll, log_watch and "
                              "shim)");
    }
  }
  cfg.slurm = slurm;
  return ok;
}

} // namespace

status apply_config_file(daemon_config& cfg, std::string_view text,
                         const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string{text});
  } catch (const YAML::ParserException& e) {
    return make_error(ec::bad_request,
                      file + ": YAML syntax error at line "
                          + std::to_string(e.mark.line + 1) + ", column "
                          + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  if (root.IsNull())
    return ok;
  if (!root.IsMap())
    return make_error(ec::invalid_spec,
                      file + ": the config file must be a map of settings");
  for (auto it = root.begin(); it != root.end(); ++it) {
    auto key = it->first.as<std::string>();
    // Copies: the iterator yields a temporary pair.
    YAML::Node node = it->second;
    auto at = where(file, key, node.Mark());
    auto scalar = [&]() -> result<std::string> {
      if (!node.IsScalar())
        return make_error(ec::invalid_spec, at + ": expected a single value");
      return node.Scalar();
    };
    auto boolean = [&]() -> result<bool> {
      bool b = false;
      if (!node.IsScalar() || !YAML::convert<bool>::decode(node, b))
        return make_error(ec::invalid_spec, at + ": expected true or false");
      return b;
    };
    auto duration = [&]() -> result<millis> {
      auto v = scalar();
      if (!v)
        return v.error();
      auto d = parse_duration(*v);
      if (!d)
        return make_error(ec::invalid_spec, at + ": " + d.error().message);
      return *d;
    };
    if (key == "listen" || key == "state_dir" || key == "token_file"
        || key == "cgroup") {
      auto v = scalar();
      if (!v)
        return v.error();
      if (key == "listen") {
        if (auto l = parse_listen(*v); !l)
          return make_error(ec::invalid_spec, at + ": " + l.error().message);
        cfg.listen = *v;
      } else if (key == "state_dir") {
        cfg.state_dir = *v;
      } else if (key == "token_file") {
        cfg.token_file = *v;
      } else {
        if (*v != "auto" && *v != "off")
          return make_error(ec::invalid_spec,
                            at + ": expected auto or off, got '" + *v + "'");
        cfg.cgroup = *v;
      }
    } else if (key == "no_auth") {
      auto b = boolean();
      if (!b)
        return b.error();
      cfg.no_auth = *b;
    } else if (key == "pause_timeout") {
      auto d = duration();
      if (!d)
        return d.error();
      cfg.pause_timeout = *d;
    } else if (key == "stop_runs_on_exit") {
      auto b = boolean();
      if (!b)
        return b.error();
      cfg.stop_runs_on_exit = *b;
    } else if (key == "gpus") {
      std::string text;
      if (node.IsSequence()) {
        // Brackets keep a list a list: `[3]` is device 3, a bare 3 a count.
        std::string items;
        for (auto item : node)
          items += (items.empty() ? "" : ",")
                   + (item.IsScalar() ? item.Scalar() : std::string{"?"});
        text = "[" + items + "]";
      } else if (node.IsScalar()) {
        text = node.Scalar();
      }
      auto list = parse_gpu_list(text);
      if (!list)
        return make_error(ec::invalid_spec, at + ": " + list.error().message);
      cfg.gpus = *list;
    } else if (key == "max_concurrent") {
      int n = 0;
      if (!node.IsScalar() || !YAML::convert<int>::decode(node, n) || n < 1)
        return make_error(ec::invalid_spec,
                          at + ": expected a whole number of at least 1");
      cfg.max_concurrent = n;
    } else if (key == "starvation_timeout") {
      auto d = duration();
      if (!d)
        return d.error();
      cfg.starvation_timeout = *d;
    } else if (key == "log_rotate") {
      if (auto applied = apply_log_rotate(cfg, node, file, at); !applied)
        return applied.error();
    } else if (key == "executor") {
      auto v = scalar();
      if (!v)
        return v.error();
      if (*v != "local" && *v != "slurm")
        return make_error(ec::invalid_spec,
                          at + ": expected local or slurm, got '" + *v + "'");
      cfg.executor = *v;
    } else if (key == "slurm") {
      if (auto applied = apply_slurm(cfg, node, file, at); !applied)
        return applied.error();
    } else {
      return make_error(ec::invalid_spec, at + ": unknown key '" + key + "'");
    }
  }
  return ok;
}

result<std::pair<std::string, std::uint16_t>>
parse_listen(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size())
    return make_error(ec::invalid_spec, "listen address '" + text
                                            + "' needs HOST:PORT, e.g. "
                                              "127.0.0.1:8700");
  auto host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port_text = text.substr(colon + 1);
  char* end = nullptr;
  long port = std::strtol(port_text.c_str(), &end, 10);
  if (host.empty() || *end != '\0' || port < 0 || port > 65535)
    return make_error(ec::invalid_spec, "listen address '" + text
                                            + "' needs HOST:PORT with a port "
                                              "from 0 to 65535");
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

} // namespace corral
