// The listening sockets of an instance: one SO_REUSEPORT socket per worker slot for each of
// the client, worker and task ports. The master owns them for the whole life of the instance,
// so a worker's death or a reload never closes a socket with connections queued on it.
#pragma once

#include <netinet/in.h>

#include <string>
#include <vector>

#include "common/config.hpp"

namespace netsvr {

struct SlotSockets {
  int client = -1;
  int worker = -1;
  int task = -1;
};

class Listeners {
 public:
  explicit Listeners(const Config& config) : config_(config) {}
  ~Listeners();
  Listeners(const Listeners&) = delete;
  Listeners& operator=(const Listeners&) = delete;

  // Fails (ConfigError, naming the key) when another process already listens on a port.
  void checkPortsFree() const;
  // Binds sockets until there are `slots` sets. Throws ConfigError on a bind failure.
  void ensureSlots(int slots);
  const SlotSockets& slot(int index) const { return slots_.at(size_t(index)); }
  int slotCount() const { return int(slots_.size()); }

 private:
  const Config& config_;
  std::vector<SlotSockets> slots_;
};

// Resolves "host:port" ("" or "0.0.0.0" host = all interfaces) for binding. Throws ConfigError.
sockaddr_in resolveListenAddress(const std::string& key, const std::string& address);

}  // namespace netsvr
