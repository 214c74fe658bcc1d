// Pause, resume and stop latency of a process tree: Corral's API against
// the bare mechanisms on the same machine, in the same invocation, since
// these machines are noisy. Prints one JSON object per measure (bench/run.py
// turns them into docs/benchmarks.md).
//
//   bench_tree [--cycles N] [--stop-cycles N] [--psutil SCRIPT]
//
// Trees: 64 processes (`sh` and 63 children) that sleep, or that spin (the
// saturated case: 64 busy loops on this machine's cores); 100 processes
// that exit on SIGTERM for the stop. The API is timed from the request's
// first byte to the answer's last, on one keep-alive connection (so a Nagle
// or delayed-ACK stall would show); a pause answers once the kernel
// confirmed the tree frozen, a stop with `wait` once every process is
// reaped and the run reported stopped.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "services/cgroup.hpp"
#include "services/proc.hpp"
#include "tests/integration/harness.hpp"

using namespace corral;
using namespace corral::test;
using clock_type = std::chrono::steady_clock;
using nlohmann::json;

namespace {

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t)
      .count();
}

// One keep-alive HTTP/1.1 connection with TCP_NODELAY, as a client that
// cares about latency keeps it.
class http_conn {
public:
  http_conn(const std::string& url, std::string token)
      : token_(std::move(token)), host_(url.substr(url.find("//") + 2)) {
    auto colon = url.rfind(':');
    int port = std::stoi(url.substr(colon + 1));
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("cannot connect to " + url);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~http_conn() { ::close(fd_); }
  http_conn(const http_conn&) = delete;
  http_conn& operator=(const http_conn&) = delete;

  reply call(const std::string& method, const std::string& target,
             const std::string& body = "") {
    std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host_
                      + "\r\nAuthorization: Bearer " + token_
                      + "\r\nContent-Type: application/json\r\n"
                      + "Content-Length: " + std::to_string(body.size())
                      + "\r\n\r\n" + body;
    if (::send(fd_, req.data(), req.size(), MSG_NOSIGNAL)
        != static_cast<ssize_t>(req.size()))
      throw std::runtime_error("send failed");
    std::string in;
    std::size_t head_end = std::string::npos;
    std::size_t length = 0;
    char buf[16384];
    for (;;) {
      if (head_end == std::string::npos) {
        head_end = in.find("\r\n\r\n");
        if (head_end != std::string::npos) {
          auto lower = in.substr(0, head_end);
          std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
          auto cl = lower.find("content-length:");
          length
              = cl == std::string::npos ? 0 : std::stoul(lower.substr(cl + 15));
        }
      }
      if (head_end != std::string::npos && in.size() >= head_end + 4 + length)
        break;
      auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        throw std::runtime_error("connection closed");
      in.append(buf, static_cast<std::size_t>(n));
    }
    reply r;
    r.status = std::stoi(in.substr(9, 3));
    r.raw = in.substr(head_end + 4, length);
    r.body = json::parse(r.raw, nullptr, false);
    return r;
  }

private:
  int fd_ = -1;
  std::string token_;
  std::string host_;
};

json summary(const std::string& name, std::vector<double> v,
             const std::string& note = "") {
  std::sort(v.begin(), v.end());
  json j{{"measure", name}, {"n", v.size()}};
  if (!v.empty()) {
    j["median_ms"] = v[v.size() / 2];
    j["p99_ms"] = v[std::min(v.size() - 1, v.size() * 99 / 100)];
    j["max_ms"] = v.back();
  }
  if (!note.empty())
    j["note"] = note;
  return j;
}

void emit(json j, const std::string& group) {
  j["group"] = group;
  std::cout << j.dump() << std::endl;
}

std::string tree_command(int n, bool busy) {
  auto child
      = busy ? std::string{"(while :; do :; done)"} : std::string{"sleep 3600"};
  return "for i in $(seq " + std::to_string(n - 1) + "); do " + child
         + " & done; wait";
}

// `sh -c` of an n-process tree in its own process group (led by the
// returned pid), once all n processes exist.
pid_t spawn_tree(int n, bool busy) {
  pid_t root = ::fork();
  if (root == 0) {
    ::setpgid(0, 0);
    auto cmd = tree_command(n, busy);
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    ::_exit(127);
  }
  ::setpgid(root, root);
  wait_until([&] { return descendants_of(root).size() + 1 == std::size_t(n); },
             30s);
  return root;
}

// A tree this program owns, killed with its group at the end.
struct bare_tree {
  pid_t root = -1;
  std::vector<int> pids;

