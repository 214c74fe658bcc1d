#pragma once
/// Reads a text/event-stream as it arrives (for `logs -f`, `events -f`).

#include <string>
#include <string_view>
#include <vector>

namespace corral::cli {

struct sse_event {
  std::string event = "message";
  std::string id;
  std::string data; // data lines joined with '\n'
};

/// Feed it bytes in whatever pieces the network gives; it returns each
/// event once its blank line has arrived. Comments (": keepalive") and
/// `retry:` are dropped.
class sse_parser {
public:
  std::vector<sse_event> feed(std::string_view bytes);

private:
  void line(std::string_view l, std::vector<sse_event>& out);

  std::string pending_; // an incomplete line
  sse_event current_;
  bool has_data_ = false;
};

} // namespace corral::cli
