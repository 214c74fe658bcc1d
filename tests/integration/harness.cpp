#include "tests/integration/harness.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "cli/http_client.hpp"
#include "cli/sse.hpp"
#include "services/proc.hpp"

extern char** environ;

namespace corral::test {

namespace fs = std::filesystem;

bool wait_until(const std::function<bool()>& pred,
                std::chrono::milliseconds limit) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

char proc_state(int pid) {
  auto st = read_proc_stat(pid);
  return st ? st->state : '?';
}

bool alive(int pid) {
  auto s = proc_state(pid);
  return s != '?' && s != 'Z' && s != 'X';
}

namespace {

pid_t spawn(const std::vector<std::string>& args,
            const std::vector<std::string>& extra_env, const std::string& out,
            const std::string& err, bool append = false) {
  // extra_env replaces a variable of the same name (getenv would find the
  // inherited one first).
  auto overridden = [&](std::string_view entry) {
    auto name = entry.substr(0, entry.find('=') + 1);
    for (auto& x : extra_env)
      if (std::string_view{x}.starts_with(name))
        return true;
    return false;
  };
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (!overridden(*e))
      env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_strings)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings = args;
  std::vector<char*> argv;
  for (auto& a : argv_strings)
    argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  int mode = O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), mode, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), mode, 0644);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    throw std::runtime_error("cannot start " + args[0]);
  return pid;
}

std::string slurp(const std::string& path) {
  std::ifstream in{path};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace

test_daemon::test_daemon(std::vector<std::string> extra)
    : own_state_(std::in_place) {
  state_path_ = own_state_->path();
  // A test's daemon takes its runs with it when it ends, so no test leaves
  // processes behind; the persistence tests start theirs otherwise.
  std::vector<std::string> args{
      CORRAL_BINARY, "serve",     "--listen",           "127.0.0.1:0",
      "--state-dir", state_path_, "--stop-runs-on-exit"};
  args.insert(args.end(), extra.begin(), extra.end());
  start(args, false);
}

test_daemon::test_daemon(const std::string& state_dir,
                         std::vector<std::string> extra, bool stop_runs_on_exit)
    : state_path_(state_dir) {
  std::vector<std::string> args{CORRAL_BINARY, "serve",       "--listen",
                                "127.0.0.1:0", "--state-dir", state_path_};
  if (stop_runs_on_exit)
    args.emplace_back("--stop-runs-on-exit");
  args.insert(args.end(), extra.begin(), extra.end());
  // A daemon that was SIGKILLed left its endpoint file: the new one's
  // address is known once it wrote its own.
  std::error_code ignored;
  fs::remove(in_state("endpoint"), ignored);
  {
    std::ofstream log{in_state("daemon.err"), std::ios::app};
    std::string line = "=== test harness: corral serve";
    for (std::size_t i = 1; i < args.size(); ++i)
      line += " " + args[i];
    log << line << " ===\n";
  }
  start(args, true);
}

std::string test_daemon::in_state(const std::string& name) const {
  return state_path_ + "/" + name;
}

void test_daemon::start(const std::vector<std::string>& args, bool append_log) {
  pid_ = spawn(args, {}, in_state("daemon.out"), in_state("daemon.err"),
               append_log);
  auto endpoint = in_state("endpoint");
  if (!wait_until(
          [&] {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
              pid_ = -1; // exited: no endpoint is coming
              return true;
            }
            return fs::exists(endpoint);
          },
          20s)
      || pid_ < 0)
    throw std::runtime_error("daemon did not start: " + log());
  url_ = slurp(endpoint);
  while (!url_.empty() && std::isspace(static_cast<unsigned char>(url_.back())))
    url_.pop_back();
  if (fs::exists(in_state("token"))) {
    token_ = slurp(in_state("token"));
    while (!token_.empty()
           && std::isspace(static_cast<unsigned char>(token_.back())))
      token_.pop_back();
  }
}

std::string test_daemon::log() const {
  return slurp(in_state("daemon.err"));
}

int test_daemon::terminate(std::chrono::seconds limit) {
  if (pid_ < 0)
    return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  auto end = std::chrono::steady_clock::now() + limit;
  while (::waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > end) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(10ms);
  }
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void test_daemon::kill9() {
  if (pid_ < 0)
    return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

test_daemon::~test_daemon() {
  terminate();
}

reply test_daemon::call(const std::string& method, const std::string& target,
                        const std::string& body,
                        const std::string& content_type,
                        std::optional<std::string> token) {
  auto r = cli::http_call(url_, method, target, body,
                          body.empty() ? "" : content_type,
                          token.value_or(token_), std::chrono::seconds{120});
  reply out;
  out.status = r.status;
  out.raw = r.body;
  if (!r.body.empty())
    out.body = nlohmann::json::parse(r.body, nullptr, false);
  return out;
}

nlohmann::json test_daemon::run(const std::string& id) {
  return call("GET", "/api/v1/runs/" + id).body;
}

std::string test_daemon::stdout_of(const std::string& id) const {
  return slurp(in_state("runs/" + id + "/stdout.log"));
}

reply test_daemon::submit(const std::string& yaml,
                          const std::string& base_dir) {
  nlohmann::json envelope{{"spec", yaml}, {"base_dir", base_dir}};
  return call("POST", "/api/v1/experiments", envelope.dump());
}

command_result run_corral(const std::vector<std::string>& args,
                          const std::vector<std::string>& env) {
  temp_dir out;
  std::vector<std::string> argv{CORRAL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  auto pid = spawn(argv, env, out / "out", out / "err");
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out / "out"),
          slurp(out / "err")};
}

