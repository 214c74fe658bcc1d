#pragma once
/// A run's view and events in the form the state store keeps: times as
/// integer milliseconds since the epoch (exact, no parsing), only what
/// outlives the daemon (no processes, no resource samples).

#include "services/artifacts.hpp"
#include "services/result.hpp"
#include "services/run_view.hpp"

#include <vector>

#include <nlohmann/json.hpp>

namespace corral {

nlohmann::json view_to_record(const run_view& v);
/// The view back; an error names what is missing or malformed.
result<run_view> view_from_record(const nlohmann::json& j);

nlohmann::json event_to_record(const run_event& e);
result<run_event> event_from_record(const nlohmann::json& j);

/// Artifact lists with their mtimes to the nanosecond, so a file that did
/// not change is not taken for a rewritten one.
nlohmann::json artifacts_to_record(const std::vector<artifact>& files);
result<std::vector<artifact>> artifacts_from_record(const nlohmann::json& j);

/// Milliseconds since the epoch, and back.
std::int64_t to_unix_ms(sys_time t);
sys_time from_unix_ms(std::int64_t ms);

} // namespace corral
