#include "gateway/server.hpp"

#include "gateway/router.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>

namespace corral::gateway {

namespace {

namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

/// A client that does not read its answer is cut after this.
constexpr auto write_timeout = 30s;
/// After the last answer on a connection, unread input is drained this
/// long (and at most linger_bytes) before closing, so that the kernel does
/// not reset the connection and destroy an answer the client has not read
/// yet, e.g. a 413 sent while the client is still uploading.
constexpr auto linger_timeout = 5s;
constexpr std::size_t linger_bytes = 32 << 20;
/// How long stop() lets connections wind down before abandoning them.
constexpr auto stop_timeout = 5s;
constexpr std::size_t header_limit = 16 << 10;

class session;

/// What sessions and backend callbacks share with the server. Backend
/// callbacks hold it by shared_ptr and may outlive the server, so it holds
/// no I/O objects: only whether the server is open, and the sessions.
struct server_core {
  /// Idle keep-alive connections and slow senders are cut after this;
  /// fixed before the server starts.
  std::chrono::milliseconds read_timeout = 30s;
  std::mutex mutex;
  bool open = true;
  std::uint64_t next_id = 0;
  /// Every session, for stop(); expired entries are pruned on accept.
  std::map<std::uint64_t, std::weak_ptr<session>> sessions;
  /// Sessions waiting for the backend: nothing else owns them then, since
  /// no I/O is pending, and the backend holds only weak references (a
  /// session must never outlive the io_context its socket belongs to).
  std::map<std::uint64_t, std::shared_ptr<session>> parked;
};

std::string describe(const tcp::endpoint& ep) {
  auto addr = ep.address();
  auto host = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  return host + ":" + std::to_string(ep.port());
}

bool is_http_error(const beast::error_code& ec) {
  return ec.category()
         == make_error_code(beast::http::error::bad_target).category();
}

/// One HTTP connection; all its work runs on its own strand.
class session : public std::enable_shared_from_this<session> {
public:
  session(tcp::socket&& socket, std::uint64_t id,
          std::shared_ptr<server_core> core,
          std::shared_ptr<const router_config> cfg, api_backend& backend)
      : stream_(std::move(socket)), id_(id), core_(std::move(core)),
        cfg_(std::move(cfg)), backend_(backend) {}

  void run() {
    net::dispatch(
        stream_.get_executor(),
        beast::bind_front_handler(&session::do_read, shared_from_this()));
  }

  /// Called by stop(): cancels whatever is pending.
  void force_close() {
    net::dispatch(stream_.get_executor(),
                  [self = shared_from_this()] { self->stream_.close(); });
  }

private:
  void do_read() {
    parser_.emplace();
    parser_->body_limit(cfg_->body_limit);
    parser_->header_limit(header_limit);
    stream_.expires_after(core_->read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            beast::bind_front_handler(&session::on_read_header,
                                                      shared_from_this()));
  }

  void on_read_header(beast::error_code ec, std::size_t) {
    if (ec)
      return on_read_error(ec);
    // curl asks before sending a large body; without an answer it waits a
    // second and sends anyway.
    auto& req = parser_->get();
    if (beast::iequals(req[http::field::expect], "100-continue")) {
      auto interim = std::make_shared<http::response<http::empty_body>>(
          http::status::continue_, req.version());
      http::async_write(stream_, *interim,
                        [self = shared_from_this(),
                         interim](beast::error_code ec, std::size_t) {
                          if (!ec)
                            self->do_read_body();
                        });
      return;
    }
    do_read_body();
  }

  void do_read_body() {
    http::async_read(
        stream_, buffer_, *parser_,
        beast::bind_front_handler(&session::on_read, shared_from_this()));
  }

  void on_read_error(beast::error_code failure) {
    if (failure == http::error::body_limit)
      return reply_and_close(make_error(ec::payload_too_large,
                                        "request body exceeds the limit of "
                                            + std::to_string(cfg_->body_limit)
                                            + " bytes"));
    if (failure == http::error::header_limit)
      return reply_and_close(
          make_error(ec::bad_request, "request header too large"));
    if (is_http_error(failure) && failure != http::error::end_of_stream
        && failure != http::error::partial_message)
      return reply_and_close(make_error(
          ec::bad_request, "malformed HTTP request: " + failure.message()));
    // End of stream, timeout, reset: nobody to answer.
    if (failure == http::error::end_of_stream)
      do_close();
  }

