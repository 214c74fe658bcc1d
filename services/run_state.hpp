#pragma once
/// The run lifecycle, in Supervisor's manner: one enum, named sets, and a
/// table of which states each request may start from.

#include <optional>
#include <string>
#include <string_view>

namespace corral {

enum class run_state {
  queued,
  starting,
  running,
  paused,
  stopping,
  stopped,
  finished,
  failed,
};

/// "running", "paused", ...
std::string_view to_string(run_state s);
std::optional<run_state> parse_run_state(std::string_view s);
/// The emoji the CLI and dashboard show for a state.
std::string_view emoji(run_state s);

/// A run whose processes may exist.
constexpr bool is_active(run_state s) {
  return s == run_state::starting || s == run_state::running
         || s == run_state::paused || s == run_state::stopping;
}

/// A run that will never run again under this id (unless restarted by policy).
constexpr bool is_ended(run_state s) {
  return s == run_state::stopped || s == run_state::finished
         || s == run_state::failed;
}

} // namespace corral
