#pragma once
/// Durations and sizes as users write them in experiments and config files.

#include "services/result.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace corral {

using millis = std::chrono::milliseconds;

/// Parses "500ms", "0.2s", "30s", "5m", "1h30m", "2h", or a bare number of
/// seconds ("30", "2.5"). Components go from h down to ms, each at most
/// once; each may have decimals ("1.5h"). Rounds to the nearest ms.
/// Errors (ec::invalid_spec) read "invalid duration 'abc' (use ...)".
result<millis> parse_duration(std::string_view text);

/// The shortest text parse_duration() reads back as `d`: "1h30m", "30s",
/// "1m0.5s", "500ms", "0s". Negative durations get a leading '-'.
std::string format_duration(millis d);

/// Parses a size in bytes: "1048576", "512K", "100M", "8G", "1T". Suffixes
/// are powers of 1024 and case-insensitive, and may be written "8Gi",
/// "8GiB" or "8GB" (as systemd and Docker read them); with a suffix,
/// decimals are allowed ("1.5G"). Errors are ec::invalid_spec.
result<std::uint64_t> parse_size(std::string_view text);

/// 512B, 4.0K, 1.2M, 3.5G (powers of 1024), for people.
std::string format_size(std::uint64_t bytes);

} // namespace corral
