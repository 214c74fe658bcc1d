#include "shim/options.hpp"

#include <charconv>
#include <string_view>

#include "services/pidfd.hpp"

namespace corral::shim {

namespace {

error usage(std::string what) {
  return make_error(ec::bad_request,
                    "corral-shim: " + what
                        + " (usage: corral-shim --run-dir DIR [--cgroup DIR]"
                          " --cwd DIR --stop-signal N --grace-ms N -- ARGV0"
                          " ARGS...)");
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
