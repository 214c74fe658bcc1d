#include "services/metrics.hpp"

#include "services/named_regex.hpp"
#include "services/text.hpp"
#include "services/unique_fd.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <limits>
#include <regex>

namespace corral {

namespace {

// Bounds that keep a misbehaving trainer from costing the daemon memory or
// time. A line longer than this is not a metrics line.
constexpr std::size_t max_line_bytes = 1 << 20;
// libstdc++'s std::regex recurses once per character: long lines would
// overflow the stack, and no metrics line is this long.
constexpr std::size_t max_regex_line_bytes = 16 * 1024;
constexpr std::size_t max_keys_per_record = 1024;
constexpr std::size_t max_key_bytes = 256;
constexpr int max_json_depth = 8;

// ---------------------------------------------------------------- text --

/// A whole token as a number: ints, decimals, scientific, nan and inf,
/// with an optional sign. "1.82ms", "100%" or "0x10" are not numbers.
std::optional<double> parse_number(std::string_view s) {
  s = trim(s);
  if (s.size() > 1 && s.front() == '+' && s[1] != '-')
    s.remove_prefix(1);
  if (s.empty())
    return std::nullopt;
  double v = 0;
  auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (err != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return v;
}

/// Records stay bounded whatever a line holds.
void put(metric_record& r, std::string key, double v) {
  if (key.empty() || key.size() > max_key_bytes)
    return;
  if (r.size() >= max_keys_per_record && !r.count(key))
    return;
  r[std::move(key)] = v;
}

/// Length of the escape sequence starting at s[i] (an ESC), so colours
/// and cursor moves never reach a parser.
std::size_t escape_length(std::string_view s, std::size_t i) {
  if (i + 1 >= s.size())
    return 1;
  std::size_t j = i + 2;
  if (s[i + 1] == '[') { // CSI: parameters, intermediates, one final byte
    while (j < s.size() && s[j] >= 0x20 && s[j] <= 0x3f)
      ++j;
    return (j < s.size() ? j + 1 : j) - i;
  }
  if (s[i + 1] == ']') { // OSC (titles, links): up to BEL or ESC '\'
    while (j < s.size() && s[j] != '\a' && s[j] != '\x1b')
      ++j;
    if (j < s.size() && s[j] == '\x1b')
      ++j;
    return (j < s.size() ? j + 1 : j) - i;
  }
  return 2;
}

/// Without ANSI escapes and other control characters (tabs stay).
std::string strip_controls(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  // Plain runs are copied whole: most lines hold no control at all, and
  // the daemon parses every line a trainer prints.
  auto is_control
      = [](unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; };
  std::size_t plain = 0;
  for (std::size_t i = 0; i < s.size();) {
    // Eight bytes at a time while none is below 0x20 or 0x7f (SWAR).
    constexpr std::uint64_t ones = 0x0101010101010101ULL;
    constexpr std::uint64_t highs = 0x8080808080808080ULL;
    while (i + 8 <= s.size()) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      auto below_space = (w - 0x20 * ones) & ~w & highs;
      auto del = w ^ (0x7f * ones);
      auto is_del = (del - ones) & ~del & highs;
      if ((below_space | is_del) != 0)
        break;
      i += 8;
    }
    if (i >= s.size())
      break;
    auto c = static_cast<unsigned char>(s[i]);
    if (!is_control(c)) {
      ++i;
      continue;
    }
    out.append(s.data() + plain, i - plain);
    i += c == 0x1b ? escape_length(s, i) : 1;
    plain = i;
  }
  if (plain < s.size())
    out.append(s.data() + plain, s.size() - plain);
  return out;
}

/// What a terminal would show of the line: tqdm redraws with \r, so only
/// the text after the last one counts (a trailing \r of a CRLF does not).
std::string visible_text(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n'))
    line.remove_suffix(1);
  if (auto cr = line.rfind('\r'); cr != std::string_view::npos)
    line.remove_prefix(cr + 1);
  if (line.size() > max_line_bytes)
    return {};
  return strip_controls(line);
}

/// Common to all line parsers: cleans the line and keeps exceptions
/// (bad_alloc, regex complexity) inside, as feed() promises.
class line_parser : public metrics_parser {
public:
  std::vector<metric_record> feed(std::string_view line) final {
    try {
      return parse(visible_text(line));
    } catch (const std::exception&) {
      return {};
    }
  }

protected:
  virtual std::vector<metric_record> parse(const std::string& text) = 0;

  static std::vector<metric_record> one(metric_record r) {
    std::vector<metric_record> out;
    if (!r.empty())
      out.push_back(std::move(r));
    return out;
  }
};

// ----------------------------------------------------------------- sb3 --

/// SB3's (and SB2's) ASCII tables. SB3 prints `| time/ |  |` for a section
/// and indents the keys that belong to it; keys without a section are not
/// indented, so the legacy table reads as plain keys.
class sb3_parser final : public line_parser {
public:
  bool idle() const override { return !in_table_; }

private:
  std::vector<metric_record> parse(const std::string& text) override {
    auto t = trim(text);
    if (is_dash_line(t))
      return on_dashes();
    if (in_table_ && !on_row(t))
      reset(); // a table cut by other output: its values are unreliable
    return {};
  }

