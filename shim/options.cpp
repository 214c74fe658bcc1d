#include "shim/options.hpp"

#include <algorithm>
#include <charconv>
#include <csignal>
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
                          " [--log-max-bytes N] [--log-keep N]"
                          " [--forward SIG[,SIG...]] [--suspend-file PATH]"
                          " [--report-file PATH] [--exit-like-main] -- ARGV0"
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

/// Adds the signals of a --forward value ("10,15", "USR1,TERM") to out;
/// the error says which one is wrong.
status add_forwarded(std::string_view value, std::vector<int>& out) {
  std::size_t start = 0;
  for (;;) {
    auto comma = value.find(',', start);
    auto item = value.substr(start, comma == std::string_view::npos
                                        ? std::string_view::npos
                                        : comma - start);
    auto sig = parse_signal(item);
    if (!sig)
      return usage("--forward wants signal numbers separated by commas; '"
                   + std::string{item} + "' in '" + std::string{value}
                   + "' is not one");
    // The kernel does not let these be caught; the shim needs SIGCHLD,
    // SIGTSTP and SIGCONT itself; glibc keeps 32 and 33 (below SIGRTMIN)
    // for its threads and never blocks them.
    if (*sig == SIGKILL || *sig == SIGSTOP || *sig == SIGCHLD || *sig == SIGCONT
        || *sig == SIGTSTP || (*sig >= 32 && *sig < SIGRTMIN))
      return usage("--forward cannot forward " + signal_name(*sig));
    out.push_back(*sig);
    if (comma == std::string_view::npos)
      return ok;
    start = comma + 1;
  }
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
    if (flag == "--exit-like-main") {
      opts.exit_like_main = true;
      continue;
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
    } else if (flag == "--forward") {
      if (auto added = add_forwarded(value, opts.forward); !added)
        return added.error();
    } else if (flag == "--suspend-file" || flag == "--report-file") {
      if (value.empty())
        return usage(std::string{flag} + " wants a path");
      (flag == "--suspend-file" ? opts.suspend_file : opts.report_file)
          = std::string{value};
    } else {
      return usage("unknown flag " + std::string{flag});
    }
  }
  if (!have_run_dir)
    return usage("--run-dir is required");
  if (!have_cwd)
    return usage("--cwd is required");
  std::sort(opts.forward.begin(), opts.forward.end());
  opts.forward.erase(std::unique(opts.forward.begin(), opts.forward.end()),
                     opts.forward.end());
  for (; i < argc; ++i)
    opts.argv.emplace_back(argv[i]);
  if (opts.argv.empty() || opts.argv[0].empty())
    return usage("no command after --");
  return opts;
}

} // namespace corral::shim
