#include "services/reactor.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>

#include <algorithm>
#include <cerrno>
#include <stdexcept>
#include <vector>

namespace corral {

reactor::reactor()
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      inotify_(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!epoll_ || !inotify_ || !wake_)
    throw std::runtime_error(
        "cannot create the event loop (epoll, inotify "
        "or eventfd); check fs.inotify.max_user_instances");
  for (int fd : {inotify_.get(), wake_.get()}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev);
  }
  thread_ = std::thread{[this] { loop(); }};
}

reactor::~reactor() {
  std::uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
  if (thread_.joinable())
    thread_.join();
}

bool reactor::watch(int fd, std::uint32_t events, fd_handler handler) {
  std::lock_guard guard{mtx_};
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    return false;
  fds_[fd] = std::make_shared<fd_handler>(std::move(handler));
  return true;
}

bool reactor::rearm(int fd, std::uint32_t events) {
  std::lock_guard guard{mtx_};
  if (!fds_.contains(fd))
    return false;
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  return ::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) == 0;
}

void reactor::unwatch(int fd) {
  std::lock_guard guard{mtx_};
  ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  fds_.erase(fd);
}

int reactor::watch_path(const std::string& path, path_handler handler,
                        std::uint32_t mask) {
  std::lock_guard guard{mtx_};
  // One inotify watch per inode, whoever asks: IN_MASK_ADD keeps the
  // events an earlier subscriber wanted.
  int wd
      = ::inotify_add_watch(inotify_.get(), path.c_str(), mask | IN_MASK_ADD);
  if (wd < 0)
    return -1;
  int id = next_path_id_++;
  paths_[id] = {wd, std::make_shared<path_handler>(std::move(handler))};
  by_wd_[wd].push_back(id);
  return id;
}

void reactor::unwatch_path(int id) {
  std::lock_guard guard{mtx_};
  auto it = paths_.find(id);
  if (it == paths_.end())
    return;
  int wd = it->second.wd;
  paths_.erase(it);
  auto& ids = by_wd_[wd];
  std::erase(ids, id);
  if (!ids.empty())
    return; // still wanted by someone else
  by_wd_.erase(wd);
  ::inotify_rm_watch(inotify_.get(), wd);
}

void reactor::on_inotify() {
  alignas(inotify_event) char buf[8192];
  for (;;) {
    auto n = ::read(inotify_.get(), buf, sizeof buf);
    if (n <= 0)
      return;
    // Coalesced per read: a burst of writes to one directory wakes each
    // subscriber once, not once per event.
    std::vector<int> wds;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (std::find(wds.begin(), wds.end(), ev->wd) == wds.end())
        wds.push_back(ev->wd);
    }
    std::vector<std::shared_ptr<path_handler>> hs;
    {
      std::lock_guard guard{mtx_};
      for (int wd : wds)
        if (auto it = by_wd_.find(wd); it != by_wd_.end())
          for (int id : it->second)
            hs.push_back(paths_.at(id).handler);
    }
    for (auto& h : hs)
      (*h)();
  }
}

void reactor::loop() {
  std::vector<epoll_event> events(64);
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), events.data(),
                         static_cast<int>(events.size()), -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return;
    }
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == wake_.get())
        return;
      if (fd == inotify_.get()) {
        on_inotify();
        continue;
      }
      std::shared_ptr<fd_handler> h;
      {
        std::lock_guard guard{mtx_};
        if (auto it = fds_.find(fd); it != fds_.end())
          h = it->second;
      }
      // The copy keeps the handler alive if it unwatches itself.
      if (h)
        (*h)(events[i].events);
    }
  }
}

} // namespace corral
