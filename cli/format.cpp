#include "cli/format.hpp"

#include "services/units.hpp"

#include "services/run_state.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>

#include <fmt/format.h>

namespace corral::cli {

namespace {

using json = nlohmann::json;

struct range {
  char32_t first;
  char32_t last;
};

// East Asian Wide/Fullwidth blocks and the emoji that terminals draw two
// columns wide (Unicode 15, abridged to what a run table can contain).
constexpr range wide[] = {
    {0x1100, 0x115F},   {0x231A, 0x231B},   {0x2329, 0x232A},
    {0x23E9, 0x23EC},   {0x23F0, 0x23F0},   {0x23F3, 0x23F3},
    {0x25FD, 0x25FE},   {0x2614, 0x2615},   {0x2648, 0x2653},
    {0x267F, 0x267F},   {0x2693, 0x2693},   {0x26A1, 0x26A1},
    {0x26AA, 0x26AB},   {0x26BD, 0x26BE},   {0x26C4, 0x26C5},
    {0x26CE, 0x26CE},   {0x26D4, 0x26D4},   {0x26EA, 0x26EA},
    {0x26F2, 0x26F3},   {0x26F5, 0x26F5},   {0x26FA, 0x26FA},
    {0x26FD, 0x26FD},   {0x2705, 0x2705},   {0x270A, 0x270B},
    {0x2728, 0x2728},   {0x274C, 0x274C},   {0x274E, 0x274E},
    {0x2753, 0x2755},   {0x2757, 0x2757},   {0x2795, 0x2797},
    {0x27B0, 0x27B0},   {0x27BF, 0x27BF},   {0x2B1B, 0x2B1C},
    {0x2B50, 0x2B50},   {0x2B55, 0x2B55},   {0x2E80, 0x303E},
    {0x3041, 0x33FF},   {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},
    {0xA000, 0xA4CF},   {0xA960, 0xA97F},   {0xAC00, 0xD7A3},
    {0xF900, 0xFAFF},   {0xFE10, 0xFE19},   {0xFE30, 0xFE6F},
    {0xFF00, 0xFF60},   {0xFFE0, 0xFFE6},   {0x1F004, 0x1F004},
    {0x1F0CF, 0x1F0CF}, {0x1F18E, 0x1F18E}, {0x1F191, 0x1F19A},
    {0x1F200, 0x1F251}, {0x1F300, 0x1F64F}, {0x1F680, 0x1F6FF},
    {0x1F7E0, 0x1F7EB}, {0x1F90C, 0x1F9FF}, {0x1FA70, 0x1FAFF},
    {0x20000, 0x3FFFD},
};

constexpr range zero_width[] = {
    {0x0300, 0x036F},   {0x200B, 0x200F},   {0x2028, 0x202E},
    {0x2060, 0x2064},   {0x20D0, 0x20FF},   {0xFE00, 0xFE0F},
    {0xFE20, 0xFE2F},   {0xFEFF, 0xFEFF},   {0x1F3FB, 0x1F3FF},
    {0xE0000, 0xE007F}, {0xE0100, 0xE01EF},
};

template <std::size_t N>
bool in(const range (&table)[N], char32_t c) {
  return std::any_of(std::begin(table), std::end(table), [c](const range& r) {
    return c >= r.first && c <= r.last;
  });
}

/// Decodes one UTF-8 sequence at s[i], advancing i; invalid bytes decode
/// as themselves (one column each, as most terminals show a replacement).
char32_t next_code_point(std::string_view s, std::size_t& i) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char b = byte(i);
  int len = b < 0x80         ? 1
            : (b >> 5) == 6  ? 2
            : (b >> 4) == 14 ? 3
            : (b >> 3) == 30 ? 4
                             : 0;
  if (len <= 1 || i + len > s.size()) {
    ++i;
    return b;
  }
  char32_t c = b & (0xFF >> (len + 1));
  for (int k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xC0) != 0x80) {
      ++i;
      return b;
    }
    c = (c << 6) | (byte(i + k) & 0x3F);
  }
  i += len;
  return c;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return {};
  if (it->is_string())
    return it->get<std::string>();
  return it->dump();
}

std::string or_dash(std::string s) {
  return s.empty() ? "-" : s;
}

/// A run's GPU indices joined by `sep`; "" when it holds none.
std::string gpu_list(const json& run, std::string_view sep) {
  std::string out;
  auto it = run.find("gpus");
  if (it == run.end() || !it->is_array())
    return out;
  for (auto& g : *it)
    out += (out.empty() ? "" : std::string(sep)) + g.dump();
  return out;
}

std::string number(double x, int decimals) {
  return fmt::format("{:.{}f}", x, decimals);
}