  static bool is_dash_line(std::string_view t) {
    return t.size() >= 3 && t.find_first_not_of('-') == std::string_view::npos;
  }

  // SB3 prints a closing dash line and the next table's opening one back
  // to back: a dash line closes a table with rows and opens one otherwise,
  // which also resynchronises after a table lost its closing line.
  std::vector<metric_record> on_dashes() {
    if (in_table_ && rows_ > 0) {
      auto done = std::move(record_);
      reset();
      return one(std::move(done));
    }
    reset();
    in_table_ = true;
    return {};
  }

  bool on_row(std::string_view t) {
    if (t.size() < 3 || t.front() != '|' || t.back() != '|')
      return false;
    auto inner = t.substr(1, t.size() - 2);
    auto bar = inner.find('|');
    if (bar == std::string_view::npos
        || inner.find('|', bar + 1) != std::string_view::npos)
      return false;
    auto raw_key = inner.substr(0, bar);
    auto key = trim(raw_key);
    auto cell = trim(inner.substr(bar + 1));
    if (key.empty())
      return false;
    ++rows_;
    if (cell.empty() && key.back() == '/') {
      section_ = key;
      return true;
    }
    // "|    fps" is indented under its section, "| fps" is not.
    bool indented
        = raw_key.size() >= 2 && raw_key[0] == ' ' && raw_key[1] == ' ';
    if (auto v = parse_number(cell))
      put(record_, (indented ? section_ : std::string{}) + std::string{key},
          *v);
    return true;
  }

  void reset() {
    in_table_ = false;
    section_.clear();
    record_.clear();
    rows_ = 0;
  }

  bool in_table_ = false;
  std::string section_;
  metric_record record_;
  std::size_t rows_ = 0;
};

// --------------------------------------------------------------- jsonl --

// Python's json.dumps writes NaN and Infinity, which JSON lacks. Outside
// strings they become strings with this mark, which no logger writes.
constexpr char non_finite_mark = '\x01';

/// The line with bare NaN/Infinity/-Infinity quoted and marked.
std::string quote_non_finite(std::string_view s) {
  static constexpr std::array<std::string_view, 3> words{"-Infinity",
                                                         "Infinity", "NaN"};
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\' && i + 1 < s.size())
        out += s[i++];
      else if (c == '"')
        in_string = false;
      out += c;
      continue;
    }
    in_string = c == '"';
    auto w = std::find_if(words.begin(), words.end(), [&](auto word) {
      return s.substr(i, word.size()) == word;
    });
    if (w == words.end()) {
      out += c;
      continue;
    }
    out += "\"\\u0001" + std::string{*w} + '"';
    i += w->size() - 1;
  }
  return out;
}

/// Numbers of `j`, nested objects flattened as `outer/inner`.
void flatten(const nlohmann::json& j, const std::string& prefix, int depth,
             metric_record& out) {
  if (depth > max_json_depth)
    return;
  for (auto& [key, v] : j.items()) {
    auto name = prefix + key;
    if (v.is_number())
      put(out, name, v.get<double>());
    else if (v.is_object())
      flatten(v, name + "/", depth + 1, out);
    else if (v.is_string()) {
      auto& s = v.get_ref<const std::string&>();
      if (!s.empty() && s[0] == non_finite_mark)
        if (auto x = parse_number(std::string_view{s}.substr(1)))
          put(out, name, *x);
    }
  }
}

/// One JSON object per line; other lines are ordinary output.
class jsonl_parser final : public line_parser {
  std::vector<metric_record> parse(const std::string& text) override {
    auto t = trim(text);
    if (t.empty() || t.front() != '{')
      return {};
    auto j = nlohmann::json::parse(t, nullptr, false);
    if (j.is_discarded()
        && (t.find("NaN") != std::string_view::npos
            || t.find("Infinity") != std::string_view::npos))
      j = nlohmann::json::parse(quote_non_finite(t), nullptr, false);
    if (!j.is_object())
      return {};
    metric_record r;
    flatten(j, "", 0, r);
    return one(std::move(r));
  }
};

// ------------------------------------------------------------------ kv --

bool is_key_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'
         || c == '-' || c == '/';
}

bool is_key_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_';
}

/// A word that can be (part of) a key: starts with a letter or '_'.
bool is_word(std::string_view w) {
  return !w.empty() && is_key_start(w.front())
         && std::all_of(w.begin(), w.end(), is_key_char);
}

bool is_quote(char c) {
  return c == '\'' || c == '"';
}

/// A key stands on its own: `?a=1` in a URL or `x+y=3` is no pair.
bool stands_alone(std::string_view s, std::size_t begin, std::size_t floor) {
  if (begin == 0 || begin == floor)
    return true;
  return std::string_view{" \t,;|{([:"}.find(s[begin - 1])
         != std::string_view::npos;
}

