#include "services/proc.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <map>
#include <sstream>
#include <string_view>

#include "services/unique_fd.hpp"

namespace corral {

std::optional<std::string> read_small_file(const std::string& path) {
  unique_fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (!fd)
    return std::nullopt;
  std::string out;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0)
      return std::nullopt;
    if (n == 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::optional<proc_stat> parse_proc_stat(const std::string& text) {
  // comm is in parens and may itself contain ") ": the last ')' ends it.
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return std::nullopt;
  proc_stat st;
  st.pid = std::atoi(text.c_str());
  st.comm = text.substr(open + 1, close - open - 1);
  // Fields from 3 (state) on, see proc(5); split in place, as a thousand
  // runs' trees are read this way every few seconds.
  std::array<std::string_view, 22> f;
  std::size_t count = 0;
  std::string_view rest{text};
  rest.remove_prefix(close + 1);
  while (count < f.size()) {
    auto b = rest.find_first_not_of(" \n");
    if (b == std::string_view::npos)
      break;
    rest.remove_prefix(b);
    auto e = std::min(rest.find_first_of(" \n"), rest.size());
    f[count++] = rest.substr(0, e);
    rest.remove_prefix(e);
  }
  if (count < f.size())
    return std::nullopt;
  auto num = [&](std::size_t i) -> std::uint64_t {
    std::uint64_t v = 0;
    std::from_chars(f[i].data(), f[i].data() + f[i].size(), v);
    return v;
  };
  auto integer = [&](std::size_t i) {
    int v = 0;
    std::from_chars(f[i].data(), f[i].data() + f[i].size(), v);
    return v;
  };
  st.state = f[0][0];
  st.ppid = integer(1);
  st.pgid = integer(2);
  st.sid = integer(3);
  st.utime = num(11);
  st.stime = num(12);
  st.starttime = num(19);
  st.rss_pages = num(21);
  return st;
}

std::optional<char> read_proc_state(int stat_fd) {
  char buf[512];
  auto n = ::pread(stat_fd, buf, sizeof buf, 0);
  if (n <= 0)
    return std::nullopt;
  std::string_view text{buf, static_cast<std::size_t>(n)};
  auto close = text.rfind(')');
  if (close == std::string_view::npos || close + 2 >= text.size())
    return std::nullopt;
  return text[close + 2];
}

std::optional<proc_stat> read_proc_stat(int pid) {
  auto text = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text)
    return std::nullopt;
  return parse_proc_stat(*text);
}

std::string read_cmdline(int pid) {
  auto raw = read_small_file("/proc/" + std::to_string(pid) + "/cmdline");
  if (raw && !raw->empty()) {
    while (!raw->empty() && raw->back() == '\0')
      raw->pop_back();
    for (auto& c : *raw)
      if (c == '\0')
        c = ' ';
    return *raw;
  }
  if (auto st = read_proc_stat(pid))
    return "[" + st->comm + "]";
  return {};
}

std::vector<int> list_pids() {
  std::vector<int> pids;
  auto* dir = ::opendir("/proc");
  if (dir == nullptr)
    return pids;
  while (auto* ent = ::readdir(dir)) {
    int pid = 0;
    auto name = std::string_view{ent->d_name};
    auto [ptr, err]
        = std::from_chars(name.data(), name.data() + name.size(), pid);
    if (err == std::errc{} && ptr == name.data() + name.size() && pid > 0)
      pids.push_back(pid);
  }
  ::closedir(dir);
  return pids;
}

namespace {

// Children of every thread of pid, from /proc/<pid>/task/<tid>/children.
std::vector<int> children_of(int pid) {
  auto task_dir = "/proc/" + std::to_string(pid) + "/task";
  std::vector<int> out;
  auto* dir = ::opendir(task_dir.c_str());
  if (dir == nullptr)
    return out; // gone
  while (auto* ent = ::readdir(dir)) {
    if (ent->d_name[0] == '.')
      continue;
    auto text = read_small_file(task_dir + "/" + ent->d_name + "/children");
    if (!text)
      continue; // the thread is gone
    std::istringstream in{*text};
    int child = 0;
    while (in >> child)
      out.push_back(child);
  }
  ::closedir(dir);
  return out;
}

} // namespace

std::vector<int> descendants_of(int root) {
  // Walking the tree itself reads a few files per member; scanning /proc
  // reads one per process of the machine. The children files need
  // CONFIG_PROC_CHILDREN.
  static const bool have_children_files
      = ::access("/proc/thread-self/children", R_OK) == 0;
  if (have_children_files) {
    std::vector<int> found;
    std::vector<int> walk{root};
    while (!walk.empty()) {
      auto parent = walk.back();
      walk.pop_back();
      for (auto kid : children_of(parent)) {
        found.push_back(kid);
        walk.push_back(kid);
      }
    }
    return found;
  }
  std::multimap<int, int> children;
  for (auto pid : list_pids())
    if (auto st = read_proc_stat(pid))
      children.emplace(st->ppid, pid);
  std::vector<int> out;
  std::vector<int> todo{root};
  while (!todo.empty()) {
    auto parent = todo.back();
    todo.pop_back();
    auto [lo, hi] = children.equal_range(parent);
    for (auto it = lo; it != hi; ++it) {
      out.push_back(it->second);
      todo.push_back(it->second);
    }
  }
  return out;
}

std::optional<std::string> proc_cgroup2_path(int pid) {
  auto text = read_small_file("/proc/" + std::to_string(pid) + "/cgroup");
  if (!text)
    return std::nullopt;
  std::istringstream in{*text};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0)
      return line.substr(3);
  return std::nullopt;
}

long clock_ticks_per_second() {
  static const long ticks = ::sysconf(_SC_CLK_TCK);
  return ticks;
}

long page_size_bytes() {
  static const long size = ::sysconf(_SC_PAGESIZE);
  return size;
}

} // namespace corral
