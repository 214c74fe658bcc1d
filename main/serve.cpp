#include "main/serve.hpp"

#include <fcntl.h>
#include <malloc.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/daemon.hpp"
#include "config/defaults.hpp"
#include "gateway/server.hpp"
#include "services/cgroup.hpp"
#include "services/command.hpp"
#include "services/daemon_config.hpp"
#include "services/gpu_inventory.hpp"
#include "services/proc.hpp"
#include "services/slurm.hpp"
#include "services/text.hpp"
#include "services/unique_fd.hpp"

extern char** environ;

namespace corral {

namespace {

namespace fs = std::filesystem;

struct startup_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void write_file_atomically(const std::string& path, const std::string& text,
                           mode_t mode) {
  auto tmp = path + ".tmp";
  unique_fd fd{
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)};
  if (!fd
      || ::write(fd.get(), text.data(), text.size())
             != static_cast<ssize_t>(text.size())
      || ::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0)
    throw startup_error("cannot write " + path + ": " + std::strerror(errno));
}

daemon_config load_config(const serve_flags& flags) {
  auto cfg = default_daemon_config();
  if (flags.config_file) {
    std::ifstream in{*flags.config_file};
    if (!in)
      throw startup_error("cannot read config file " + *flags.config_file + ": "
                          + std::strerror(errno));
    std::stringstream text;
    text << in.rdbuf();
    if (auto r = apply_config_file(cfg, text.str(), *flags.config_file); !r)
      throw startup_error(r.error().message);
  }
  if (flags.listen)
    cfg.listen = *flags.listen;
  if (flags.state_dir)
    cfg.state_dir = *flags.state_dir;
  if (flags.token_file)
    cfg.token_file = *flags.token_file;
  if (flags.cgroup)
    cfg.cgroup = *flags.cgroup;
  if (flags.no_auth)
    cfg.no_auth = true;
  if (flags.stop_runs_on_exit)
    cfg.stop_runs_on_exit = true;
  if (flags.gpus) {
    auto list = parse_gpu_list(*flags.gpus);
    if (!list)
      throw startup_error("--gpus: " + list.error().message);
    cfg.gpus = *list;
  }
  if (flags.executor)
    cfg.executor = *flags.executor;
  if (flags.slurm_log_dir)
    cfg.slurm.log_dir
        = fs::absolute(*flags.slurm_log_dir).lexically_normal().string();
  cfg.state_dir = fs::absolute(cfg.state_dir).lexically_normal().string();
  if (cfg.slurm.log_dir.empty())
    cfg.slurm.log_dir = (fs::path{cfg.state_dir} / "slurm").string();
  return cfg;
}

// An exclusive lock for as long as the daemon lives: a second daemon on the
// same state dir would fight over runs and the endpoint file.
unique_fd lock_state_dir(const std::string& dir) {
  auto path = dir + "/lock";
  unique_fd fd{::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)};
  if (!fd)
    throw startup_error("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    auto other = read_small_file(path).value_or("");
    throw startup_error("another corral daemon (pid "
                        + std::string{trim_right(other)}
                        + ") already uses the state dir " + dir);
  }
  auto pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd.get(), 0) == 0) [[maybe_unused]]
    auto n = ::pwrite(fd.get(), pid.data(), pid.size(), 0);
  return fd;
}