/// A value after `=` or `:`: its text (the number inside a wrapper such as
/// `np.float64(0.5)`), where it starts and ends, and whether it is quoted
/// or runs into another separator, both of which make it no number.
struct value_token {
  std::string_view text;
  std::size_t begin = 0;
  std::size_t end = 0;
  bool quoted = false;
  bool runs_on = false;
};

value_token value_after(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t'))
    ++i;
  if (i < s.size() && is_quote(s[i])) {
    auto close = s.find(s[i], i + 1);
    auto end = close == std::string_view::npos ? s.size() : close + 1;
    return {s.substr(i, end - i), i, end, true, false};
  }
  // Stopping at the next separator keeps the scan linear in the line.
  auto end = s.find_first_of(" \t,;|})]'\":=", i);
  if (end == std::string_view::npos)
    end = s.size();
  auto text = s.substr(i, end - i);
  if (end < s.size() && (s[end] == ':' || s[end] == '='))
    return {text, i, end, false, true};
  // `name(number)`: numpy 2 and torch print scalars wrapped.
  if (auto open = text.find('('); open != std::string_view::npos && open > 0
                                  && end < s.size() && s[end] == ')'
                                  && is_word(text.substr(0, open)))
    return {text.substr(open + 1), i, end + 1, false, false};
  return {text, i, end, false, false};
}

/// `'key'` or `"key"` ending at `end`, as dict reprs write keys.
std::string quoted_key(std::string_view s, std::size_t end, std::size_t floor) {
  if (end < floor + 2)
    return {};
  auto open = s.substr(floor, end - 1 - floor).rfind(s[end - 1]);
  if (open == std::string_view::npos)
    return {};
  auto key = s.substr(floor + open + 1, end - 1 - (floor + open + 1));
  return !key.empty() && is_key_start(key.front()) ? std::string{key}
                                                   : std::string{};
}

/// Up to three words ending at `end` that stand alone (`Avg. reward`), as
/// one key; nullopt when there are more or they are not all words.
std::optional<std::string> words_before(std::string_view s, std::size_t end,
                                        std::size_t floor) {
  auto begin = end;
  while (begin > floor && (is_key_char(s[begin - 1]) || s[begin - 1] == ' '))
    --begin;
  while (s[begin] == ' ')
    ++begin;
  std::vector<std::string_view> words;
  for (auto rest = s.substr(begin, end - begin); !rest.empty();) {
    auto space = rest.find(' ');
    words.push_back(rest.substr(0, space));
    rest = space == std::string_view::npos ? std::string_view{}
                                           : trim(rest.substr(space));
  }
  if (words.empty() || words.size() > 3 || !stands_alone(s, begin, floor)
      || !std::all_of(words.begin(), words.end(), is_word))
    return std::nullopt;
  std::string key{words[0]};
  for (std::size_t i = 1; i < words.size(); ++i)
    key += ' ' + std::string{words[i]};
  return key;
}

/// The key that ends at `sep` (the `=` or `:`), not reaching before
/// `floor` (where the previous pair ended), or "" for none. Quoted keys
/// are taken as written. A `key: value` key may be up to three words back
/// to the previous separator (`Avg. reward: -19.9`), so long as nothing
/// else stands there; otherwise, and always for `key=value`, it is the
/// last word, so prose before a pair does not become part of its key.
std::string key_before(std::string_view s, std::size_t sep, std::size_t floor) {
  auto end = sep;
  while (end > floor && (s[end - 1] == ' ' || s[end - 1] == '\t'))
    --end;
  if (end == floor)
    return {};
  if (is_quote(s[end - 1]))
    return quoted_key(s, end, floor);
  if (s[sep] == ':')
    if (auto words = words_before(s, end, floor))
      return *words;
  auto begin = end;
  while (begin > floor && is_key_char(s[begin - 1]))
    --begin;
  auto word = s.substr(begin, end - begin);
  return is_word(word) && stands_alone(s, begin, floor) ? std::string{word}
                                                        : std::string{};
}

/// `key=value`, `key: value` and dict reprs (`{'loss': 0.41}`). A value
/// counts only as a whole numeric token; a token that runs into another
/// separator (`Epoch 3: loss=0.5`, `12:34:56`) is no value but may be the
/// next pair's key.
metric_record parse_pairs(std::string_view s) {
  metric_record r;
  std::size_t floor = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '=' && s[i] != ':')
      continue;
    auto value = value_after(s, i + 1);
    if (value.runs_on) {
      floor = value.begin;
      continue;
    }
    if (!value.quoted)
      if (auto number = parse_number(value.text))
        put(r, key_before(s, i, floor), *number);
    floor = value.end;
    i = std::max(i, value.end - 1);
  }
  return r;
}

class kv_parser final : public line_parser {
  std::vector<metric_record> parse(const std::string& text) override {
    return one(parse_pairs(text));
  }
};

// --------------------------------------------------------------- regex --

