#include "cli/discovery.hpp"

#include "services/text.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <pwd.h>
#include <unistd.h>

namespace corral::cli {

namespace {

std::string normalize_url(std::string url) {
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  if (url.find("://") == std::string::npos)
    url = "http://" + url;
  return url;
}

} // namespace

env_lookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (!value || *value == '\0')
      return std::nullopt;
    return std::string(value);
  };
}

std::optional<std::string> read_trimmed(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    return std::nullopt;
  auto all = text.str();
  return std::string{trim_right(all)};
}

std::string default_state_dir(const env_lookup& env) {
  // The XDG spec says relative values are invalid and must be ignored.
  if (auto xdg = env("XDG_STATE_HOME"); xdg && xdg->starts_with('/'))
    return *xdg + "/corral";
  std::string home;
  if (auto h = env("HOME"))
    home = *h;
  else if (auto* pw = ::getpwuid(::getuid()); pw && pw->pw_dir)
    home = pw->pw_dir;
  return home + "/.local/state/corral";
}

std::string discover_server(const std::string& flag,
                            const std::string& state_dir,
                            const env_lookup& env) {
  if (!flag.empty())
    return normalize_url(flag);
  if (auto url = env("CORRAL_URL"))
    return normalize_url(*url);
  if (auto text = read_trimmed(state_dir + "/endpoint")) {
    auto line = text->substr(0, text->find('\n'));
    line.resize(trim_right(line).size());
    if (!line.empty())
      return normalize_url(line);
  }
  return default_server_url;
}

std::string discover_token(const std::string& token_file,
                           const std::string& state_dir,
                           const env_lookup& env) {
  if (!token_file.empty()) {
    auto token = read_trimmed(token_file);
    if (!token)
      throw std::runtime_error("cannot read token file " + token_file + ": "
                               + std::strerror(errno));
    return *token;
  }
  if (auto token = env("CORRAL_TOKEN"))
    return std::string{trim_right(*token)};
  return read_trimmed(state_dir + "/token").value_or("");
}

} // namespace corral::cli
