#include "master/listeners.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace netsvr {
namespace {

constexpr int kBacklog = 4096;  // connections queued per socket before the kernel refuses

int bindSocket(const std::string& key, const sockaddr_in& addr, bool reusePort) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ConfigError(key + ": socket: " + strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reusePort) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr.sin_addr, ip, sizeof ip);
    std::string where = std::string(ip) + ":" + std::to_string(ntohs(addr.sin_port));
    if (err == EADDRINUSE)
      throw ConfigError(key + " = \"" + where +
                        "\": address already in use (is another netsvr or " +
                        "another program listening there?)");
    throw ConfigError(key + " = \"" + where + "\": cannot bind: " + strerror(err));
  }
  return fd;
}

struct PortSpec {
  const char* key;
  sockaddr_in addr;
};

std::vector<PortSpec> portSpecs(const Config& config) {
  sockaddr_in worker{}, task{};
  worker.sin_family = task.sin_family = AF_INET;
  worker.sin_addr.s_addr = htonl(config.worker.address.ip);
  worker.sin_port = htons(config.worker.address.port);
  task.sin_addr.s_addr = htonl(config.task.address.ip);
  task.sin_port = htons(config.task.address.port);
  return {{"Customer.ListenAddress",
           resolveListenAddress("Customer.ListenAddress", config.customer.listenAddress)},
          {"Worker.ListenAddress", worker},
          {"Task.ListenAddress", task}};
}

}  // namespace

sockaddr_in resolveListenAddress(const std::string& key, const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) throw ConfigError(key + " = \"" + address + "\": not host:port");
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  sockaddr_in out{};
  out.sin_family = AF_INET;
  char* end = nullptr;
  long portNumber = strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || portNumber < 0 || portNumber > 65535)
    throw ConfigError(key + " = \"" + address + "\": port must be 0..65535");
  out.sin_port = htons(uint16_t(portNumber));
  if (host.empty() || host == "0.0.0.0") {
    out.sin_addr.s_addr = htonl(INADDR_ANY);
  } else if (inet_pton(AF_INET, host.c_str(), &out.sin_addr) != 1) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res)
      throw ConfigError(key + " = \"" + address + "\": cannot resolve host: " + gai_strerror(rc));
    out.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }
  return out;
}

void Listeners::checkPortsFree() const {
  // A socket bound without SO_REUSEPORT cannot join a group of listening sockets, so this
  // probe fails exactly when another process (a second netsvr, say) listens on the port.
  for (const auto& spec : portSpecs(config_)) close(bindSocket(spec.key, spec.addr, false));
}

void Listeners::ensureSlots(int slots) {
  auto specs = portSpecs(config_);
  while (int(slots_.size()) < slots) {
    SlotSockets s;
    int* fds[3] = {&s.client, &s.worker, &s.task};
    try {
      for (int i = 0; i < 3; ++i) {
        *fds[i] = bindSocket(specs[size_t(i)].key, specs[size_t(i)].addr, true);
        if (listen(*fds[i], kBacklog) != 0)
          throw ConfigError(std::string(specs[size_t(i)].key) + ": listen: " + strerror(errno));
      }
    } catch (...) {
      for (int* fd : fds)
        if (*fd >= 0) close(*fd);
      throw;
    }
    slots_.push_back(s);
  }
}

Listeners::~Listeners() {
  for (const auto& s : slots_) {
    close(s.client);
    close(s.worker);
    close(s.task);
  }
}

}  // namespace netsvr
