#include "services/gpu_inventory.hpp"

#include "services/text.hpp"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <mutex>
#include <set>
#include <utility>

#include <dlfcn.h>

namespace corral {

namespace {

// -- NVML's C API, declared here: no NVML header is needed to build, and the
// library is only looked for at run time. Layouts as in nvml.h (API 11/12).

using nvml_return = int;
constexpr nvml_return nvml_success = 0;
constexpr nvml_return nvml_error_insufficient_size = 7;
/// usedGpuMemory when the driver cannot tell (MIG, Windows WDDM).
constexpr unsigned long long nvml_value_not_available = ~0ULL;
/// NVML_DEVICE_NAME_V2_BUFFER_SIZE, NVML_DEVICE_UUID_V2_BUFFER_SIZE.
constexpr unsigned nvml_name_size = 96;
constexpr unsigned nvml_uuid_size = 96;

using nvml_device = struct nvml_device_st*;

struct nvml_memory {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct nvml_utilization {
  unsigned int gpu;
  unsigned int memory;
};

/// nvmlProcessInfo_v1_t: what the unversioned entry point fills.
struct nvml_process_v1 {
  unsigned int pid;
  unsigned long long usedGpuMemory;
};

/// nvmlProcessInfo_v2_t, also the layout of the _v3 entry point.
struct nvml_process_v2 {
  unsigned int pid;
  unsigned long long usedGpuMemory;
  unsigned int gpuInstanceId;
  unsigned int computeInstanceId;
};

using init_fn = nvml_return (*)();
using shutdown_fn = nvml_return (*)();
using count_fn = nvml_return (*)(unsigned int*);
using handle_fn = nvml_return (*)(unsigned int, nvml_device*);
using string_fn = nvml_return (*)(nvml_device, char*, unsigned int);
using memory_fn = nvml_return (*)(nvml_device, nvml_memory*);
using utilization_fn = nvml_return (*)(nvml_device, nvml_utilization*);
using processes_fn = nvml_return (*)(nvml_device, unsigned int*, void*);
using error_string_fn = const char* (*)(nvml_return);

constexpr const char* no_gpus_hint
    = "no GPUs unless configured with --gpus or gpus:";

/// A whole non-negative decimal integer, nothing else ("+1", "1.5" fail).
std::optional<int> parse_index(std::string_view s) {
  s = trim(s);
  if (s.empty() || s.front() < '0' || s.front() > '9')
    return std::nullopt;
  int value = 0;
  auto [end, err] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (err != std::errc{} || end != s.data() + s.size())
    return std::nullopt;
  return value;
}

class configured_inventory : public gpu_inventory {
public:
  explicit configured_inventory(std::vector<int> indices)
      : indices_(std::move(indices)) {}

  std::string source() const override { return "config"; }

  std::vector<gpu_info> devices() override {
    std::vector<gpu_info> out;
    for (int i : indices_) {
      gpu_info g;
      g.index = i;
      out.push_back(std::move(g));
    }
    return out;
  }

  std::vector<gpu_process> processes() override { return {}; }

private:
  std::vector<int> indices_;
};

/// The entry points the inventory uses, resolved once.
struct nvml_api {
  shutdown_fn shutdown = nullptr;
  string_fn name = nullptr;
  string_fn uuid = nullptr;
  memory_fn memory = nullptr;
  utilization_fn utilization = nullptr;
  processes_fn processes = nullptr;
  bool processes_v1 = false; // the unversioned call: v1 layout
  error_string_fn error_string = nullptr;
};

class nvml_inventory : public gpu_inventory {
public:
  struct device {
    int index;
    nvml_device handle;
    std::string uuid;
    std::string name;
  };

  nvml_inventory(void* lib, nvml_api api, std::vector<device> devices)
      : lib_(lib), api_(api), devices_(std::move(devices)) {}

  nvml_inventory(const nvml_inventory&) = delete;
  nvml_inventory& operator=(const nvml_inventory&) = delete;

  ~nvml_inventory() override {
    api_.shutdown();
    ::dlclose(lib_);
  }

  std::string source() const override { return "nvml"; }