  void reply_and_close(const corral::error& err) {
    unsigned version = 11;
    if (parser_ && parser_->is_header_done())
      version = parser_->get().version();
    do_write(error_response(err, version, false));
  }

  void on_read(beast::error_code ec, std::size_t) {
    if (ec)
      return on_read_error(ec);
    // The backend may take long (a pause up to its timeout, a stop with
    // wait for minutes): no timer while it works.
    stream_.expires_never();
    auto req = parser_->release();
    parser_.reset();
    method_ = std::string(req.method_string());
    target_ = std::string(req.target());
    {
      std::lock_guard lock(core_->mutex);
      if (!core_->open)
        return;
      core_->parked.emplace(id_, shared_from_this());
    }
    auto weak = weak_from_this();
    handle_request(
        std::move(req), backend_, *cfg_,
        [weak, core = core_](response res) {
          post_to(weak, core, [res = std::move(res)](session& self) mutable {
            self.on_reply(std::move(res));
          });
        },
        [weak, core = core_](streamed_response res) {
          post_to(weak, core, [res = std::move(res)](session& self) mutable {
            self.on_stream(std::move(res));
          });
        });
  }

  /// Runs `fn` on the session's strand, if the server is open and the
  /// session alive. Under the lock the server cannot finish stop(), so the
  /// io_context is alive while we post to it.
  template <class F>
  static void post_to(const std::weak_ptr<session>& weak,
                      const std::shared_ptr<server_core>& core, F fn) {
    std::lock_guard lock(core->mutex);
    if (!core->open)
      return;
    auto self = weak.lock();
    if (!self)
      return;
    net::post(self->stream_.get_executor(),
              [self, fn = std::move(fn)]() mutable { fn(*self); });
  }

  /// A streamed body in progress: the head, its serializer, the source.
  struct body_stream {
    http::response<http::empty_body> head;
    std::optional<http::response_serializer<http::empty_body>> serializer;
    std::shared_ptr<body_source> source;
    std::optional<std::uint64_t> length; // Content-Length, if any
    std::uint64_t written = 0;
  };

  /// The session stays parked while it streams: between pieces only the
  /// source's callback, which holds it weakly, waits.
  void on_stream(streamed_response res) {
    auto bs = std::make_shared<body_stream>();
    if (auto it = res.head.find(http::field::content_length);
        it != res.head.end())
      bs->length = std::stoull(std::string(it->value()));
    bs->head = http::response<http::empty_body>{std::move(res.head.base())};
    bs->serializer.emplace(bs->head);
    bs->source = std::move(res.body);
    spdlog::debug("gateway streams {} {} with {}", method_, target_,
                  bs->head.result_int());
    stream_.expires_after(write_timeout);
    http::async_write_header(
        stream_, *bs->serializer,
        [self = shared_from_this(), bs](beast::error_code ec, std::size_t) {
          if (ec)
            return self->unpark();
          self->pull(bs);
        });
  }

  void pull(const std::shared_ptr<body_stream>& bs) {
    // The source may wait long for a log line: no timer meanwhile.
    stream_.expires_never();
    bs->source->next(
        [weak = weak_from_this(), core = core_, bs](body_source::piece p) {
          post_to(weak, core, [bs, p = std::move(p)](session& self) mutable {
            self.on_piece(bs, std::move(p));
          });
        });
  }

  void on_piece(const std::shared_ptr<body_stream>& bs, body_source::piece p) {
    if (!p) {
      unpark();
      // A body shorter or longer than announced leaves the connection
      // unusable: close it so the client sees the error.
      bool reuse
          = bs->length && *bs->length == bs->written && !bs->head.need_eof();
      return reuse ? do_read() : do_close();
    }
    bs->written += p->size();
    auto buf = std::make_shared<std::string>(std::move(*p));
    stream_.expires_after(write_timeout);
    net::async_write(stream_, net::buffer(*buf),
                     [self = shared_from_this(), bs, buf](beast::error_code ec,
                                                          std::size_t) {
                       if (ec)
                         return self->unpark();
                       self->pull(bs);
                     });
  }