bool shell_safe(const std::string& arg) {
  return !arg.empty()
         && std::all_of(arg.begin(), arg.end(), [](unsigned char c) {
              return std::isalnum(c) || c >= 0x80
                     || std::string_view("@%+=:,./_-")
                                .find(static_cast<char>(c))
                            != std::string_view::npos;
            });
}

} // namespace

std::string format_duration(double seconds) {
  if (!(seconds > 0))
    seconds = 0;
  auto s = static_cast<long long>(std::floor(seconds));
  if (s < 60)
    return fmt::format("{}s", s);
  if (s < 3600)
    return fmt::format("{}m{:02}s", s / 60, s % 60);
  if (s < 86400)
    return fmt::format("{}h{:02}m", s / 3600, s % 3600 / 60);
  return fmt::format("{}d{:02}h", s / 86400, s % 86400 / 3600);
}

std::size_t display_width(std::string_view utf8) {
  std::size_t width = 0;
  std::size_t last = 0; // width of the previous character
  for (std::size_t i = 0; i < utf8.size();) {
    char32_t c = next_code_point(utf8, i);
    if (c == 0xFE0F) {
      // VS16 asks for emoji presentation: two columns.
      if (last == 1) {
        ++width;
        last = 2;
      }
      continue;
    }
    if (c < 0x20 || (c >= 0x7F && c < 0xA0) || in(zero_width, c))
      continue;
    last = in(wide, c) ? 2 : 1;
    width += last;
  }
  return width;
}

std::string pad_right(std::string_view s, std::size_t width) {
  std::string out(s);
  auto w = display_width(s);
  if (w < width)
    out.append(width - w, ' ');
  return out;
}

std::string render_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths;
  for (auto& row : rows) {
    if (widths.size() < row.size())
      widths.resize(row.size(), 0);
    for (std::size_t c = 0; c < row.size(); ++c)
      widths[c] = std::max(widths[c], display_width(row[c]));
  }
  std::string out;
  for (auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (c > 0)
        line += "  ";
      line += c + 1 < row.size() ? pad_right(row[c], widths[c]) : row[c];
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out += line;
    out += '\n';
  }
  return out;
}

std::string shell_join(const std::vector<std::string>& argv) {
  std::string out;
  for (auto& arg : argv) {
    if (!out.empty())
      out += ' ';
    if (shell_safe(arg)) {
      out += arg;
      continue;
    }
    out += '\'';
    for (char c : arg) {
      if (c == '\'')
        out += "'\\''";
      else
        out += c;
    }
    out += '\'';
  }
  return out;
}

std::string state_label(std::string_view state) {
  auto s = parse_run_state(state);
  if (!s)
    return "? " + std::string(state);
  return std::string(emoji(*s)) + " " + std::string(state);
}

std::string reason_text(const json& run) {
  auto state = str(run, "state");
  auto reason = str(run, "reason");
  if (state == "queued" && reason.empty()) {
    if (auto pos = str(run, "queue_position"); !pos.empty())
      return "queue #" + pos;
    if (auto retry = str(run, "retry_at"); !retry.empty())
      return "retry at " + retry;
    return {};
  }
  auto code = str(run, "exit_code");
  auto signal = str(run, "signal");
  if (reason == "exit")
    return code.empty() ? "exit" : "exit " + code;
  if (reason == "signal")
    return signal.empty() ? "signal" : "signal " + signal;
  auto detail = !signal.empty() ? signal : !code.empty() ? "exit " + code : "";
  if (reason.empty())
    return detail;
  return detail.empty() ? reason : reason + " (" + detail + ")";
}

