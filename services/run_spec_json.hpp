#pragma once
/// A run's spec as JSON, for the state store: what a restarted daemon needs
/// to stop, restart and describe a run exactly as it was submitted.

#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <nlohmann/json.hpp>

namespace corral {

nlohmann::json spec_to_json(const run_spec& spec);
/// The spec back; an error names the first key that is missing or of the
/// wrong type (a store written by a newer corral, or damaged).
result<run_spec> spec_from_json(const nlohmann::json& j);

} // namespace corral