  void unpark() {
    std::shared_ptr<session> keep; // released outside the lock
    std::lock_guard lock(core_->mutex);
    if (auto it = core_->parked.find(id_); it != core_->parked.end()) {
      keep = std::move(it->second);
      core_->parked.erase(it);
    }
  }

  void on_reply(response res) {
    auto keep = shared_from_this();
    unpark();
    spdlog::debug("gateway answers {} {} with {}", method_, target_,
                  res.result_int());
    do_write(std::move(res));
  }

  void do_write(response res) {
    auto sp = std::make_shared<response>(std::move(res));
    stream_.expires_after(write_timeout);
    http::async_write(
        stream_, *sp,
        [self = shared_from_this(), sp](beast::error_code ec, std::size_t) {
          self->on_write(sp->need_eof(), ec);
        });
  }

  void on_write(bool close, beast::error_code ec) {
    if (ec)
      return;
    if (close)
      return do_close();
    do_read();
  }

  void do_close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.expires_after(linger_timeout);
    do_drain();
  }

  void do_drain() {
    stream_.async_read_some(
        net::buffer(drain_buffer_),
        [self = shared_from_this()](beast::error_code ec, std::size_t n) {
          self->drained_ += n;
          if (ec || self->drained_ > linger_bytes) {
            self->stream_.close();
            return;
          }
          self->do_drain();
        });
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::uint64_t id_;
  std::shared_ptr<server_core> core_;
  std::shared_ptr<const router_config> cfg_;
  api_backend& backend_;
  std::string method_;
  std::string target_;
  std::array<char, 16 << 10> drain_buffer_;
  std::size_t drained_ = 0;
};

/// Accepts connections and starts a session for each.
class listener : public std::enable_shared_from_this<listener> {
public:
  listener(net::io_context& ioc, std::shared_ptr<server_core> core,
           std::shared_ptr<const router_config> cfg, api_backend& backend)
      : ioc_(ioc), acceptor_(net::make_strand(ioc)),
        retry_timer_(acceptor_.get_executor()), core_(std::move(core)),
        cfg_(std::move(cfg)), backend_(backend) {}

  /// Opens, binds and listens; throws on failure.
  tcp::endpoint listen(const tcp::endpoint& ep) {
    // asio opens sockets without SOCK_CLOEXEC; a listening socket leaked
    // into a run would keep a restarted daemon from binding again.
    int fd = ::socket(ep.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC,
                      IPPROTO_TCP);
    if (fd < 0)
      throw std::system_error(errno, std::generic_category(), "socket");
    beast::error_code ec;
    acceptor_.assign(ep.protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      throw boost::system::system_error(ec);
    }
    acceptor_.set_option(net::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(net::socket_base::max_listen_connections);
    // accept4 below must never block the thread.
    acceptor_.non_blocking(true);
    return acceptor_.local_endpoint();
  }

  void run() {
    net::dispatch(
        acceptor_.get_executor(),
        beast::bind_front_handler(&listener::do_accept, shared_from_this()));
  }

  void close() {
    net::dispatch(acceptor_.get_executor(), [self = shared_from_this()] {
      beast::error_code ignored;
      self->acceptor_.close(ignored);
      self->retry_timer_.cancel();
    });
  }

private:
  void do_accept() {
    acceptor_.async_wait(
        tcp::acceptor::wait_read,
        beast::bind_front_handler(&listener::on_ready, shared_from_this()));
  }

  void on_ready(beast::error_code ec) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open())
      return;
    if (ec) {
      spdlog::warn("gateway cannot wait for connections: {}", ec.message());
      return retry_later();
    }
    // accept4 with SOCK_CLOEXEC rather than asio's accept and a later
    // fcntl: a run spawned between the two would inherit the connection.
    for (;;) {
      int fd = ::accept4(acceptor_.native_handle(), nullptr, nullptr,
                         SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          break;
        spdlog::warn("gateway cannot accept a connection: {}",
                     std::strerror(errno));
        // Out of descriptors or memory: let the situation change instead
        // of spinning on a listening socket that stays readable.
        return retry_later();
      }
      start_session(fd);
    }
    do_accept();
  }