std::string render_ps(const json& runs) {
  bool any_queued = false;
  for (auto& run : runs)
    any_queued = any_queued || str(run, "state") == "queued";
  std::vector<std::string> header{"STATE",  "ID",       "EXPERIMENT", "GPUS",
                                  "PID",    "PROCS",    "CPU%",       "RSS",
                                  "UPTIME", "PROGRESS", "ETA"};
  if (any_queued)
    header.push_back("QUEUE");
  header.push_back("REASON/EXIT");
  std::vector<std::vector<std::string>> rows{header};
  bool paused_with_gpus = false;
  for (auto& run : runs) {
    auto state = str(run, "state");
    bool started = !str(run, "started_at").empty();
    double active = run.value("active_s", 0.0);
    auto gpus = gpu_list(run, ",");
    paused_with_gpus = paused_with_gpus || (state == "paused" && !gpus.empty());
    auto res = run.value("resources", json::object());
    if (!res.is_object())
      res = json::object();
    bool live = state == "running" || state == "paused" || state == "stopping";
    std::vector<std::string> row{
        state_label(state),
        str(run, "id"),
        str(run, "experiment"),
        or_dash(gpus),
        or_dash(str(run, "pid")),
        str(run, "process_count"),
        live ? number(res.value("cpu_pct", 0.0), 0) : "-",
        live ? format_size(res.value("rss_bytes", std::uint64_t{0})) : "-",
        started ? format_duration(active) : "-",
        or_dash(progress_text(run)),
        or_dash(eta_text(run)),
    };
    if (any_queued) {
      auto pos = str(run, "queue_position");
      row.push_back(pos.empty() ? "-" : "#" + pos);
      // The QUEUE column already says where a queued run stands.
      auto retry = str(run, "retry_at");
      bool waiting = state == "queued" && str(run, "reason").empty();
      row.push_back(!waiting        ? reason_text(run)
                    : retry.empty() ? ""
                                    : "retry at " + retry);
    } else {
      row.push_back(reason_text(run));
    }
    rows.push_back(std::move(row));
  }
  auto out = render_table(rows);
  if (paused_with_gpus)
    out += std::string(paused_gpus_legend) + "\n";
  return out;
}

std::string render_gpus(const json& answer) {
  auto gpus = answer.value("gpus", json::array());
  auto source = str(answer, "source");
  std::string source_line
      = source == "config"
            ? "source: configuration (--gpus or gpus:); memory and utilization "
              "need NVML"
        : source == "nvml" ? "source: NVML"
                           : "source: " + or_dash(source);
  if (gpus.empty())
    return "no GPUs\n" + source_line + "\n";
  std::vector<std::vector<std::string>> rows{
      {"INDEX", "NAME", "MEMORY", "UTIL", "RUN"}};
  for (auto& g : gpus) {
    auto bytes = [&](const char* key) -> std::string {
      auto it = g.find(key);
      if (it == g.end() || !it->is_number())
        return "-";
      return format_size(it->get<std::uint64_t>());
    };
    auto used = bytes("memory_used");
    auto total = bytes("memory_total");
    std::string util = "-";
    if (auto u = g.find("utilization"); u != g.end() && u->is_number())
      util = number(u->get<double>(), 0) + "%";
    rows.push_back({
        str(g, "index"),
        or_dash(str(g, "name")),
        used == "-" && total == "-" ? "-" : used + "/" + total,
        util,
        or_dash(str(g, "run")),
    });
  }
  return render_table(rows) + source_line + "\n";
}

std::string progress_text(const json& run) {
  auto progress = run.value("progress", json::object());
  if (!progress.is_object())
    return "";
  auto f = progress.find("fraction");
  if (f == progress.end() || !f->is_number())
    return "";
  return number(f->get<double>() * 100, 1) + "%";
}

std::string eta_text(const json& run) {
  auto progress = run.value("progress", json::object());
  if (!progress.is_object())
    return "";
  auto eta = progress.find("eta_s");
  if (eta == progress.end() || !eta->is_number())
    return "";
  return format_duration(eta->get<double>());
}

std::string render_artifacts(const json& answer) {
  std::vector<std::vector<std::string>> rows{
      {"KIND", "NAME", "SIZE", "MODIFIED"}};
  for (auto [key, kind] :
       {std::pair{"checkpoints", "checkpoint"}, std::pair{"videos", "video"}}) {
    auto list = answer.value(key, json::array());
    if (!list.is_array())
      continue;
    for (auto& a : list)
      rows.push_back({kind, str(a, "name"),
                      format_size(a.value("size", std::uint64_t{0})),
                      str(a, "mtime")});
  }
  if (rows.size() == 1)
    return "no artifacts\n";
  return render_table(rows);
}

