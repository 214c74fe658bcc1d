#include "services/gpu_inventory.hpp"
#include "tests/temp_dir.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <unistd.h>

using namespace corral;
namespace fs = std::filesystem;
using corral::test::temp_dir;

namespace {

std::vector<int> gpus(std::string_view text) {
  auto aut = parse_gpu_list(text);
  INFO(text);
  REQUIRE(aut);
  return *aut;
}

std::string gpus_error(std::string_view text) {
  auto aut = parse_gpu_list(text);
  INFO(text);
  REQUIRE_FALSE(aut);
  CHECK(aut.error().code == ec::invalid_spec);
  return aut.error().message;
}

/// A stand-in for libnvidia-ml.so.1 with two GPUs, the second running more
/// processes than the loader's first buffer holds. FAKE_NVML_INIT_RC makes
/// init fail; every shutdown appends a line to FAKE_NVML_LOG.
constexpr const char* fake_nvml_source = R"(
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned int gpu, memory; } util_t;
typedef struct { unsigned int pid; unsigned long long used;
                 unsigned int gi, ci; } proc_t;
int nvmlInit_v2(void) {
  const char* rc = getenv("FAKE_NVML_INIT_RC");
  return rc ? atoi(rc) : 0;
}
int nvmlShutdown(void) {
  const char* log = getenv("FAKE_NVML_LOG");
  if (log) { FILE* f = fopen(log, "a"); if (f) { fputs("shutdown\n", f);
    fclose(f); } }
  return 0;
}
const char* nvmlErrorString(int rc) {
  return rc == 9 ? "Driver Not Loaded" : "Unknown Error";
}
int nvmlDeviceGetCount_v2(unsigned int* n) { *n = 2; return 0; }
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void** h) {
  *h = (void*)(size_t)(i + 1); return 0;
}
static int idx(void* h) { return (int)(size_t)h - 1; }
int nvmlDeviceGetName(void* h, char* buf, unsigned int n) {
  snprintf(buf, n, "Fake GPU %d", idx(h)); return 0;
}
int nvmlDeviceGetUUID(void* h, char* buf, unsigned int n) {
  snprintf(buf, n, "GPU-fake-%d", idx(h)); return 0;
}
int nvmlDeviceGetMemoryInfo(void* h, mem_t* m) {
  m->total = 80ULL << 30; m->used = (unsigned long long)idx(h) << 30;
  m->free = m->total - m->used; return 0;
}
int nvmlDeviceGetUtilizationRates(void* h, util_t* u) {
  if (idx(h) == 0) return 3; /* not supported */
  u->gpu = 42; u->memory = 7; return 0;
}
int nvmlDeviceGetComputeRunningProcesses_v3(void* h, unsigned int* n,
                                            proc_t* p) {
  unsigned int want = idx(h) == 0 ? 1 : 20;
  if (*n < want) { *n = want; return 7; }
  for (unsigned int i = 0; i < want; ++i) {
    p[i].pid = 1000 * (idx(h) + 1) + i; p[i].used = (i + 1) << 20;
    p[i].gi = p[i].ci = 0xFFFFFFFF;
  }
  *n = want; return 0;
}
)";

