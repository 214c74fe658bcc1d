#pragma once
/// Experiments YAML (DESIGN.md, "Experiments YAML") → validated run specs.

#include "services/result.hpp"
#include "services/run_spec.hpp"

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

/// Parses and validates an experiments document (YAML, or the same as JSON).
/// `base_dir` is the absolute directory relative `cwd`s resolve against;
/// `base_env` becomes each run's base environment.
/// Errors: ec::bad_request for unparseable text ("line 3, column 7: ..."),
/// ec::invalid_spec for anything parsed but invalid, naming the key path,
/// line and column ("experiments[0].stop.grace (line 9, column 18): ...").
result<std::vector<run_spec>>
parse_experiments(std::string_view text, const std::string& base_dir,
                  const std::map<std::string, std::string>& base_env);

/// Resolves the placeholders that need the final run id ({run}) or an
/// earlier run ({latest_checkpoint}) in command, env values, cwd and
/// artifact patterns. Matrix and {experiment} placeholders were already
/// validated by parse_experiments; after this call no placeholder remains.
void expand_run_placeholders(run_spec& spec, const std::string& run_id,
                             const std::string& latest_checkpoint);

} // namespace corral
