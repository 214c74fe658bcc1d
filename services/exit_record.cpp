#include "services/exit_record.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>

#include "services/proc.hpp"
#include "services/unique_fd.hpp"

namespace corral {

namespace {

template <class T>
bool parse_number(std::string_view text, T& out) {
  auto [ptr, err]
      = std::from_chars(text.data(), text.data() + text.size(), out);
  return err == std::errc{} && ptr == text.data() + text.size();
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

} // namespace

std::string format_exit_record(const exit_record& rec) {
  auto message = rec.message;
  for (auto& c : message)
    if (c == '\n' || c == '\r')
      c = ' ';
  return "status=" + rec.status + "\ncode=" + std::to_string(rec.code)
         + "\npid=" + std::to_string(rec.pid) + "\nmessage=" + message
         + "\nended_at_ms=" + std::to_string(rec.ended_at_ms) + "\n";
}

std::optional<exit_record> parse_exit_record(std::string_view text) {
  exit_record rec;
  bool status = false, code = false, pid = false, message = false,
       ended = false;
  while (!text.empty()) {
    auto eol = text.find('\n');
    auto line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    auto eq = line.find('=');
    if (eq == std::string_view::npos)
      continue;
    auto key = line.substr(0, eq);
    auto value = line.substr(eq + 1);
    if (key == "status") {
      rec.status = std::string{value};
      status = !value.empty();
    } else if (key == "code") {
      code = parse_number(value, rec.code);
    } else if (key == "pid") {
      pid = parse_number(value, rec.pid);
    } else if (key == "message") {
      rec.message = std::string{value};
      message = true;
    } else if (key == "ended_at_ms") {
      ended = parse_number(value, rec.ended_at_ms);
    }
  }
  if (!(status && code && pid && message && ended))
    return std::nullopt;
  return rec;
}

std::optional<exit_record> read_exit_record(const std::string& run_dir) {
  auto text = read_small_file(run_dir + "/exit");
  if (!text)
    return std::nullopt;
  return parse_exit_record(*text);
}

bool write_exit_record(const std::string& run_dir, const exit_record& rec) {
  auto tmp = run_dir + "/exit.tmp";
  auto final_path = run_dir + "/exit";
  {
    unique_fd fd{
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
    if (!fd)
      return false;
    // fsync before rename: after a crash the name must not point at an
    // empty file.
    if (!write_all(fd.get(), format_exit_record(rec)) || ::fsync(fd.get()) != 0)
      return false;
  }
  if (::rename(tmp.c_str(), final_path.c_str()) != 0)
    return false;
  // The rename itself lives in the directory.
  unique_fd dir{::open(run_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir)
    (void)::fsync(dir.get());
  return true;
}

} // namespace corral
