#include "services/run_state.hpp"

#include <array>
#include <utility>

namespace corral {

namespace {

constexpr std::array<std::pair<run_state, std::string_view>, 8> names{{
    {run_state::queued, "queued"},
    {run_state::starting, "starting"},
    {run_state::running, "running"},
    {run_state::paused, "paused"},
    {run_state::stopping, "stopping"},
    {run_state::stopped, "stopped"},
    {run_state::finished, "finished"},
    {run_state::failed, "failed"},
}};

} // namespace

std::string_view to_string(run_state s) {
  for (auto& [state, name] : names)
    if (state == s)
      return name;
  return "unknown";
}

std::optional<run_state> parse_run_state(std::string_view s) {
  for (auto& [state, name] : names)
    if (name == s)
      return state;
  return std::nullopt;
}

std::string_view emoji(run_state s) {
  switch (s) {
    case run_state::queued:
      return "⏳";
    case run_state::starting:
      return "🔵";
    case run_state::running:
      return "🟢";
    case run_state::paused:
      return "⏸️";
    case run_state::stopping:
      return "🟠";
    case run_state::stopped:
      return "🔴";
    case run_state::finished:
      return "✅";
    case run_state::failed:
      return "❌";
  }
  return "?";
}

} // namespace corral
