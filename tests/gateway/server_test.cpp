#include "gateway/server.hpp"

#include "cli/http_client.hpp"
#include "tests/gateway/fake_backend.hpp"

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace corral;
using namespace corral::gateway;
using namespace std::chrono_literals;
using corral::cli::http_call;
using corral::testing::fake_backend;
using json = nlohmann::json;

namespace {

constexpr const char* token = "server-test-token";

router_config auth_config() {
  router_config cfg;
  cfg.token = token;
  return cfg;
}

std::string url_of(const boost::asio::ip::tcp::endpoint& ep) {
  return "http://127.0.0.1:" + std::to_string(ep.port());
}

/// A plain blocking client socket, for what the CLI's client does not do
/// (keep-alive, raw bytes, staying idle).
class raw_socket {
public:
  explicit raw_socket(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
            == 0);
  }
  ~raw_socket() { ::close(fd_); }

  void send(const std::string& data) {
    REQUIRE(::send(fd_, data.data(), data.size(), MSG_NOSIGNAL)
            == static_cast<ssize_t>(data.size()));
  }

  /// Reads until `pattern` has appeared `count` times, EOF, or the timeout.
  std::string read_until(const std::string& pattern, int count,
                         std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (occurrences(pattern) < count && !eof_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
        break;
      char buf[4096];
      auto n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0)
        eof_ = true;
      else
        data_.append(buf, static_cast<std::size_t>(n));
    }
    return data_;
  }

  /// True once the server has closed the connection.
  bool closed_within(std::chrono::milliseconds timeout) {
    read_until("\x01never\x01", 1, timeout);
    return eof_;
  }

private:
  int occurrences(const std::string& pattern) const {
    int n = 0;
    for (auto pos = data_.find(pattern); pos != std::string::npos;
         pos = data_.find(pattern, pos + 1))
      ++n;
    return n;
  }

  int fd_ = -1;
  std::string data_;
  bool eof_ = false;
};

std::string healthz_request(std::uint16_t port) {
  return "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port)
         + "\r\n\r\n";
}

} // namespace

TEST_CASE("the server answers healthz and fills its allowed hosts",
          "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto ep = aut.start("127.0.0.1", 0);
  REQUIRE(ep.port() != 0);
  auto port = std::to_string(ep.port());
  auto& hosts = aut.config().allowed_hosts;
  REQUIRE(std::find(hosts.begin(), hosts.end(), "127.0.0.1:" + port)
          != hosts.end());
  REQUIRE(std::find(hosts.begin(), hosts.end(), "localhost:" + port)
          != hosts.end());

  auto reply = http_call(url_of(ep), "GET", "/healthz", "", "", "", 5s);
  REQUIRE(reply.status == 200);
  REQUIRE(reply.content_type == "application/json");
  REQUIRE(json::parse(reply.body) == json{{"ok", true}});
  // The name a browser uses works as well as the address.
  reply = http_call("http://localhost:" + port, "GET", "/healthz", "", "", "",
                    5s);
  REQUIRE(reply.status == 200);
}

TEST_CASE("the server checks the token", "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto url = url_of(aut.start("127.0.0.1", 0));
  auto reply = http_call(url, "GET", "/api/v1/runs", "", "", "", 5s);
  REQUIRE(reply.status == 401);
  REQUIRE(json::parse(reply.body)["error"]["code"] == "unauthorized");
  reply = http_call(url, "GET", "/api/v1/runs", "", "", token, 5s);
  REQUIRE(reply.status == 200);
  REQUIRE(json::parse(reply.body)["runs"].size() == 3);
  reply = http_call(url, "POST", "/api/v1/runs/ppo-1/stop", R"({"grace_s": 1})",
                    "application/json", token, 5s);
  REQUIRE(reply.status == 200);
  REQUIRE(backend.last_stop.grace == millis{1000});
}

TEST_CASE("the server refuses a body over the limit with 413",
          "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto url = url_of(aut.start("127.0.0.1", 0));
  std::string big(2 << 20, 'x');
  auto reply = http_call(url, "POST", "/api/v1/experiments", big,
                         "application/yaml", token, 10s);
  REQUIRE(reply.status == 413);
  REQUIRE(json::parse(reply.body)["error"]["code"] == "payload_too_large");
  REQUIRE(backend.recorded().empty());
  // The server is still fine afterwards.
  REQUIRE(http_call(url, "GET", "/healthz", "", "", "", 5s).status == 200);
}

TEST_CASE("a slow backend answer arrives after the read timeout",
          "[server][integration]") {
  fake_backend backend;
  backend.delay = 1200ms;
  http_server aut(backend, auth_config());
  aut.set_read_timeout(300ms);
  auto url = url_of(aut.start("127.0.0.1", 0));
  auto reply
      = http_call(url, "POST", "/api/v1/runs/ppo-1/pause", "", "", token, 10s);
  REQUIRE(reply.status == 200);
  REQUIRE(json::parse(reply.body)["state"] == "paused");
}

TEST_CASE("idle connections are closed after the read timeout",
          "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  aut.set_read_timeout(300ms);
  auto ep = aut.start("127.0.0.1", 0);
  raw_socket client(ep.port());
  REQUIRE(client.closed_within(3s));
}

