#include "cli/commands.hpp"

#include "cli/discovery.hpp"
#include "cli/format.hpp"
#include "cli/http_client.hpp"

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
  if (o.json) {
    print_json(a);
    return 0;
  }
  auto runs = a.body.value("runs", json::array());
  if (runs.empty()) {
    std::cout << "no runs\n";
    return 0;
  }
  std::cout << render_ps(runs);
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

std::string stopped_line(const json& run) {
  auto state = run.value("state", std::string{});
  return state_label(state) + " " + run.value("id", std::string{});
}

} // namespace

void add_client_commands(CLI::App& app, int& exit_code) {
  {
    auto o = std::make_shared<submit_options>();
    auto* sub = app.add_subcommand(
        "submit", "Create the runs an experiments file declares");
    sub->add_option("file", o->file,
                    "experiments YAML (relative cwds resolve against its "
                    "directory; '-' reads stdin)")
        ->required();
    sub->add_flag("--dry-run", o->dry_run,
                  "validate and show the runs without creating them");
    add_client_options(*sub, *o);
    sub->callback(
        [o, &exit_code] { exit_code = guarded([&] { return submit(*o); }); });
  }
  {
    auto o = std::make_shared<ps_options>();
    auto* sub = app.add_subcommand(
        "ps", "List runs (ended runs included: until run history arrives, "
              "ps shows every run the daemon knows, with or without --all)");
    sub->add_flag("--all,-a", o->all,
                  "show every run, ended ones included (for now the default "
                  "too)");
    sub->add_option("--state", o->states,
                    "only runs in these states (comma-separated or repeated)")
        ->delimiter(',');
    sub->add_option("--experiment", o->experiment,
                    "only runs of this experiment");
    add_client_options(*sub, *o);
    sub->callback(
        [o, &exit_code] { exit_code = guarded([&] { return ps(*o); }); });
  }
  {
    auto o = std::make_shared<show_options>();
    auto* sub = app.add_subcommand(
        "show", "Show one run in detail, with its process tree");
    sub->add_option("id", o->id, "run id")->required();
    add_client_options(*sub, *o);
    sub->callback(
        [o, &exit_code] { exit_code = guarded([&] { return show(*o); }); });
  }
  {
    auto o = std::make_shared<client_options>();
    auto* sub = app.add_subcommand(
        "gpus", "List the node's GPUs and the run holding each");
    add_client_options(*sub, *o);
    sub->callback(
        [o, &exit_code] { exit_code = guarded([&] { return gpus(*o); }); });
  }
  {
    auto o = std::make_shared<ids_options>();
    auto* sub = app.add_subcommand(
        "pause", "Freeze runs with every process of their trees");
    sub->add_option("ids", o->ids, "run ids")->required();
    add_client_options(*sub, *o);
    sub->callback([o, &exit_code] {
      exit_code = guarded([&] {
        return for_each_id(
            *o, "pause",
            [](const connection& c, const std::string& id) {
              return call(c, "POST", run_path(id) + "/pause");
            },
            [](const json& run) {
              auto n = run.value("process_count", 0);
              return "⏸️ paused " + run.value("id", std::string{}) + " ("
                     + std::to_string(n)
                     + (n == 1 ? " process frozen)" : " processes frozen)");
            });
      });
    });
  }
  {
    auto o = std::make_shared<ids_options>();
    auto* sub = app.add_subcommand("resume", "Thaw paused runs");
    sub->add_option("ids", o->ids, "run ids")->required();
    add_client_options(*sub, *o);
    sub->callback([o, &exit_code] {
      exit_code = guarded([&] {
        return for_each_id(
            *o, "resume",
            [](const connection& c, const std::string& id) {
              return call(c, "POST", run_path(id) + "/resume");
            },
            [](const json& run) {
              return "🟢 resumed " + run.value("id", std::string{});
            });
      });
    });
  }
  {
    auto o = std::make_shared<stop_options>();
    auto* sub = app.add_subcommand(
        "stop", "Stop runs: stop signal to the main process, then SIGKILL "
                "after the grace period");
    o->grace_option
        = sub->add_option("--grace", o->grace,
                          "seconds between the stop signal and SIGKILL "
                          "(default: the experiment's stop.grace)")
              ->check(CLI::NonNegativeNumber);
    sub->add_flag("--force", o->force, "SIGKILL now, without grace");
    sub->add_flag("--wait", o->wait, "answer once the runs have stopped");
    sub->add_option("ids", o->ids, "run ids")->required();
    add_client_options(*sub, *o);
    sub->callback([o, &exit_code] {
      exit_code = guarded([&] {
        json body = {{"force", o->force}, {"wait", o->wait}};
        if (o->grace_option->count() > 0)
          body["grace_s"] = o->grace;
        auto timeout = o->wait ? wait_timeout : call_timeout;
        return for_each_id(
            *o, "stop",
            [&](const connection& c, const std::string& id) {
              return call(c, "POST", run_path(id) + "/stop", body.dump(),
                          timeout);
            },
            stopped_line);
      });
    });
  }
}

} // namespace corral::cli