  std::vector<gpu_info> devices() override {
    std::vector<gpu_info> out;
    for (auto& d : devices_) {
      gpu_info g;
      g.index = d.index;
      g.uuid = d.uuid;
      g.name = d.name;
      // A device that cannot tell (MIG slices, some vGPUs) reports null
      // rather than a made-up zero.
      nvml_memory mem{};
      if (api_.memory && api_.memory(d.handle, &mem) == nvml_success) {
        g.memory_total = mem.total;
        g.memory_used = mem.used;
      }
      nvml_utilization util{};
      if (api_.utilization && api_.utilization(d.handle, &util) == nvml_success)
        g.utilization = util.gpu;
      out.push_back(std::move(g));
    }
    return out;
  }

  std::vector<gpu_process> processes() override {
    // Every run asks for its GPU memory every few seconds: one NVML sweep
    // a second serves them all.
    std::lock_guard lock{processes_mutex_};
    auto now = std::chrono::steady_clock::now();
    if (processes_at_ && now - *processes_at_ < std::chrono::seconds{1})
      return processes_cache_;
    std::vector<gpu_process> out;
    if (api_.processes)
      for (auto& d : devices_) {
        if (api_.processes_v1)
          collect<nvml_process_v1>(d, out);
        else
          collect<nvml_process_v2>(d, out);
      }
    processes_cache_ = out;
    processes_at_ = now;
    return out;
  }

private:
  template <class Info>
  void collect(const device& d, std::vector<gpu_process>& out) {
    std::vector<Info> buf(16);
    // Processes start between the calls: grow and ask again, a few times.
    for (int tries = 0; tries < 5; ++tries) {
      auto count = static_cast<unsigned int>(buf.size());
      auto rc = api_.processes(d.handle, &count, buf.data());
      if (rc == nvml_error_insufficient_size) {
        buf.resize(std::max<std::size_t>(count + 8, buf.size() * 2));
        continue;
      }
      if (rc != nvml_success)
        return;
      for (unsigned int i = 0; i < count && i < buf.size(); ++i) {
        auto used = buf[i].usedGpuMemory;
        out.push_back({d.index, static_cast<int>(buf[i].pid),
                       used == nvml_value_not_available ? 0 : used});
      }
      return;
    }
  }

  void* lib_;
  nvml_api api_;
  std::vector<device> devices_;
  std::mutex processes_mutex_;
  std::vector<gpu_process> processes_cache_;
  std::optional<std::chrono::steady_clock::time_point> processes_at_;
};

/// The first of `names` the library exports, or nullptr.
template <class Fn>
Fn find_symbol(void* lib, std::initializer_list<const char*> names,
               const char** found = nullptr) {
  for (auto* name : names)
    if (void* sym = ::dlsym(lib, name)) {
      if (found)
        *found = name;
      return reinterpret_cast<Fn>(sym);
    }
  return nullptr;
}

} // namespace

result<std::vector<int>> parse_gpu_list(std::string_view text) {
  auto invalid = [&] {
    return make_error(ec::invalid_spec,
                      "invalid GPU list '" + std::string(text)
                          + "': use a count (4) or indices (0,2,3)");
  };
  auto s = trim(text);
  bool bracketed = !s.empty() && s.front() == '[';
  if (bracketed) {
    if (s.back() != ']')
      return invalid();
    s = trim(s.substr(1, s.size() - 2));
    if (s.empty())
      return std::vector<int>{}; // "[]": explicitly no GPUs
  }
  if (s.empty())
    return invalid();
  if (!bracketed && s.find(',') == std::string_view::npos) {
    auto count = parse_index(s);
    // No node has thousands of GPUs; a bigger count is a typo.
    if (!count || *count > 1024)
      return invalid();
    std::vector<int> out(static_cast<std::size_t>(*count));
    for (int i = 0; i < *count; ++i)
      out[static_cast<std::size_t>(i)] = i;
    return out;
  }
  std::set<int> seen;
  while (true) {
    auto comma = s.find(',');
    auto index = parse_index(s.substr(0, comma));
    if (!index || !seen.insert(*index).second)
      return invalid();
    if (comma == std::string_view::npos)
      break;
    s = s.substr(comma + 1);
  }
  // Sorted, so scheduling does not depend on how the user listed them.
  return std::vector<int>(seen.begin(), seen.end());
}

std::unique_ptr<gpu_inventory>
make_configured_inventory(std::vector<int> indices) {
  return std::make_unique<configured_inventory>(std::move(indices));
}

std::unique_ptr<gpu_inventory> load_nvml_inventory(std::string& why,
                                                   const char* library) {
  void* lib = ::dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    std::string detail = ::dlerror();
    if (detail.find("No such file") != std::string::npos)
      why = std::string(library)
            + " not found (no NVIDIA driver?): " + no_gpus_hint;
    else
      why = "cannot load " + std::string(library) + " (" + detail
            + "): " + no_gpus_hint;
    return nullptr;
  }
  auto fail = [&](std::string message) -> std::unique_ptr<gpu_inventory> {
    why = std::move(message) + ": " + no_gpus_hint;
    ::dlclose(lib);
    return nullptr;
  };

