#pragma once
/// The web dashboard's files (web/dist/), embedded in the binary at build
/// time by cmake/embed_assets.cmake, which generates static_assets(). Plain
/// C++: no Beast, no CAF.

#include <span>
#include <string_view>

namespace corral::gateway {

/// One embedded file. Every view points into static storage.
struct static_asset {
  /// Path below web/dist/, '/'-separated: "index.html", "assets/app.js".
  std::string_view path;
  /// Content-Type to answer with, from the file's extension.
  std::string_view content_type;
  /// Strong entity tag, quoted: a digest of the bytes.
  std::string_view etag;
  /// The file's bytes.
  std::string_view body;
};

/// Every embedded file, sorted by path (generated).
std::span<const static_asset> static_assets();

/// The embedded file at `path` (relative to web/dist/, no leading '/'), or
/// nullptr.
const static_asset* find_static_asset(std::string_view path);

/// The Content-Type for a file named `path`, by its extension;
/// application/octet-stream for an unknown one.
std::string_view static_content_type(std::string_view path);

} // namespace corral::gateway