/// The first match in the line; each named group that holds a number.
class regex_parser final : public line_parser {
public:
  explicit regex_parser(named_regex re) : re_(std::move(re)) {}

private:
  std::vector<metric_record> parse(const std::string& text) override {
    if (text.size() > max_regex_line_bytes)
      return {};
    std::smatch m;
    if (!std::regex_search(text, m, re_.re))
      return {};
    metric_record r;
    for (std::size_t i = 0; i < re_.group_names.size(); ++i) {
      auto& name = re_.group_names[i];
      if (name.empty() || !m[i + 1].matched)
        continue;
      if (auto v = parse_number(m[i + 1].str()))
        put(r, name, *v);
    }
    return one(std::move(r));
  }

  named_regex re_;
};

} // namespace

result<std::unique_ptr<metrics_parser>>
make_metrics_parser(const progress_spec& spec) {
  using ptr = std::unique_ptr<metrics_parser>;
  const auto& f = spec.format;
  if (f.empty() || f == "csv")
    return ptr{};
  if (f == "sb3")
    return ptr{std::make_unique<sb3_parser>()};
  if (f == "jsonl")
    return ptr{std::make_unique<jsonl_parser>()};
  if (f == "kv")
    return ptr{std::make_unique<kv_parser>()};
  if (f == "regex") {
    auto re = compile_named_regex(spec.pattern);
    if (!re)
      return make_error(ec::invalid_spec,
                        "progress.pattern: " + re.error().message);
    return ptr{std::make_unique<regex_parser>(std::move(*re))};
  }
  return make_error(ec::invalid_spec, "progress.format: unknown format '" + f
                                          + "'; expected sb3, jsonl, kv, "
                                            "csv or regex");
}

// ------------------------------------------------------------- state --

namespace {

/// A saved state that cannot be read back; caught where restoring starts.
struct bad_state {
  std::string what;
};

[[noreturn]] void fail(std::string what) {
  throw bad_state{std::move(what)};
}

/// A double as JSON that reads back bit for bit (nlohmann writes the
/// shortest text that parses to the same double; it would write null for
/// the non-finite ones, so they are strings).
nlohmann::json exact_json(double v) {
  if (std::isnan(v))
    return "nan";
  if (std::isinf(v))
    return v > 0 ? "inf" : "-inf";
  return v;
}

double exact_double(const nlohmann::json& j, const std::string& where) {
  if (j.is_number())
    return j.get<double>();
  if (j.is_string()) {
    const auto& s = j.get_ref<const std::string&>();
    if (s == "nan")
      return std::numeric_limits<double>::quiet_NaN();
    if (s == "inf")
      return std::numeric_limits<double>::infinity();
    if (s == "-inf")
      return -std::numeric_limits<double>::infinity();
  }
  fail(where + ": expected a number, \"nan\", \"inf\" or \"-inf\", got "
       + j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

std::uint64_t unsigned_of(const nlohmann::json& j, const std::string& where) {
  // nlohmann parses "3" as unsigned, but a json built in code may hold a
  // signed 3.
  if (!j.is_number_unsigned()
      && !(j.is_number_integer() && j.get<std::int64_t>() >= 0))
    fail(where + ": expected a non-negative integer");
  return j.get<std::uint64_t>();
}

const nlohmann::json& field(const nlohmann::json& j, const char* key,
                            const std::string& where) {
  if (!j.is_object())
    fail(where + ": expected an object");
  auto it = j.find(key);
  if (it == j.end())
    fail(where + "." + key + ": missing");
  return *it;
}

const nlohmann::json& array_of(const nlohmann::json& j,
                               const std::string& where) {
  if (!j.is_array())
    fail(where + ": expected an array");
  return j;
}

/// Version 1 is the only one there is; anything else is refused rather
/// than half understood.
void check_version(const nlohmann::json& j, const std::string& where) {
  const auto& v = field(j, "v", where);
  if (!v.is_number_integer() || v.get<std::int64_t>() != 1)
    fail(where + ": unknown version "
         + v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
         + " (this daemon reads version 1)");
}

/// A string as JSON text whatever its bytes: as itself when it is valid
/// UTF-8 (which JSON needs), else in hex under `key` + "_hex".
void put_bytes(nlohmann::json& j, const std::string& key,
               const std::string& bytes) {
  try {
    (void)nlohmann::json(bytes).dump();
    j[key] = bytes;
  } catch (const nlohmann::json::type_error&) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex;
    for (unsigned char c : bytes) {
      hex += digits[c >> 4];
      hex += digits[c & 15];
    }
    j[key + "_hex"] = hex;
  }
}

std::string get_bytes(const nlohmann::json& j, const std::string& key,
                      const std::string& where) {
  if (auto it = j.find(key); it != j.end()) {
    if (!it->is_string())
      fail(where + "." + key + ": expected a string");
    return it->get<std::string>();
  }
  const auto& hex = field(j, (key + "_hex").c_str(), where);
  auto nibble = [&](char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    fail(where + "." + key + "_hex: not hex");
  };
  if (!hex.is_string() || hex.get_ref<const std::string&>().size() % 2 != 0)
    fail(where + "." + key + "_hex: expected a string of hex digit pairs");
  const auto& h = hex.get_ref<const std::string&>();
  std::string out;
  for (std::size_t i = 0; i < h.size(); i += 2)
    out += static_cast<char>(nibble(h[i]) * 16 + nibble(h[i + 1]));
  return out;
}

} // namespace

// ----------------------------------------------------------------- csv --

namespace {

// One poll reads at most this much, so a large file that appears at once
// (a daemon restarted beside a long run) is caught up over several polls.
constexpr std::size_t max_poll_bytes = 4 << 20;

/// The cells of one CSV line (RFC 4180 quotes; SB3 quotes keys with commas).
std::vector<std::string> split_csv(std::string_view line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"')
      cells.back() += line[++i];
    else if (c == '"')
      quoted = !quoted;
    else if (c == ',' && !quoted)
      cells.emplace_back();
    else
      cells.back() += c;
  }
  return cells;
}

} // namespace