std::string render_show(const json& run) {
  auto res = run.value("resources", json::object());
  auto progress = run.value("progress", json::object());
  auto state = str(run, "state");
  auto gpus = gpu_list(run, ", ");
  if (!gpus.empty() && state == "paused")
    gpus += " (kept while paused: their memory stays allocated)";
  std::vector<std::string> command;
  for (auto& a : run.value("command", json::array()))
    if (a.is_string())
      command.push_back(a.get<std::string>());

  std::string resources;
  if (res.is_object()) {
    resources = "CPU " + number(res.value("cpu_pct", 0.0), 1) + "%, RSS "
                + format_size(res.value("rss_bytes", std::uint64_t{0}));
    if (auto gm = res.find("gpu_memory_bytes");
        gm != res.end() && gm->is_number())
      resources += ", GPU memory " + format_size(gm->get<std::uint64_t>());
  }
  std::string progress_text;
  std::string metrics;
  if (progress.is_object()) {
    if (auto f = progress.find("fraction");
        f != progress.end() && f->is_number())
      progress_text = number(f->get<double>() * 100, 1) + "%";
    if (auto eta = progress.find("eta_s");
        eta != progress.end() && eta->is_number())
      progress_text += (progress_text.empty() ? "ETA " : " (ETA ")
                       + format_duration(eta->get<double>())
                       + (progress_text.empty() ? "" : ")");
    if (auto m = progress.find("metrics");
        m != progress.end() && m->is_object())
      for (auto& [key, value] : m->items())
        metrics
            += (metrics.empty() ? "" : ", ") + key + "="
               + (value.is_string() ? value.get<std::string>() : value.dump());
  }
  std::string attempt = str(run, "attempt");
  if (auto of = str(run, "restart_of"); !of.empty())
    attempt += " (restart of " + of + ")";
  bool started = !str(run, "started_at").empty();

  std::vector<std::vector<std::string>> fields{
      {"ID:", str(run, "id")},
      {"Experiment:", str(run, "experiment")},
      {"State:", state_label(state)},
      {"Reason:", or_dash(reason_text(run))},
      {"Message:", or_dash(str(run, "message"))},
      {"PID:", or_dash(str(run, "pid"))},
      {"Processes:", str(run, "process_count")},
      {"Pause via:", or_dash(str(run, "pause_mechanism"))},
      {"Executor:", or_dash(str(run, "executor"))},
      {"GPUs:", gpus.empty() ? "none" : gpus},
      {"Attempt:", attempt},
  };
  if (str(run, "executor") == "slurm") {
    fields.push_back({"Slurm job:", or_dash(str(run, "slurm_job_id"))});
    fields.push_back({"Node:", or_dash(str(run, "node"))});
  }
  // Only while they mean something: a run is queued or waits to retry.
  if (auto pos = str(run, "queue_position"); !pos.empty())
    fields.push_back({"Queue:", "#" + pos});
  if (auto retry = str(run, "retry_at"); !retry.empty())
    fields.push_back({"Retry at:", retry});
  fields.insert(
      fields.end(),
      {
          {"Created:", or_dash(str(run, "created_at"))},
          {"Started:", or_dash(str(run, "started_at"))},
          {"Ended:", or_dash(str(run, "ended_at"))},
          {"Active:",
           started ? format_duration(run.value("active_s", 0.0)) : "-"},
          {"CWD:", or_dash(str(run, "cwd"))},
          {"Command:", or_dash(shell_join(command))},
          {"Resources:", or_dash(resources)},
          {"Progress:", or_dash(progress_text)},
          {"Metrics:", or_dash(metrics)},
      });
  // render_table pads the first column: no header row needed here.
  std::string out = render_table(fields);

  auto procs = run.find("processes");
  if (procs == run.end() || !procs->is_array() || procs->empty())
    return out;
  // Depth-first from the processes whose parent is not in the tree, so
  // each child sits under its parent.
  std::map<long long, std::vector<const json*>> children;
  std::map<long long, const json*> by_pid;
  for (auto& p : *procs)
    by_pid[p.value("pid", 0LL)] = &p;
  std::vector<const json*> roots;
  for (auto& p : *procs) {
    auto ppid = p.value("ppid", 0LL);
    if (by_pid.count(ppid) && ppid != p.value("pid", 0LL))
      children[ppid].push_back(&p);
    else
      roots.push_back(&p);
  }
  std::vector<std::vector<std::string>> rows{
      {"PID", "PPID", "STATE", "FROZEN", "CPU%", "RSS", "CMD"}};
  std::function<void(const json&, int)> walk = [&](const json& p, int depth) {
    auto indent = depth == 0 ? std::string{}
                             : std::string(2 * (depth - 1), ' ') + "└─ ";
    rows.push_back({
        str(p, "pid"),
        str(p, "ppid"),
        str(p, "state"),
        p.value("frozen", false) ? "yes" : "no",
        number(p.value("cpu_pct", 0.0), 1),
        format_size(p.value("rss_bytes", std::uint64_t{0})),
        indent + str(p, "cmd"),
    });
    // A pid cycle cannot come from /proc, but must not hang the CLI.
    if (depth > 64)
      return;
    for (auto* child : children[p.value("pid", 0LL)])
      walk(*child, depth + 1);
  };
  for (auto* root : roots)
    walk(*root, 0);
  out += "\nProcess tree:\n";
  auto table = render_table(rows);
  for (std::size_t pos = 0; pos < table.size();) {
    auto end = table.find('\n', pos) + 1;
    out += "  " + table.substr(pos, end - pos);
    pos = end;
  }
  return out;
}

} // namespace corral::cli