  nvml_api api;
  auto init = find_symbol<init_fn>(lib, {"nvmlInit_v2", "nvmlInit"});
  api.shutdown = find_symbol<shutdown_fn>(lib, {"nvmlShutdown"});
  auto count = find_symbol<count_fn>(
      lib, {"nvmlDeviceGetCount_v2", "nvmlDeviceGetCount"});
  auto handle = find_symbol<handle_fn>(
      lib, {"nvmlDeviceGetHandleByIndex_v2", "nvmlDeviceGetHandleByIndex"});
  api.name = find_symbol<string_fn>(lib, {"nvmlDeviceGetName"});
  api.uuid = find_symbol<string_fn>(lib, {"nvmlDeviceGetUUID"});
  api.memory = find_symbol<memory_fn>(lib, {"nvmlDeviceGetMemoryInfo"});
  api.utilization
      = find_symbol<utilization_fn>(lib, {"nvmlDeviceGetUtilizationRates"});
  const char* processes_name = nullptr;
  api.processes
      = find_symbol<processes_fn>(lib,
                                  {"nvmlDeviceGetComputeRunningProcesses_v3",
                                   "nvmlDeviceGetComputeRunningProcesses_v2",
                                   "nvmlDeviceGetComputeRunningProcesses"},
                                  &processes_name);
  api.processes_v1 = processes_name
                     && std::string_view(processes_name)
                            == "nvmlDeviceGetComputeRunningProcesses";
  api.error_string = find_symbol<error_string_fn>(lib, {"nvmlErrorString"});
  if (!init || !api.shutdown || !count || !handle)
    return fail(std::string(library)
                + " lacks nvmlInit, nvmlShutdown, nvmlDeviceGetCount or "
                  "nvmlDeviceGetHandleByIndex (not NVML?)");

  auto error_text = [&](nvml_return rc) {
    const char* text = api.error_string ? api.error_string(rc) : nullptr;
    return (text ? std::string(text) : "error") + " (NVML code "
           + std::to_string(rc) + ")";
  };
  if (auto rc = init(); rc != nvml_success)
    return fail("NVML initialization failed: " + error_text(rc));

  unsigned int n = 0;
  if (auto rc = count(&n); rc != nvml_success) {
    api.shutdown();
    return fail("NVML cannot count the GPUs: " + error_text(rc));
  }
  std::vector<nvml_inventory::device> devices;
  for (unsigned int i = 0; i < n; ++i) {
    nvml_device h = nullptr;
    // A device NVML cannot open (lost, or no permission) cannot be
    // scheduled either: leave it out.
    if (handle(i, &h) != nvml_success)
      continue;
    nvml_inventory::device d{static_cast<int>(i), h, {}, {}};
    char buf[std::max(nvml_name_size, nvml_uuid_size)] = {};
    if (api.name && api.name(h, buf, nvml_name_size) == nvml_success)
      d.name = buf;
    buf[0] = '\0';
    if (api.uuid && api.uuid(h, buf, nvml_uuid_size) == nvml_success)
      d.uuid = buf;
    devices.push_back(std::move(d));
  }
  why.clear();
  return std::make_unique<nvml_inventory>(lib, api, std::move(devices));
}

} // namespace corral
