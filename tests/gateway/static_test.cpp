#include "gateway/router.hpp"
#include "gateway/static_assets.hpp"

#include "cli/http_client.hpp"
#include "tests/gateway/fake_backend.hpp"
#include "tests/gateway/router_harness.hpp"

#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

using namespace corral;
using namespace corral::gateway;
using corral::testing::fake_backend;
using namespace corral::testing;
namespace fs = std::filesystem;

namespace {

const fs::path dist = fs::path(CORRAL_SOURCE_DIR) / "web" / "dist";

const std::string dashboard_csp
    = "default-src 'self'; script-src 'self'; style-src 'self' "
      "'unsafe-inline'; img-src 'self' data: blob:; media-src 'self' blob:; "
      "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
      "form-action 'none'";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Every regular file under web/dist/, as paths relative to it.
std::vector<std::string> files_on_disk() {
  std::vector<std::string> out;
  for (auto& e : fs::recursive_directory_iterator(dist))
    if (e.is_regular_file())
      out.push_back(e.path().lexically_relative(dist).generic_string());
  std::sort(out.begin(), out.end());
  return out;
}

/// "/" + `rel` with each segment percent-encoded, as a browser sends it.
std::string target_of(const std::string& rel) {
  std::string out;
  std::size_t pos = 0;
  for (;;) {
    auto slash = rel.find('/', pos);
    out += '/';
    out += cli::url_encode(rel.substr(pos, slash - pos));
    if (slash == std::string::npos)
      break;
    pos = slash + 1;
  }
  return out;
}

/// A request as a browser loading the dashboard sends it: no token.
request browser(http::verb verb, std::string target) {
  auto req = make(verb, std::move(target));
  req.erase(http::field::authorization);
  return req;
}

std::string header(const response& res, http::field f) {
  return std::string(res[f]);
}

std::string header(const response& res, const char* name) {
  return std::string(res[name]);
}

} // namespace

TEST_CASE("GET / serves index.html from web/dist without auth",
          "[router][static]") {
  fake_backend aut;
  auto index = read_file(dist / "index.html");
  auto res = answer(aut, browser(http::verb::get, "/"));
  REQUIRE(res.result() == http::status::ok);
  REQUIRE(res.body() == index);
  CHECK(header(res, http::field::content_type) == "text/html; charset=utf-8");
  CHECK(header(res, http::field::content_length)
        == std::to_string(index.size()));
  CHECK(header(res, "Content-Security-Policy") == dashboard_csp);
  CHECK(header(res, http::field::cache_control) == "no-cache");
  CHECK(header(res, "X-Content-Type-Options") == "nosniff");
  CHECK(header(res, "Referrer-Policy") == "no-referrer");
  auto etag = header(res, http::field::etag);
  CHECK(etag.size() == 18);
  CHECK(etag.front() == '"');
  CHECK(etag.back() == '"');
  CHECK(aut.recorded().empty());

  auto named = answer(aut, browser(http::verb::get, "/index.html"));
  REQUIRE(named.result() == http::status::ok);
  REQUIRE(named.body() == index);
  REQUIRE(header(named, http::field::etag) == etag);
}

TEST_CASE("every file under web/dist is served at its path with its bytes",
          "[router][static]") {
  fake_backend aut;
  auto files = files_on_disk();
  REQUIRE_FALSE(files.empty());
  // The build embeds exactly what is on disk: nothing missing, nothing
  // stale.
  std::vector<std::string> embedded;
  for (auto& a : static_assets())
    embedded.emplace_back(a.path);
  REQUIRE(embedded == files);
  for (auto& rel : files) {
    INFO(rel);
    auto bytes = read_file(dist / rel);
    auto res = answer(aut, browser(http::verb::get, target_of(rel)));
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(res.body() == bytes);
    CHECK(header(res, http::field::content_type) == static_content_type(rel));
    CHECK(header(res, http::field::content_length)
          == std::to_string(bytes.size()));
    CHECK(header(res, "Content-Security-Policy") == dashboard_csp);
    CHECK(header(res, http::field::cache_control) == "no-cache");
    auto* asset = find_static_asset(rel);
    REQUIRE(asset != nullptr);
    CHECK(header(res, http::field::etag) == asset->etag);
  }
}

TEST_CASE("files with different bytes have different ETags",
          "[router][static]") {
  auto all = static_assets();
  for (std::size_t i = 0; i < all.size(); ++i)
    for (std::size_t j = i + 1; j < all.size(); ++j)
      if (all[i].body != all[j].body) {
        INFO(all[i].path << " and " << all[j].path);
        CHECK(all[i].etag != all[j].etag);
      }
}