  bare_tree(int n, bool busy) : root(spawn_tree(n, busy)) {
    pids = descendants_of(root);
    pids.push_back(root);
  }
  ~bare_tree() {
    ::killpg(root, SIGKILL);
    ::killpg(root, SIGCONT);
    ::waitpid(root, nullptr, 0);
  }
  bool all(bool stopped) const {
    for (int pid : pids) {
      auto st = read_proc_stat(pid);
      bool is_stopped = st && (st->state == 'T' || st->state == 't');
      if (st && is_stopped != stopped)
        return false;
    }
    return true;
  }
  void wait_all(bool stopped) const {
    while (!all(stopped)) {
    }
  }
};

// The bare cgroup reference: one write, then wait on cgroup.events.
double bare_freeze(const cgroup& cg, bool freeze) {
  auto t0 = clock_type::now();
  (void)(freeze ? cg.freeze() : cg.thaw());
  while (true) {
    auto ev = cg.events();
    if (!ev || ev->frozen == freeze)
      break;
  }
  return ms_since(t0);
}

void measure_bare_signals(int cycles, bool busy, const std::string& group) {
  bare_tree tree{64, busy};
  std::vector<double> pg_stop, pg_cont, walk_stop, walk_cont;
  for (int i = 0; i < cycles; ++i) {
    auto t0 = clock_type::now();
    ::killpg(tree.root, SIGSTOP);
    tree.wait_all(true);
    pg_stop.push_back(ms_since(t0));
    t0 = clock_type::now();
    ::killpg(tree.root, SIGCONT);
    tree.wait_all(false);
    pg_cont.push_back(ms_since(t0));
    // The /proc walk: find the tree, then stop each process.
    t0 = clock_type::now();
    auto found = descendants_of(tree.root);
    found.push_back(tree.root);
    for (int pid : found)
      ::kill(pid, SIGSTOP);
    tree.wait_all(true);
    walk_stop.push_back(ms_since(t0));
    t0 = clock_type::now();
    found = descendants_of(tree.root);
    found.push_back(tree.root);
    for (int pid : found)
      ::kill(pid, SIGCONT);
    tree.wait_all(false);
    walk_cont.push_back(ms_since(t0));
  }
  emit(summary("killpg SIGSTOP, until all 64 show T", pg_stop), group);
  emit(summary("killpg SIGCONT, until none shows T", pg_cont), group);
  emit(summary("/proc walk + SIGSTOP each, until all show T", walk_stop),
       group);
  emit(summary("/proc walk + SIGCONT each", walk_cont), group);
}

void measure_psutil(const std::string& script, int cycles, bool busy,
                    const std::string& group) {
  bare_tree tree{64, busy};
  // Debian's python3, where python3-psutil is (not a pyenv on PATH).
  std::string cmd = "/usr/bin/python3 " + script + " "
                    + std::to_string(tree.root) + " " + std::to_string(cycles);
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && std::fgets(buf, sizeof buf, p))
    out += buf;
  if (!p || ::pclose(p) != 0) {
    emit({{"measure", "psutil walk"}, {"error", "python3-psutil failed"}},
         group);
    return;
  }
  auto j = json::parse(out);
  emit(summary("psutil children(recursive) + suspend each, until all stopped",
               j["pause"].get<std::vector<double>>()),
       group);
  emit(summary("psutil resume each", j["resume"].get<std::vector<double>>()),
       group);
}

// The bare stop: SIGTERM to the group, reaped by us (a subreaper).
void measure_bare_stop(int cycles, int n) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  std::vector<double> took;
  for (int i = 0; i < cycles; ++i) {
    pid_t root = spawn_tree(n, false);
    auto t0 = clock_type::now();
    ::killpg(root, SIGTERM);
    for (int reaped = 0; reaped < n; ++reaped)
      if (::waitpid(-1, nullptr, 0) <= 0)
        break;
    took.push_back(ms_since(t0));
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  emit(summary("bare: killpg SIGTERM, until all " + std::to_string(n)
                   + " are reaped",
               took),
       "stop");
}

std::string submit_tree(test_daemon& d, const std::string& name, int n,
                        bool busy) {
  auto r = d.submit("experiments:\n  - name: " + name
                    + "\n    command: [/bin/sh, -c, \"" + tree_command(n, busy)
                    + "\"]\n    stop: {grace: 10s}\n");
  if (r.status != 201)
    throw std::runtime_error("submit failed: " + r.raw);
  std::string id = r.body["runs"][0]["id"];
  if (!wait_until(
          [&] {
            return d.call("GET", "/api/v1/runs/" + id).body["processes"].size()
                   == std::size_t(n);
          },
          60s))
    throw std::runtime_error("the tree did not reach " + std::to_string(n)
                             + " processes");
  return id;
}

