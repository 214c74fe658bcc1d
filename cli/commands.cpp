#include "cli/commands.hpp"

#include "cli/discovery.hpp"
#include "cli/format.hpp"
#include "cli/http_client.hpp"
#include "cli/sse.hpp"
#include "services/run_state.hpp"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

extern char** environ;

namespace corral::cli {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

/// Pause answers after the kernel confirms, within the daemon's
/// pause_timeout (10 s by default): leave room above it.
constexpr auto call_timeout = 120s;
/// `stop --wait` lasts checkpoint timeout + grace, which the spec sets.
constexpr auto wait_timeout = std::chrono::seconds{24 * 3600};

/// A mistake in the invocation rather than on the server (exit 2).
class usage_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Options every client verb takes.
struct client_options {
  std::string server;
  std::string state_dir;
  std::string token_file;
  bool json = false;
};

void add_client_options(CLI::App& sub, client_options& o) {
  sub.add_option("--server", o.server,
                 "daemon URL (default: $CORRAL_URL, else <state-dir>/endpoint, "
                 "else http://127.0.0.1:8700)");
  sub.add_option("--state-dir", o.state_dir,
                 "daemon state directory (default: $XDG_STATE_HOME/corral, "
                 "else ~/.local/state/corral)");
  sub.add_option("--token-file", o.token_file,
                 "file holding the API token (default: $CORRAL_TOKEN, else "
                 "<state-dir>/token)");
  sub.add_flag("--json", o.json, "print the server's JSON answer");
}

struct connection {
  std::string url;
  std::string token;
};

connection connect_to(const client_options& o) {
  auto env = process_env();
  auto state_dir = o.state_dir.empty() ? default_state_dir(env) : o.state_dir;
  connection c;
  c.url = discover_server(o.server, state_dir, env);
  try {
    c.token = discover_token(o.token_file, state_dir, env);
  } catch (const std::runtime_error& e) {
    throw usage_error(e.what());
  }
  return c;
}

/// One API answer, parsed.
struct answer {
  int status = 0;
  std::string raw;
  json body; // null if the answer was not JSON
  bool ok() const { return status >= 200 && status < 300; }