TEST_CASE("a connection serves several requests", "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto ep = aut.start("127.0.0.1", 0);
  raw_socket client(ep.port());
  // Pipelined: the second request waits in the buffer for the first answer.
  client.send(healthz_request(ep.port()) + healthz_request(ep.port()));
  auto data = client.read_until("HTTP/1.1 200 OK", 2, 5s);
  INFO(data);
  REQUIRE(data.find("HTTP/1.1 200 OK") != data.rfind("HTTP/1.1 200 OK"));
  REQUIRE(data.find("Cache-Control: no-store") != std::string::npos);
}

TEST_CASE("the server answers Expect: 100-continue", "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto ep = aut.start("127.0.0.1", 0);
  raw_socket client(ep.port());
  std::string body = R"({"force": true})";
  client.send("POST /api/v1/runs/ppo-1/stop HTTP/1.1\r\nHost: 127.0.0.1:"
              + std::to_string(ep.port()) + "\r\nAuthorization: Bearer " + token
              + "\r\nContent-Type: application/json\r\nContent-Length: "
              + std::to_string(body.size())
              + "\r\nExpect: 100-continue\r\n\r\n");
  auto data = client.read_until("HTTP/1.1 100 Continue", 1, 5s);
  REQUIRE(data.starts_with("HTTP/1.1 100 Continue"));
  client.send(body);
  data = client.read_until("HTTP/1.1 200 OK", 1, 5s);
  INFO(data);
  REQUIRE(data.find("HTTP/1.1 200 OK") != std::string::npos);
  REQUIRE(backend.last_stop.force);
}

TEST_CASE("a malformed request gets a 400 and the connection closes",
          "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto ep = aut.start("127.0.0.1", 0);
  raw_socket client(ep.port());
  client.send("NOT HTTP AT ALL\r\n\r\n");
  auto data = client.read_until("\r\n\r\n", 1, 5s);
  INFO(data);
  REQUIRE(data.starts_with("HTTP/1.1 400"));
  REQUIRE(client.closed_within(3s));
}

TEST_CASE("a port in use is a clear error", "[server][integration]") {
  fake_backend backend;
  http_server first(backend, auth_config());
  auto ep = first.start("127.0.0.1", 0);
  http_server second(backend, auth_config());
  auto where = "127.0.0.1:" + std::to_string(ep.port());
  REQUIRE_THROWS_WITH(second.start("127.0.0.1", ep.port()),
                      "cannot listen on " + where + ": Address already in use");
  http_server third(backend, auth_config());
  REQUIRE_THROWS_WITH(
      third.start("not a host name", 0),
      Catch::StartsWith("cannot listen on not a host name:0: "));
}

TEST_CASE("the server's sockets are close-on-exec", "[server][integration]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto ep = aut.start("127.0.0.1", 0);
  raw_socket client(ep.port());
  client.send(healthz_request(ep.port()));
  client.read_until("HTTP/1.1 200 OK", 1, 5s);
  int sockets = 0;
  for (auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code err;
    auto target = std::filesystem::read_symlink(entry.path(), err);
    if (err || !target.string().starts_with("socket:"))
      continue;
    int fd = std::stoi(entry.path().filename().string());
    auto flags = ::fcntl(fd, F_GETFD);
    if (flags < 0)
      continue; // the directory's own descriptor, closed meanwhile
    INFO("fd " << fd);
    CHECK((flags & FD_CLOEXEC) != 0);
    ++sockets;
  }
  // The listener, the accepted connection and the test's client.
  REQUIRE(sockets >= 3);
}

TEST_CASE("stop ends pending requests and later answers are ignored",
          "[server][integration]") {
  fake_backend backend;
  backend.defer = true;
  std::string client_error;
  {
    http_server aut(backend, auth_config());
    auto url = url_of(aut.start("127.0.0.1", 0));
    std::thread client([&] {
      try {
        http_call(url, "POST", "/api/v1/runs/ppo-1/pause", "", "", token, 10s);
      } catch (const cli::connection_error& e) {
        client_error = e.what();
      }
    });
    for (int i = 0; i < 500 && backend.pending_count() == 0; ++i)
      std::this_thread::sleep_for(10ms);
    REQUIRE(backend.pending_count() == 1);
    auto before = std::chrono::steady_clock::now();
    aut.stop();
    REQUIRE(std::chrono::steady_clock::now() - before < 3s);
    client.join();
  }
  REQUIRE_THAT(client_error, Catch::Contains("lost the connection"));
  // The server is gone; its callback must be harmless.
  backend.answer_pending();
}

TEST_CASE("the client names an unreachable server", "[server][client]") {
  fake_backend backend;
  std::uint16_t port = 0;
  {
    http_server aut(backend, auth_config());
    port = aut.start("127.0.0.1", 0).port();
  }
  auto url = "http://127.0.0.1:" + std::to_string(port);
  REQUIRE_THROWS_WITH(
      http_call(url, "GET", "/healthz", "", "", "", 2s),
      "cannot connect to corral at " + url
          + ": Connection refused — is `corral serve` running?");
  REQUIRE_THROWS_AS(http_call("ftp://x", "GET", "/", "", "", "", 2s),
                    std::invalid_argument);
}