void measure_api_pause(test_daemon& d, int cycles, bool busy,
                       const std::string& group, bool realtime) {
  auto id = submit_tree(d, busy ? "busy64" : "idle64", 64, busy);
  auto run = d.call("GET", "/api/v1/runs/" + id).body;
  std::string mechanism = run["pause_mechanism"];
  http_conn conn{d.url(), d.token()};
  auto measure = [&](const std::string& label) {
    std::vector<double> pause, resume;
    for (int i = 0; i < cycles; ++i) {
      auto t0 = clock_type::now();
      auto p = conn.call("POST", "/api/v1/runs/" + id + "/pause");
      pause.push_back(ms_since(t0));
      t0 = clock_type::now();
      auto q = conn.call("POST", "/api/v1/runs/" + id + "/resume");
      resume.push_back(ms_since(t0));
      if (p.status != 200 || q.status != 200)
        throw std::runtime_error("pause/resume failed: " + p.raw + q.raw);
    }
    emit(summary("API pause (" + mechanism + ")" + label, pause), group);
    emit(summary("API resume (" + mechanism + ")" + label, resume), group);
  };
  measure("");
  if (realtime) {
    sched_param sp{};
    sp.sched_priority = 10;
    if (::sched_setscheduler(0, SCHED_FIFO, &sp) == 0) {
      measure(", observer at real-time priority");
      sp.sched_priority = 0;
      ::sched_setscheduler(0, SCHED_OTHER, &sp);
    } else {
      emit({{"measure", "real-time observer"},
            {"error",
             std::string{"sched_setscheduler: "} + std::strerror(errno)}},
           group);
    }
  }
  if (mechanism == "cgroup-v2") {
    auto mount = find_cgroup2_mount();
    auto rel = proc_cgroup2_path(run["pid"].get<int>());
    cgroup cg{*mount + *rel};
    std::vector<double> freeze, thaw;
    for (int i = 0; i < cycles; ++i) {
      freeze.push_back(bare_freeze(cg, true));
      thaw.push_back(bare_freeze(cg, false));
    }
    emit(summary("bare cgroup freeze, until cgroup.events says frozen 1",
                 freeze),
         group);
    emit(summary("bare cgroup thaw", thaw), group);
  }
  conn.call("POST", "/api/v1/runs/" + id + "/stop", R"({"force": true})");
  wait_until(
      [&] {
        auto s = d.call("GET", "/api/v1/runs/" + id).body["state"];
        return s == "stopped" || s == "failed";
      },
      30s);
}

void measure_api_stop(test_daemon& d, int cycles, int n) {
  std::vector<double> took;
  for (int i = 0; i < cycles; ++i) {
    auto id = submit_tree(d, "stop" + std::to_string(n), n, false);
    http_conn conn{d.url(), d.token()};
    auto t0 = clock_type::now();
    auto r = conn.call("POST", "/api/v1/runs/" + id + "/stop",
                       R"({"wait": true})");
    took.push_back(ms_since(t0));
    if (r.status != 200 || r.body["state"] != "stopped")
      throw std::runtime_error("stop failed: " + r.raw);
    // Reaped means gone: no pid of the tree may remain.
    if (!r.body["processes"].is_null() && !r.body["processes"].empty())
      throw std::runtime_error("processes left after the stop: " + r.raw);
  }
  emit(summary("API stop with wait: SIGTERM → all " + std::to_string(n)
                   + " reaped, run reported stopped",
               took),
       "stop");
}

} // namespace

int main(int argc, char** argv) {
  int cycles = 200, stop_cycles = 20;
  std::string psutil;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i];
    if (k == "--cycles")
      cycles = std::stoi(argv[i + 1]);
    else if (k == "--stop-cycles")
      stop_cycles = std::stoi(argv[i + 1]);
    else if (k == "--psutil")
      psutil = argv[i + 1];
  }
  try {
    // Bare references first: the stop reference reaps every child.
    measure_bare_stop(stop_cycles, 100);
    measure_bare_signals(cycles, false, "pause, idle tree");
    if (!psutil.empty())
      measure_psutil(psutil, cycles, false, "pause, idle tree");
    test_daemon d;
    measure_api_pause(d, cycles, false, "pause, idle tree", false);
    measure_api_stop(d, stop_cycles, 100);
    measure_bare_signals(cycles, true, "pause, 64 busy loops");
    if (!psutil.empty())
      measure_psutil(psutil, cycles, true, "pause, 64 busy loops");
    measure_api_pause(d, cycles, true, "pause, 64 busy loops", true);
  } catch (const std::exception& e) {
    std::cerr << "bench_tree: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