  /// The server's error message as it sent it.
  std::string error_message() const {
    if (body.is_object())
      if (auto e = body.find("error"); e != body.end() && e->is_object())
        if (auto m = e->find("message"); m != e->end() && m->is_string())
          return m->get<std::string>();
    auto text = raw.substr(0, raw.find('\n'));
    return "HTTP " + std::to_string(status) + (text.empty() ? "" : ": " + text);
  }
};

answer call(const connection& c, const std::string& method,
            const std::string& target, std::string body = {},
            std::chrono::seconds timeout = call_timeout) {
  auto content_type = body.empty() ? "" : "application/json";
  auto reply = http_call(c.url, method, target, std::move(body), content_type,
                         c.token, timeout);
  answer a;
  a.status = reply.status;
  a.raw = std::move(reply.body);
  a.body = json::parse(a.raw, nullptr, false);
  if (a.body.is_discarded())
    a.body = nullptr;
  return a;
}

void print_json(const answer& a) {
  if (a.body.is_null() && !a.raw.empty())
    std::cout << a.raw << (a.raw.ends_with('\n') ? "" : "\n");
  else
    std::cout << a.body.dump(2, ' ', false, json::error_handler_t::replace)
              << "\n";
}

/// Reports a refused request: the server's message on stderr, and with
/// --json its whole answer on stdout. Returns the exit code.
int refused(const answer& a, const std::string& what, bool as_json) {
  if (as_json)
    print_json(a);
  std::cerr << "corral: " << what << ": " << a.error_message() << "\n";
  return 1;
}

/// Runs a verb, turning exceptions into messages and exit codes.
int guarded(const std::function<int()>& verb) {
  try {
    return verb();
  } catch (const connection_error& e) {
    std::cerr << "corral: " << e.what() << "\n";
    return 3;
  } catch (const usage_error& e) {
    std::cerr << "corral: " << e.what() << "\n";
    return 2;
  } catch (const std::invalid_argument& e) {
    std::cerr << "corral: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "corral: " << e.what() << "\n";
    return 1;
  }
}

std::string run_path(const std::string& id) {
  return "/api/v1/runs/" + url_encode(id);
}

json process_environment() {
  json env = json::object();
  for (char** e = environ; e && *e; ++e) {
    std::string_view entry = *e;
    auto eq = entry.find('=');
    if (eq == std::string_view::npos || eq == 0)
      continue;
    env[std::string(entry.substr(0, eq))] = std::string(entry.substr(eq + 1));
  }
  return env;
}

// -- verbs -------------------------------------------------------------------

struct submit_options : client_options {
  std::string file;
  bool dry_run = false;
};

int submit(const submit_options& o) {
  std::string text;
  std::filesystem::path base_dir;
  if (o.file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
    base_dir = std::filesystem::current_path();
  } else {
    std::ifstream in(o.file, std::ios::binary);
    if (!in)
      throw usage_error("cannot read " + o.file + ": " + std::strerror(errno));
    std::ostringstream buf;
    buf << in.rdbuf();
    text = buf.str();
    base_dir
        = std::filesystem::absolute(o.file).lexically_normal().parent_path();
  }
  json envelope = {{"spec", text},
                   {"base_dir", base_dir.string()},
                   {"env", process_environment()}};
  auto c = connect_to(o);
  auto a = call(c, "POST",
                std::string("/api/v1/experiments")
                    + (o.dry_run ? "?dry_run=1" : ""),
                envelope.dump(-1, ' ', false, json::error_handler_t::replace));
  if (!a.ok())
    return refused(a, "submit " + o.file, o.json);
  if (o.json) {
    print_json(a);
    return 0;
  }
  for (auto& run : a.body.value("runs", json::array())) {
    auto id = run.value("id", std::string{});
    if (o.dry_run) {
      std::vector<std::string> argv;
      for (auto& arg : run.value("command", json::array()))
        if (arg.is_string())
          argv.push_back(arg.get<std::string>());
      std::cout << "would create " << id << ": " << shell_join(argv) << "\n";
    } else {
      std::cout << "✓ created " << id << " ("
                << run.value("state", std::string{"?"}) << ")\n";
    }
  }
  return 0;
}

struct ps_options : client_options {
  bool all = false;
  std::vector<std::string> states;
  std::string experiment;
};

int ps(const ps_options& o) {
  std::string query;
  auto add = [&](const std::string& key, const std::string& value) {
    query += (query.empty() ? "?" : "&") + key + "=" + url_encode(value);
  };
  if (!o.states.empty()) {
    std::string joined;
    for (auto& s : o.states)
      joined += (joined.empty() ? "" : ",") + s;
    add("state", joined);
  }
  if (!o.experiment.empty())
    add("experiment", o.experiment);
  auto c = connect_to(o);
  auto a = call(c, "GET", "/api/v1/runs" + query);
  if (!a.ok())
    return refused(a, "ps", o.json);
  auto runs = a.body.value("runs", json::array());
  // Ended runs are history: shown with --all or when asked for by state.
  std::size_t hidden = 0;
  if (!o.all && o.states.empty()) {
    json active = json::array();
    for (auto& r : runs) {
      auto state = parse_run_state(r.value("state", ""));
      if (state && is_ended(*state))
        ++hidden;
      else
        active.push_back(r);
    }
    runs = std::move(active);
  }
  if (o.json) {
    std::cout << json{{"runs", runs}}.dump(2, ' ', false,
                                           json::error_handler_t::replace)
              << "\n";
    return 0;
  }
  if (runs.empty())
    std::cout << "no runs\n";
  else
    std::cout << render_ps(runs);
  if (hidden > 0)
    std::cout << hidden << (hidden == 1 ? " ended run" : " ended runs")
              << " not shown (corral ps --all)\n";
  return 0;
}

struct show_options : client_options {
  std::string id;
};

int show(const show_options& o) {
  auto c = connect_to(o);
  auto a = call(c, "GET", run_path(o.id));
  if (!a.ok())
    return refused(a, "show " + o.id, o.json);
  if (o.json)
    print_json(a);
  else
    std::cout << render_show(a.body);
  return 0;
}

int gpus(const client_options& o) {
  auto c = connect_to(o);
  auto a = call(c, "GET", "/api/v1/gpus");
  if (!a.ok())
    return refused(a, "gpus", o.json);
  if (o.json)
    print_json(a);
  else
    std::cout << render_gpus(a.body);
  return 0;
}

struct ids_options : client_options {
  std::vector<std::string> ids;
};

/// One request per id; the others go on after a refusal.
int for_each_id(
    const ids_options& o, const std::string& verb,
    const std::function<answer(const connection&, const std::string&)>& request,
    const std::function<std::string(const json&)>& done) {
  auto c = connect_to(o);
  int code = 0;
  for (auto& id : o.ids) {
    auto a = request(c, id);
    if (!a.ok()) {
      code = refused(a, verb + " " + id, o.json);
      continue;
    }
    if (o.json)
      print_json(a);
    else
      std::cout << done(a.body) << "\n";
  }
  return code;
}

struct stop_options : ids_options {
  double grace = 0;
  CLI::Option* grace_option = nullptr;
  bool force = false;
  bool wait = false;
};

/// A follow stays open for hours; each piece (a keepalive at least every
/// 15 s) must come within this.
constexpr auto follow_idle = 120s;

struct logs_options : client_options {
  std::string id;
  bool follow = false;
  std::size_t tail = 100;
  bool only_stdout = false;
  bool only_stderr = false;
  bool timestamps = false;
};

/// Prints one line of GET .../logs where the run printed it: its stdout
/// on ours, its stderr on ours.
void print_log_line(const json& line, bool timestamps) {
  auto& os
      = line.value("stream", std::string{}) == "stderr" ? std::cerr : std::cout;
  if (timestamps)
    os << line.value("t", std::string{}) << " ";
  os << line.value("text", std::string{}) << "\n";
  os.flush();
}

/// Follows an SSE endpoint, calling `on_event` per event until the server
/// sends `end`. Returns the exit code.
int follow_events(const connection& c, const std::string& target,
                  const std::string& what, bool as_json,
                  const std::function<void(const sse_event&)>& on_event) {
  sse_parser parser;
  bool ended = false;
  std::string failure;
  auto reply = http_stream(
      c.url, target, c.token,
      [&](std::string_view data) {
        for (auto& e : parser.feed(data)) {
          if (e.event == "end") {
            ended = true;
            return false;
          }
          if (e.event == "error") {
            auto body = json::parse(e.data, nullptr, false);
            failure = body.is_object() ? body.value("message", e.data) : e.data;
            return false;
          }
          on_event(e);
        }
        return true;
      },
      follow_idle);
  if (reply.status < 200 || reply.status >= 300) {
    answer a;
    a.status = reply.status;
    a.raw = reply.body;
    a.body = json::parse(a.raw, nullptr, false);
    if (a.body.is_discarded())
      a.body = nullptr;
    return refused(a, what, as_json);
  }
  if (!failure.empty()) {
    std::cerr << "corral: " << what << ": " << failure << "\n";
    return 1;
  }
  if (!ended) {
    std::cerr << "corral: " << what << ": the daemon closed the stream\n";
    return 3;
  }
  return 0;
}

int logs(const logs_options& o) {
  if (o.only_stdout && o.only_stderr)
    throw usage_error("logs: --stdout and --stderr exclude each other");
  std::string query = "?tail=" + std::to_string(o.tail);
  if (o.only_stdout)
    query += "&stream=stdout";
  if (o.only_stderr)
    query += "&stream=stderr";
  auto c = connect_to(o);
  auto path = run_path(o.id) + "/logs";
  if (!o.follow) {
    auto a = call(c, "GET", path + query);
    if (!a.ok())
      return refused(a, "logs " + o.id, o.json);
    if (o.json) {
      print_json(a);
      return 0;
    }
    for (auto& line : a.body.value("lines", json::array()))
      print_log_line(line, o.timestamps);
    return 0;
  }
  return follow_events(c, path + query + "&follow=1", "logs " + o.id, o.json,
                       [&](const sse_event& e) {
                         auto line = json::parse(e.data, nullptr, false);
                         if (line.is_discarded())
                           return;
                         if (o.json)
                           std::cout << e.data << std::endl;
                         else
                           print_log_line(line, o.timestamps);
                       });
}

struct events_options : client_options {
  std::string id;
  bool follow = false;
};

std::string event_line(const json& e, bool with_run) {
  std::string out = e.value("t", std::string{}) + "  ";
  if (with_run)
    out += e.value("run", std::string{}) + "  ";
  auto type = e.value("type", std::string{});
  auto data = e.value("data", json::object());
  if (type == "state" && data.is_object() && data.contains("to")
      && data["to"].is_string())
    type += " → " + data["to"].get<std::string>();
  out += type + "  " + e.value("message", std::string{});
  if (auto cause = e.find("cause"); cause != e.end() && cause->is_string())
    out += " (" + cause->get<std::string>() + ")";
  return out;
}

int events(const events_options& o) {
  auto c = connect_to(o);
  bool all = o.id.empty();
  auto path = all ? std::string{"/api/v1/events"} : run_path(o.id) + "/events";
  auto what = all ? std::string{"events"} : "events " + o.id;
  if (!o.follow) {
    auto a = call(c, "GET", path + "?follow=0");
    if (!a.ok())
      return refused(a, what, o.json);
    if (o.json) {
      print_json(a);
      return 0;
    }
    for (auto& e : a.body.value("events", json::array()))
      std::cout << event_line(e, all) << "\n";
    return 0;
  }
  return follow_events(
      c, path + "?follow=1", what, o.json, [&](const sse_event& e) {
        auto ev = json::parse(e.data, nullptr, false);
        if (ev.is_discarded())
          return;
        std::cout << (o.json ? e.data : event_line(ev, all)) << std::endl;
      });
}

int artifacts(const show_options& o) {
  auto c = connect_to(o);
  auto a = call(c, "GET", run_path(o.id) + "/artifacts");
  if (!a.ok())
    return refused(a, "artifacts " + o.id, o.json);
  if (o.json) {
    print_json(a);
    return 0;
  }
  std::cout << render_artifacts(a.body);
  return 0;
}

std::string stopped_line(const json& run) {
  auto state = run.value("state", std::string{});
  return state_label(state) + " " + run.value("id", std::string{});
}

/// Adds a verb: its options (with the client options every verb takes),
/// and a callback that runs it guarded and leaves its exit code.
template <class Options>
CLI::App* add_verb(CLI::App& app, int& exit_code, const std::string& name,
                   const std::string& help, std::shared_ptr<Options> o,
                   std::function<int(const Options&)> verb) {
  auto* sub = app.add_subcommand(name, help);
  add_client_options(*sub, *o);
  sub->callback(
      [o, verb, &exit_code] { exit_code = guarded([&] { return verb(*o); }); });
  return sub;
}

/// Adds a verb that POSTs `action` for each id and prints `done` of each
/// answer.
void add_action_verb(CLI::App& app, int& exit_code, const std::string& name,
                     const std::string& help,
                     std::function<std::string(const json&)> done) {
  auto o = std::make_shared<ids_options>();
  auto* sub = add_verb<ids_options>(
      app, exit_code, name, help, o, [name, done](const ids_options& o) {
        return for_each_id(
            o, name,
            [&](const connection& c, const std::string& id) {
              return call(c, "POST", run_path(id) + "/" + name);
            },
            done);
      });
  sub->add_option("ids", o->ids, "run ids")->required();
}

} // namespace