TEST_CASE("a matching If-None-Match answers 304 without a body",
          "[router][static]") {
  fake_backend aut;
  auto etag
      = header(answer(aut, browser(http::verb::get, "/")), http::field::etag);
  REQUIRE_FALSE(etag.empty());
  auto revalidate = [&](http::verb verb, const std::string& if_none_match) {
    auto req = browser(verb, "/");
    req.set(http::field::if_none_match, if_none_match);
    return answer(aut, req);
  };
  for (auto value :
       {etag, "W/" + etag, "\"0000000000000000\", " + etag, std::string("*")}) {
    INFO(value);
    auto res = revalidate(http::verb::get, value);
    REQUIRE(res.result() == http::status::not_modified);
    REQUIRE(res.body().empty());
    CHECK(header(res, http::field::etag) == etag);
    CHECK(header(res, http::field::cache_control) == "no-cache");
  }
  REQUIRE(revalidate(http::verb::head, etag).result()
          == http::status::not_modified);

  SECTION("a wrong ETag gets the file") {
    auto res = revalidate(http::verb::get, "\"0000000000000000\"");
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(res.body() == read_file(dist / "index.html"));
  }
  SECTION("an ETag without its quotes is another ETag") {
    auto bare = etag.substr(1, etag.size() - 2);
    REQUIRE(revalidate(http::verb::get, bare).result() == http::status::ok);
  }
}

TEST_CASE("HEAD of a dashboard file has its headers but no body",
          "[router][static]") {
  fake_backend aut;
  auto index = read_file(dist / "index.html");
  for (auto target : {"/", "/index.html"}) {
    INFO(target);
    auto res = answer(aut, browser(http::verb::head, target));
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(res.body().empty());
    CHECK(header(res, http::field::content_length)
          == std::to_string(index.size()));
    CHECK(header(res, http::field::content_type) == "text/html; charset=utf-8");
    CHECK(header(res, "Content-Security-Policy") == dashboard_csp);
    CHECK_FALSE(header(res, http::field::etag).empty());
  }
}

TEST_CASE("other methods on a dashboard file are 405 with Allow",
          "[router][static]") {
  fake_backend aut;
  for (auto verb : {http::verb::post, http::verb::put, http::verb::delete_}) {
    for (auto target : {"/", "/index.html"}) {
      INFO(target);
      auto res = answer(aut, browser(verb, target));
      require_error(res, 405, "method_not_allowed", target);
      REQUIRE(header(res, http::field::allow) == "GET, HEAD");
    }
  }
  REQUIRE(aut.recorded().empty());
}

TEST_CASE("the dashboard needs no token while the API still does",
          "[router][static][auth]") {
  fake_backend aut;
  REQUIRE(answer(aut, browser(http::verb::get, "/")).result()
          == http::status::ok);
  require_error(answer(aut, browser(http::verb::get, "/api/v1/runs")), 401,
                "unauthorized");
  // A wrong token does not matter to a static file either.
  auto req = make(http::verb::get, "/");
  req.set(http::field::authorization, "Bearer wrong");
  REQUIRE(answer(aut, req).result() == http::status::ok);
  REQUIRE(aut.recorded().empty());
}

TEST_CASE("the Host and Origin checks apply to the dashboard",
          "[router][static][host]") {
  fake_backend aut;
  SECTION("a rebinding name") {
    auto req = browser(http::verb::get, "/");
    req.set(http::field::host, "evil.example:8700");
    auto res = answer(aut, req);
    require_error(res, 403, "forbidden", "evil.example:8700");
    REQUIRE(header(res, http::field::etag).empty());
  }
  SECTION("no Host header") {
    auto req = browser(http::verb::get, "/index.html");
    req.erase(http::field::host);
    require_error(answer(aut, req), 403, "forbidden", "Host");
  }
  SECTION("a foreign Origin") {
    auto req = browser(http::verb::get, "/");
    req.set(http::field::origin, "http://evil.example");
    require_error(answer(aut, req), 403, "forbidden");
  }
  SECTION("the daemon's own Origin passes") {
    auto req = browser(http::verb::get, "/");
    req.set(http::field::origin, "http://localhost:8700");
    REQUIRE(answer(aut, req).result() == http::status::ok);
  }
}

