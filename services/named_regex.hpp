#pragma once
/// ECMAScript regexes with named groups `(?<name>...)`, which std::regex
/// lacks: names are stripped before compiling and kept beside the regex.

#include "services/result.hpp"

#include <regex>
#include <string>
#include <string_view>
#include <vector>

namespace corral {

/// A compiled pattern and the name of each capturing group.
struct named_regex {
  std::regex re;
  /// group_names[i] names capture group i + 1; "" for an unnamed group.
  std::vector<std::string> group_names;
};

/// The pattern with `(?<name>` turned into `(` and `\k<name>` into a
/// numbered backreference, plus the group names. Errors (ec::invalid_spec)
/// for a malformed or repeated group name.
result<std::pair<std::string, std::vector<std::string>>>
strip_group_names(std::string_view pattern);

/// Compiles a pattern as ECMAScript after strip_group_names(); errors
/// (ec::invalid_spec) carry std::regex's complaint.
result<named_regex> compile_named_regex(std::string_view pattern);

} // namespace corral
