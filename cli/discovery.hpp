#pragma once
/// How the CLI finds its daemon and token when no flag names them
/// (DESIGN.md, "Daemon"): flags, then environment, then the state dir.

#include <functional>
#include <optional>
#include <string>

namespace corral::cli {

/// The daemon's address when nothing else names one.
inline constexpr const char* default_server_url = "http://127.0.0.1:8700";

/// Looks up an environment variable; a seam so tests need not touch the
/// process environment.
using env_lookup
    = std::function<std::optional<std::string>(const std::string& name)>;

/// The real environment (unset and empty variables are both nullopt).
env_lookup process_env();

/// A file's contents with trailing whitespace trimmed; nullopt if it cannot
/// be read.
std::optional<std::string> read_trimmed(const std::string& path);

/// $XDG_STATE_HOME/corral (if absolute), else $HOME/.local/state/corral.
std::string default_state_dir(const env_lookup& env);

/// `flag` if given, else $CORRAL_URL, else the first line of
/// <state_dir>/endpoint, else default_server_url. "host:port" gains
/// "http://"; a trailing '/' is dropped.
std::string discover_server(const std::string& flag,
                            const std::string& state_dir,
                            const env_lookup& env);

/// The token in `token_file` if given (throws std::runtime_error if it
/// cannot be read), else $CORRAL_TOKEN, else <state_dir>/token if readable,
/// else "" (the daemon may run with --no-auth).
std::string discover_token(const std::string& token_file,
                           const std::string& state_dir, const env_lookup& env);

} // namespace corral::cli
