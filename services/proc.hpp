#pragma once
/// Reading processes from /proc: the kernel's word on what runs.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace corral {

/// The fields of /proc/<pid>/stat Corral uses.
struct proc_stat {
  int pid = 0;
  int ppid = 0;
  int pgid = 0;
  int sid = 0;
  char state = '?';
  std::uint64_t utime = 0; // clock ticks
  std::uint64_t stime = 0;
  std::uint64_t starttime = 0; // clock ticks since boot: identity with pid
  std::uint64_t rss_pages = 0;
  std::string comm;
};

/// nullopt when the process is gone.
std::optional<proc_stat> read_proc_stat(int pid);
/// The state letter from an open /proc/<pid>/stat: one pread, no path walk
/// (the run actor looks at its main process this way every second). The
/// read fails once the process is reaped, even if its pid is reused.
std::optional<char> read_proc_state(int stat_fd);
/// Parses the text of a stat file (comm may contain spaces and parens).
std::optional<proc_stat> parse_proc_stat(const std::string& text);
/// argv joined by spaces, or "[comm]" for kernel threads and zombies.
std::string read_cmdline(int pid);
/// Every pid under /proc.
std::vector<int> list_pids();
/// Every live descendant of root (not root itself), found by one scan of
/// /proc; a process that was reparented to a subreaper inside the tree is
/// still found, one that escaped to init is not.
std::vector<int> descendants_of(int root);
/// The cgroup v2 path of a process ("/a/b"), from /proc/<pid>/cgroup.
std::optional<std::string> proc_cgroup2_path(int pid);

long clock_ticks_per_second();
long page_size_bytes();

/// Reads a whole small file; nullopt if it cannot be opened.
std::optional<std::string> read_small_file(const std::string& path);

} // namespace corral
