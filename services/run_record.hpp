#pragma once
/// A run's view and events in the form the state store keeps: times as
/// integer milliseconds since the epoch (exact, no parsing), only what
/// outlives the daemon (no processes, no resource samples).

#include "services/result.hpp"
#include "services/run_view.hpp"

#include <nlohmann/json.hpp>

namespace corral {

nlohmann::json view_to_record(const run_view& v);
/// The view back; an error names what is missing or malformed.
result<run_view> view_from_record(const nlohmann::json& j);

nlohmann::json event_to_record(const run_event& e);
result<run_event> event_from_record(const nlohmann::json& j);

/// Milliseconds since the epoch, and back.
std::int64_t to_unix_ms(sys_time t);
sys_time from_unix_ms(std::int64_t ms);

} // namespace corral
