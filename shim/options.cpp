#include "shim/options.hpp"

#include <charconv>
#include <optional>
#include <string_view>

#include "services/pidfd.hpp"

namespace corral::shim {

namespace {

error usage(std::string what) {
  return make_error(ec::bad_request,
                    "corral-shim: " + what
                        + " (usage: corral-shim --run-dir DIR [--cgroup DIR]"
                          " --cwd DIR --stop-signal N --grace-ms N"
                          " [--log-max-bytes N] [--log-keep N] -- ARGV0"
                          " ARGS...)");
}

/// A whole number of at least 1, or nullopt.
template <class T>
std::optional<T> positive(std::string_view text) {
  T v{};
  auto [ptr, err] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (err != std::errc{} || ptr != text.data() + text.size() || v < 1)
    return std::nullopt;
  return v;
}

} // namespace

result<options> parse_options(int argc, char** argv) {
  options opts;
  bool have_run_dir = false, have_cwd = false;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view flag{argv[i]};
    if (flag == "--") {
      ++i;
      break;
    }
    if (i + 1 >= argc)
      return usage("missing value for " + std::string{flag});
    std::string_view value{argv[++i]};
    if (flag == "--run-dir") {
      opts.run_dir = value;
      have_run_dir = !value.empty();
    } else if (flag == "--cgroup") {
      opts.cgroup_dir = std::string{value};
    } else if (flag == "--cwd") {
      opts.cwd = value;
      have_cwd = !value.empty();
    } else if (flag == "--stop-signal") {
      auto sig = parse_signal(value);
      if (!sig)
        return usage("unknown signal '" + std::string{value} + "'");
      opts.stop_signal = *sig;
    } else if (flag == "--grace-ms") {
      long long ms = 0;
      auto [ptr, err]
          = std::from_chars(value.data(), value.data() + value.size(), ms);
      if (err != std::errc{} || ptr != value.data() + value.size() || ms < 0)
        return usage("--grace-ms wants milliseconds, not '" + std::string{value}
                     + "'");
      opts.grace = std::chrono::milliseconds{ms};
    } else if (flag == "--log-max-bytes") {
      auto n = positive<std::uint64_t>(value);
      if (!n)
        return usage("--log-max-bytes wants a size in bytes of at least 1, "
                     "not '"
                     + std::string{value} + "'");
      opts.log_max_bytes = *n;
    } else if (flag == "--log-keep") {
      // 0 would make a rotation drop the output it just rotated; each
      // rotation renames every kept file, hence the upper bound.
      auto n = positive<int>(value);
      if (!n || *n > max_log_keep)
        return usage("--log-keep wants the number of rotated log files to "
                     "keep, from 1 to "
                     + std::to_string(max_log_keep) + ", not '"
                     + std::string{value} + "'");
      opts.log_keep = *n;
    } else {
      return usage("unknown flag " + std::string{flag});
    }
  }
  if (!have_run_dir)
    return usage("--run-dir is required");
  if (!have_cwd)
    return usage("--cwd is required");
  for (; i < argc; ++i)
    opts.argv.emplace_back(argv[i]);
  if (opts.argv.empty() || opts.argv[0].empty())
    return usage("no command after --");
  return opts;
}

} // namespace corral::shim