struct csv_follower::impl {
  std::string path;
  bool opened = false; // dev/ino name the file being followed
  dev_t dev = 0;
  ino_t ino = 0;
  off_t offset = 0;        // just after the last complete line consumed
  std::string header_line; // as in the file, to notice a rewrite in place
  std::vector<std::string> columns;
  std::size_t rows = 0;      // data rows consumed from this file
  std::size_t skip_rows = 0; // rows already reported before a rewrite
  bool in_long_line = false; // dropping a line longer than max_line_bytes

  void restart(std::size_t skip) {
    offset = 0;
    header_line.clear();
    columns.clear();
    rows = 0;
    skip_rows = skip;
    in_long_line = false;
  }

  /// Starts over when the file is a new one, shorter than what was read,
  /// or rewritten in place: SB3 rewrites progress.csv from the top with a
  /// wider header when a new key appears, keeping the rows it had.
  void notice_replacement(int fd, const struct stat& st) {
    if (!opened || st.st_dev != dev || st.st_ino != ino) {
      opened = true;
      dev = st.st_dev;
      ino = st.st_ino;
      restart(0);
    } else if (st.st_size < offset) {
      restart(0);
    } else if (!header_line.empty() && !header_unchanged(fd)) {
      restart(widened(fd) ? rows : 0);
    }
  }

  /// The first line of the file as it is now.
  std::string first_line(int fd) const {
    std::string head(64 * 1024, '\0'); // headers are far shorter
    auto n = ::pread(fd, head.data(), head.size(), 0);
    head.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    auto nl = head.find('\n');
    head.resize(nl == std::string::npos ? 0 : nl);
    return head;
  }

  /// SB3 widens the header by appending the new keys; anything else is a
  /// new file written over the old one.
  bool widened(int fd) const {
    auto now = split_csv(trim_right(first_line(fd)));
    return now.size() > columns.size()
           && std::equal(columns.begin(), columns.end(), now.begin());
  }

  bool header_unchanged(int fd) const {
    std::string now(header_line.size() + 1, '\0');
    auto n = ::pread(fd, now.data(), now.size(), 0);
    return n == static_cast<ssize_t>(now.size())
           && std::string_view{now}.substr(0, header_line.size()) == header_line
           && now.back() == '\n';
  }

  /// `line` as in the file, without its newline.
  void set_header(std::string_view line) {
    header_line = line;
    auto text = line;
    if (!text.empty() && text.back() == '\r')
      text.remove_suffix(1);
    columns = split_csv(text);
  }

  void on_line(std::string_view line, std::vector<metric_record>& out) {
    auto text = line;
    if (!text.empty() && text.back() == '\r')
      text.remove_suffix(1);
    if (trim(text).empty())
      return;
    if (header_line.empty()) {
      set_header(line);
      return;
    }
    if (++rows <= skip_rows)
      return;
    auto cells = split_csv(text);
    metric_record r;
    for (std::size_t i = 0; i < cells.size() && i < columns.size(); ++i)
      if (auto v = parse_number(cells[i]))
        put(r, columns[i], *v);
    if (!r.empty())
      out.push_back(std::move(r));
  }

  /// Complete lines of `buf` go to on_line; returns how many bytes that
  /// consumed (a partial last line waits for its end).
  std::size_t consume(std::string_view buf, std::vector<metric_record>& out) {
    std::size_t start = 0;
    for (auto nl = buf.find('\n'); nl != std::string_view::npos;
         nl = buf.find('\n', start)) {
      if (in_long_line)
        in_long_line = false;
      else
        on_line(buf.substr(start, nl - start), out);
      start = nl + 1;
    }
    return start;
  }

  std::vector<metric_record> read_new(int fd) {
    std::vector<metric_record> out;
    std::string buf;
    std::array<char, 64 * 1024> chunk{};
    for (std::size_t budget = max_poll_bytes; budget > 0;) {
      auto n = ::pread(fd, chunk.data(), std::min(chunk.size(), budget),
                       offset + static_cast<off_t>(buf.size()));
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      budget -= static_cast<std::size_t>(n);
      buf.append(chunk.data(), static_cast<std::size_t>(n));
      auto used = consume(buf, out);
      buf.erase(0, used);
      offset += static_cast<off_t>(used);
      if (buf.size() > max_line_bytes) { // no line end in sight: drop it
        offset += static_cast<off_t>(buf.size());
        buf.clear();
        in_long_line = true;
      }
    }
    return out;
  }
};

