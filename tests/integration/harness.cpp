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
            const std::string& err) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
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
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(),
                                   O_WRONLY | O_CREAT | O_TRUNC, 0644);
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

test_daemon::test_daemon(std::vector<std::string> extra) {
  std::vector<std::string> args{CORRAL_BINARY, "serve",       "--listen",
                                "127.0.0.1:0", "--state-dir", state_.path()};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = spawn(args, {}, state_ / "daemon.out", state_ / "daemon.err");
  auto endpoint = state_ / "endpoint";
  if (!wait_until([&] { return fs::exists(endpoint); }, 20s))
    throw std::runtime_error("daemon did not start: " + log());
  url_ = slurp(endpoint);
  while (!url_.empty() && std::isspace(static_cast<unsigned char>(url_.back())))
    url_.pop_back();
  if (fs::exists(state_ / "token")) {
    token_ = slurp(state_ / "token");
    while (!token_.empty()
           && std::isspace(static_cast<unsigned char>(token_.back())))
      token_.pop_back();
  }
}

std::string test_daemon::log() const {
  return slurp(state_ / "daemon.err");
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
  return slurp(state_ / ("runs/" + id + "/stdout.log"));
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