  void retry_later() {
    retry_timer_.expires_after(100ms);
    retry_timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
      if (!ec)
        self->do_accept();
    });
  }

  void start_session(int fd) {
    tcp::socket socket(net::make_strand(ioc_));
    beast::error_code ec;
    socket.assign(acceptor_.local_endpoint().protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      spdlog::warn("gateway cannot take a connection: {}", ec.message());
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    std::shared_ptr<session> s;
    {
      std::lock_guard lock(core_->mutex);
      if (!core_->open)
        return; // the socket closes as it goes out of scope
      for (auto it = core_->sessions.begin(); it != core_->sessions.end();)
        it = it->second.expired() ? core_->sessions.erase(it) : std::next(it);
      auto id = core_->next_id++;
      s = std::make_shared<session>(std::move(socket), id, core_, cfg_,
                                    backend_);
      core_->sessions.emplace(id, s);
    }
    s->run();
  }

  net::io_context& ioc_;
  tcp::acceptor acceptor_;
  net::steady_timer retry_timer_;
  std::shared_ptr<server_core> core_;
  std::shared_ptr<const router_config> cfg_;
  api_backend& backend_;
};

tcp::endpoint resolve(const std::string& host, std::uint16_t port,
                      net::io_context& ioc) {
  beast::error_code ec;
  auto addr = net::ip::make_address(host, ec);
  if (!ec)
    return {addr, port};
  tcp::resolver resolver(ioc);
  auto results = resolver.resolve(host, std::to_string(port),
                                  tcp::resolver::passive, ec);
  if (ec)
    throw boost::system::system_error(ec);
  if (results.empty())
    throw std::runtime_error("no address found");
  return results.begin()->endpoint();
}

/// Host header values a client may use to reach `bound`: what it was bound
/// to, the loopback names, and for a wildcard bind this machine's name and
/// addresses.
std::vector<std::string> hosts_for(const tcp::endpoint& bound,
                                   const std::string& host_arg) {
  auto port = std::to_string(bound.port());
  std::vector<std::string> out{describe(bound), "localhost:" + port,
                               "127.0.0.1:" + port, "[::1]:" + port};
  if (!host_arg.empty() && host_arg.find(':') == std::string::npos)
    out.push_back(host_arg + ":" + port);
  if (!bound.address().is_unspecified())
    return out;
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) == 0 && name[0] != '\0')
    out.push_back(std::string(name) + ":" + port);
  ifaddrs* ifs = nullptr;
  if (::getifaddrs(&ifs) == 0) {
    for (auto* i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr)
        continue;
      if (i->ifa_addr->sa_family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(i->ifa_addr);
        net::ip::address_v4 a(ntohl(sin->sin_addr.s_addr));
        out.push_back(a.to_string() + ":" + port);
      } else if (i->ifa_addr->sa_family == AF_INET6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        net::ip::address_v6::bytes_type bytes;
        std::memcpy(bytes.data(), sin6->sin6_addr.s6_addr, bytes.size());
        net::ip::address_v6 a(bytes);
        if (!a.is_link_local())
          out.push_back("[" + a.to_string() + "]:" + port);
      }
    }
    ::freeifaddrs(ifs);
  }
  return out;
}

} // namespace

struct http_server::impl {
  impl(api_backend& b, router_config c, int n)
      : backend(b), cfg(std::move(c)), threads(n < 1 ? 1 : n) {}

