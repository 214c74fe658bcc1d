#include "gateway/static_assets.hpp"

#include <algorithm>
#include <cctype>
#include <string>

namespace corral::gateway {

namespace {

struct mime {
  std::string_view extension;
  std::string_view type;
};

// What a Vite build writes, and what a dashboard might add by hand.
constexpr mime mime_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"txt", "text/plain; charset=utf-8"},
    {"wasm", "application/wasm"},
};

} // namespace

const static_asset* find_static_asset(std::string_view path) {
  auto all = static_assets();
  auto it = std::find_if(all.begin(), all.end(),
                         [&](const static_asset& a) { return a.path == path; });
  return it == all.end() ? nullptr : &*it;
}

std::string_view static_content_type(std::string_view path) {
  auto name = path.substr(path.rfind('/') + 1);
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot == 0)
    return "application/octet-stream";
  std::string ext(name.substr(dot + 1));
  for (auto& c : ext)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& m : mime_types)
    if (m.extension == ext)
      return m.type;
  return "application/octet-stream";
}

} // namespace corral::gateway
