#include "services/cgroup.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string_view>

#include "services/pidfd.hpp"
#include "services/proc.hpp"
#include "services/unique_fd.hpp"

namespace corral {

namespace {

status write_file(const std::string& path, std::string_view text) {
  unique_fd fd{::open(path.c_str(), O_WRONLY | O_CLOEXEC)};
  if (!fd)
    return make_error(ec::internal,
                      "open " + path + ": " + std::strerror(errno));
  if (::write(fd.get(), text.data(), text.size())
      != static_cast<ssize_t>(text.size()))
    return make_error(ec::internal,
                      "write " + path + ": " + std::strerror(errno));
  return ok;
}

} // namespace

std::optional<std::string> find_cgroup2_mount(const std::string& mountinfo) {
  // Fields: id parent major:minor root mountpoint options... - fstype ...
  std::istringstream in{mountinfo};
  std::string line;
  while (std::getline(in, line)) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos)
      continue;
    std::istringstream tail{line.substr(dash + 3)};
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2")
      continue;
    std::istringstream head{line.substr(0, dash)};
    std::string id, parent, dev, root, mountpoint;
    head >> id >> parent >> dev >> root >> mountpoint;
    return mountpoint;
  }
  return std::nullopt;
}

std::optional<std::string> find_cgroup2_mount() {
  auto text = read_small_file("/proc/self/mountinfo");
  if (!text)
    return std::nullopt;
  return find_cgroup2_mount(*text);
}

result<cgroup> cgroup::create(const std::string& path) {
  std::error_code err;
  std::filesystem::create_directories(path, err);
  if (err)
    return make_error(ec::internal,
                      "cannot create cgroup " + path + ": " + err.message());
  return cgroup{path};
}

result<cgroup> cgroup::open_existing(const std::string& path) {
  // cgroup.procs exists in every cgroup v2 directory and nowhere else.
  auto procs = path + "/cgroup.procs";
  if (::access(procs.c_str(), F_OK) != 0) {
    auto code = errno == ENOENT ? ec::not_found : ec::internal;
    return make_error(code, "cannot open cgroup " + path + ": "
                                + std::strerror(errno));
  }
  return cgroup{path};
}

std::string cgroup::relative_to(const std::string& mount) const {
  if (path_.rfind(mount, 0) == 0) {
    auto rel = path_.substr(mount.size());
    return rel.empty() ? "/" : rel;
  }
  return path_;
}

status cgroup::freeze() const {
  return write_file(path_ + "/cgroup.freeze", "1");
}

status cgroup::thaw() const {
  return write_file(path_ + "/cgroup.freeze", "0");
}

result<cgroup_events> cgroup::events() const {
  auto text = read_small_file(events_path());
  if (!text)
    return make_error(ec::internal, "cannot read " + events_path() + ": "
                                        + std::strerror(errno));
  cgroup_events ev;
  std::istringstream in{*text};
  std::string key;
  int value = 0;
  while (in >> key >> value) {
    if (key == "populated")
      ev.populated = value != 0;
    else if (key == "frozen")
      ev.frozen = value != 0;
  }
  return ev;
}

unique_fd cgroup::open_cpu_stat() const {
  return unique_fd{::open((path_ + "/cpu.stat").c_str(), O_RDONLY | O_CLOEXEC)};
}

std::optional<std::uint64_t> read_cpu_usage_usec(int cpu_stat_fd) {
  char buf[512];
  auto n = ::pread(cpu_stat_fd, buf, sizeof buf, 0);
  constexpr std::string_view key = "usage_usec ";
  std::string_view text{buf, n > 0 ? static_cast<std::size_t>(n) : 0};
  if (!text.starts_with(key))
    return std::nullopt;
  std::uint64_t v = 0;
  if (std::from_chars(text.data() + key.size(), text.data() + text.size(), v).ec
      != std::errc{})
    return std::nullopt;
  return v;
}

status cgroup::kill() const {
  if (write_file(path_ + "/cgroup.kill", "1"))
    return ok;
  signal_all(SIGKILL);
  return ok;
}

void cgroup::signal_all(int sig) const {
  static const auto mount = find_cgroup2_mount();
  auto pids = procs();
  if (!pids || !mount)
    return;
  auto self = relative_to(*mount);
  for (auto pid : *pids) {
    auto fd = pidfd::open(pid);
    if (!fd)
      continue;
    // The pid was read before the pidfd pinned it: it must still be ours.
    if (proc_cgroup2_path(pid) != self)
      continue;
    (void)fd->send_signal(sig);
  }
}

result<std::vector<int>> cgroup::procs() const {
  auto text = read_small_file(path_ + "/cgroup.procs");
  if (!text)
    return make_error(ec::internal, "cannot read " + path_ + "/cgroup.procs: "
                                        + std::strerror(errno));
  std::vector<int> pids;
  std::istringstream in{*text};
  int pid = 0;
  while (in >> pid)
    pids.push_back(pid);
  return pids;
}

status cgroup::remove() const {
  if (::rmdir(path_.c_str()) != 0 && errno != ENOENT)
    return make_error(ec::internal,
                      "rmdir " + path_ + ": " + std::strerror(errno));
  return ok;
}

} // namespace corral
