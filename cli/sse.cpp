#include "cli/sse.hpp"

namespace corral::cli {

std::vector<sse_event> sse_parser::feed(std::string_view bytes) {
  std::vector<sse_event> out;
  pending_.append(bytes);
  std::size_t start = 0;
  for (;;) {
    auto nl = pending_.find('\n', start);
    if (nl == std::string::npos)
      break;
    std::string_view l(pending_.data() + start, nl - start);
    if (!l.empty() && l.back() == '\r')
      l.remove_suffix(1);
    line(l, out);
    start = nl + 1;
  }
  pending_.erase(0, start);
  return out;
}

void sse_parser::line(std::string_view l, std::vector<sse_event>& out) {
  if (l.empty()) {
    if (has_data_)
      out.push_back(std::move(current_));
    current_ = {};
    has_data_ = false;
    return;
  }
  if (l.front() == ':')
    return;
  auto colon = l.find(':');
  auto field = l.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = l.substr(colon + 1);
    if (!value.empty() && value.front() == ' ')
      value.remove_prefix(1);
  }
  if (field == "event") {
    current_.event = std::string(value);
  } else if (field == "id") {
    current_.id = std::string(value);
  } else if (field == "data") {
    if (has_data_)
      current_.data += '\n';
    current_.data += value;
    has_data_ = true;
  }
}

} // namespace corral::cli