/// Builds the fake library with the system C compiler; "" when there is
/// none (the test then only warns).
std::string build_fake_nvml(const temp_dir& dir) {
  fs::path src = dir / "fake_nvml.c";
  fs::path lib = dir / "libfake-nvml.so";
  std::ofstream(src) << fake_nvml_source;
  auto cmd = "cc -shared -fPIC -o '" + lib.string() + "' '" + src.string()
             + "' >/dev/null 2>&1";
  if (std::system(cmd.c_str()) != 0)
    return {};
  return lib.string();
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

TEST_CASE("a GPU list is a count or indices", "[gpu]") {
  CHECK(gpus("4") == std::vector<int>{0, 1, 2, 3});
  CHECK(gpus(" 1 ") == std::vector<int>{0});
  CHECK(gpus("0").empty());
  CHECK(gpus("0,2,3") == std::vector<int>{0, 2, 3});
  CHECK(gpus("[0, 2, 3]") == std::vector<int>{0, 2, 3});
  CHECK(gpus("[3]") == std::vector<int>{3});
  CHECK(gpus("[]").empty());
  CHECK(gpus("3,1") == std::vector<int>{1, 3});
}

TEST_CASE("a bad GPU list names the text", "[gpu]") {
  CHECK(gpus_error("0,x")
        == "invalid GPU list '0,x': use a count (4) or indices (0,2,3)");
  for (auto text : {"", "x", "-1", "0,-1", "0,0", "1,2,", ",1", "[0,1", "1.5",
                    "+2", "[1,,2]", "99999", "4 GPUs"}) {
    INFO(text);
    CHECK_THAT(gpus_error(text),
               Catch::Contains("'" + std::string(text) + "'"));
  }
}

TEST_CASE("a configured inventory has indices only", "[gpu]") {
  auto inv = make_configured_inventory({0, 2, 3});
  CHECK(inv->source() == "config");
  auto devs = inv->devices();
  REQUIRE(devs.size() == 3);
  CHECK(devs[1].index == 2);
  for (auto& d : devs) {
    CHECK(d.uuid.empty());
    CHECK(d.name.empty());
    CHECK_FALSE(d.memory_total);
    CHECK_FALSE(d.memory_used);
    CHECK_FALSE(d.utilization);
  }
  CHECK(inv->processes().empty());
  CHECK(make_configured_inventory({})->devices().empty());
}

TEST_CASE("a missing NVML library is a clear reason, not a crash", "[gpu]") {
  std::string why;
  auto inv = load_nvml_inventory(why, "libnvidia-ml-not-here.so.1");
  CHECK_FALSE(inv);
  CHECK(why
        == "libnvidia-ml-not-here.so.1 not found (no NVIDIA driver?): no GPUs "
           "unless configured with --gpus or gpus:");

  // Something that is not NVML at all.
  inv = load_nvml_inventory(why, "libc.so.6");
  CHECK_FALSE(inv);
  CHECK_THAT(why, Catch::Contains("not NVML?"));
}

TEST_CASE("the real NVML, where this machine has one", "[gpu]") {
  std::string why;
  auto inv = load_nvml_inventory(why);
  if (!inv) {
    WARN("no NVML here: " << why);
    CHECK_FALSE(why.empty());
    return;
  }
  auto devs = inv->devices();
  WARN("NVML sees " << devs.size() << " GPU(s)");
  CHECK(inv->source() == "nvml");
  CHECK_FALSE(devs.empty());
  for (auto& d : devs) {
    INFO(d.index);
    CHECK_FALSE(d.uuid.empty());
    CHECK_FALSE(d.name.empty());
    CHECK(d.memory_total);
  }
  inv->processes(); // must not crash; the list may be empty
}

TEST_CASE("the NVML loader against a fake library", "[gpu]") {
  temp_dir dir;
  auto lib = build_fake_nvml(dir);
  if (lib.empty()) {
    WARN("no C compiler: fake NVML library not built, test skipped");
    return;
  }
  fs::path log = dir / "log";
  ::setenv("FAKE_NVML_LOG", log.c_str(), 1);

  SECTION("devices, memory, utilization and processes") {
    ::unsetenv("FAKE_NVML_INIT_RC");
    std::string why = "stale";
    {
      auto inv = load_nvml_inventory(why, lib.c_str());
      REQUIRE(inv);
      CHECK(why.empty());
      CHECK(inv->source() == "nvml");
      auto devs = inv->devices();
      REQUIRE(devs.size() == 2);
      CHECK(devs[0].index == 0);
      CHECK(devs[0].name == "Fake GPU 0");
      CHECK(devs[1].uuid == "GPU-fake-1");
      CHECK(devs[1].memory_total == std::uint64_t{80} << 30);
      CHECK(devs[1].memory_used == std::uint64_t{1} << 30);
      CHECK_FALSE(devs[0].utilization); // not supported: null, not 0
      CHECK(devs[1].utilization == 42.0);

      auto procs = inv->processes();
      REQUIRE(procs.size() == 21); // 20 on GPU 1: the buffer had to grow
      CHECK(procs[0].gpu == 0);
      CHECK(procs[0].pid == 1000);
      CHECK(procs[20].gpu == 1);
      CHECK(procs[20].pid == 2019);
      CHECK(procs[20].memory_used == std::uint64_t{20} << 20);
      CHECK(read_file(log).empty());
    }
    CHECK(read_file(log) == "shutdown\n"); // the destructor shut NVML down
  }

  SECTION("a failed init says why") {
    ::setenv("FAKE_NVML_INIT_RC", "9", 1);
    std::string why;
    CHECK_FALSE(load_nvml_inventory(why, lib.c_str()));
    CHECK(why
          == "NVML initialization failed: Driver Not Loaded (NVML code 9): "
             "no GPUs unless configured with --gpus or gpus:");
    ::unsetenv("FAKE_NVML_INIT_RC");
  }
  ::unsetenv("FAKE_NVML_LOG");
}
