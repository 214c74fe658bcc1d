#include "services/spec.hpp"

#include "services/named_regex.hpp"
#include "services/pidfd.hpp"
#include "services/placeholders.hpp"
#include "services/units.hpp"

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <system_error>

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

namespace corral {

namespace {

namespace fs = std::filesystem;

// A sweep beyond this is a typo in a matrix, and would flood the registry.
constexpr std::size_t max_runs_per_file = 10'000;
// Run ids name directories; room is left for the registry's "-N" suffix.
constexpr std::size_t max_id_length = 200;
constexpr std::size_t max_name_length = 100;

constexpr std::string_view reserved_placeholders[]
    = {"run", "experiment", "latest_checkpoint"};

// Thrown by the validators below and turned into an error value by
// parse_experiments(): the first problem ends validation, and an exception
// keeps each of the many checks a single line.
struct spec_error {
  error err;
};

std::string location(const std::string& path, const YAML::Mark& mark) {
  auto out = path.empty() ? std::string{"document"} : path;
  if (!mark.is_null())
    out += " (line " + std::to_string(mark.line + 1) + ", column "
           + std::to_string(mark.column + 1) + ")";
  return out;
}

[[noreturn]] void fail(const std::string& path, const YAML::Mark& mark,
                       const std::string& message) {
  if (path.empty() && mark.is_null())
    throw spec_error{make_error(ec::invalid_spec, message)};
  throw spec_error{
      make_error(ec::invalid_spec, location(path, mark) + ": " + message)};
}

std::string join(std::span<const std::string> items, std::string_view sep) {
  std::string out;
  for (auto& item : items) {
    if (!out.empty())
      out += sep;
    out += item;
  }
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    auto diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      auto above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

/// The candidate closest to `word`, if it is close enough to be a typo.
std::optional<std::string> closest(std::string_view word,
                                   std::span<const std::string> candidates) {
  std::optional<std::string> best;
  auto best_distance = std::min<std::size_t>(2, word.size() / 2) + 1;
  for (auto& c : candidates) {
    auto d = edit_distance(word, c);
    if (d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

/// How a node looks, for "expected X, got Y".
std::string kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "no value";
  }
}

/// A node and the key path that leads to it.
struct field {
  std::string path;
  YAML::Node node;
  YAML::Mark key_mark = YAML::Mark::null_mark();

  /// Where to point a user: a missing value's own mark is that of the next
  /// token (often the next line), so point at its key instead.
  YAML::Mark mark() const {
    return node.IsNull() && !key_mark.is_null() ? key_mark : node.Mark();
  }
  [[noreturn]] void fail(const std::string& message) const {
    corral::fail(path, mark(), message);
  }
  field item(std::size_t i) const {
    // Through a const node: yaml-cpp's non-const operator[] may insert.
    const YAML::Node& seq = node;
    return field{path + "[" + std::to_string(i) + "]", seq[i]};
  }
};

struct entry {
  std::string key;
  YAML::Mark key_mark;
  field value;
};

std::string child_path(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

/// The entries of a map in file order, each key checked against `allowed`
/// (any key when empty) and for duplicates, which YAML forbids but
/// yaml-cpp accepts.
/// `misplaced` may name where a key not allowed here belongs instead.
std::vector<entry>
map_entries(const field& f, std::span<const std::string_view> allowed,
            const std::string& expected,
            std::string (*misplaced)(std::string_view key) = nullptr) {
  if (!f.node.IsMap())
    f.fail("expected " + expected + ", got " + kind(f.node));
  std::vector<entry> out;
  for (auto kv : f.node) {
    if (!kv.first.IsScalar())
      fail(f.path, kv.first.Mark(),
           "expected a key name, got " + kind(kv.first));
    auto key = kv.first.Scalar();
    auto path = child_path(f.path, key);
    auto mark = kv.first.Mark();
    for (auto& e : out)
      if (e.key == key)
        fail(path, mark,
             "duplicate key '" + key + "' (first on line "
                 + std::to_string(e.key_mark.line + 1) + ")");
    if (!allowed.empty()
        && std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::vector<std::string> names(allowed.begin(), allowed.end());
      auto message = "unknown key '" + key + "'";
      auto home = misplaced ? misplaced(key) : std::string{};
      if (!home.empty())
        message += "; it belongs under " + home + ":";
      else if (auto hint = closest(key, names))
        message += "; did you mean '" + *hint + "'?";
      else
        message += "; expected one of: " + join(names, ", ");
      fail(path, mark, message);
    }
    out.push_back(entry{key, mark, field{path, kv.second, mark}});
  }
  return out;
}

const std::string& scalar(const field& f, const std::string& expected) {
  if (f.node.IsScalar())
    return f.node.Scalar();
  auto message = "expected " + expected + ", got " + kind(f.node);
  // The classic slip: an unquoted placeholder, which YAML reads as the
  // flow map {lr: null}.
  if (f.node.IsMap() && f.node.size() == 1) {
    auto kv = *f.node.begin();
    if (kv.first.IsScalar() && kv.second.IsNull())
      message += "; write \"{" + kv.first.Scalar()
                 + "}\" in quotes, or YAML reads it as a map";
  }
  f.fail(message);
}

/// A string that reaches execve (argv, environment, directory), where a
/// NUL byte would silently cut it short.
const std::string& exec_string(const field& f, const std::string& expected) {
  auto& s = scalar(f, expected);
  if (s.find('\0') != std::string::npos)
    f.fail("contains a NUL character");
  return s;
}

std::optional<long long> to_integer(std::string_view s) {
  if (!s.empty() && s.front() == '+')
    s.remove_prefix(1);
  long long v = 0;
  auto [ptr, err] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (err != std::errc{} || ptr != s.data() + s.size() || s.empty())
    return std::nullopt;
  return v;
}

std::optional<double> to_number(std::string_view s) {
  if (!s.empty() && s.front() == '+')
    s.remove_prefix(1);
  double v = 0;
  auto [ptr, err] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (err != std::errc{} || ptr != s.data() + s.size() || s.empty()
      || !std::isfinite(v))
    return std::nullopt;
  return v;
}

int integer_of(const field& f, long long min, const std::string& expected) {
  auto& s = scalar(f, expected);
  auto v = to_integer(s);
  if (!v || *v < min || *v > INT_MAX)
    f.fail("expected " + expected + ", got '" + s + "'");
  return static_cast<int>(*v);
}

double positive_number_of(const field& f) {
  auto& s = scalar(f, "a number > 0");
  auto v = to_number(s);
  if (!v || *v <= 0)
    f.fail("expected a number > 0, got '" + s + "'");
  return *v;
}

millis duration_of(const field& f) {
  auto d = parse_duration(scalar(f, "a duration (500ms, 30s, 5m, 1h30m)"));
  if (!d)
    f.fail(d.error().message);
  return *d;
}

int signal_of(const field& f, bool for_checkpoint) {
  auto& s = scalar(f, "a signal (SIGTERM, SIGUSR1, 15)");
  auto sig = parse_signal(s);
  if (!sig)
    f.fail("unknown signal '" + s
           + "' (use a name like SIGTERM or SIGUSR1, or a number)");
  // Corral pauses and resumes with these; as a stop signal they would leave
  // the run stopped but alive until the grace period ends.
  if (*sig == SIGSTOP || *sig == SIGCONT)
    f.fail(signal_name(*sig) + " pauses or resumes a process; it cannot ask "
           + (for_checkpoint ? "for a checkpoint" : "it to stop"));
  if (for_checkpoint && *sig == SIGKILL)
    f.fail("SIGKILL cannot be caught, so no checkpoint could be saved");
  return *sig;
}

/// A template string and where it stands, for placeholder errors.
struct template_ref {
  std::string path;
  YAML::Mark mark;
  std::string text;
};

const std::string& template_of(const field& f, const std::string& expected,
                               std::vector<template_ref>& templates) {
  auto& s = exec_string(f, expected);
  templates.push_back(template_ref{f.path, f.mark(), s});
  return s;
}

// ---- matrix ----

// A 1 MiB body could otherwise hold lists long enough to make the checks
// below take minutes; no sane matrix comes near these. Each exclude is
// checked against each point, so excludes get the smaller bound.
constexpr std::size_t max_list_length = max_runs_per_file;
constexpr std::size_t max_excludes = 1'000;

/// A value's identity for matching: numbers by value, so an exclude of
/// `lr: 1e-3` matches a matrix value written `0.001`; anything else by its
/// text.
std::string canonical(const std::string& value) {
  auto x = to_number(value);
  if (!x)
    return "s" + value;
  if (*x == 0)
    x = 0.0; // -0 is 0
  char buf[32];
  auto [end, err] = std::to_chars(buf, buf + sizeof buf, *x);
  return "n" + std::string(buf, end);
}

struct point_value {
  std::string key;
  std::string value; // as written in the file
  std::string canon; // canonical(value)
};

struct matrix_point {
  /// Axes in file order, then keys only an include adds.
  std::vector<point_value> values;
  /// "" for a point of the product, "include[2]" for an included one.
  std::string origin;
  /// For a point of the product, the index of its value in each axis.
  std::vector<std::size_t> at;
};

/// Identifies a point by its keys and values, for sets.
std::string point_key(const matrix_point& p) {
  std::string out;
  for (auto& v : p.values)
    out += v.key + '\0' + v.canon + '\0';
  return out;
}

void check_matrix_key(const std::string& key, const std::string& path,
                      const YAML::Mark& mark) {
  if (!is_placeholder_name(key))
    fail(path, mark,
         "matrix key '" + key
             + "' must work as a placeholder: letters, digits and _, not "
               "starting with a digit");
  for (auto reserved : reserved_placeholders)
    if (key == reserved)
      fail(path, mark,
           "matrix key '" + key + "' is reserved: Corral fills {" + key
               + "} itself");
}

void check_list_length(const field& f, std::size_t max = max_list_length,
                       const std::string& advice = "") {
  if (f.node.size() > max)
    f.fail("the list has more than " + std::to_string(max) + " entries"
           + advice);
}

point_value value_of(const entry& e) {
  auto& v = scalar(e.value, "a value (a string or a number)");
  return point_value{e.key, v, canonical(v)};
}

struct axis {
  std::string name;
  std::vector<std::string> values;
  std::vector<std::string> canons;
};

std::vector<axis> parse_axes(const std::vector<entry>& entries) {
  std::vector<axis> axes;
  for (auto& e : entries) {
    if (e.key == "include" || e.key == "exclude")
      continue;
    check_matrix_key(e.key, e.value.path, e.key_mark);
    auto& node = e.value.node;
    if (node.IsScalar())
      e.value.fail("expected a non-empty list of values, got " + kind(node)
                   + " (write [" + node.Scalar() + "])");
    if (!node.IsSequence() || node.size() == 0)
      e.value.fail(
          "expected a non-empty list of values, got "
          + (node.IsSequence() ? std::string{"an empty list"} : kind(node)));
    check_list_length(e.value);
    axis a{e.key, {}, {}};
    std::map<std::string, std::size_t> seen; // canonical value → index
    for (std::size_t i = 0; i < node.size(); ++i) {
      auto item = e.value.item(i);
      auto& v = scalar(item, "a value (a string or a number)");
      auto [it, fresh] = seen.try_emplace(canonical(v), i);
      if (!fresh)
        item.fail("value '" + v + "' repeats " + e.key + "["
                  + std::to_string(it->second) + "]");
      a.values.push_back(v);
      a.canons.push_back(it->first);
    }
    axes.push_back(std::move(a));
  }
  return axes;
}

std::vector<matrix_point> product(const std::vector<axis>& axes) {
  std::vector<matrix_point> points;
  if (axes.empty())
    return points;
  // An odometer: the first axis turns slowest, as nested loops in file order.
  std::vector<std::size_t> at(axes.size(), 0);
  while (true) {
    matrix_point p;
    for (std::size_t k = 0; k < axes.size(); ++k)
      p.values.push_back(point_value{axes[k].name, axes[k].values[at[k]],
                                     axes[k].canons[at[k]]});
    p.at = at;
    points.push_back(std::move(p));
    auto k = axes.size();
    while (k > 0 && ++at[k - 1] == axes[k - 1].values.size())
      at[--k] = 0;
    if (k == 0)
      return points;
  }
}

const axis* find_axis(const std::vector<axis>& axes, const std::string& name) {
  for (auto& a : axes)
    if (a.name == name)
      return &a;
  return nullptr;
}

// Excludes see only points of the product (includes come after), so they
// match on value indices rather than text.
void apply_excludes(const field& f, const std::vector<axis>& axes,
                    std::vector<matrix_point>& points) {
  if (!f.node.IsSequence())
    f.fail("expected a list of maps of matrix values, got " + kind(f.node));
  check_list_length(f, max_excludes,
                    "; list the points to run with include instead");
  std::vector<std::string> axis_names;
  for (auto& a : axes)
    axis_names.push_back(a.name);
  // Per exclude: (axis index, value index) pairs a point must all have.
  std::vector<std::vector<std::pair<std::size_t, std::size_t>>> excludes;
  for (std::size_t i = 0; i < f.node.size(); ++i) {
    auto item = f.item(i);
    auto entries = map_entries(item, {}, "a map of matrix values");
    if (entries.empty())
      item.fail("an empty exclude would remove every point; name at least "
                "one matrix key");
    auto& match = excludes.emplace_back();
    for (auto& e : entries) {
      auto* a = find_axis(axes, e.key);
      if (!a)
        fail(e.value.path, e.key_mark,
             "'" + e.key + "' is not a matrix key; defined: "
                 + (axis_names.empty() ? std::string{"none"}
                                       : join(axis_names, ", ")));
      auto v = value_of(e);
      auto it = std::find(a->canons.begin(), a->canons.end(), v.canon);
      // A value that is not in the list can never match: surely a typo.
      if (it == a->canons.end())
        e.value.fail("'" + v.value + "' is not one of matrix." + a->name
                     + "'s values: " + join(a->values, ", "));
      match.emplace_back(static_cast<std::size_t>(a - axes.data()),
                         static_cast<std::size_t>(it - a->canons.begin()));
    }
  }
  std::erase_if(points, [&](const matrix_point& p) {
    return std::any_of(excludes.begin(), excludes.end(), [&](auto& match) {
      return std::all_of(match.begin(), match.end(),
                         [&](auto& m) { return p.at[m.first] == m.second; });
    });
  });
}

// Includes append points (after excludes, so an include can bring back an
// excluded one); one equal to an existing point adds nothing. Unlike GitHub
// Actions, an include never extends existing points with extra keys: it is
// always one point of its own.
void apply_includes(const field& f, const std::vector<axis>& axes,
                    std::vector<matrix_point>& points) {
  if (!f.node.IsSequence())
    f.fail("expected a list of maps of matrix values, got " + kind(f.node));
  check_list_length(f);
  std::set<std::string> existing;
  for (auto& p : points)
    existing.insert(point_key(p));
  for (std::size_t i = 0; i < f.node.size(); ++i) {
    auto item = f.item(i);
    auto entries = map_entries(item, {}, "a map of matrix values");
    if (entries.empty())
      item.fail("an include needs at least one key: value");
    matrix_point p;
    p.origin = "include[" + std::to_string(i) + "]";
    for (auto& e : entries) {
      check_matrix_key(e.key, e.value.path, e.key_mark);
      if (e.key == "include" || e.key == "exclude")
        fail(e.value.path, e.key_mark,
             "'" + e.key + "' cannot be a matrix key");
    }
    // Axes first in their order, so the run id reads like the others'.
    for (auto& a : axes)
      for (auto& e : entries)
        if (e.key == a.name)
          p.values.push_back(value_of(e));
    for (auto& e : entries)
      if (!find_axis(axes, e.key))
        p.values.push_back(value_of(e));
    if (existing.insert(point_key(p)).second)
      points.push_back(std::move(p));
  }
}

std::vector<matrix_point> parse_matrix(const field& f) {
  auto entries = map_entries(
      f, {}, "a map of name: [values], with optional include and exclude");
  auto axes = parse_axes(entries);
  std::size_t count = axes.empty() ? 0 : 1;
  for (auto& a : axes) {
    count *= a.values.size();
    if (count > max_runs_per_file)
      f.fail("the matrix expands to more than "
             + std::to_string(max_runs_per_file) + " runs");
  }
  auto points = product(axes);
  for (auto& e : entries)
    if (e.key == "exclude")
      apply_excludes(e.value, axes, points);
  for (auto& e : entries)
    if (e.key == "include")
      apply_includes(e.value, axes, points);
  if (points.empty())
    f.fail(axes.empty() ? "the matrix defines no values: give name: [values] "
                          "lists or include"
                        : "the matrix excludes every point");
  return points;
}

/// Every placeholder of every template must be defined at every point.
/// Each name is looked for once per distinct key list (all points of the
/// product share one), and the first undefined one in file order is named.
void check_placeholders(const std::vector<template_ref>& templates,
                        const std::vector<matrix_point>& points) {
  struct use {
    std::string name;
    const template_ref* where; // its first occurrence
  };
  std::vector<use> uses;
  std::set<std::string, std::less<>> seen;
  for (auto& t : templates)
    expand_placeholders(t.text, [&](std::string_view name) {
      if (seen.insert(std::string{name}).second)
        uses.push_back(use{std::string{name}, &t});
      return std::optional<std::string>{std::string{}};
    });
  if (uses.empty())
    return;
  std::set<std::string> key_lists;
  for (auto& p : points) {
    std::string key_list;
    for (auto& v : p.values)
      key_list += v.key + '\0';
    if (!key_lists.insert(key_list).second)
      continue;
    std::vector<std::string> defined;
    for (auto& v : p.values)
      defined.push_back(v.key);
    defined.insert(defined.end(), std::begin(reserved_placeholders),
                   std::end(reserved_placeholders));
    for (auto& u : uses) {
      if (std::find(defined.begin(), defined.end(), u.name) != defined.end())
        continue;
      auto message = "unknown placeholder {" + u.name
                     + "}; defined: " + join(defined, ", ");
      if (!p.origin.empty())
        message += " (at the point from matrix." + p.origin + ")";
      if (auto hint = closest(u.name, defined))
        message += "; did you mean {" + *hint + "}?";
      else
        message += "; write {{" + u.name + "}} for literal braces";
      fail(u.where->path, u.where->mark, message);
    }
  }
}

// ---- run ids ----

// Run ids keep to [a-z0-9._-]: letters are lowercased, and each run of other
// characters becomes one '_' ("/data/x" → "_data_x", "Adam W" → "adam_w"),
// which reads better than dropping them and keeps distinct values distinct
// more often than not. Collisions left over are the registry's to suffix.
std::string sanitize(std::string_view s) {
  std::string out;
  bool replaced = false;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 'A' && c <= 'Z')
      c = static_cast<unsigned char>(c - 'A' + 'a');
    bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
                || c == '_' || c == '-';
    if (keep) {
      out += static_cast<char>(c);
      replaced = false;
    } else if (!replaced) {
      out += '_';
      replaced = true;
    }
  }
  return out;
}

/// "ppo-cartpole-lr0.001-seed2" for a point, the bare name without one.
std::string make_id(const std::string& name, const matrix_point& p) {
  auto id = name;
  for (auto& v : p.values)
    id += "-" + sanitize(v.key + v.value);
  if (id.size() > max_id_length)
    id.resize(max_id_length);
  return id;
}

// ---- sections ----

constexpr std::string_view experiment_keys[] = {
    "name",           "command", "cwd",         "env",
    "gpus",           "cpus",    "memory",      "priority",
    "max_concurrent", "matrix",  "stop",        "progress",
    "artifacts",      "restart", "max_runtime", "executor",
    "slurm",
};

constexpr std::string_view stop_keys[]
    = {"signal", "mode", "grace", "checkpoint_signal", "checkpoint_timeout"};
constexpr std::string_view progress_keys[]
    = {"format", "counter", "total", "file", "pattern"};
constexpr std::string_view artifacts_keys[] = {"checkpoints", "videos"};
constexpr std::string_view restart_keys[] = {"policy", "max", "backoff"};
constexpr std::string_view slurm_keys[]
    = {"partition", "account", "qos", "time", "extra_args"};

/// The section an experiment-level key that is not one belongs to.
std::string section_of(std::string_view key) {
  auto in = [&](std::span<const std::string_view> keys) {
    return std::find(keys.begin(), keys.end(), key) != keys.end();
  };
  if (in(stop_keys))
    return "stop";
  if (in(progress_keys))
    return "progress";
  if (in(artifacts_keys))
    return "artifacts";
  if (in(restart_keys))
    return "restart";
  // Not `time`: at this level it is as likely meant as max_runtime.
  if (key != "time" && in(slurm_keys))
    return "slurm";
  if (key == "include" || key == "exclude")
    return "matrix";
  return {};
}

std::string parse_name(const field& f) {
  auto& name = scalar(f, "a name");
  auto ok = !name.empty() && name.size() <= max_name_length;
  for (char c : name)
    ok = ok
         && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.'
             || c == '_' || c == '-');
  // A leading '.' or '-' would make a hidden directory or look like a flag.
  ok = ok && name.front() != '.' && name.front() != '-' && name.front() != '_';
  if (!ok)
    f.fail("invalid name '" + name
           + "' (use lowercase letters, digits, '.', '_' and '-', starting "
             "with a letter or digit, at most "
           + std::to_string(max_name_length) + " characters)");
  return name;
}

std::vector<std::string> parse_command(const field& f,
                                       std::vector<template_ref>& templates) {
  if (f.node.IsScalar()) {
    // The classic slip: a shell line where an argv is expected.
    std::vector<std::string> words;
    std::string word;
    for (char c : f.node.Scalar() + " ") {
      if (c != ' ') {
        word += c;
      } else if (!word.empty()) {
        words.push_back(word);
        word.clear();
      }
    }
    f.fail("expected a list of strings (an argv; no shell runs it), got "
           + kind(f.node) + "; write [" + join(words, ", ") + "]");
  }
  if (!f.node.IsSequence())
    f.fail("expected a non-empty list of strings, got " + kind(f.node));
  if (f.node.size() == 0)
    f.fail("expected a non-empty list of strings: the program and its "
           "arguments");
  std::vector<std::string> command;
  for (std::size_t i = 0; i < f.node.size(); ++i) {
    auto item = f.item(i);
    command.push_back(template_of(item, "a string", templates));
  }
  if (command.front().empty())
    f.item(0).fail("the program name must not be empty");
  return command;
}

std::map<std::string, std::string>
parse_env(const field& f, std::vector<template_ref>& templates) {
  std::map<std::string, std::string> env;
  for (auto& e : map_entries(f, {}, "a map of NAME: value")) {
    if (e.key.empty() || e.key.find_first_of("=") != std::string::npos
        || e.key.find('\0') != std::string::npos)
      fail(e.value.path, e.key_mark, "invalid variable name '" + e.key + "'");
    // Corral sets these after the experiment's env, so a value here would be
    // silently lost.
    if (e.key == "CUDA_VISIBLE_DEVICES")
      fail(e.value.path, e.key_mark,
           "CUDA_VISIBLE_DEVICES is set by Corral from the GPUs it assigns; "
           "ask for them with gpus: N");
    if (e.key == "CORRAL_RUN_ID")
      fail(e.value.path, e.key_mark, "CORRAL_RUN_ID is set by Corral");
    env[e.key] = template_of(e.value, "a string value", templates);
  }
  return env;
}

stop_spec parse_stop(const field& f) {
  stop_spec stop;
  for (auto& e : map_entries(f, stop_keys, "a map")) {
    auto& v = e.value;
    if (e.key == "signal") {
      stop.signal = signal_of(v, false);
    } else if (e.key == "mode") {
      auto& mode = scalar(v, "main or tree");
      if (mode == "main")
        stop.mode = stop_mode::main;
      else if (mode == "tree")
        stop.mode = stop_mode::tree;
      else
        v.fail("expected main or tree, got '" + mode + "'");
    } else if (e.key == "grace") {
      stop.grace = duration_of(v);
    } else if (e.key == "checkpoint_signal") {
      stop.checkpoint_signal = signal_of(v, true);
    } else if (e.key == "checkpoint_timeout") {
      stop.checkpoint_timeout = duration_of(v);
    }
  }
  return stop;
}

constexpr std::string_view progress_formats[]
    = {"sb3", "jsonl", "kv", "csv", "regex"};

progress_spec parse_progress(const field& f,
                             std::vector<template_ref>& templates) {
  progress_spec progress;
  auto entries = map_entries(f, progress_keys, "a map");
  const entry* file = nullptr;
  const entry* pattern = nullptr;
  const entry* counter = nullptr;
  const entry* total = nullptr;
  for (auto& e : entries) {
    auto& v = e.value;
    if (e.key == "format") {
      auto& format = scalar(v, "a format");
      if (std::find(std::begin(progress_formats), std::end(progress_formats),
                    format)
          == std::end(progress_formats))
        v.fail("unknown format '" + format
               + "' (use sb3, jsonl, kv, csv or regex)");
      progress.format = format;
    } else if (e.key == "counter") {
      progress.counter = scalar(v, "a metric name");
      if (progress.counter.empty())
        v.fail("expected a metric name, got an empty string");
      counter = &e;
    } else if (e.key == "total") {
      progress.total = positive_number_of(v);
      total = &e;
    } else if (e.key == "file") {
      progress.file = template_of(v, "a file name", templates);
      if (progress.file.empty())
        v.fail("expected a file name, got an empty string");
      file = &e;
    } else if (e.key == "pattern") {
      progress.pattern = scalar(v, "a regex");
      pattern = &e;
    }
  }
  auto& format = progress.format;
  if (format.empty())
    f.fail("missing key 'format' (sb3, jsonl, kv, csv or regex)");
  if (format == "csv" && !file)
    f.fail("format csv needs 'file' (the CSV file to follow, relative to "
           "cwd)");
  if (file && format != "csv")
    fail(file->value.path, file->key_mark,
         "'file' applies only to format csv; " + format
             + " reads the run's output");
  if (format == "regex" && !pattern)
    f.fail("format regex needs 'pattern' (a regex with named groups, like "
           "step=(?<step>\\d+))");
  if (pattern && format != "regex")
    fail(pattern->value.path, pattern->key_mark,
         "'pattern' applies only to format regex");
  if (pattern) {
    auto re = compile_named_regex(progress.pattern);
    if (!re)
      pattern->value.fail(re.error().message);
    std::vector<std::string> names;
    for (auto& n : re->group_names)
      if (!n.empty())
        names.push_back(n);
    if (names.empty())
      pattern->value.fail("the pattern names no group; name the values to "
                          "read, like step=(?<step>\\d+)");
    if (counter
        && std::find(names.begin(), names.end(), progress.counter)
               == names.end())
      counter->value.fail("'" + progress.counter
                          + "' is not a group of the pattern; groups: "
                          + join(names, ", "));
  }
  if (total && !counter)
    fail(total->value.path, total->key_mark,
         "'total' needs 'counter' (the metric that counts toward it)");
  return progress;
}

artifacts_spec parse_artifacts(const field& f,
                               std::vector<template_ref>& templates) {
  artifacts_spec artifacts;
  for (auto& e : map_entries(f, artifacts_keys, "a map")) {
    auto& pattern = template_of(e.value, "a glob pattern", templates);
    if (pattern.empty())
      e.value.fail("expected a glob pattern, got an empty string");
    (e.key == "checkpoints" ? artifacts.checkpoints : artifacts.videos)
        = pattern;
  }
  return artifacts;
}

restart_spec parse_restart(const field& f) {
  restart_spec restart;
  for (auto& e : map_entries(f, restart_keys, "a map")) {
    auto& v = e.value;
    if (e.key == "policy") {
      auto& policy = scalar(v, "never, on-failure or always");
      if (policy == "never")
        restart.policy = restart_policy::never;
      else if (policy == "on-failure")
        restart.policy = restart_policy::on_failure;
      else if (policy == "always")
        restart.policy = restart_policy::always;
      else
        v.fail("expected never, on-failure or always, got '" + policy + "'");
    } else if (e.key == "max") {
      restart.max = integer_of(v, 0, "an integer >= 0");
    } else if (e.key == "backoff") {
      restart.backoff = duration_of(v);
    }
  }
  return restart;
}

constexpr std::string_view executors[] = {"local", "slurm"};

/// A partition, account or QOS name as sbatch takes it: one word that
/// cannot be read as an option; a partition may be a list ("a,b").
std::string slurm_name_of(const field& f, const std::string& what, bool list) {
  auto expected = (what == "account" ? "an " : "a ") + what + " name";
  auto& s = scalar(f, expected);
  if (s.empty())
    f.fail("expected " + expected + ", got an empty string");
  if (s.front() == '-')
    f.fail("invalid " + what + " '" + s + "': it must not start with '-'");
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= ' ' || c == 0x7f)
      f.fail("invalid " + what + " '" + s
             + "': it must not contain spaces or control characters");
    if (c == ',' && !list)
      f.fail("invalid " + what + " '" + s + "': name one " + what
             + ", without commas");
  }
  return s;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

/// Slurm's time formats, by shape: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S
/// (any number of digits each), UNLIMITED or INFINITE.
bool is_slurm_time(std::string_view s) {
  auto upper = std::string{s};
  for (auto& c : upper)
    if (c >= 'a' && c <= 'z')
      c = static_cast<char>(c - 'a' + 'A');
  if (upper == "UNLIMITED" || upper == "INFINITE")
    return true;
  auto dash = s.find('-');
  if (dash != std::string_view::npos) {
    if (!all_digits(s.substr(0, dash)))
      return false;
    s.remove_prefix(dash + 1);
  }
  std::size_t parts = 0;
  while (true) {
    auto colon = s.find(':');
    if (!all_digits(s.substr(0, colon)))
      return false;
    ++parts;
    if (colon == std::string_view::npos)
      break;
    s.remove_prefix(colon + 1);
  }
  return parts <= 3;
}

/// An sbatch option Corral sets itself, and what to write instead.
struct refused_option {
  std::string_view name; // long form, without "--"
  char letter;           // short form, or 0
  std::string_view instead;
};

constexpr refused_option refused_options[] = {
    {"output", 'o', "Corral collects the job's output into the run's logs"},
    {"error", 'e', "Corral collects the job's output into the run's logs"},
    {"parsable", 0, "Corral reads sbatch's answer itself"},
    {"wrap", 0, "the job runs the experiment's command"},
    {"chdir", 'D', "use cwd: instead"},
    {"export", 0, "use env: instead"},
    {"gres", 0, "use gpus: instead"},
    {"gpus", 'G', "use gpus: instead"},
    {"cpus-per-task", 'c', "use cpus: instead"},
    {"mem", 0, "use memory: instead"},
    {"partition", 'p', "use slurm.partition instead"},
    {"account", 'A', "use slurm.account instead"},
    {"qos", 'q', "use slurm.qos instead"},
    {"time", 't', "use slurm.time instead"},
    {"job-name", 'J', "Corral names the job after the run"},
    {"array", 'a', "a matrix becomes one job per run"},
};

/// sbatch's short options that take no value, so that another may follow
/// in the same word ("-Qo file").
constexpr std::string_view flag_letters = "hHOQsuvVW";

/// The option Corral sets itself that `arg` gives, if any: "--mem",
/// "--mem=4G", "-o", "-o/tmp/x", "-Qo/tmp/x", and abbreviations, which
/// sbatch (getopt_long) accepts: "--outp=x".
const refused_option* refused_option_of(std::string_view arg) {
  if (arg.starts_with("--")) {
    auto body = arg.substr(2);
    auto name = body.substr(0, body.find('='));
    if (name.empty())
      return nullptr;
    for (auto& r : refused_options)
      if (r.name.starts_with(name))
        return &r;
    return nullptr;
  }
  for (std::size_t i = 1; i < arg.size(); ++i) {
    for (auto& r : refused_options)
      if (r.letter != 0 && arg[i] == r.letter)
        return &r;
    if (flag_letters.find(arg[i]) == std::string_view::npos)
      return nullptr;
  }
  return nullptr;
}

std::vector<std::string> parse_extra_args(const field& f) {
  if (!f.node.IsSequence()) {
    auto message = "expected a list of strings (sbatch options, one per "
                   "item), got "
                   + kind(f.node);
    if (f.node.IsScalar())
      message += "; write [" + f.node.Scalar() + "]";
    f.fail(message);
  }
  check_list_length(f, 1'000);
  std::vector<std::string> args;
  for (std::size_t i = 0; i < f.node.size(); ++i) {
    auto item = f.item(i);
    auto& arg = exec_string(item, "an sbatch option");
    if (arg.size() < 2 || arg.front() != '-' || arg == "--") {
      auto message = "'" + arg
                     + "' is not an sbatch option; extra_args are passed "
                       "to sbatch as separate arguments, not through a "
                       "shell";
      // The likely slip: a value after its option, as on a command line.
      if (!args.empty() && args.back().starts_with("--")
          && args.back().find('=') == std::string::npos)
        message += "; write " + args.back() + "=" + arg;
      else
        message += ", so give an option its value with '=' "
                   "(--constraint=a100)";
      item.fail(message);
    }
    // The option's name, and for a short one the first character after it.
    auto name_end = arg.starts_with("--") ? arg.find('=') : 3;
    auto name = std::string_view{arg}.substr(0, name_end);
    if (name.find_first_of(" \t\n") != std::string_view::npos)
      item.fail("'" + arg
                + "' is one argument with a space in it; extra_args are "
                  "passed to sbatch as separate arguments, not through a "
                  "shell, so give an option its value with '=' "
                  "(--constraint=a100)");
    if (auto* r = refused_option_of(arg)) {
      auto long_name = "--" + std::string{r->name};
      auto message = "'" + arg + "'";
      if (arg != long_name)
        message += " (" + long_name + ")";
      item.fail(message + " is set by Corral; " + std::string{r->instead});
    }
    args.push_back(arg);
  }
  return args;
}

slurm_spec parse_slurm(const field& f) {
  slurm_spec slurm;
  for (auto& e : map_entries(f, slurm_keys, "a map of sbatch settings")) {
    auto& v = e.value;
    if (e.key == "partition") {
      slurm.partition = slurm_name_of(v, "partition", true);
    } else if (e.key == "account") {
      slurm.account = slurm_name_of(v, "account", false);
    } else if (e.key == "qos") {
      slurm.qos = slurm_name_of(v, "QOS", false);
    } else if (e.key == "time") {
      auto& time = scalar(v, "a Slurm time limit");
      if (!is_slurm_time(time))
        v.fail("invalid time '" + time
               + "'; Slurm takes minutes (90), M:S (10:00), H:M:S (1:00:00), "
                 "D-H (2-12), D-H:M (1-12:30), D-H:M:S (1-00:00:00), or "
                 "UNLIMITED");
      slurm.time = time;
    } else if (e.key == "extra_args") {
      slurm.extra_args = parse_extra_args(v);
    }
  }
  return slurm;
}

/// Appends the runs of one experiment to `out`; returns where its name is.
YAML::Mark parse_experiment(const field& f, const run_spec& defaults,
                            std::vector<run_spec>& out) {
  auto entries
      = map_entries(f, experiment_keys,
                    "an experiment (a map with name and command)", section_of);
  run_spec spec = defaults;
  std::vector<template_ref> templates;
  std::vector<matrix_point> points;
  YAML::Mark name_mark;
  bool has_name = false;
  bool has_command = false;
  std::optional<field> stop_field;
  const entry* slurm_entry = nullptr;
  for (auto& e : entries) {
    auto& v = e.value;
    if (e.key == "name") {
      spec.experiment = parse_name(v);
      name_mark = v.mark();
      has_name = true;
    } else if (e.key == "command") {
      spec.command = parse_command(v, templates);
      has_command = true;
    } else if (e.key == "cwd") {
      spec.cwd = template_of(v, "a directory", templates);
    } else if (e.key == "env") {
      spec.env = parse_env(v, templates);
    } else if (e.key == "gpus") {
      spec.gpus = integer_of(v, 0, "an integer >= 0");
    } else if (e.key == "cpus") {
      spec.cpus = positive_number_of(v);
    } else if (e.key == "memory") {
      auto size = parse_size(scalar(v, "a size (8G, 512M)"));
      if (!size)
        v.fail(size.error().message);
      if (*size == 0)
        v.fail("expected a size > 0, got '" + v.node.Scalar() + "'");
      spec.memory_bytes = *size;
    } else if (e.key == "priority") {
      spec.priority = integer_of(v, INT_MIN, "an integer");
    } else if (e.key == "max_concurrent") {
      spec.max_concurrent = integer_of(v, 1, "an integer >= 1");
    } else if (e.key == "matrix") {
      points = parse_matrix(v);
    } else if (e.key == "stop") {
      spec.stop = parse_stop(v);
      stop_field = v;
    } else if (e.key == "progress") {
      spec.progress = parse_progress(v, templates);
    } else if (e.key == "artifacts") {
      spec.artifacts = parse_artifacts(v, templates);
    } else if (e.key == "restart") {
      spec.restart = parse_restart(v);
    } else if (e.key == "max_runtime") {
      spec.max_runtime = duration_of(v);
      if (spec.max_runtime->count() == 0)
        v.fail("expected a duration > 0, got '" + v.node.Scalar() + "'");
    } else if (e.key == "executor") {
      auto& executor = scalar(v, "an executor name");
      if (std::find(std::begin(executors), std::end(executors), executor)
          == std::end(executors))
        v.fail("unknown executor '" + executor + "' (use local or slurm)");
      spec.executor = executor;
    } else if (e.key == "slurm") {
      spec.slurm = parse_slurm(v);
      slurm_entry = &e;
    }
  }
  if (!has_name)
    f.fail("missing required key 'name'");
  if (!has_command)
    f.fail("experiment '" + spec.experiment
           + "' is missing required key 'command'");
  // Without a pattern there is no way to see the checkpoint arrive, and
  // every stop would wait the whole checkpoint_timeout.
  if (stop_field && spec.stop.checkpoint_signal
      && spec.artifacts.checkpoints.empty())
    stop_field->fail("checkpoint_signal needs artifacts.checkpoints, the "
                     "pattern that shows when the checkpoint is saved");
  // Without executor: the daemon's default executor decides, which may be
  // slurm.
  if (slurm_entry && spec.executor == "local")
    fail(slurm_entry->value.path, slurm_entry->key_mark,
         "slurm: applies only to executor: slurm (this experiment sets "
         "executor: local)");
  if (points.empty())
    points.emplace_back();
  if (out.size() + points.size() > max_runs_per_file)
    f.fail("the file expands to more than " + std::to_string(max_runs_per_file)
           + " runs");
  check_placeholders(templates, points);
  for (auto& p : points) {
    auto& run = out.emplace_back(spec);
    run.id_base = make_id(spec.experiment, p);
    for (auto& v : p.values)
      run.matrix[v.key] = v.value;
  }
  return name_mark;
}

/// Notes where a document starts and whether it holds anything but null.
class content_probe : public YAML::EventHandler {
public:
  YAML::Mark start = YAML::Mark::null_mark();
  bool has_content = false;
  YAML::Mark mark = YAML::Mark::null_mark();

  void OnDocumentStart(const YAML::Mark& m) override { start = m; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { note(m); }
  void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                const std::string&) override {
    note(m);
  }
  void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    note(m);
  }
  void OnMapEnd() override {}

private:
  void note(const YAML::Mark& m) {
    if (!has_content) {
      has_content = true;
      mark = m;
    }
  }
};

/// yaml-cpp 0.7 reads some malformed text (a stray ',' at the top) as an
/// empty document. Text that holds more than comments, document markers,
/// directives and null is not empty: its first such character, from
/// `start` on, is where the syntax goes wrong.
std::optional<std::string> stray_content(std::string_view text,
                                         const YAML::Mark& start) {
  auto pos = static_cast<std::size_t>(std::max(start.pos, 0));
  text = pos < text.size() ? text.substr(pos) : std::string_view{};
  int line = std::max(start.line, 0) + 1;
  std::size_t offset = static_cast<std::size_t>(std::max(start.column, 0));
  while (!text.empty()) {
    auto end = text.find('\n');
    auto row = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view{}
                                         : text.substr(end + 1);
    auto column = row.find_first_not_of(" \t\r");
    if (column != std::string_view::npos) {
      auto rest = row.substr(column);
      if (rest.starts_with("--- ")) {
        auto skip = rest.find_first_not_of(' ', 4);
        column += skip == std::string_view::npos ? rest.size() : skip;
        rest = skip == std::string_view::npos ? std::string_view{}
                                              : rest.substr(skip);
      }
      while (
          !rest.empty()
          && (rest.back() == ' ' || rest.back() == '\t' || rest.back() == '\r'))
        rest.remove_suffix(1);
      bool blank = rest.empty() || rest.front() == '#' || rest.front() == '%'
                   || rest == "---" || rest == "..." || rest == "~"
                   || rest == "null" || rest == "Null" || rest == "NULL";
      if (!blank)
        return "YAML syntax error at line " + std::to_string(line) + ", column "
               + std::to_string(offset + column + 1) + ": unexpected '"
               + std::string{rest.front()} + "'";
    }
    ++line;
    offset = 0;
  }
  return std::nullopt;
}

/// Refuses a second document, or text yaml-cpp skipped as an empty one.
/// Not YAML::LoadAll: in yaml-cpp 0.7 a token the parser cannot place (a
/// stray ',') makes it return empty documents forever, allocating until
/// the daemon is out of memory (jbeder/yaml-cpp#1040, fixed upstream
/// after 0.8.0). Here each document is asked for once.
void check_single_document(const std::string& text) {
  std::istringstream in{text};
  YAML::Parser parser{in};
  content_probe first;
  content_probe second;
  if (!parser.HandleNextDocument(first) || !parser.HandleNextDocument(second))
    return;
  if (second.has_content)
    fail("", second.mark, "expected one YAML document, found a second one");
  if (auto syntax = stray_content(text, second.start))
    throw spec_error{make_error(ec::bad_request, *syntax)};
}

/// `p` without a trailing slash, "." or ".." components.
std::string normal_path(const fs::path& p) {
  auto s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/')
    s.pop_back();
  return s;
}

std::string current_dir() {
  std::error_code err;
  auto dir = fs::current_path(err);
  return err ? std::string{"/"} : dir.string();
}

} // namespace

