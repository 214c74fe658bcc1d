#include "gateway/streams.hpp"

#include "services/run_view.hpp"

#include <algorithm>
#include <cerrno>
#include <utility>

#include <unistd.h>

namespace corral::gateway {

namespace {

using json = nlohmann::json;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string sse(std::string_view event, const std::string& id,
                const json& data) {
  std::string out;
  if (!id.empty())
    out += "id: " + id + "\n";
  out += "event: ";
  out += event;
  out += "\ndata: " + dump(data) + "\n\n";
  return out;
}

std::string sse_error(const corral::error& err) {
  return sse(
      "error", "",
      {{"code", std::string(code_name(err.code))}, {"message", err.message}});
}

/// A comment line: ignored by EventSource, but it makes a write happen, so
/// a client that went away is noticed.
constexpr std::string_view keepalive = ": keepalive\n\n";
/// Tells EventSource how long to wait before it reconnects.
constexpr std::string_view retry_hint = "retry: 2000\n\n";

/// What the SSE sources share: they start with the answer the router got
/// before the stream began, then ask the backend again (waiting) each time
/// the server wants more; they begin with the retry hint, write a keepalive
/// for an empty answer, and stop after `end` or an error.
template <class Answer>
class sse_source : public body_source,
                   public std::enable_shared_from_this<sse_source<Answer>> {
public:
  explicit sse_source(Answer first) : first_(std::move(first)) {}

  void next(std::function<void(piece)> deliver) override {
    if (done_)
      return deliver(std::nullopt);
    if (first_) {
      auto b = render(*first_);
      first_.reset();
      return deliver(frame(std::move(b)));
    }
    ask([self = this->shared_from_this(),
         deliver = std::move(deliver)](result<Answer> res) {
      if (!res)
        return deliver(self->frame(res.error()));
      deliver(self->frame(self->render(*res)));
    });
  }

protected:
  /// Events of one answer, as SSE text, and whether the stream ends.
  struct batch {
    std::string text;
    bool ended = false;
  };
  /// Asks the backend, waiting, for what follows the position kept.
  virtual void ask(std::function<void(result<Answer>)> done) = 0;
  /// The answer's events, moving the position kept past them.
  virtual batch render(const Answer& a) = 0;

private:
  std::string frame(result<batch> res) {
    std::string out;
    if (!started_)
      out += retry_hint;
    started_ = true;
    if (!res) {
      done_ = true;
      return out + sse_error(res.error());
    }
    out += res->text;
    done_ = res->ended;
    if (res->text.empty() && !res->ended)
      out += keepalive;
    return out;
  }

  std::optional<Answer> first_;
  bool started_ = false;
  bool done_ = false;
};

class log_source : public sse_source<log_answer> {
public:
  log_source(api_backend& backend, std::string id, log_query first,
             log_answer answer)
      : sse_source(std::move(answer)), backend_(backend), id_(std::move(id)),
        query_(std::move(first)) {}

private:
  void ask(std::function<void(result<log_answer>)> done) override {
    query_.wait = true;
    backend_.logs(id_, query_, std::move(done));
  }

  batch render(const log_answer& a) override {
    batch b;
    // Each line's id resumes right after it: the other stream's position
    // is where that stream stood before the line.
    log_cursor at = query_.since.value_or(page_start(a));
    for (auto& l : a.lines) {
      (l.stream == log_stream::out ? at.out : at.err) = l.end;
      b.text += sse("line", format_cursor(at), log_line_json(l));
    }
    query_.since = a.cursor;
    if (a.ended) {
      b.ended = true;
      b.text += sse("end", format_cursor(a.cursor), json::object());
    }
    return b;
  }

  /// Where each stream stood before a tail page's first line.
  static log_cursor page_start(const log_answer& a) {
    log_cursor c = a.cursor;
    bool seen_out = false;
    bool seen_err = false;
    for (auto& l : a.lines) {
      auto& seen = l.stream == log_stream::out ? seen_out : seen_err;
      if (!seen)
        (l.stream == log_stream::out ? c.out : c.err) = l.begin;
      seen = true;
    }
    return c;
  }

  api_backend& backend_;
  std::string id_;
  log_query query_;
};

class event_source : public sse_source<event_answer> {
public:
  event_source(api_backend& backend, std::string id, event_answer first)
      : sse_source(std::move(first)), backend_(backend), id_(std::move(id)) {}

private:
  void ask(std::function<void(result<event_answer>)> done) override {
    event_query q;
    q.after = after_;
    q.wait = true;
    backend_.events(id_, q, std::move(done));
  }

  batch render(const event_answer& a) override {
    batch b;
    for (auto& e : a.events)
      b.text += sse("event", std::to_string(e.seq), to_json(e));
    after_ = a.last;
    if (a.ended) {
      b.ended = true;
      b.text += sse("end", std::to_string(a.last), json::object());
    }
    return b;
  }

  api_backend& backend_;
  std::string id_;
  std::optional<std::uint64_t> after_;
};

class file_source : public body_source {
public:
  file_source(unique_fd fd, std::uint64_t offset, std::uint64_t length)
      : fd_(std::move(fd)), offset_(offset), left_(length) {}

  void next(std::function<void(piece)> deliver) override {
    if (left_ == 0)
      return deliver(std::nullopt);
    std::string buf(std::min<std::uint64_t>(left_, 64 * 1024), '\0');
    ssize_t n;
    do {
      n = ::pread(fd_.get(), buf.data(), buf.size(),
                  static_cast<off_t>(offset_));
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      // The file shrank or failed under us: end short, and the server
      // closes the connection since the length no longer holds.
      left_ = 0;
      return deliver(std::nullopt);
    }
    buf.resize(static_cast<std::size_t>(n));
    offset_ += static_cast<std::uint64_t>(n);
    left_ -= static_cast<std::uint64_t>(n);
    deliver(std::move(buf));
  }

private:
  unique_fd fd_;
  std::uint64_t offset_;
  std::uint64_t left_;
};

} // namespace

json log_line_json(const log_line& l) {
  return {{"stream", std::string(to_string(l.stream))},
          {"t", format_time(l.t)},
          {"text", l.text}};
}

std::shared_ptr<body_source> log_event_stream(api_backend& backend,
                                              std::string id, log_query first,
                                              log_answer answer) {
  return std::make_shared<log_source>(backend, std::move(id), std::move(first),
                                      std::move(answer));
}

std::shared_ptr<body_source> event_stream(api_backend& backend, std::string id,
                                          event_answer first) {
  return std::make_shared<event_source>(backend, std::move(id),
                                        std::move(first));
}

std::shared_ptr<body_source> file_stream(unique_fd fd, std::uint64_t offset,
                                         std::uint64_t length) {
  return std::make_shared<file_source>(std::move(fd), offset, length);
}

} // namespace corral::gateway