  api_backend& backend;
  router_config cfg;
  int threads;
  net::io_context ioc;
  std::shared_ptr<server_core> core = std::make_shared<server_core>();
  std::shared_ptr<listener> acceptor;
  /// Keeps the threads in run() while a request waits for the backend
  /// (no I/O pending then) and while stop() closes things one by one.
  std::optional<net::executor_work_guard<net::io_context::executor_type>>
      work_guard;
  std::vector<std::thread> workers;
  std::mutex running_mutex;
  std::condition_variable running_cv;
  int running = 0;
  bool started = false;
  bool stopped = false;

  void work() {
    for (;;) {
      try {
        ioc.run();
        break;
      } catch (const std::exception& e) {
        spdlog::error("gateway handler failed: {}", e.what());
      }
    }
    std::lock_guard lock(running_mutex);
    --running;
    running_cv.notify_all();
  }
};

http_server::http_server(api_backend& backend, router_config cfg, int threads)
    : impl_(std::make_unique<impl>(backend, std::move(cfg), threads)) {}

http_server::~http_server() {
  stop();
}

void http_server::set_read_timeout(std::chrono::milliseconds timeout) {
  if (impl_->started)
    throw std::logic_error("http_server: set the read timeout before start");
  impl_->core->read_timeout = timeout;
}

const router_config& http_server::config() const {
  return impl_->cfg;
}

tcp::endpoint http_server::start(const std::string& host, std::uint16_t port) {
  auto& d = *impl_;
  if (d.started)
    throw std::logic_error("http_server::start called twice");
  auto where = (host.find(':') != std::string::npos ? "[" + host + "]" : host)
               + ":" + std::to_string(port);
  tcp::endpoint bound;
  // The config is frozen once sessions share it; the listener needs it
  // before bind, and the allowed hosts are known only after.
  auto cfg = std::make_shared<router_config>(d.cfg);
  try {
    auto ep = resolve(host, port, d.ioc);
    d.acceptor = std::make_shared<listener>(d.ioc, d.core, cfg, d.backend);
    bound = d.acceptor->listen(ep);
  } catch (const boost::system::system_error& e) {
    d.acceptor.reset();
    throw std::runtime_error("cannot listen on " + where + ": "
                             + e.code().message());
  } catch (const std::system_error& e) {
    d.acceptor.reset();
    throw std::runtime_error("cannot listen on " + where + ": "
                             + e.code().message());
  } catch (const std::exception& e) {
    d.acceptor.reset();
    throw std::runtime_error("cannot listen on " + where + ": " + e.what());
  }
  for (auto& h : hosts_for(bound, host))
    if (std::find(cfg->allowed_hosts.begin(), cfg->allowed_hosts.end(), h)
        == cfg->allowed_hosts.end())
      cfg->allowed_hosts.push_back(h);
  d.cfg = *cfg;
  d.started = true;
  d.acceptor->run();
  d.work_guard.emplace(d.ioc.get_executor());
  d.running = d.threads;
  for (int i = 0; i < d.threads; ++i)
    d.workers.emplace_back([&d] { d.work(); });
  spdlog::debug("gateway listens on {}", describe(bound));
  return bound;
}

void http_server::stop() {
  auto& d = *impl_;
  if (!d.started || d.stopped)
    return;
  d.stopped = true;
  d.acceptor->close();
  std::vector<std::shared_ptr<session>> live;
  std::map<std::uint64_t, std::shared_ptr<session>> parked;
  {
    std::lock_guard lock(d.core->mutex);
    d.core->open = false;
    for (auto& [id, weak] : d.core->sessions)
      if (auto s = weak.lock())
        live.push_back(std::move(s));
    parked.swap(d.core->parked);
  }
  for (auto& s : live)
    s->force_close();
  live.clear();
  parked.clear();
  d.work_guard.reset();
  {
    // Closed connections end by themselves; whatever does not within the
    // timeout is abandoned with the io_context.
    std::unique_lock lock(d.running_mutex);
    if (!d.running_cv.wait_for(lock, stop_timeout,
                               [&] { return d.running == 0; }))
      d.ioc.stop();
  }
  for (auto& t : d.workers)
    t.join();
  d.workers.clear();
  spdlog::debug("gateway stopped");
}

} // namespace corral::gateway
