#pragma once
/// Small text helpers shared by the parsers of headers, files and flags.

#include <string_view>

namespace corral {

/// Spaces, tabs and line ends: what surrounds a value in a header, a
/// token file or a flag.
constexpr bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/// `s` without trailing blanks.
constexpr std::string_view trim_right(std::string_view s) {
  while (!s.empty() && is_blank(s.back()))
    s.remove_suffix(1);
  return s;
}

/// `s` without leading and trailing blanks.
constexpr std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  return trim_right(s);
}

} // namespace corral
