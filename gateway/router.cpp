#include "gateway/router.hpp"

#include "gateway/static_assets.hpp"
#include "gateway/streams.hpp"
#include "services/spec.hpp"
#include "services/text.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <set>
#include <utility>

#include <fcntl.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

namespace corral::gateway {

namespace {

using json = nlohmann::json;
using header_list = std::vector<std::pair<http::field, std::string>>;

std::string_view sv(boost::beast::string_view s) {
  return {s.data(), s.size()};
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string join(const std::vector<std::string>& xs, std::string_view sep) {
  std::string out;
  for (auto& x : xs) {
    if (!out.empty())
      out += sep;
    out += x;
  }
  return out;
}

/// nlohmann's messages start with "[json.exception.parse_error.101] ",
/// which means nothing to a user.
std::string json_error_text(const std::exception& e) {
  std::string_view msg = e.what();
  if (msg.starts_with("[json.exception.")) {
    auto end = msg.find("] ");
    if (end != std::string_view::npos)
      msg.remove_prefix(end + 2);
  }
  return std::string(msg);
}

std::string type_name(const json& j) {
  return j.type_name();
}

// -- responses ---------------------------------------------------------------

/// The text of an answer. Invalid UTF-8 (say, from a process's command
/// line) must not turn an answer into an exception: it is replaced.
std::string json_text(const json& body) {
  return body.dump(-1, ' ', false, json::error_handler_t::replace) + '\n';
}

/// An answer whose JSON text is made already (json_text).
response json_text_response(http::status status, std::string text,
                            unsigned version, bool keep_alive,
                            const header_list& headers = {}) {
  response res{status, version};
  res.set(http::field::content_type, "application/json");
  for (auto& [field, value] : headers)
    res.set(field, value);
  res.body() = std::move(text);
  res.keep_alive(keep_alive);
  return res;
}

response json_response(http::status status, const json& body, unsigned version,
                       bool keep_alive, const header_list& headers = {}) {
  return json_text_response(status, json_text(body), version, keep_alive,
                            headers);
}

json error_json(const corral::error& err) {
  return {
      {"error",
       {{"code", std::string(code_name(err.code))}, {"message", err.message}}}};
}

/// Headers every answer carries, whoever built it.
void finish_response(response& res) {
  res.set(http::field::server, "corral");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.prepare_payload();
}

/// Holds one request's answer channel. Whoever answers first wins; if the
/// backend drops its callback without answering, the client still gets a
/// 500 instead of a connection that hangs until the server stops.
class responder {
public:
  responder(std::function<void(response)> send,
            std::function<void(streamed_response)> stream, unsigned version,
            bool keep_alive)
      : send_(std::move(send)), stream_(std::move(stream)), version_(version),
        keep_alive_(keep_alive) {}

  unsigned version() const { return version_; }
  bool keep_alive() const { return keep_alive_; }

  responder(const responder&) = delete;
  responder& operator=(const responder&) = delete;

  ~responder() {
    if (!done_.load())
      error(make_error(ec::internal,
                       "the daemon dropped this request without an answer"));
  }

  void json_reply(http::status status, const json& body,
                  const header_list& headers = {}) {
    finish(json_response(status, body, version_, keep_alive_, headers));
  }

  /// Answers with JSON text made already (a kept listing).
  void raw_json_reply(http::status status, std::string text) {
    finish(json_text_response(status, std::move(text), version_, keep_alive_));
  }

  void no_content() {
    response res{http::status::no_content, version_};
    res.keep_alive(keep_alive_);
    finish(std::move(res));
  }

  void error(const corral::error& err, const header_list& headers = {}) {
    json_reply(static_cast<http::status>(http_status(err.code)),
               error_json(err), headers);
  }

  /// Answers with `res` keeping its own Cache-Control and Content-Length:
  /// the answer to a HEAD names the length of a body it leaves out.
  void exact_reply(response res) {
    res.set(http::field::server, "corral");
    res.set("X-Content-Type-Options", "nosniff");
    deliver(std::move(res));
  }

  /// Answers with a body from `body`; `head` has status and headers.
  void stream(response head, std::shared_ptr<body_source> body) {
    if (done_.exchange(true))
      return;
    head.set(http::field::server, "corral");
    head.set(http::field::cache_control, "no-store");
    head.set("X-Content-Type-Options", "nosniff");
    try {
      stream_({std::move(head), std::move(body)});
    } catch (...) {
      // As in finish(): nobody is left to tell.
    }
  }

private:
  void finish(response res) {
    finish_response(res);
    deliver(std::move(res));
  }

  void deliver(response res) {
    if (done_.exchange(true))
      return;
    try {
      send_(std::move(res));
    } catch (...) {
      // The connection is gone or the server is stopping: nobody is left
      // to tell.
    }
  }

  std::function<void(response)> send_;
  std::function<void(streamed_response)> stream_;
  unsigned version_;
  bool keep_alive_;
  std::atomic<bool> done_{false};
};

using responder_ptr = std::shared_ptr<responder>;

/// One row of GET /api/v1/gpus; what the inventory does not know is null.
json gpu_json(const gpu_report::row& row) {
  auto or_null = [](const auto& opt) -> json {
    return opt ? json(*opt) : json(nullptr);
  };
  auto text = [](const std::string& s) -> json {
    return s.empty() ? json(nullptr) : json(s);
  };
  return {{"index", row.gpu.index},
          {"uuid", text(row.gpu.uuid)},
          {"name", text(row.gpu.name)},
          {"memory_total", or_null(row.gpu.memory_total)},
          {"memory_used", or_null(row.gpu.memory_used)},
          {"utilization", or_null(row.gpu.utilization)},
          {"run", or_null(row.run)}};
}

/// Every row of a GPU report, as GET /gpus and GET /node list them.
json gpu_rows_json(const gpu_report& report) {
  json rows = json::array();
  for (auto& row : report.gpus)
    rows.push_back(gpu_json(row));
  return rows;
}

json summary_json(run_view v) {
  v.processes.reset(); // a summary is a run with processes: null
  return to_json(v);
}

template <class F>
api_backend::reply<run_view> reply_with(responder_ptr r, F to_body) {
  return [r, to_body](result<run_view> res) {
    if (!res)
      r->error(res.error());
    else
      r->json_reply(http::status::ok, to_body(std::move(*res)));
  };
}

// -- target ------------------------------------------------------------------

struct parsed_target {
  std::string path; // raw, for messages
  std::vector<std::string> segments;
  std::vector<std::pair<std::string, std::string>> query;

  const std::string* param(std::string_view key) const {
    const std::string* found = nullptr;
    for (auto& [k, v] : query)
      if (k == key)
        found = &v; // the last one wins, as in most frameworks
    return found;
  }
};

result<parsed_target> parse_target(std::string_view target) {
  if (target.empty() || target.front() != '/')
    return make_error(ec::bad_request,
                      "request target must be an absolute path, got '"
                          + std::string(target) + "'");
  parsed_target out;
  auto qpos = target.find('?');
  auto path = target.substr(0, qpos);
  out.path = std::string(path);
  // Path segments: "/api/v1/runs/x" → api, v1, runs, x. A trailing slash
  // leaves an empty segment, so "/api/v1/runs/" matches no route.
  for (std::size_t pos = 1;;) {
    auto next = path.find('/', pos);
    auto raw = path.substr(pos, next == std::string_view::npos
                                    ? std::string_view::npos
                                    : next - pos);
    auto seg = url_decode(raw, false);
    if (!seg)
      return make_error(ec::bad_request,
                        "malformed %-escape in path '" + out.path + "'");
    out.segments.push_back(std::move(*seg));
    if (next == std::string_view::npos)
      break;
    pos = next + 1;
  }
  if (qpos == std::string_view::npos)
    return out;
  auto query = target.substr(qpos + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{}
                                          : query.substr(amp + 1);
    if (item.empty())
      continue;
    auto eq = item.find('=');
    auto key = url_decode(item.substr(0, eq));
    auto value = url_decode(eq == std::string_view::npos ? std::string_view{}
                                                         : item.substr(eq + 1));
    if (!key || !value)
      return make_error(ec::bad_request, "malformed %-escape in query '"
                                             + std::string(item) + "'");
    out.query.emplace_back(std::move(*key), std::move(*value));
  }
  return out;
}

/// Unknown query parameters are refused rather than ignored: a typo like
/// `?status=running` must not silently list every run.
std::optional<corral::error> check_params(const parsed_target& t,
                                          std::vector<std::string> known) {
  known.push_back("access_token");
  for (auto& [k, v] : t.query) {
    if (std::find(known.begin(), known.end(), k) != known.end())
      continue;
    known.pop_back();
    return make_error(ec::bad_request,
                      "unknown query parameter '" + k + "' on " + t.path
                          + (known.empty()
                                 ? " (it takes none)"
                                 : " (known: " + join(known, ", ") + ")"));
  }
  return std::nullopt;
}

result<bool> parse_flag(std::string_view name, const std::string& value) {
  auto v = lower(value);
  if (v.empty() || v == "1" || v == "true" || v == "yes")
    return true;
  if (v == "0" || v == "false" || v == "no")
    return false;
  return make_error(ec::bad_request, std::string(name)
                                         + ": expected 1 or 0, got '" + value
                                         + "'");
}

// -- request checks ----------------------------------------------------------

enum class media { none, json, yaml, other };

media body_media(const http::request<http::string_body>& req) {
  auto it = req.find(http::field::content_type);
  if (it == req.end())
    return media::none;
  auto value = sv(it->value());
  auto type = lower(trim(value.substr(0, value.find(';'))));
  if (type == "application/json")
    return media::json;
  if (type == "application/yaml" || type == "application/x-yaml"
      || type == "text/yaml" || type == "text/x-yaml")
    return media::yaml;
  return media::other;
}

bool blank(std::string_view s) {
  return trim(s).empty();
}

/// Compares in time independent of where the strings differ, so a client
/// cannot find the token byte by byte.
bool equal_constant_time(std::string_view given, std::string_view expected) {
  volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    auto g = i < given.size() ? given[i] : 0;
    diff = diff | static_cast<unsigned char>(g ^ expected[i]);
  }
  return diff == 0;
}

std::optional<corral::error>
check_auth(const http::request<http::string_body>& req,
           const router_config& cfg, const parsed_target& t) {
  if (cfg.token.empty())
    return std::nullopt;
  std::optional<std::string_view> given;
  if (auto it = req.find(http::field::authorization); it != req.end()) {
    auto value = trim(sv(it->value()));
    if (value.size() > 7 && lower(value.substr(0, 7)) == "bearer ")
      given = trim(value.substr(7));
  }
  // Browsers cannot set headers on EventSource or <video>: GET only, so a
  // token in a link can never change anything.
  const std::string* query_token = t.param("access_token");
  if (!given && query_token && req.method() == http::verb::get)
    given = *query_token;
  if (!given)
    return make_error(ec::unauthorized,
                      "authentication required: send 'Authorization: Bearer "
                      "<token>' (the token is in the daemon's state dir, "
                      "file 'token')");
  if (!equal_constant_time(*given, cfg.token))
    return make_error(ec::unauthorized, "invalid token");
  return std::nullopt;
}

std::optional<corral::error>
check_origin(const http::request<http::string_body>& req,
             const router_config& cfg) {
  auto host_it = req.find(http::field::host);
  if (host_it == req.end())
    return make_error(ec::forbidden, "missing Host header");
  auto host = sv(host_it->value());
  if (!is_allowed_host(cfg, host))
    return make_error(ec::forbidden,
                      "Host '" + std::string(host)
                          + "' is not this daemon's address (allowed: "
                          + join(cfg.allowed_hosts, ", ") + ")");
  auto origin_it = req.find(http::field::origin);
  if (origin_it == req.end())
    return std::nullopt;
  auto origin = sv(origin_it->value());
  constexpr std::string_view scheme = "http://";
  if (origin.size() > scheme.size()
      && lower(origin.substr(0, scheme.size())) == scheme
      && is_allowed_host(cfg, origin.substr(scheme.size())))
    return std::nullopt;
  return make_error(ec::forbidden, "cross-origin request from '"
                                       + std::string(origin)
                                       + "' refused: only this daemon's own "
                                         "pages may call its API");
}

// -- routes ------------------------------------------------------------------

enum class route_kind {
  none,
  healthz,
  experiments,
  runs,
  run,
  run_action,
  run_events,
  run_logs,
  run_metrics,
  run_artifacts,
  run_artifact,
  all_events,
  gpus,
  node
};

struct route {
  route_kind kind = route_kind::none;
  std::string id;
  std::string action;
  std::vector<http::verb> methods;
};

route match(const std::vector<std::string>& s) {
  using http::verb;
  if (s.size() == 1 && s[0] == "healthz")
    return {route_kind::healthz, {}, {}, {verb::get}};
  if (s.size() < 3 || s[0] != "api" || s[1] != "v1")
    return {};
  if (s.size() == 3 && s[2] == "experiments")
    return {route_kind::experiments, {}, {}, {verb::post}};
  if (s.size() == 3 && s[2] == "gpus")
    return {route_kind::gpus, {}, {}, {verb::get}};
  if (s.size() == 3 && s[2] == "events")
    return {route_kind::all_events, {}, {}, {verb::get}};
  if (s.size() == 3 && s[2] == "node")
    return {route_kind::node, {}, {}, {verb::get}};
  if (s[2] != "runs")
    return {};
  if (s.size() == 3)
    return {route_kind::runs, {}, {}, {verb::get}};
  if (s[3].empty())
    return {};
  if (s.size() == 4)
    return {route_kind::run, s[3], {}, {verb::get, verb::delete_}};
  if (s.size() == 5
      && (s[4] == "pause" || s[4] == "resume" || s[4] == "stop"
          || s[4] == "restart"))
    return {route_kind::run_action, s[3], s[4], {verb::post}};
  if (s.size() == 5 && s[4] == "events")
    return {route_kind::run_events, s[3], {}, {verb::get}};
  if (s.size() == 5 && s[4] == "logs")
    return {route_kind::run_logs, s[3], {}, {verb::get}};
  if (s.size() == 5 && s[4] == "metrics")
    return {route_kind::run_metrics, s[3], {}, {verb::get}};
  if (s.size() == 5 && s[4] == "artifacts")
    return {route_kind::run_artifacts, s[3], {}, {verb::get}};
  if (s.size() >= 6 && s[4] == "artifacts") {
    // The name is one %2F-encoded segment, or several if the client left
    // its slashes as they were.
    std::vector<std::string> parts(s.begin() + 5, s.end());
    return {route_kind::run_artifact, s[3], join(parts, "/"), {verb::get}};
  }
  return {};
}

std::string allow_header(const std::vector<http::verb>& methods) {
  std::vector<std::string> names;
  for (auto m : methods)
    names.emplace_back(sv(http::to_string(m)));
  return join(names, ", ");
}

struct submission {
  std::string text;
  std::string base_dir;
  std::map<std::string, std::string> env;
};

result<std::map<std::string, std::string>> parse_env(const json& j) {
  if (!j.is_object())
    return make_error(ec::invalid_spec,
                      "env: expected an object of strings, got "
                          + type_name(j));
  std::map<std::string, std::string> env;
  for (auto& [key, value] : j.items()) {
    if (key.empty() || key.find('=') != std::string::npos
        || key.find('\0') != std::string::npos)
      return make_error(ec::invalid_spec,
                        "env: invalid variable name '" + key + "'");
    if (!value.is_string())
      return make_error(ec::invalid_spec, "env." + key
                                              + ": expected a string, got "
                                              + type_name(value));
    auto text = value.get<std::string>();
    if (text.find('\0') != std::string::npos)
      return make_error(ec::invalid_spec,
                        "env." + key + ": contains a NUL character");
    env.emplace(key, std::move(text));
  }
  return env;
}

/// The body of POST /experiments: a YAML or JSON experiments document, or
/// the CLI's JSON envelope that also names base_dir and env.
result<submission> parse_submission(const http::request<http::string_body>& req,
                                    const router_config& cfg) {
  submission out{req.body(), cfg.daemon_cwd, cfg.daemon_env};
  if (blank(req.body()))
    return make_error(ec::bad_request,
                      "empty body: expected an experiments document (YAML or "
                      "JSON)");
  if (body_media(req) != media::json)
    return out;
  json doc;
  try {
    doc = json::parse(req.body());
  } catch (const json::exception& e) {
    return make_error(ec::bad_request, "invalid JSON: " + json_error_text(e));
  }
  if (!doc.is_object() || !doc.contains("spec"))
    return out; // a plain experiments document: parse its own text
  for (auto& [key, value] : doc.items())
    if (key != "spec" && key != "base_dir" && key != "env")
      return make_error(ec::invalid_spec,
                        "unknown key '" + key
                            + "' in the submission (known: spec, base_dir, "
                              "env)");
  auto& spec = doc["spec"];
  if (spec.is_string())
    out.text = spec.get<std::string>();
  else if (spec.is_object())
    out.text = spec.dump();
  else
    return make_error(ec::invalid_spec,
                      "spec: expected YAML text or a JSON object, got "
                          + type_name(spec));
  if (auto it = doc.find("base_dir"); it != doc.end() && !it->is_null()) {
    if (!it->is_string())
      return make_error(ec::invalid_spec,
                        "base_dir: expected a string, got " + type_name(*it));
    out.base_dir = it->get<std::string>();
    if (!out.base_dir.starts_with('/'))
      return make_error(ec::invalid_spec,
                        "base_dir: must be an absolute path, got '"
                            + out.base_dir + "'");
  }
  if (auto it = doc.find("env"); it != doc.end() && !it->is_null()) {
    auto env = parse_env(*it);
    if (!env)
      return env.error();
    out.env = std::move(*env);
  }
  return out;
}

/// The optional body of POST .../stop.
result<stop_request> parse_stop(const http::request<http::string_body>& req) {
  stop_request out;
  if (blank(req.body()))
    return out;
  if (body_media(req) != media::json)
    return make_error(ec::unsupported_media_type,
                      "the stop body must be JSON (application/json)");
  json doc;
  try {
    doc = json::parse(req.body());
  } catch (const json::exception& e) {
    return make_error(ec::bad_request, "invalid JSON: " + json_error_text(e));
  }
  if (doc.is_null())
    return out;
  if (!doc.is_object())
    return make_error(ec::invalid_spec,
                      "stop body: expected an object, got " + type_name(doc));
  for (auto& [key, value] : doc.items()) {
    if (value.is_null())
      continue;
    if (key == "grace_s") {
      if (!value.is_number())
        return make_error(ec::invalid_spec,
                          "grace_s: expected a number of seconds, got "
                              + type_name(value));
      auto seconds = value.get<double>();
      if (!(seconds >= 0))
        return make_error(ec::invalid_spec,
                          "grace_s: must be ≥ 0, got " + value.dump());
      // Past this the millisecond count would overflow; nobody means it.
      if (seconds > 1e9)
        return make_error(ec::invalid_spec,
                          "grace_s: too large (" + value.dump() + ")");
      out.grace = millis{std::llround(seconds * 1000)};
    } else if (key == "force" || key == "wait") {
      if (!value.is_boolean())
        return make_error(ec::invalid_spec, key
                                                + ": expected true or false, "
                                                  "got "
                                                + type_name(value));
      (key == "force" ? out.force : out.wait) = value.get<bool>();
    } else {
      return make_error(ec::invalid_spec,
                        "unknown key '" + key
                            + "' in the stop body (known: grace_s, force, "
                              "wait)");
    }
  }
  return out;
}

/// Pause and resume take no body; an empty JSON object is tolerated since
/// many clients send one with every POST.
std::optional<corral::error>
check_no_body(const http::request<http::string_body>& req,
              const std::string& action) {
  auto body = trim(req.body());
  if (body.empty()
      || (body_media(req) == media::json && (body == "{}" || body == "null")))
    return std::nullopt;
  return make_error(ec::bad_request, action + " takes no body");
}

void handle_submit(http::request<http::string_body>& req,
                   const parsed_target& t, api_backend& backend,
                   const router_config& cfg, const responder_ptr& r) {
  bool dry_run = false;
  if (auto* v = t.param("dry_run")) {
    auto flag = parse_flag("dry_run", *v);
    if (!flag)
      return r->error(flag.error());
    dry_run = *flag;
  }
  auto sub = parse_submission(req, cfg);
  if (!sub)
    return r->error(sub.error());
  auto runs = parse_experiments(sub->text, sub->base_dir, sub->env);
  if (!runs)
    return r->error(runs.error());
  backend.submit(std::move(*runs), dry_run,
                 [r, dry_run](result<std::vector<run_view>> res) {
                   if (!res)
                     return r->error(res.error());
                   json runs = json::array();
                   for (auto& v : *res)
                     runs.push_back(to_json(v));
                   r->json_reply(dry_run ? http::status::ok
                                         : http::status::created,
                                 {{"runs", std::move(runs)}});
                 });
}

void handle_list(const parsed_target& t, api_backend& backend,
                 const responder_ptr& r) {
  run_filter filter;
  std::set<run_state> seen;
  for (auto& [key, value] : t.query) {
    if (key == "experiment") {
      filter.experiment = value;
      continue;
    }
    if (key != "state")
      continue;
    std::string_view rest = value;
    while (!rest.empty()) {
      auto comma = rest.find(',');
      auto name = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{}
                                             : rest.substr(comma + 1);
      if (name.empty())
        continue;
      auto state = parse_run_state(name);
      if (!state)
        return r->error(
            make_error(ec::bad_request,
                       "state: unknown state '" + std::string(name)
                           + "' (known: queued, starting, running, paused, "
                             "stopping, stopped, finished, failed)"));
      if (seen.insert(*state).second)
        filter.states.push_back(*state);
    }
  }
  auto* cache = backend.listings();
  // The answer depends on the filter alone (not on the token).
  std::string query;
  for (auto& [key, value] : t.query)
    if (key != "access_token")
      query += key + '\x1f' + value + '\x1e';
  auto generation = cache ? cache->generation() : 0;
  auto serialize = [](std::vector<run_view>& views) {
    json runs = json::array();
    for (auto& v : views)
      runs.push_back(summary_json(std::move(v)));
    return json_text({{"runs", std::move(runs)}});
  };

  if (auto hit = cache ? cache->find(query) : std::nullopt) {
    if (hit->refresh)
      // Older than a second: answered now, made anew for the next ones.
      backend.list_runs(filter, [cache, query, generation,
                                 serialize](result<std::vector<run_view>> res) {
        if (res)
          cache->store(query, generation, serialize(*res));
      });
    return r->raw_json_reply(http::status::ok, std::move(hit->body));
  }
  backend.list_runs(std::move(filter), [r, cache, query, generation, serialize](
                                           result<std::vector<run_view>> res) {
    if (!res)
      return r->error(res.error());
    auto body = serialize(*res);
    if (cache)
      cache->store(query, generation, body);
    r->raw_json_reply(http::status::ok, std::move(body));
  });
}

result<std::size_t> parse_count(std::string_view name, const std::string& v,
                                std::size_t max) {
  std::size_t n = 0;
  auto [end, err] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || err != std::errc{} || end != v.data() + v.size())
    return make_error(ec::bad_request, std::string(name)
                                           + ": expected a whole number ≥ 0, "
                                             "got '"
                                           + v + "'");
  if (n > max)
    return make_error(ec::bad_request, std::string(name) + ": at most "
                                           + std::to_string(max) + ", got "
                                           + v);
  return n;
}

result<bool> follow_flag(const parsed_target& t, bool fallback) {
  if (auto* v = t.param("follow"))
    return parse_flag("follow", *v);
  return fallback;
}

/// The SSE response head; the body ends with the connection.
response sse_head(unsigned version) {
  response head{http::status::ok, version};
  head.set(http::field::content_type, "text/event-stream; charset=utf-8");
  // Nginx and friends buffer responses unless told not to.
  head.set("X-Accel-Buffering", "no");
  head.keep_alive(false);
  return head;
}

std::optional<std::string>
last_event_id(const http::request<http::string_body>& req) {
  auto it = req.find("Last-Event-ID");
  if (it == req.end())
    return std::nullopt;
  return std::string(trim(sv(it->value())));
}

/// GET /runs/{id}/logs: a page as JSON, or with follow an SSE stream.
void handle_logs(http::request<http::string_body>& req, const parsed_target& t,
                 const route& rt, api_backend& backend,
                 const responder_ptr& r) {
  log_query q;
  if (auto* v = t.param("stream")) {
    if (*v == "stdout")
      q.streams = {true, false};
    else if (*v == "stderr")
      q.streams = {false, true};
    else if (*v != "all")
      return r->error(make_error(ec::bad_request,
                                 "stream: expected stdout, stderr or all, got '"
                                     + *v + "'"));
  }
  if (auto* v = t.param("tail")) {
    auto n = parse_count("tail", *v, 100000);
    if (!n)
      return r->error(n.error());
    q.tail = *n;
  }
  auto since = t.param("since");
  auto resume = last_event_id(req);
  if (resume && !resume->empty())
    since = &*resume; // a reconnecting EventSource knows better
  if (since) {
    auto c = parse_cursor(*since);
    if (!c)
      return r->error(make_error(
          ec::bad_request, "since: '" + *since
                               + "' is not a cursor (use the 'cursor' of a "
                                 "previous answer, or an SSE id)"));
    q.since = *c;
  }
  auto follow = follow_flag(t, false);
  if (!follow)
    return r->error(follow.error());
  if (!*follow)
    return backend.logs(rt.id, q, [r](result<log_answer> res) {
      if (!res)
        return r->error(res.error());
      json lines = json::array();
      for (auto& l : res->lines)
        lines.push_back(log_line_json(l));
      r->json_reply(http::status::ok, {{"lines", std::move(lines)},
                                       {"cursor", format_cursor(res->cursor)}});
    });
  // The first answer comes before the stream starts: an unknown run gets
  // its 404 instead of an event-stream head.
  backend.logs(rt.id, q,
               [r, &backend, id = rt.id, q](result<log_answer> res) mutable {
                 if (!res)
                   return r->error(res.error());
                 r->stream(sse_head(r->version()),
                           log_event_stream(backend, std::move(id),
                                            std::move(q), std::move(*res)));
               });
}

result<std::optional<std::uint64_t>>
event_position(const http::request<http::string_body>& req) {
  auto id = last_event_id(req);
  if (!id || id->empty())
    return std::optional<std::uint64_t>{};
  std::uint64_t n = 0;
  auto [end, err] = std::from_chars(id->data(), id->data() + id->size(), n);
  if (err != std::errc{} || end != id->data() + id->size())
    return make_error(ec::bad_request,
                      "Last-Event-ID: expected an event number, got '" + *id
                          + "'");
  return std::optional<std::uint64_t>{n};
}

/// GET /runs/{id}/events (id set) and GET /events (id empty).
void handle_events(http::request<http::string_body>& req,
                   const parsed_target& t, const std::string& id,
                   api_backend& backend, const responder_ptr& r) {
  auto follow = follow_flag(t, id.empty());
  if (!follow)
    return r->error(follow.error());
  auto after = event_position(req);
  if (!after)
    return r->error(after.error());
  if (!*follow) {
    event_query q;
    q.after = *after;
    return backend.events(id, q, [r](result<event_answer> res) {
      if (!res)
        return r->error(res.error());
      json events = json::array();
      for (auto& e : res->events)
        events.push_back(to_json(e));
      r->json_reply(http::status::ok, {{"events", std::move(events)}});
    });
  }
  event_query q;
  q.after = *after;
  // As for logs: the first answer decides between a 404 and a stream.
  backend.events(id, q, [r, &backend, id](result<event_answer> res) mutable {
    if (!res)
      return r->error(res.error());
    r->stream(sse_head(r->version()),
              event_stream(backend, std::move(id), std::move(*res)));
  });
}

/// GET /runs/{id}/artifacts/{name}: the file, or the requested range.
void handle_download(http::request<http::string_body>& req, const route& rt,
                     api_backend& backend, const responder_ptr& r) {
  std::string range;
  if (auto it = req.find(http::field::range); it != req.end())
    range = std::string(sv(it->value()));
  backend.artifact_file(rt.id, rt.action, [r, range](result<artifact> res) {
    if (!res)
      return r->error(res.error());
    // The path is resolved already: a symlink here was swapped in since.
    unique_fd fd{::open(res->path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW)};
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return r->error(make_error(ec::not_found, "artifact '" + res->name
                                                    + "' cannot be read: "
                                                    + std::strerror(errno)));
    auto size = static_cast<std::uint64_t>(st.st_size);
    auto part = parse_range(range, size);
    if (!part)
      return r->error(part.error(), {{http::field::content_range,
                                      "bytes */" + std::to_string(size)}});
    std::uint64_t first = 0;
    std::uint64_t length = size;
    response head{http::status::ok, r->version()};
    if (*part) {
      first = (*part)->first;
      length = (*part)->last - first + 1;
      head.result(http::status::partial_content);
      head.set(http::field::content_range, "bytes " + std::to_string(first)
                                               + "-"
                                               + std::to_string((*part)->last)
                                               + "/" + std::to_string(size));
    }
    head.set(http::field::content_type,
             std::string(content_type_for(res->name)));
    head.set(http::field::accept_ranges, "bytes");
    head.set(http::field::content_length, std::to_string(length));
    auto base = res->name.substr(res->name.rfind('/') + 1);
    std::string quoted;
    for (char c : base)
      if (c != '"' && c != '\\' && static_cast<unsigned char>(c) >= 0x20)
        quoted += c;
    head.set(http::field::content_disposition,
             "inline; filename=\"" + quoted + "\"");
    head.keep_alive(r->keep_alive());
    r->stream(std::move(head), file_stream(std::move(fd), first, length));
  });
}

void handle_run_action(http::request<http::string_body>& req, const route& rt,
                       api_backend& backend, const responder_ptr& r) {
  if (rt.action == "stop") {
    auto stop = parse_stop(req);
    if (!stop)
      return r->error(stop.error());
    return backend.stop(rt.id, *stop, reply_with(r, summary_json));
  }
  if (auto err = check_no_body(req, rt.action))
    return r->error(*err);
  if (rt.action == "pause")
    backend.pause(rt.id, reply_with(r, summary_json));
  else if (rt.action == "resume")
    backend.resume(rt.id, reply_with(r, summary_json));
  else
    backend.restart(rt.id, [r](result<run_view> res) {
      if (!res)
        return r->error(res.error());
      r->json_reply(http::status::created, to_json(*res));
    });
}

// -- dashboard ---------------------------------------------------------------

/// The dashboard loads only its own scripts and styles, and no other site
/// may frame it. On every static file: harmless where it does not apply.
constexpr const char* dashboard_csp
    = "default-src 'self'; script-src 'self'; style-src 'self' "
      "'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
      "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
      "form-action 'none'";

/// The embedded file a non-API path names: "/" is index.html. Lookup is
/// by exact path in the embedded table, so ".." reaches nothing.
const static_asset* dashboard_file(const parsed_target& t) {
  auto& s = t.segments;
  if (s.front() == "api")
    return nullptr;
  if (s.size() == 1 && s[0].empty())
    return find_static_asset("index.html");
  // "//index.html" or "/assets/" name no file.
  if (std::find(s.begin(), s.end(), "") != s.end())
    return nullptr;
  return find_static_asset(join(s, "/"));
}

/// True when an If-None-Match header lists `etag` (weak comparison, as
/// RFC 9110 asks for If-None-Match) or is "*".
bool etag_matches(const http::request<http::string_body>& req,
                  std::string_view etag) {
  for (auto [it, end] = req.equal_range(http::field::if_none_match); it != end;
       ++it) {
    auto value = sv(it->value());
    while (!value.empty()) {
      auto comma = value.find(',');
      auto item = trim(value.substr(0, comma));
      value = comma == std::string_view::npos ? std::string_view{}
                                              : value.substr(comma + 1);
      if (item.starts_with("W/"))
        item.remove_prefix(2);
      if (item == "*" || item == etag)
        return true;
    }
  }
  return false;
}

/// GET or HEAD of a dashboard file, no auth (DESIGN.md): no-cache with an
/// ETag, so a browser always asks and mostly gets a 304.
void serve_static(const http::request<http::string_body>& req,
                  const parsed_target& t, const static_asset& file,
                  const responder_ptr& r) {
  auto method = req.method();
  if (method != http::verb::get && method != http::verb::head)
    return r->error(make_error(ec::method_not_allowed,
                               "method " + std::string(sv(req.method_string()))
                                   + " is not allowed on " + t.path
                                   + " (allowed: GET, HEAD)"),
                    {{http::field::allow, "GET, HEAD"}});
  bool fresh = etag_matches(req, file.etag);
  response res{fresh ? http::status::not_modified : http::status::ok,
               r->version()};
  auto beast_sv = [](std::string_view s) {
    return boost::beast::string_view(s.data(), s.size());
  };
  res.set(http::field::content_type, beast_sv(file.content_type));
  res.set(http::field::etag, beast_sv(file.etag));
  res.set(http::field::cache_control, "no-cache");
  res.set("Referrer-Policy", "no-referrer");
  res.set("Content-Security-Policy", dashboard_csp);
  if (!fresh) {
    res.content_length(file.body.size());
    if (method == http::verb::get)
      res.body().assign(file.body);
  }
  res.keep_alive(r->keep_alive());
  r->exact_reply(std::move(res));
}

void dispatch(http::request<http::string_body>& req, api_backend& backend,
              const router_config& cfg, const responder_ptr& r) {
  // Host and Origin first, for every path: a page on another site learns
  // nothing, not even whether a path exists.
  if (auto err = check_origin(req, cfg))
    return r->error(*err);
  if (req.body().size() > cfg.body_limit)
    return r->error(
        make_error(ec::payload_too_large,
                   "request body of " + std::to_string(req.body().size())
                       + " bytes exceeds the limit of "
                       + std::to_string(cfg.body_limit) + " bytes"));
  auto target = parse_target(sv(req.target()));
  if (!target)
    return r->error(target.error());
  auto& t = *target;
  bool is_api = t.segments.size() >= 2 && t.segments[0] == "api"
                && t.segments[1] == "v1";
  if (is_api)
    if (auto err = check_auth(req, cfg, t))
      return r->error(*err,
                      {{http::field::www_authenticate,
                        err->message == "invalid token"
                            ? R"(Bearer realm="corral", error="invalid_token")"
                            : R"(Bearer realm="corral")"}});
  auto rt = match(t.segments);
  if (rt.kind == route_kind::none) {
    if (auto* file = dashboard_file(t))
      return serve_static(req, t, *file, r);
    return r->error(make_error(ec::not_found, "no such path: " + t.path));
  }
  if (std::find(rt.methods.begin(), rt.methods.end(), req.method())
      == rt.methods.end()) {
    auto allow = allow_header(rt.methods);
    return r->error(make_error(ec::method_not_allowed,
                               "method " + std::string(sv(req.method_string()))
                                   + " is not allowed on " + t.path
                                   + " (allowed: " + allow + ")"),
                    {{http::field::allow, allow}});
  }
  if (!req.body().empty()) {
    auto m = body_media(req);
    if (m != media::json && m != media::yaml)
      return r->error(make_error(
          ec::unsupported_media_type,
          m == media::none
              ? "a request body needs a Content-Type: application/json or "
                "application/yaml"
              : "unsupported Content-Type '"
                    + std::string(sv(req[http::field::content_type]))
                    + "': send application/json or application/yaml"));
  }
  switch (rt.kind) {
    case route_kind::healthz:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return r->json_reply(http::status::ok, {{"ok", true}});
    case route_kind::experiments:
      if (auto err = check_params(t, {"dry_run"}))
        return r->error(*err);
      return handle_submit(req, t, backend, cfg, r);
    case route_kind::runs:
      if (auto err = check_params(t, {"state", "experiment"}))
        return r->error(*err);
      return handle_list(t, backend, r);
    case route_kind::run:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      if (req.method() == http::verb::delete_)
        return backend.remove(rt.id, [r](result<ok_t> res) {
          if (!res)
            return r->error(res.error());
          r->no_content();
        });
      return backend.get_run(
          rt.id, reply_with(r, [](run_view v) { return to_json(v); }));
    case route_kind::run_action:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return handle_run_action(req, rt, backend, r);
    case route_kind::run_events:
    case route_kind::all_events:
      if (auto err = check_params(t, {"follow"}))
        return r->error(*err);
      return handle_events(req, t, rt.id, backend, r);
    case route_kind::run_logs:
      if (auto err = check_params(t, {"stream", "tail", "since", "follow"}))
        return r->error(*err);
      return handle_logs(req, t, rt, backend, r);
    case route_kind::run_metrics:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return backend.metrics(rt.id, [r](result<json> res) {
        if (!res)
          return r->error(res.error());
        r->json_reply(http::status::ok, *res);
      });
    case route_kind::run_artifacts:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return backend.artifacts(rt.id, [r](result<artifact_report> res) {
        if (!res)
          return r->error(res.error());
        r->json_reply(http::status::ok, artifacts_json(res->files));
      });
    case route_kind::run_artifact:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return handle_download(req, rt, backend, r);
    case route_kind::gpus:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return backend.gpus([r](result<gpu_report> res) {
        if (!res)
          return r->error(res.error());
        r->json_reply(http::status::ok,
                      {{"gpus", gpu_rows_json(*res)}, {"source", res->source}});
      });
    case route_kind::node:
      if (auto err = check_params(t, {}))
        return r->error(*err);
      return backend.node([r](result<node_report> res) {
        if (!res)
          return r->error(res.error());
        auto& n = res->node;
        r->json_reply(http::status::ok, {{"cpus", n.cpus},
                                         {"cpu_pct", n.cpu_pct},
                                         {"load", n.load},
                                         {"memory_total", n.memory_total},
                                         {"memory_used", n.memory_used},
                                         {"gpus", gpu_rows_json(res->gpus)},
                                         {"gpu_source", res->gpus.source}});
      });
    case route_kind::none:
      break;
  }
}

/// "Host" → "host:port" in lower case, with HTTP's default port made
/// explicit so "localhost" and "localhost:80" compare equal.
std::string normalize_host(std::string_view host) {
  auto h = lower(trim(host));
  if (h.empty())
    return h;
  bool has_port = false;
  if (h.front() == '[') {
    auto close = h.find(']');
    has_port = close != std::string::npos && close + 1 < h.size()
               && h[close + 1] == ':';
  } else {
    has_port = h.find(':') != std::string::npos;
  }
  if (!has_port)
    h += ":80";
  return h;
}

std::string port_of(const std::string& normalized) {
  return normalized.substr(normalized.rfind(':') + 1);
}

} // namespace

