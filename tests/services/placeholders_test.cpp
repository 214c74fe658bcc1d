#include "services/placeholders.hpp"

#include <catch2/catch.hpp>

#include <map>

using namespace corral;

namespace {

placeholder_lookup lookup_in(std::map<std::string, std::string> values) {
  return [values = std::move(values)](
             std::string_view name) -> std::optional<std::string> {
    if (auto it = values.find(std::string{name}); it != values.end())
      return it->second;
    return std::nullopt;
  };
}

std::string expanded(std::string_view tmpl) {
  auto aut = expand_placeholders(
      tmpl, lookup_in({{"lr", "3.0e-4"}, {"run", "ppo-3"}, {"_x9", "X"}}));
  INFO(tmpl);
  REQUIRE(aut.ok());
  return aut.text;
}

} // namespace

TEST_CASE("placeholders expand to the lookup's values") {
  CHECK(expanded("{lr}") == "3.0e-4");
  CHECK(expanded("--lr={lr}") == "--lr=3.0e-4");
  CHECK(expanded("runs/{run}/lr{lr}") == "runs/ppo-3/lr3.0e-4");
  CHECK(expanded("{_x9}{_x9}") == "XX");
  CHECK(expanded("") == "");
  CHECK(expanded("plain") == "plain");
}

TEST_CASE("brace text that is not a placeholder stays literal") {
  CHECK(expanded("print({'a': 1})") == "print({'a': 1})");
  CHECK(expanded("{") == "{");
  CHECK(expanded("}") == "}");
  CHECK(expanded("{}") == "{}");
  CHECK(expanded("{ lr }") == "{ lr }");
  CHECK(expanded("{9lr}") == "{9lr}");
  CHECK(expanded("{lr-x}") == "{lr-x}");
  CHECK(expanded("{lr") == "{lr");
  CHECK(expanded("a{b c}d") == "a{b c}d");
}

TEST_CASE("doubled braces give one literal brace") {
  CHECK(expanded("{{lr}}") == "{lr}");
  CHECK(expanded("{{{lr}}}") == "{3.0e-4}");
  CHECK(expanded("{{") == "{");
  CHECK(expanded("${{HOME}}") == "${HOME}");
  CHECK(expanded("{{a}} and {{b}}") == "{a} and {b}");
}

TEST_CASE("a closing double brace without an escape before it is literal") {
  CHECK(expanded("}}") == "}}");
  CHECK(expanded("print({'a': {'b': 1}})") == "print({'a': {'b': 1}})");
  CHECK(expanded("{'x': {'lr': {lr}}}") == "{'x': {'lr': 3.0e-4}}");
}

TEST_CASE("values are not scanned again") {
  auto aut = expand_placeholders("{a}-{b}",
                                 lookup_in({{"a", "{b}"}, {"b", "{{x}}"}}));
  REQUIRE(aut.ok());
  CHECK(aut.text == "{b}-{{x}}");
}

TEST_CASE("the first unknown placeholder is reported by name") {
  auto aut = expand_placeholders("{lr} {lrr} {zz}", lookup_in({{"lr", "1"}}));
  REQUIRE_FALSE(aut.ok());
  CHECK(*aut.unknown == "lrr");
}

TEST_CASE("an escaped name is not looked up") {
  auto aut = expand_placeholders("{{nope}}", lookup_in({}));
  REQUIRE(aut.ok());
  CHECK(aut.text == "{nope}");
}

TEST_CASE("placeholder names are identifiers") {
  CHECK(is_placeholder_name("lr"));
  CHECK(is_placeholder_name("_a1"));
  CHECK(is_placeholder_name("Seed"));
  CHECK_FALSE(is_placeholder_name(""));
  CHECK_FALSE(is_placeholder_name("1a"));
  CHECK_FALSE(is_placeholder_name("a-b"));
  CHECK_FALSE(is_placeholder_name("a.b"));
}
