// sd_notify(3) and sd_notifyf(3) without libsystemd: the notification protocol is one datagram
// of "KEY=VALUE" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (sd_notify(3), "NOTES"; a
// leading '@' is the abstract namespace). libsystemd pulled six more libraries (libgcrypt, lz4,
// lzma, zstd, libcap, libgpg-error) into every process of the gateway, about 0.8 MiB of RSS
// each at start-up, for these two calls (docs/PERFORMANCE.md, "Idle memory").
// Declared by <systemd/sd-daemon.h> (header only; nothing links libsystemd).
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <string>

extern "C" int sd_notify(int unset_environment, const char* state) {
  const char* env = getenv("NOTIFY_SOCKET");
  if (!env || !*env) return 0;
  std::string path = env;
  if (unset_environment) unsetenv("NOTIFY_SOCKET");
  if (!state) return -EINVAL;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || path.size() >= sizeof addr.sun_path)
    return -EAFNOSUPPORT;
  memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '/'));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  ssize_t n =
      sendto(fd, state, strlen(state), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  return n < 0 ? -err : 1;
}

extern "C" int sd_notifyf(int unset_environment, const char* format, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, format);
  int n = vsnprintf(buf, sizeof buf, format, ap);
  va_end(ap);
  if (n < 0 || size_t(n) >= sizeof buf) return -EINVAL;
  return sd_notify(unset_environment, buf);
}