TEST_CASE("paths that name no embedded file are 404, never file bytes",
          "[router][static]") {
  fake_backend aut;
  auto index = read_file(dist / "index.html");
  for (auto target :
       {"/../etc/passwd", "/assets/../../x", "/nonexistent.js",
        "/assets/../index.html", "/%2e%2e/etc/passwd", "/..%2Fetc%2Fpasswd",
        "//index.html", "/index.html/", "/./index.html", "/assets/",
        "/INDEX.HTML", "/index.html%00", "/index.html%zz"}) {
    INFO(target);
    auto res = answer(aut, browser(http::verb::get, target));
    REQUIRE(res.result() != http::status::ok);
    REQUIRE((res.result_int() == 404 || res.result_int() == 400));
    REQUIRE(header(res, http::field::content_type) == "application/json");
    REQUIRE(res.body().find(index) == std::string::npos);
  }
  require_error(answer(aut, browser(http::verb::get, "/nonexistent.js")), 404,
                "not_found", "/nonexistent.js");
}

TEST_CASE("paths under /api/ are never dashboard files", "[router][static]") {
  fake_backend aut;
  for (auto target : {"/api/whatever", "/api/index.html", "/api/",
                      "/api/v2/index.html", "/api"}) {
    INFO(target);
    require_error(answer(aut, browser(http::verb::get, target)), 404,
                  "not_found");
  }
  require_error(answer(aut, browser(http::verb::get, "/api/v1/index.html")),
                401, "unauthorized");
  require_error(answer(aut, make(http::verb::get, "/api/v1/index.html")), 404,
                "not_found");
}

TEST_CASE("a query string on a dashboard file is ignored", "[router][static]") {
  fake_backend aut;
  auto index = read_file(dist / "index.html");
  for (auto target : {"/?v=3", "/index.html?foo=bar&baz", "/?access_token=x"}) {
    INFO(target);
    auto res = answer(aut, browser(http::verb::get, target));
    REQUIRE(res.result() == http::status::ok);
    REQUIRE(res.body() == index);
  }
}

TEST_CASE("dashboard answers keep the connection as the request asks",
          "[router][static]") {
  fake_backend aut;
  auto req = browser(http::verb::get, "/");
  REQUIRE(answer(aut, req).keep_alive());
  req.keep_alive(false);
  REQUIRE_FALSE(answer(aut, req).keep_alive());
  request old{http::verb::get, "/", 10};
  old.set(http::field::host, "127.0.0.1:8700");
  auto res = answer(aut, old);
  REQUIRE(res.result() == http::status::ok);
  REQUIRE(res.version() == 10);
  REQUIRE_FALSE(res.keep_alive());
}

TEST_CASE("the content type of a dashboard file follows its extension",
          "[static]") {
  CHECK(static_content_type("index.html") == "text/html; charset=utf-8");
  CHECK(static_content_type("assets/app.js")
        == "text/javascript; charset=utf-8");
  CHECK(static_content_type("assets/chunk.mjs")
        == "text/javascript; charset=utf-8");
  CHECK(static_content_type("assets/app.css") == "text/css; charset=utf-8");
  CHECK(static_content_type("manifest.json") == "application/json");
  CHECK(static_content_type("assets/app.js.map") == "application/json");
  CHECK(static_content_type("logo.svg") == "image/svg+xml");
  CHECK(static_content_type("a/b/icon.png") == "image/png");
  CHECK(static_content_type("favicon.ico") == "image/x-icon");
  CHECK(static_content_type("fonts/x.woff2") == "font/woff2");
  CHECK(static_content_type("robots.txt") == "text/plain; charset=utf-8");
  CHECK(static_content_type("APP.JS") == "text/javascript; charset=utf-8");
  CHECK(static_content_type("LICENSE") == "application/octet-stream");
  CHECK(static_content_type(".hidden") == "application/octet-stream");
  CHECK(static_content_type("dir.js/file") == "application/octet-stream");
  CHECK(static_content_type("data.bin") == "application/octet-stream");
}

TEST_CASE("find_static_asset knows index.html and nothing else by accident",
          "[static]") {
  auto* index = find_static_asset("index.html");
  REQUIRE(index != nullptr);
  REQUIRE(index->path == "index.html");
  REQUIRE(index->body == read_file(dist / "index.html"));
  CHECK(find_static_asset("") == nullptr);
  CHECK(find_static_asset("/index.html") == nullptr);
  CHECK(find_static_asset("./index.html") == nullptr);
  CHECK(find_static_asset("index.htm") == nullptr);
}