std::string random_token() {
  unsigned char bytes[24];
  if (::getrandom(bytes, sizeof bytes, 0) != sizeof bytes)
    throw startup_error("cannot read random bytes for the API token");
  std::string out;
  static constexpr char hex[] = "0123456789abcdef";
  for (auto b : bytes) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string load_token(const daemon_config& cfg) {
  if (cfg.no_auth)
    return {};
  if (!cfg.token_file.empty()) {
    auto text = read_small_file(cfg.token_file);
    if (!text)
      throw startup_error("cannot read token file " + cfg.token_file + ": "
                          + std::strerror(errno));
    std::string token{trim_right(*text)};
    if (token.empty())
      throw startup_error("token file " + cfg.token_file + " is empty");
    return token;
  }
  auto path = cfg.state_dir + "/token";
  if (auto text = read_small_file(path); text && !trim_right(*text).empty())
    return std::string{trim_right(*text)};
  auto token = random_token();
  write_file_atomically(path, token + "\n", 0600);
  return token;
}

// Where the runs' cgroups go: beside the daemon in its own (delegated)
// cgroup, one directory per state dir so daemons do not collide.
std::optional<std::string> cgroup_parent(const daemon_config& cfg,
                                         std::string& mount) {
  if (cfg.cgroup == "off")
    return std::nullopt;
  auto m = find_cgroup2_mount();
  auto own = proc_cgroup2_path(::getpid());
  if (!m || !own) {
    spdlog::warn("registry finds no cgroup v2 hierarchy; pausing falls back "
                 "to SIGSTOP on each process");
    return std::nullopt;
  }
  mount = *m;
  auto hash = std::hash<std::string>{}(cfg.state_dir);
  char name[32];
  std::snprintf(name, sizeof name, "corral-%08zx", hash & 0xffffffffu);
  auto base = *m + (*own == "/" ? "" : *own) + "/" + name;
  auto cg = cgroup::create(base);
  if (!cg || ::access((base + "/cgroup.procs").c_str(), W_OK) != 0) {
    spdlog::warn("registry cannot use cgroup {} ({}); pausing falls back to "
                 "SIGSTOP on each process (run under systemd with "
                 "Delegate=yes to fix)",
                 base, cg ? "not writable" : cg.error().message);
    return std::nullopt;
  }
  return base;
}

std::map<std::string, std::string> environment_map() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view kv{*e};
    auto eq = kv.find('=');
    if (eq != std::string_view::npos)
      env.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return env;
}

// A configured inventory wins over NVML: it is how a user keeps Corral to
// some of the GPUs, and how scheduling works without a driver.
std::unique_ptr<gpu_inventory> load_inventory(const daemon_config& cfg) {
  if (cfg.gpus) {
    spdlog::info("registry uses the configured GPUs ({} device(s))",
                 cfg.gpus->size());
    return make_configured_inventory(*cfg.gpus);
  }
  std::string why;
  if (auto nvml = load_nvml_inventory(why)) {
    spdlog::info("registry found {} GPU(s) through NVML",
                 nvml->devices().size());
    return nvml;
  }
  spdlog::info("registry runs without GPUs: {}", why);
  return make_configured_inventory({});
}

// Slurm's side of the runtime: its directory on the shared filesystem,
// how its logs are followed, and whether there is a client at all (the
// Slurm commands on PATH; without them a Slurm experiment is refused).
void configure_slurm(const daemon_config& cfg, runtime_options& opts) {
  auto& slurm = cfg.slurm;
  opts.exec.slurm_dir
      = slurm.log_dir.empty() ? cfg.state_dir + "/slurm" : slurm.log_dir;
  opts.exec.slurm_shim = slurm.shim;
  opts.default_executor = cfg.executor;
  opts.slurm_poll = slurm.poll;
  std::string missing;
  for (auto* cmd : {"sbatch", "squeue", "scontrol", "scancel"})
    if (!on_path(cmd))
      missing += (missing.empty() ? "" : ", ") + std::string{cmd};
  opts.slurm = missing.empty();
  if (!opts.slurm) {
    if (cfg.executor == "slurm")
      throw startup_error("the default executor is slurm, but " + missing
                          + " cannot be found on PATH: install Slurm's "
                            "client commands (Debian: slurm-client)");
    spdlog::debug("no Slurm client ({} not on PATH): executor slurm is "
                  "refused",
                  missing);
    return;
  }
  std::error_code err;
  fs::create_directories(opts.exec.slurm_dir, err);
  if (err)
    throw startup_error("cannot create slurm.log_dir " + opts.exec.slurm_dir
                        + ": " + err.message());
  std::string fs_name;
  bool network = is_network_filesystem(opts.exec.slurm_dir, &fs_name);
  opts.exec.slurm_poll_logs
      = slurm.log_watch == "poll" || (slurm.log_watch == "auto" && network);
  spdlog::info("slurm: jobs' files in {} ({}), logs followed by {}, squeue "
               "every {} ms",
               opts.exec.slurm_dir, network ? fs_name : "local filesystem",
               opts.exec.slurm_poll_logs ? "polling" : "inotify",
               opts.slurm_poll.count());
}

void raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
}

} // namespace

