// Addresses of the abstract unix sockets that connect the processes of an instance (no file in
// the file system, gone with the process).
#pragma once

#include <sys/socket.h>
#include <sys/un.h>

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

}  // namespace netsvr