csv_follower::csv_follower(std::string path) : impl_(std::make_unique<impl>()) {
  impl_->path = std::move(path);
}

csv_follower::~csv_follower() = default;

nlohmann::json csv_follower::save() const {
  const auto& s = *impl_;
  if (!s.opened)
    return {{"opened", false}};
  nlohmann::json j{{"opened", true},
                   {"dev", static_cast<std::uint64_t>(s.dev)},
                   {"ino", static_cast<std::uint64_t>(s.ino)},
                   {"offset", static_cast<std::uint64_t>(s.offset)},
                   {"rows", s.rows},
                   {"skip_rows", s.skip_rows},
                   {"in_long_line", s.in_long_line}};
  put_bytes(j, "header", s.header_line);
  return j;
}

status csv_follower::restore(const nlohmann::json& saved) {
  const std::string where = "csv";
  try {
    impl fresh;
    fresh.path = impl_->path;
    const auto& opened = field(saved, "opened", where);
    if (!opened.is_boolean())
      fail(where + ".opened: expected true or false");
    if (opened.get<bool>()) {
      fresh.opened = true;
      fresh.dev = static_cast<dev_t>(
          unsigned_of(field(saved, "dev", where), where + ".dev"));
      fresh.ino = static_cast<ino_t>(
          unsigned_of(field(saved, "ino", where), where + ".ino"));
      auto offset
          = unsigned_of(field(saved, "offset", where), where + ".offset");
      if (offset
          > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
        fail(where + ".offset: too large");
      fresh.offset = static_cast<off_t>(offset);
      fresh.rows = unsigned_of(field(saved, "rows", where), where + ".rows");
      fresh.skip_rows
          = unsigned_of(field(saved, "skip_rows", where), where + ".skip_rows");
      const auto& long_line = field(saved, "in_long_line", where);
      if (!long_line.is_boolean())
        fail(where + ".in_long_line: expected true or false");
      fresh.in_long_line = long_line.get<bool>();
      auto header = get_bytes(saved, "header", where);
      if (header.find('\n') != std::string::npos)
        fail(where + ".header: holds a line end");
      if (!header.empty())
        fresh.set_header(header);
    }
    *impl_ = std::move(fresh);
    return ok;
  } catch (const bad_state& e) {
    return make_error(ec::bad_request, "cannot restore " + e.what);
  } catch (const std::exception& e) {
    return make_error(ec::bad_request,
                      "cannot restore " + where + ": " + e.what());
  }
}

std::vector<metric_record> csv_follower::poll() {
  try {
    unique_fd fd{::open(impl_->path.c_str(), O_RDONLY | O_CLOEXEC)};
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0)
      return {}; // not there yet, or gone until a new one appears
    impl_->notice_replacement(fd.get(), st);
    return impl_->read_new(fd.get());
  } catch (const std::exception&) {
    return {};
  }
}

// --------------------------------------------------------------- store --

namespace {

// The rate follows the last minute of running time: long enough to smooth
// the jitter of one logging interval, short enough to follow a trainer
// that slows down (evaluation phases, a colleague's job on the GPU).
constexpr double rate_window_s = 60;
// Samples kept for the rate. All but the newest are at least a gap apart
// (the newest is replaced until it is), so they span the whole window
// whether the trainer logs every 100 ms or every 10 s.
constexpr std::size_t max_rate_samples = 20;
constexpr double min_sample_gap_s = rate_window_s / (max_rate_samples - 2);
// Keys a run may have; a logger that makes up a key per step (`step_123`)
// must not grow the daemon without bound.
constexpr std::size_t max_store_keys = 512;

struct point {
  double t;
  std::optional<double> step;
  double value;
};

/// Points at a uniform stride over the whole run plus the newest point.
/// When full, every other point goes and the stride doubles, so the chart
/// keeps the same resolution from the first record to the last.
struct series {
  std::vector<point> kept;     // records 0, stride, 2·stride, … of this key
  std::optional<point> newest; // the latest record when it is off-stride
  std::uint64_t seen = 0;
  std::uint64_t stride = 1;

  void add(const point& p, std::size_t max_points) {
    auto index = seen++;
    if (index % stride != 0) {
      newest = p;
      return;
    }
    kept.push_back(p);
    newest.reset();
    // One place stays free for `newest`.
    if (kept.size() + 1 > max_points)
      thin();
  }

  void thin() {
    auto last = kept.back();
    bool last_dropped = (kept.size() - 1) % 2 != 0;
    std::size_t j = 0;
    for (std::size_t i = 0; i < kept.size(); i += 2)
      kept[j++] = kept[i];
    kept.resize(j);
    stride *= 2;
    if (last_dropped)
      newest = last;
  }
};

struct sample {
  double active_s;
  double value;
};

/// Integral values print as integers (`1207`, not `1207.0`), as the
/// trainer wrote them; non-finite ones as null.
nlohmann::json number_json(double v) {
  if (!std::isfinite(v))
    return nullptr;
  if (std::abs(v) < 9007199254740992.0 && v == std::trunc(v))
    return static_cast<std::int64_t>(v);
  return v;
}

nlohmann::json point_json(const point& p) {
  return nlohmann::json::array(
      {p.t, p.step ? number_json(*p.step) : nlohmann::json(nullptr),
       number_json(p.value)});
}

} // namespace

