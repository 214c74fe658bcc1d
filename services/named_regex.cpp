#include "services/named_regex.hpp"

#include "services/placeholders.hpp"

#include <algorithm>

namespace corral {

namespace {

/// The identifier that ends at the next '>' from `pos`, or "" if none.
std::string_view group_name_at(std::string_view s, std::size_t pos) {
  auto end = s.find('>', pos);
  if (end == std::string_view::npos)
    return {};
  auto name = s.substr(pos, end - pos);
  return is_placeholder_name(name) ? name : std::string_view{};
}

} // namespace

result<std::pair<std::string, std::vector<std::string>>>
strip_group_names(std::string_view p) {
  std::string out;
  out.reserve(p.size());
  std::vector<std::string> names;
  bool in_class = false; // inside [...], where '(' is literal
  for (std::size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      if (!in_class && p[i + 1] == 'k' && i + 2 < p.size() && p[i + 2] == '<') {
        auto name = group_name_at(p, i + 3);
        auto it = std::find(names.begin(), names.end(), name);
        if (name.empty() || it == names.end())
          return make_error(ec::invalid_spec,
                            "\\k<...> must name an earlier group");
        out += '\\' + std::to_string(it - names.begin() + 1);
        i += 3 + name.size(); // at the '>'
        continue;
      }
      out += c;
      out += p[++i];
      continue;
    }
    if (in_class) {
      in_class = c != ']';
    } else if (c == '[') {
      in_class = true;
    } else if (c == '(') {
      if (i + 1 < p.size() && p[i + 1] == '?') {
        bool lookbehind = i + 3 < p.size() && p[i + 2] == '<'
                          && (p[i + 3] == '=' || p[i + 3] == '!');
        if (i + 2 < p.size() && p[i + 2] == '<' && !lookbehind) {
          auto name = group_name_at(p, i + 3);
          if (name.empty())
            return make_error(ec::invalid_spec,
                              "a group name after (?< must be a name like "
                              "(?<loss>...): letters, digits and _");
          if (std::find(names.begin(), names.end(), name) != names.end())
            return make_error(ec::invalid_spec, "group name '"
                                                    + std::string{name}
                                                    + "' is used twice");
          names.emplace_back(name);
          out += '(';
          i += 3 + name.size(); // at the '>'
          continue;
        }
        // (?: (?= (?! and lookbehinds capture nothing; std::regex judges
        // whether it supports them.
      } else {
        names.emplace_back();
      }
    }
    out += c;
  }
  return std::pair{std::move(out), std::move(names)};
}

result<named_regex> compile_named_regex(std::string_view pattern) {
  auto stripped = strip_group_names(pattern);
  if (!stripped)
    return stripped.error();
  named_regex out;
  try {
    out.re = std::regex{stripped->first, std::regex::ECMAScript};
  } catch (const std::regex_error& e) {
    return make_error(ec::invalid_spec,
                      std::string{"invalid regex: "} + e.what());
  }
  out.group_names = std::move(stripped->second);
  return out;
}

} // namespace corral