bounded_result run_corral_bounded(const std::vector<std::string>& args,
                                  std::chrono::milliseconds limit) {
  temp_dir out;
  std::vector<std::string> argv{CORRAL_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  auto begun = std::chrono::steady_clock::now();
  auto pid = spawn(argv, {}, out / "out", out / "err");
  int status = 0;
  bounded_result r;
  if (!wait_until([&] { return ::waitpid(pid, &status, WNOHANG) == pid; },
                  limit)) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    r.timed_out = true;
  }
  r.took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - begun);
  r.exit_code = !r.timed_out && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out / "out");
  r.err = slurp(out / "err");
  return r;
}

std::optional<int> trainer_dir::pid(const std::string& role) const {
  std::ifstream in{path + "/" + role + ".pid"};
  int pid = 0;
  if (in >> pid)
    return pid;
  return std::nullopt;
}

long trainer_dir::count(const std::string& role) const {
  std::ifstream in{path + "/" + role + ".count"};
  long n = -1;
  in >> n;
  return n;
}

bool trainer_dir::has(const std::string& file) const {
  return fs::exists(path + "/" + file);
}

bool trainer_dir::wait_all_started(std::chrono::milliseconds limit) const {
  return wait_until(
      [&] {
        for (auto& r : roles)
          if (!pid(r) || count(r) < 1)
            return false;
        return true;
      },
      limit);
}

std::vector<int> trainer_dir::pids() const {
  std::vector<int> out;
  for (auto& r : roles)
    if (auto p = pid(r))
      out.push_back(*p);
  return out;
}

void trainer_dir::kill_leftovers() const {
  for (auto p : pids())
    if (alive(p) && read_cmdline(p).find(path) != std::string::npos)
      ::kill(p, SIGKILL);
}

std::string trainer_yaml(const std::string& name, const std::string& dir,
                         const std::string& extra_args,
                         const std::string& extra_keys) {
  std::string yaml = "experiments:\n  - name: " + name
                     + "\n    command: [python3, \"" CORRAL_FIXTURES_DIR
                       "/tree_trainer.py\", \""
                     + dir + "\"" + extra_args + "]\n";
  if (!extra_keys.empty())
    yaml += extra_keys;
  return yaml;
}

struct sse_follower::impl {
  mutable std::mutex mutex;
  mutable std::condition_variable cv;
  std::vector<received_event> events;
  bool done = false;
  int status = 0;
  std::thread thread;
};

sse_follower::sse_follower(
    const test_daemon& d, std::string target,
    std::function<bool(const std::vector<received_event>&)> enough)
    : impl_(std::make_shared<impl>()) {
  auto url = d.url();
  auto token = d.token();
  impl_->thread = std::thread([self = impl_, url, token,
                               target = std::move(target), enough] {
    cli::sse_parser parser;
    try {
      auto r = cli::http_stream(
          url, target, token,
          [&](std::string_view data) {
            std::lock_guard lock(self->mutex);
            self->status = 200;
            for (auto& e : parser.feed(data)) {
              self->events.push_back(
                  {e.event, e.id, nlohmann::json::parse(e.data, nullptr, false),
                   std::chrono::steady_clock::now()});
              if (e.event == "end" || (enough && enough(self->events)))
                return false;
            }
            self->cv.notify_all();
            return true;
          },
          std::chrono::seconds{60});
      std::lock_guard lock(self->mutex);
      self->status = r.status;
    } catch (const std::exception&) {
    }
    std::lock_guard lock(self->mutex);
    self->done = true;
    self->cv.notify_all();
  });
}

sse_follower::~sse_follower() {
  if (impl_->thread.joinable())
    impl_->thread.join();
}

std::vector<received_event> sse_follower::events() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->events;
}

bool sse_follower::wait_done(std::chrono::milliseconds limit) const {
  std::unique_lock lock(impl_->mutex);
  return impl_->cv.wait_for(lock, limit, [&] { return impl_->done; });
}

int sse_follower::status() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->status;
}

} // namespace corral::test