struct metrics_store::impl {
  std::string counter;
  std::optional<double> total;
  std::size_t max_points;
  std::map<std::string, double> latest;
  std::map<std::string, series> all_series;
  std::optional<double> counter_now; // last finite counter value
  std::deque<sample> samples;        // counter over active time, newest last

  bool admits(const std::string& key) const {
    return latest.size() < max_store_keys || latest.count(key)
           || key == counter;
  }

  void note_counter(const metric_record& r, double active_s) {
    auto it = counter.empty() ? r.end() : r.find(counter);
    if (it == r.end() || !std::isfinite(it->second))
      return;
    // A counter or clock going backwards is a new attempt: old samples
    // would give a negative or meaningless rate.
    if (!samples.empty()
        && (it->second < samples.back().value
            || active_s < samples.back().active_s))
      samples.clear();
    // Records read in one batch share a time; the newest value stands for
    // it, so a catch-up burst does not look like instant progress.
    bool same_time = !samples.empty() && samples.back().active_s == active_s;
    auto n = samples.size();
    bool crowded = n >= 2
                   && samples[n - 1].active_s - samples[n - 2].active_s
                          < min_sample_gap_s;
    if (same_time || crowded)
      samples.back() = {active_s, it->second};
    else
      samples.push_back({active_s, it->second});
    if (samples.size() > max_rate_samples)
      samples.pop_front();
    counter_now = it->second;
  }

  /// Counter units per active second, from the oldest sample of the
  /// window to the newest; a logger slower than the window uses its last
  /// interval. Samples have strictly increasing times (note_counter).
  std::optional<double> rate() const {
    if (samples.size() < 2)
      return std::nullopt;
    const auto& last = samples.back();
    auto first = samples.rbegin() + 1;
    while (first + 1 != samples.rend()
           && (first + 1)->active_s >= last.active_s - rate_window_s)
      ++first;
    auto r = (last.value - first->value) / (last.active_s - first->active_s);
    return r > 0 && std::isfinite(r) ? std::optional{r} : std::nullopt;
  }
};

metrics_store::metrics_store(std::string counter, std::optional<double> total,
                             std::size_t max_points)
    : impl_(std::make_shared<impl>()) {
  impl_->counter = std::move(counter);
  impl_->total = total;
  impl_->max_points = std::max<std::size_t>(max_points, 2);
}

void metrics_store::add(const metric_record& record,
                        std::chrono::system_clock::time_point t,
                        double active_s) {
  auto& s = *impl_;
  s.note_counter(record, active_s);
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
      t.time_since_epoch());
  point p{static_cast<double>(ms.count()) / 1000.0, s.counter_now, 0};
  if (s.counter.empty())
    p.step.reset();
  for (const auto& [key, value] : record) {
    if (!s.admits(key))
      continue;
    s.latest[key] = value;
    p.value = value;
    s.all_series[key].add(p, s.max_points);
  }
}

nlohmann::json metrics_store::latest_json() const {
  auto out = nlohmann::json::object();
  for (const auto& [key, value] : impl_->latest)
    out[key] = number_json(value);
  return out;
}

nlohmann::json metrics_store::series_json() const {
  auto out = nlohmann::json::object();
  for (const auto& [key, s] : impl_->all_series) {
    auto points = nlohmann::json::array();
    for (const auto& p : s.kept)
      points.push_back(point_json(p));
    if (s.newest)
      points.push_back(point_json(*s.newest));
    out[key] = std::move(points);
  }
  return out;
}

progress_estimate metrics_store::estimate(double active_now) const {
  const auto& s = *impl_;
  progress_estimate out;
  if (!s.counter_now || !s.total || *s.total <= 0)
    return out;
  out.fraction = std::clamp(*s.counter_now / *s.total, 0.0, 1.0);
  auto rate = s.rate();
  if (!rate)
    return out;
  const auto& last = s.samples.back();
  auto since_last = std::max(active_now - last.active_s, 0.0);
  auto eta = (*s.total - last.value) / *rate - since_last;
  out.eta_s = std::max(eta, 0.0);
  return out;
}

bool metrics_store::empty() const {
  return impl_->latest.empty();
}

