#include "services/placeholders.hpp"

namespace corral {

namespace {

bool is_name_start(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

bool is_name_char(char c) {
  return is_name_start(c) || (c >= '0' && c <= '9');
}

} // namespace

bool is_placeholder_name(std::string_view name) {
  if (name.empty() || !is_name_start(name.front()))
    return false;
  for (char c : name)
    if (!is_name_char(c))
      return false;
  return true;
}

placeholder_expansion expand_placeholders(std::string_view tmpl,
                                          const placeholder_lookup& lookup) {
  placeholder_expansion out;
  out.text.reserve(tmpl.size());
  std::size_t i = 0;
  // `}}` closes an escape only after a `{{`; elsewhere (the end of a nested
  // Python dict, `{'a': {'b': 1}}`) it is two literal braces.
  int open_escapes = 0;
  while (i < tmpl.size()) {
    char c = tmpl[i];
    bool doubled = i + 1 < tmpl.size() && tmpl[i + 1] == c;
    if (c == '{' && doubled) {
      out.text += c;
      ++open_escapes;
      i += 2;
      continue;
    }
    if (c == '}' && doubled && open_escapes > 0) {
      out.text += c;
      --open_escapes;
      i += 2;
      continue;
    }
    if (c == '{' && i + 1 < tmpl.size() && is_name_start(tmpl[i + 1])) {
      auto end = i + 1;
      while (end < tmpl.size() && is_name_char(tmpl[end]))
        ++end;
      if (end < tmpl.size() && tmpl[end] == '}') {
        auto name = tmpl.substr(i + 1, end - i - 1);
        auto value = lookup(name);
        if (!value) {
          out.unknown = std::string{name};
          return out;
        }
        out.text += *value;
        i = end + 1;
        continue;
      }
    }
    // Not a placeholder: the brace (or any other character) is literal, so
    // code like `print({'a': 1})` needs no escaping.
    out.text += c;
    ++i;
  }
  return out;
}

} // namespace corral