std::optional<std::string> url_decode(std::string_view s, bool plus_is_space) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%') {
      if (i + 2 >= s.size())
        return std::nullopt;
      int hi = hex(s[i + 1]);
      int lo = hex(s[i + 2]);
      if (hi < 0 || lo < 0)
        return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (s[i] == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

response error_response(const corral::error& err, unsigned version,
                        bool keep_alive) {
  auto res = json_response(static_cast<http::status>(http_status(err.code)),
                           error_json(err), version, keep_alive);
  finish_response(res);
  return res;
}

bool is_allowed_host(const router_config& cfg, std::string_view host) {
  auto h = normalize_host(host);
  if (h.empty())
    return false;
  for (auto& allowed : cfg.allowed_hosts) {
    auto a = normalize_host(allowed);
    if (a == h)
      return true;
    auto port = port_of(a);
    if (h == "localhost:" + port || h == "127.0.0.1:" + port
        || h == "[::1]:" + port)
      return true;
  }
  return false;
}

namespace {

/// Pulls a streamed body to its end into one response.
struct collector : std::enable_shared_from_this<collector> {
  response head;
  std::shared_ptr<body_source> body;
  std::function<void(response)> send;

  void pull() {
    body->next([self = shared_from_this()](body_source::piece p) {
      if (!p) {
        self->head.prepare_payload();
        return self->send(std::move(self->head));
      }
      self->head.body() += *p;
      self->pull();
    });
  }
};

} // namespace

void handle_request(http::request<http::string_body>&& req,
                    api_backend& backend, const router_config& cfg,
                    std::function<void(response)> send) {
  auto stream = [send](streamed_response s) {
    auto c = std::make_shared<collector>();
    c->head = std::move(s.head);
    c->body = std::move(s.body);
    c->send = send;
    c->pull();
  };
  handle_request(std::move(req), backend, cfg, send, std::move(stream));
}

void handle_request(http::request<http::string_body>&& req,
                    api_backend& backend, const router_config& cfg,
                    std::function<void(response)> send,
                    std::function<void(streamed_response)> stream) {
  auto r = std::make_shared<responder>(std::move(send), std::move(stream),
                                       req.version(), req.keep_alive());
  try {
    dispatch(req, backend, cfg, r);
  } catch (const std::exception& e) {
    r->error(make_error(ec::internal, e.what()));
  } catch (...) {
    r->error(make_error(ec::internal, "unknown error"));
  }
}

} // namespace corral::gateway
