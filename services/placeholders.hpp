#pragma once
/// The `{name}` placeholders of experiment templates (DESIGN.md,
/// "Experiments YAML"): one scanner for validation and for expansion.

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace corral {

/// The value of a placeholder name, or nullopt when the name is undefined.
using placeholder_lookup
    = std::function<std::optional<std::string>(std::string_view name)>;

/// What expanding a template gave: the text, or the first undefined name.
struct placeholder_expansion {
  /// The expanded text; incomplete when `unknown` is set.
  std::string text;
  /// The first placeholder name the lookup did not know.
  std::optional<std::string> unknown;

  bool ok() const { return !unknown; }
};

/// True for names a placeholder may use: [A-Za-z_][A-Za-z0-9_]*.
bool is_placeholder_name(std::string_view name);

/// Expands a template in one left-to-right pass: `{name}` (name as above)
/// becomes the lookup's value, `{{` becomes a literal `{` and a `}}` that
/// closes it a literal `}`, and any other brace is literal
/// (`print({'a': {'b': 1}})` stays as written).
/// Values are not scanned again, so a value may itself contain braces.
placeholder_expansion expand_placeholders(std::string_view tmpl,
                                          const placeholder_lookup& lookup);

} // namespace corral
