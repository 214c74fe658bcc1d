#include "gateway/server.hpp"

#include "cli/http_client.hpp"
#include "tests/gateway/fake_backend.hpp"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace corral;
using namespace corral::gateway;
using namespace std::chrono_literals;
using corral::cli::http_call;
using corral::testing::fake_backend;

namespace {

std::string index_html() {
  std::ifstream in(std::filesystem::path(CORRAL_SOURCE_DIR)
                       / "web/dist/index.html",
                   std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

router_config auth_config() {
  router_config cfg;
  cfg.token = "static-server-test-token";
  return cfg;
}

/// Sends `data` on a fresh connection to `port` and reads what comes back
/// until `done` appears, the server closes, or 5 s pass.
std::string exchange(std::uint16_t port, const std::string& data,
                     const std::string& done) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL)
          == static_cast<ssize_t>(data.size()));
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (out.find(done) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0)
      break;
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

} // namespace

TEST_CASE("the server serves the dashboard at / without a token",
          "[server][integration][static]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto ep = aut.start("127.0.0.1", 0);
  auto url = "http://127.0.0.1:" + std::to_string(ep.port());
  auto reply = http_call(url, "GET", "/", "", "", "", 5s);
  REQUIRE(reply.status == 200);
  REQUIRE(reply.content_type == "text/html; charset=utf-8");
  REQUIRE(reply.body == index_html());
  REQUIRE(http_call(url, "GET", "/api/v1/runs", "", "", "", 5s).status == 401);
}

TEST_CASE("a HEAD of the dashboard leaves the connection usable",
          "[server][integration][static]") {
  fake_backend backend;
  http_server aut(backend, auth_config());
  auto port = aut.start("127.0.0.1", 0).port();
  auto host = "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
  // Pipelined: the answer to HEAD announces the length of a body it does
  // not send; the next answer must follow right after its head.
  auto data = exchange(port,
                       "HEAD / HTTP/1.1\r\n" + host
                           + "\r\nGET /healthz HTTP/1.1\r\n" + host + "\r\n",
                       "{\"ok\":true}\n");
  INFO(data);
  auto index = index_html();
  REQUIRE(data.starts_with("HTTP/1.1 200 OK\r\n"));
  REQUIRE(data.find("Content-Length: " + std::to_string(index.size()) + "\r\n")
          != std::string::npos);
  auto head_end = data.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  REQUIRE(data.substr(head_end + 4).starts_with("HTTP/1.1 200 OK\r\n"));
  REQUIRE(data.find(index) == std::string::npos);
  REQUIRE(data.ends_with("{\"ok\":true}\n"));
}
