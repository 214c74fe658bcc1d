#pragma once
/// A fresh directory under /tmp for one test, removed with everything in it.

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace corral::test {

class temp_dir {
public:
  temp_dir() {
    auto tmpl = (std::filesystem::temp_directory_path() / "corral-test-XXXXXX")
                    .string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("mkdtemp " + tmpl + " failed");
    path_ = tmpl;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::string& path() const { return path_; }
  /// The path of `name` inside the directory.
  std::string operator/(const std::string& name) const {
    return path_ + "/" + name;
  }
  /// Writes `text` to `name` inside the directory.
  void write(const std::string& name, const std::string& text) const {
    std::ofstream{*this / name} << text;
  }

private:
  std::string path_;
};

} // namespace corral::test