namespace {

nlohmann::json saved_point(const point& p) {
  return nlohmann::json::array(
      {exact_json(p.t), p.step ? exact_json(*p.step) : nlohmann::json(nullptr),
       exact_json(p.value)});
}

point restored_point(const nlohmann::json& j, const std::string& where) {
  if (!j.is_array() || j.size() != 3)
    fail(where + ": expected [t, step, value]");
  point p{exact_double(j[0], where + "[0]"), std::nullopt,
          exact_double(j[2], where + "[2]")};
  if (!j[1].is_null())
    p.step = exact_double(j[1], where + "[1]");
  return p;
}

nlohmann::json saved_series(const series& s) {
  auto kept = nlohmann::json::array();
  for (const auto& p : s.kept)
    kept.push_back(saved_point(p));
  return {{"kept", std::move(kept)},
          {"newest", s.newest ? saved_point(*s.newest) : nullptr},
          {"seen", s.seen},
          {"stride", s.stride}};
}

/// A series as saved, checked against what add() and thin() keep true:
/// `kept` holds the records 0, stride, 2·stride, … of the `seen` ones, and
/// `newest` is there exactly when the last record is off-stride.
series restored_series(const nlohmann::json& j, const std::string& where,
                       std::size_t max_points) {
  series s;
  s.seen = unsigned_of(field(j, "seen", where), where + ".seen");
  s.stride = unsigned_of(field(j, "stride", where), where + ".stride");
  if (s.stride == 0 || (s.stride & (s.stride - 1)) != 0)
    fail(where + ".stride: expected a power of two");
  const auto& kept = array_of(field(j, "kept", where), where + ".kept");
  for (std::size_t i = 0; i < kept.size(); ++i)
    s.kept.push_back(
        restored_point(kept[i], where + ".kept[" + std::to_string(i) + "]"));
  if (const auto& newest = field(j, "newest", where); !newest.is_null())
    s.newest = restored_point(newest, where + ".newest");
  auto on_stride = s.seen / s.stride + (s.seen % s.stride != 0 ? 1 : 0);
  if (s.kept.size() != on_stride)
    fail(where + ": " + std::to_string(s.kept.size()) + " points kept, but "
         + std::to_string(s.seen) + " seen at stride "
         + std::to_string(s.stride) + " keep " + std::to_string(on_stride));
  if (s.newest.has_value() != (s.seen > 0 && (s.seen - 1) % s.stride != 0))
    fail(where + ".newest: " + (s.newest ? "present" : "missing")
         + " although the last record is "
         + (s.newest ? "on stride" : "off stride"));
  // Saved with a larger bound: thinned as add() would have. The newest
  // record, when off-stride, stays off-stride at a doubled stride.
  while (s.kept.size() + 1 > max_points) {
    auto newest = s.newest;
    s.thin();
    if (newest)
      s.newest = newest;
  }
  return s;
}

} // namespace

nlohmann::json metrics_store::save() const {
  const auto& s = *impl_;
  auto latest = nlohmann::json::object();
  for (const auto& [key, value] : s.latest)
    latest[key] = exact_json(value);
  auto all_series = nlohmann::json::object();
  for (const auto& [key, one] : s.all_series)
    all_series[key] = saved_series(one);
  auto samples = nlohmann::json::array();
  for (const auto& x : s.samples)
    samples.push_back(
        nlohmann::json::array({exact_json(x.active_s), exact_json(x.value)}));
  return {{"v", 1},
          {"latest", std::move(latest)},
          {"series", std::move(all_series)},
          {"counter_now", s.counter_now ? exact_json(*s.counter_now) : nullptr},
          {"samples", std::move(samples)}};
}

result<std::unique_ptr<metrics_store>>
metrics_store::restore(const nlohmann::json& saved, std::string counter,
                       std::optional<double> total, std::size_t max_points) {
  const std::string where = "metrics";
  try {
    check_version(saved, where);
    auto out = std::make_unique<metrics_store>(std::move(counter), total,
                                               max_points);
    auto& s = *out->impl_;
    const auto& latest = field(saved, "latest", where);
    if (!latest.is_object())
      fail(where + ".latest: expected an object");
    for (const auto& [key, value] : latest.items())
      s.latest[key] = exact_double(value, where + ".latest['" + key + "']");
    const auto& all_series = field(saved, "series", where);
    if (!all_series.is_object())
      fail(where + ".series: expected an object");
    for (const auto& [key, one] : all_series.items())
      s.all_series[key] = restored_series(one, where + ".series['" + key + "']",
                                          s.max_points);
    if (const auto& now = field(saved, "counter_now", where); !now.is_null())
      s.counter_now = exact_double(now, where + ".counter_now");
    const auto& samples
        = array_of(field(saved, "samples", where), where + ".samples");
    if (samples.size() > max_rate_samples)
      fail(where + ".samples: more than " + std::to_string(max_rate_samples));
    for (std::size_t i = 0; i < samples.size(); ++i) {
      auto at = where + ".samples[" + std::to_string(i) + "]";
      if (!samples[i].is_array() || samples[i].size() != 2)
        fail(at + ": expected [active_s, value]");
      sample x{exact_double(samples[i][0], at + "[0]"),
               exact_double(samples[i][1], at + "[1]")};
      // rate() relies on what note_counter() keeps: later samples are at
      // later times and never at a lower count.
      if (!s.samples.empty()
          && !(s.samples.back().active_s < x.active_s
               && s.samples.back().value <= x.value))
        fail(at + ": not after the sample before it");
      s.samples.push_back(x);
    }
    return out;
  } catch (const bad_state& e) {
    return make_error(ec::bad_request, "cannot restore " + e.what);
  } catch (const std::exception& e) {
    return make_error(ec::bad_request,
                      "cannot restore " + where + ": " + e.what());
  }
}

} // namespace corral
