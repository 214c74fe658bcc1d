#include "services/units.hpp"

#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cmath>
#include <limits>

namespace corral {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// A decimal number without sign or exponent at the front of `s`
/// ("12", "1.5", ".5", "3."): its length, or 0 when there is none.
/// from_chars alone would also take "inf", "nan" and exponents.
std::size_t decimal_prefix(std::string_view s) {
  std::size_t i = 0;
  std::size_t digits = 0;
  while (i < s.size() && is_digit(s[i])) {
    ++i;
    ++digits;
  }
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) {
      ++i;
      ++digits;
    }
  }
  return digits > 0 ? i : 0;
}

double to_double(std::string_view s) {
  double v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

// Beyond this a duration is surely a typo (about 300 years), and the value
// still fits comfortably in the int64 milliseconds of std::chrono.
constexpr double max_duration_ms = 1e13;

error bad_duration(std::string_view text) {
  return make_error(ec::invalid_spec,
                    "invalid duration '" + std::string{text}
                        + "' (use 500ms, 30s, 5m, 1h30m or seconds)");
}

error bad_size(std::string_view text) {
  return make_error(ec::invalid_spec,
                    "invalid size '" + std::string{text}
                        + "' (use bytes or a K, M, G or T suffix: 512K, 100M, "
                          "8G)");
}

} // namespace

result<millis> parse_duration(std::string_view text) {
  auto s = trim(text);
  if (!s.empty() && s.front() == '-') {
    if (parse_duration(s.substr(1)))
      return make_error(ec::invalid_spec, "invalid duration '"
                                              + std::string{text}
                                              + "': must not be negative");
    return bad_duration(text);
  }
  if (s.empty())
    return bad_duration(text);
  double total_ms = 0;
  if (auto n = decimal_prefix(s); n == s.size()) {
    total_ms = to_double(s) * 1000;
  } else {
    // Units from largest to smallest, each at most once: "30m1h" or
    // "1m1m" are more likely slips than intent.
    struct unit {
      std::string_view suffix;
      double ms;
    };
    constexpr std::array<unit, 4> units{{
        {"h", 3'600'000},
        {"m", 60'000},
        {"s", 1'000},
        {"ms", 1},
    }};
    std::size_t next_unit = 0;
    while (!s.empty()) {
      auto n = decimal_prefix(s);
      if (n == 0)
        return bad_duration(text);
      auto value = to_double(s.substr(0, n));
      s.remove_prefix(n);
      // "ms" must win over "m" followed by an "s" component.
      std::size_t found = units.size();
      if (s.substr(0, 2) == "ms")
        found = 3;
      else if (!s.empty())
        for (std::size_t u = 0; u < 3; ++u)
          if (s.front() == units[u].suffix.front())
            found = u;
      if (found == units.size() || found < next_unit)
        return bad_duration(text);
      total_ms += value * units[found].ms;
      s.remove_prefix(units[found].suffix.size());
      next_unit = found + 1;
    }
  }
  if (total_ms > max_duration_ms)
    return make_error(ec::invalid_spec,
                      "duration '" + std::string{text} + "' is too long");
  return millis{std::llround(total_ms)};
}

std::string format_duration(millis d) {
  auto ms = d.count();
  if (ms < 0)
    return "-" + format_duration(millis{-ms});
  if (ms == 0)
    return "0s";
  if (ms < 1000)
    return std::to_string(ms) + "ms";
  std::string out;
  if (auto h = ms / 3'600'000; h > 0)
    out += std::to_string(h) + "h";
  if (auto m = ms / 60'000 % 60; m > 0)
    out += std::to_string(m) + "m";
  auto s = ms / 1000 % 60;
  auto frac = ms % 1000;
  if (frac > 0) {
    auto digits = std::to_string(1000 + frac).substr(1); // "005", "500"
    while (digits.back() == '0')
      digits.pop_back();
    out += std::to_string(s) + "." + digits + "s";
  } else if (s > 0) {
    out += std::to_string(s) + "s";
  }
  return out;
}

result<std::uint64_t> parse_size(std::string_view text) {
  auto s = trim(text);
  if (!s.empty() && s.front() == '-') {
    if (parse_size(s.substr(1)))
      return make_error(ec::invalid_spec, "invalid size '" + std::string{text}
                                              + "': must not be negative");
    return bad_size(text);
  }
  auto n = decimal_prefix(s);
  if (n == 0)
    return bad_size(text);
  auto number = s.substr(0, n);
  auto suffix = trim(s.substr(n));
  auto lower = [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  };
  int power = 0;
  if (!suffix.empty()) {
    constexpr std::string_view letters = "kmgt";
    auto pos = letters.find(lower(suffix.front()));
    if (pos != std::string_view::npos) {
      power = static_cast<int>(pos) + 1;
      suffix.remove_prefix(1);
      if (!suffix.empty() && lower(suffix.front()) == 'i')
        suffix.remove_prefix(1);
    }
    if (!suffix.empty() && lower(suffix.front()) == 'b')
      suffix.remove_prefix(1);
    if (!suffix.empty())
      return bad_size(text);
  }
  std::uint64_t factor = std::uint64_t{1} << (10 * power);
  auto dot = number.find('.');
  auto whole_part = number.substr(0, dot);
  auto frac_part
      = dot == std::string_view::npos ? std::string_view{} : number.substr(dot);
  // A byte is indivisible: "1.5" bytes is a mistake, "1.5K" is not.
  if (power == 0 && frac_part.size() > 1)
    return bad_size(text);
  auto too_large = [&] {
    return make_error(ec::invalid_spec,
                      "size '" + std::string{text} + "' is too large");
  };
  // Whole part in integer arithmetic, so byte counts beyond 2^53 stay exact.
  std::uint64_t whole = 0;
  if (!whole_part.empty()) {
    auto [ptr, err] = std::from_chars(
        whole_part.data(), whole_part.data() + whole_part.size(), whole);
    if (err != std::errc{})
      return too_large();
  }
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(whole, factor, &bytes))
    return too_large();
  if (frac_part.size() > 1) {
    auto frac = std::floor(to_double(frac_part) * static_cast<double>(factor));
    if (__builtin_add_overflow(bytes, static_cast<std::uint64_t>(frac), &bytes))
      return too_large();
  }
  return bytes;
}

std::string format_size(std::uint64_t bytes) {
  if (bytes < 1024)
    return fmt::format("{}B", bytes);
  constexpr const char* units[] = {"K", "M", "G", "T", "P"};
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f}{}", value, units[unit]);
}

} // namespace corral
