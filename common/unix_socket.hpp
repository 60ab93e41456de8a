// The abstract unix sockets that connect the processes of an instance (no file in
// the file system, gone with the process).
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <string>

namespace netsvr {

inline socklen_t abstractAddress(const std::string& name, sockaddr_un& addr) {
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t n = std::min(name.size(), sizeof addr.sun_path - 2);
  memcpy(addr.sun_path + 1, name.data(), n);  // leading NUL: the abstract namespace
  return socklen_t(offsetof(sockaddr_un, sun_path) + 1 + n);
}

// A listening socket (non-blocking, close-on-exec) on an abstract name; -1 with errno set.
inline int listenAbstract(const std::string& name, int backlog) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr;
  socklen_t len = abstractAddress(name, addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, backlog) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// Connects to an abstract name (a local stream connect completes or fails at once, so it
// blocks no loop); the socket is then made non-blocking if asked. -1 with errno set.
inline int connectAbstract(const std::string& name, bool nonBlocking) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_un addr;
  socklen_t len = abstractAddress(name, addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  if (nonBlocking) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

}  // namespace netsvr