void add_client_commands(CLI::App& app, int& exit_code) {
  {
    auto o = std::make_shared<submit_options>();
    auto* sub = add_verb<submit_options>(
        app, exit_code, "submit",
        "Create the runs an experiments file declares", o, submit);
    sub->add_option("file", o->file,
                    "experiments YAML (relative cwds resolve against its "
                    "directory; '-' reads stdin)")
        ->required();
    sub->add_flag("--dry-run", o->dry_run,
                  "validate and show the runs without creating them");
  }
  {
    auto o = std::make_shared<ps_options>();
    auto* sub = add_verb<ps_options>(
        app, exit_code, "ps",
        "List the runs that have not ended (--all: every run the daemon "
        "knows, its history included)",
        o, ps);
    sub->add_flag("--all,-a", o->all, "show every run, ended ones included");
    sub->add_option("--state", o->states,
                    "only runs in these states (comma-separated or repeated)")
        ->delimiter(',');
    sub->add_option("--experiment", o->experiment,
                    "only runs of this experiment");
  }
  {
    auto o = std::make_shared<show_options>();
    auto* sub = add_verb<show_options>(
        app, exit_code, "show", "Show one run in detail, with its process tree",
        o, show);
    sub->add_option("id", o->id, "run id")->required();
  }
  {
    auto o = std::make_shared<logs_options>();
    auto* sub = add_verb<logs_options>(
        app, exit_code, "logs",
        "Print a run's output (its stdout here on stdout, its stderr on "
        "stderr)",
        o, logs);
    sub->add_option("id", o->id, "run id")->required();
    sub->add_flag("--follow,-f", o->follow,
                  "keep printing new lines until the run ends");
    sub->add_option("--tail,-n", o->tail,
                    "start with this many last lines (default 100; 0: only "
                    "new ones)")
        ->check(CLI::Range(0, 100000));
    sub->add_flag("--stdout", o->only_stdout, "only the run's stdout");
    sub->add_flag("--stderr", o->only_stderr, "only the run's stderr");
    sub->add_flag("--timestamps,-t", o->timestamps,
                  "prefix each line with when it was written");
  }
  {
    auto o = std::make_shared<events_options>();
    auto* sub = add_verb<events_options>(
        app, exit_code, "events",
        "Print what happened to a run (or to every run): state changes, "
        "signals, checkpoints, artifacts",
        o, events);
    sub->add_option("id", o->id, "run id (default: every run)");
    sub->add_flag("--follow,-f", o->follow,
                  "keep printing new events (until the run has ended)");
  }
  {
    auto o = std::make_shared<show_options>();
    auto* sub = add_verb<show_options>(app, exit_code, "artifacts",
                                       "List a run's checkpoints and videos", o,
                                       artifacts);
    sub->add_option("id", o->id, "run id")->required();
  }
  add_verb<client_options>(app, exit_code, "gpus",
                           "List the node's GPUs and the run holding each",
                           std::make_shared<client_options>(), gpus);
  add_action_verb(
      app, exit_code, "pause", "Freeze runs with every process of their trees",
      [](const json& run) {
        auto n = run.value("process_count", 0);
        return "⏸️ paused " + run.value("id", std::string{}) + " ("
               + std::to_string(n)
               + (n == 1 ? " process frozen)" : " processes frozen)");
      });
  add_action_verb(app, exit_code, "resume", "Thaw paused runs",
                  [](const json& run) {
                    return "🟢 resumed " + run.value("id", std::string{});
                  });
  add_action_verb(app, exit_code, "restart",
                  "Start ended runs again as new runs of the same spec, "
                  "{latest_checkpoint} bound to their newest checkpoint",
                  [](const json& run) {
                    return "🔁 restarted "
                           + run.value("restart_of", std::string{}) + " as "
                           + run.value("id", std::string{}) + " ("
                           + run.value("state", std::string{}) + ")";
                  });
  {
    auto o = std::make_shared<stop_options>();
    auto* sub = add_verb<stop_options>(
        app, exit_code, "stop",
        "Stop runs: stop signal to the main process, then SIGKILL after the "
        "grace period",
        o, [](const stop_options& o) {
          json body = {{"force", o.force}, {"wait", o.wait}};
          if (o.grace_option->count() > 0)
            body["grace_s"] = o.grace;
          auto timeout = o.wait ? wait_timeout : call_timeout;
          return for_each_id(
              o, "stop",
              [&](const connection& c, const std::string& id) {
                return call(c, "POST", run_path(id) + "/stop", body.dump(),
                            timeout);
              },
              stopped_line);
        });
    o->grace_option
        = sub->add_option("--grace", o->grace,
                          "seconds between the stop signal and SIGKILL "
                          "(default: the experiment's stop.grace)")
              ->check(CLI::NonNegativeNumber);
    sub->add_flag("--force", o->force, "SIGKILL now, without grace");
    sub->add_flag("--wait", o->wait, "answer once the runs have stopped");
    sub->add_option("ids", o->ids, "run ids")->required();
  }
}

} // namespace corral::cli
