#pragma once
/// One thread that turns kernel readiness (pidfds, pipes, inotify) into
/// callbacks, so no actor ever blocks and no run needs a thread of its own.

#include "services/unique_fd.hpp"

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace corral {

class reactor {
public:
  /// Called on the reactor thread with the epoll event bits. Keep it short:
  /// read what is ready and hand it to an actor.
  using fd_handler = std::function<void(std::uint32_t events)>;
  /// Called on the reactor thread when a watched path changed.
  using path_handler = std::function<void()>;

  reactor();
  ~reactor();
  reactor(const reactor&) = delete;
  reactor& operator=(const reactor&) = delete;

  /// Watches fd for events (EPOLLIN, ...). The caller keeps owning fd and
  /// must unwatch() before closing it.
  bool watch(int fd, std::uint32_t events, fd_handler handler);
  void unwatch(int fd);
  /// Arms a watch made with EPOLLONESHOT again, once its handler's
  /// receiver has read what was ready (a level-triggered watch would call
  /// the handler again and again until then, flooding the receiver).
  bool rearm(int fd, std::uint32_t events);

  /// Watches a file or directory with the one shared inotify instance
  /// (IN_MODIFY by default); several subscribers may watch one path.
  /// Returns a subscription id for unwatch_path, or -1.
  int watch_path(const std::string& path, path_handler handler,
                 std::uint32_t mask = 0x00000002 /* IN_MODIFY */);
  void unwatch_path(int id);

private:
  void loop();
  void on_inotify();

  unique_fd epoll_;
  unique_fd inotify_;
  unique_fd wake_; // eventfd to end the loop
  std::mutex mtx_;
  std::map<int, std::shared_ptr<fd_handler>> fds_;
  struct path_subscription {
    int wd;
    std::shared_ptr<path_handler> handler;
  };
  std::map<int, path_subscription> paths_; // by subscription id
  /// The subscriptions of each inotify watch: an event finds its handlers
  /// without a walk over every run's watches.
  std::map<int, std::vector<int>> by_wd_;
  int next_path_id_ = 1;
  std::thread thread_;
};

} // namespace corral