int serve(const serve_flags& flags) {
  // Logs go to stderr; stdout carries only the URLs a user acts on.
  spdlog::set_default_logger(spdlog::stderr_color_mt("corral"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  // Signals are taken by sigwait below; every thread started from here on
  // inherits the mask. Writes to closed sockets must not kill the daemon.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  try {
    auto cfg = load_config(flags);
    auto listen = parse_listen(cfg.listen);
    if (!listen)
      throw startup_error(listen.error().message);
    auto [host, port] = *listen;
    if (cfg.no_auth && !is_loopback(host))
      throw startup_error("refusing to listen on " + cfg.listen
                          + " without auth: --no-auth is for loopback "
                            "addresses only; drop it and use the token");
    raise_fd_limit();
    fs::create_directories(cfg.state_dir + "/runs");
    auto lock = lock_state_dir(cfg.state_dir);
    auto token = load_token(cfg);

    runtime_options opts;
    opts.exec.shim_path
        = (fs::read_symlink("/proc/self/exe").parent_path() / "corral-shim")
              .string();
    if (::access(opts.exec.shim_path.c_str(), X_OK) != 0)
      throw startup_error("cannot find the shim at " + opts.exec.shim_path
                          + ": it is built beside the corral binary");
    opts.exec.runs_dir = cfg.state_dir + "/runs";
    opts.exec.cgroup_parent = cgroup_parent(cfg, opts.exec.cgroup_mount);
    opts.exec.log_max_bytes = cfg.log_max_bytes;
    opts.exec.log_keep = cfg.log_keep;
    opts.pause_timeout = cfg.pause_timeout;
    opts.threads = defaults::actor_threads;
    auto inventory = load_inventory(cfg);
    opts.inventory = inventory.get();
    opts.max_concurrent = cfg.max_concurrent;
    opts.starvation_timeout = cfg.starvation_timeout;
    opts.store_path = cfg.state_dir + "/corral.db";
    configure_slurm(cfg, opts);
    std::unique_ptr<daemon_runtime> started;
    try {
      started = std::make_unique<daemon_runtime>(opts);
    } catch (...) {
      // A refused store: leave no empty cgroup behind (one that holds
      // runs' cgroups is busy and stays).
      if (opts.exec.cgroup_parent)
        (void)cgroup{*opts.exec.cgroup_parent}.remove();
      throw;
    }
    auto& runtime = *started;

    gateway::router_config rc;
    rc.token = token;
    rc.body_limit = defaults::body_limit;
    rc.daemon_cwd = fs::current_path().string();
    rc.daemon_env = environment_map();
    gateway::http_server server{runtime.backend(), rc,
                                defaults::gateway_threads};
    auto ep = server.start(host, port);
    auto host_text = ep.address().is_v6() ? "[" + ep.address().to_string() + "]"
                                          : ep.address().to_string();
    auto url = "http://" + host_text + ":" + std::to_string(ep.port());
    write_file_atomically(cfg.state_dir + "/endpoint", url + "\n", 0644);
    spdlog::info("gateway listens on {} (state dir {}, pause via {})", url,
                 cfg.state_dir,
                 opts.exec.cgroup_parent ? "cgroup v2 freezer" : "signals");
    std::cout << "corral is running: " << url << "\n"
              << "dashboard: " << url << "/"
              << (token.empty() ? "" : "#token=" + token) << "\n"
              << std::flush;

    // While waiting for a signal, give freed heap back to the kernel every
    // few seconds: a burst (a thousand runs started, a big listing) leaves
    // glibc's arenas holding pages nothing uses any more.
    int sig = 0;
    const timespec trim_every{5, 0};
    while ((sig = sigtimedwait(&stop_signals, nullptr, &trim_every)) < 0)
      ::malloc_trim(0);
    // Ordered shutdown: stop accepting, then either stop the runs or
    // leave them to the next daemon, save, end the actors.
    auto signal_name = sig == SIGINT ? "SIGINT" : "SIGTERM";
    server.stop();
    if (cfg.stop_runs_on_exit) {
      spdlog::info("daemon received {}; stopping every run before exit "
                   "(stop_runs_on_exit)",
                   signal_name);
      runtime.stop_all_runs();
    } else {
      spdlog::info("daemon received {}; the runs go on, and the next "
                   "'corral serve' on {} takes them back",
                   signal_name, cfg.state_dir);
    }
    runtime.save_all_runs();
    std::error_code ignore;
    fs::remove(cfg.state_dir + "/endpoint", ignore);
    // With every run ended, their cgroups are gone and the parent goes
    // too; with runs left running, it stays (rmdir fails while busy).
    if (opts.exec.cgroup_parent && cfg.stop_runs_on_exit)
      (void)cgroup{*opts.exec.cgroup_parent}.remove();
    spdlog::info("daemon exits");
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "corral serve: " << e.what() << "\n";
    return 1;
  }
}

} // namespace corral