result<std::vector<run_spec>>
parse_experiments(std::string_view text, const std::string& base_dir,
                  const std::map<std::string, std::string>& base_env) {
  run_spec defaults;
  // DESIGN.md: raw API posts without a directory use the daemon's own.
  if (base_dir.empty())
    defaults.base_dir = current_dir();
  else if (!fs::path{base_dir}.is_absolute())
    return make_error(ec::bad_request,
                      "base_dir '" + base_dir + "' must be an absolute path");
  else
    defaults.base_dir = normal_path(base_dir);
  defaults.base_env = base_env;

  try {
    std::string copy{text};
    auto doc = YAML::Load(copy);
    check_single_document(copy);
    if (doc.IsNull()) {
      if (auto syntax = stray_content(text, YAML::Mark{}))
        return make_error(ec::bad_request, *syntax);
      fail("", YAML::Mark::null_mark(),
           "the document is empty; expected 'experiments:' with a list of "
           "experiments");
    }
    constexpr std::string_view root_keys[] = {"experiments"};
    field root{"", doc};
    std::optional<field> experiments;
    for (auto& e : map_entries(root, root_keys, "a map with key 'experiments'"))
      experiments = e.value;
    if (!experiments)
      root.fail("missing key 'experiments' (a list of experiments)");
    auto& list = experiments->node;
    if (!list.IsSequence())
      experiments->fail("expected a list of experiments, got " + kind(list));
    if (list.size() == 0)
      experiments->fail("the list of experiments is empty");

    std::vector<run_spec> runs;
    // Experiment name → where it was first defined.
    std::map<std::string, std::pair<std::size_t, int>> names;
    for (std::size_t i = 0; i < list.size(); ++i) {
      auto item = experiments->item(i);
      auto first_run = runs.size();
      auto name_mark = parse_experiment(item, defaults, runs);
      auto& name = runs[first_run].experiment;
      auto [it, fresh] = names.try_emplace(name, i, name_mark.line);
      if (!fresh)
        fail(item.path + ".name", name_mark,
             "experiment name '" + name + "' is already used by experiments["
                 + std::to_string(it->second.first) + "] (line "
                 + std::to_string(it->second.second + 1) + ")");
    }
    return runs;
  } catch (const spec_error& e) {
    return e.err;
  } catch (const YAML::ParserException& e) {
    auto message = std::string{"YAML syntax error"};
    if (!e.mark.is_null())
      message += " at line " + std::to_string(e.mark.line + 1) + ", column "
                 + std::to_string(e.mark.column + 1);
    return make_error(ec::bad_request, message + ": " + e.msg);
  } catch (const YAML::Exception& e) {
    // Only a yaml-cpp bug could get here: every node is type-checked first.
    return make_error(ec::internal, std::string{"reading YAML: "} + e.what());
  }
}

void expand_run_placeholders(run_spec& spec, const std::string& run_id,
                             const std::string& latest_checkpoint) {
  auto lookup = [&](std::string_view name) -> std::optional<std::string> {
    if (name == "run")
      return run_id;
    if (name == "experiment")
      return spec.experiment;
    if (name == "latest_checkpoint")
      return latest_checkpoint;
    if (auto it = spec.matrix.find(std::string{name}); it != spec.matrix.end())
      return it->second;
    // parse_experiments() rejects undefined names; a spec made some other
    // way keeps the text as written rather than losing it.
    return "{" + std::string{name} + "}";
  };
  auto expand
      = [&](std::string& s) { s = expand_placeholders(s, lookup).text; };
  for (auto& arg : spec.command)
    expand(arg);
  for (auto& [name, value] : spec.env)
    expand(value);
  expand(spec.cwd);
  expand(spec.artifacts.checkpoints);
  expand(spec.artifacts.videos);
  expand(spec.progress.file);
  auto base = spec.base_dir.empty() ? current_dir() : spec.base_dir;
  // operator/ keeps an absolute cwd as it is.
  spec.cwd = normal_path(spec.cwd.empty() ? fs::path{base}
                                          : fs::path{base} / spec.cwd);
}

} // namespace corral
