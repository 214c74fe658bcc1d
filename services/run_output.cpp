#include "services/run_output.hpp"

#include <algorithm>

namespace corral {

namespace {

bool selected(const log_selection& sel, log_stream s) {
  return s == log_stream::out ? sel.out : sel.err;
}

} // namespace

result<std::unique_ptr<run_output>>
run_output::make(std::string run_dir, const progress_spec& progress,
                 const std::string& cwd, const nlohmann::json* resume) {
  auto out = std::make_unique<run_output>(private_tag{});
  out->run_dir_ = std::move(run_dir);
  for (auto* parser : {&out->out_parser_, &out->err_parser_}) {
    auto p = make_metrics_parser(progress);
    if (!p)
      return p.error();
    *parser = std::move(*p);
  }
  if (progress.format == "csv" && !progress.file.empty())
    out->csv_ = std::make_unique<csv_follower>(progress.file.front() == '/'
                                                   ? progress.file
                                                   : cwd + "/" + progress.file);
  if (!resume) {
    out->store_
        = std::make_unique<metrics_store>(progress.counter, progress.total);
    return out;
  }
  auto refuse = [](const std::string& what) {
    return make_error(ec::bad_request, "cannot resume run output: " + what);
  };
  const auto& j = *resume;
  if (!j.is_object())
    return refuse("expected an object");
  auto v = j.find("v");
  if (v == j.end())
    return refuse("v: missing");
  if (!v->is_number_integer() || v->get<std::int64_t>() != 1)
    return refuse(
        "unknown version "
        + v->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
        + " (this daemon reads version 1)");
  auto c = j.find("cursor");
  if (c == j.end())
    return refuse("cursor: missing");
  auto cursor = c->is_string() ? parse_cursor(c->get_ref<const std::string&>())
                               : std::nullopt;
  if (!cursor)
    return refuse("cursor: expected \"<out>-<err>\"");
  auto m = j.find("metrics");
  if (m == j.end())
    return refuse("metrics: missing");
  auto store = metrics_store::restore(*m, progress.counter, progress.total);
  if (!store)
    return refuse(store.error().message);
  out->store_ = std::move(*store);
  if (out->csv_) {
    auto csv = j.find("csv");
    if (csv == j.end())
      return refuse("csv: missing, though the progress format is csv");
    if (auto restored = out->csv_->restore(*csv); !restored)
      return refuse(restored.error().message);
  }
  out->start_ = out->settled_ = *cursor;
  out->memory_complete_ = *cursor == log_cursor{};
  return out;
}

void run_output::follow() {
  if (!tailer_)
    tailer_ = std::make_unique<log_tailer>(run_dir_, start_, keep_);
}

void run_output::feed(const log_line& l, double active_s) {
  auto& parser = l.stream == log_stream::out ? out_parser_ : err_parser_;
  if (parser)
    for (auto& record : parser->feed(l.text))
      store_->add(record, l.t, active_s);
  if (!parser || parser->idle())
    (l.stream == log_stream::out ? settled_.out : settled_.err) = l.end;
}

std::size_t run_output::poll(double active_s, bool final, std::size_t budget) {
  if (!tailer_)
    return 0;
  constexpr std::size_t batch = 10000;
  std::size_t total = 0;
  while (total < budget) {
    auto lines = tailer_->poll(batch, final);
    for (auto& l : lines)
      feed(l, active_s);
    total += lines.size();
    if (lines.size() < batch)
      break;
  }
  return total;
}

void run_output::poll_csv(double active_s) {
  if (!csv_)
    return;
  auto now = std::chrono::system_clock::now();
  for (auto& record : csv_->poll())
    store_->add(record, now, active_s);
}

result<log_answer> run_output::query(const log_query& q, bool final) const {
  log_answer a;
  if (!q.since) {
    if (tailer_) {
      auto& recent = tailer_->recent();
      std::vector<const log_line*> picked;
      for (auto it = recent.rbegin();
           it != recent.rend() && picked.size() < q.tail; ++it)
        if (selected(q.streams, it->stream))
          picked.push_back(&*it);
      // Memory answers when it has enough lines, or every line there is
      // (not after a resume: the lines before it are only in the files).
      if (picked.size() >= q.tail
          || (memory_complete_ && recent.size() < keep_)) {
        for (auto it = picked.rbegin(); it != picked.rend(); ++it)
          a.lines.push_back(**it);
        a.cursor = tailer_->cursor();
        a.ended = final;
        return a;
      }
    }
    auto page = tail_logs(run_dir_, q.streams, q.tail, final);
    if (!page)
      return page.error();
    a.lines = std::move(page->lines);
    a.cursor = page->cursor;
    a.ended = final;
    return a;
  }
  auto page = read_logs(run_dir_, q.streams, *q.since,
                        std::max<std::size_t>(q.limit, 1), final);
  if (!page)
    return page.error();
  a.lines = std::move(page->lines);
  a.cursor = page->cursor;
  a.ended = final && !page->more;
  return a;
}

bool run_output::has_news(const log_query& q) const {
  if (!q.since)
    return true;
  if (!tailer_)
    return false; // not started: nothing to read yet
  auto at = tailer_->cursor();
  return (q.streams.out && at.out > q.since->out)
         || (q.streams.err && at.err > q.since->err);
}

nlohmann::json run_output::metrics_json() const {
  return {{"latest", store_->latest_json()}, {"series", store_->series_json()}};
}

nlohmann::json run_output::latest_metrics() const {
  return store_->latest_json();
}

progress_estimate run_output::estimate(double active_now) const {
  return store_->estimate(active_now);
}

nlohmann::json run_output::save() const {
  nlohmann::json j{{"v", 1},
                   {"cursor", format_cursor(settled_)},
                   {"metrics", store_->save()}};
  if (csv_)
    j["csv"] = csv_->save();
  return j;
}

} // namespace corral
