// Names of an instance's shared-memory objects. Every name derives from the instance key (a
// hash of the pid file's absolute path), so instances with different config files coexist and
// a stale instance's objects can be found and removed by prefix.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/fnv1a.hpp"

namespace netsvr::shm {

inline std::string instanceKeyFor(const std::string& absolutePidFile) {
  char out[17];
  snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(fnv1a64(absolutePidFile)));
  return out;
}

// Object names as given to shm_open (they appear in /dev/shm without the slash).
inline std::string namePrefix(const std::string& key) {
  return "netsvr-" + key + "-";
}
inline std::string controlName(const std::string& key) {
  return namePrefix(key) + "ctl";
}
inline std::string workerSegmentName(const std::string& key, int serial) {
  return namePrefix(key) + "w" + std::to_string(serial);
}
// Abstract unix socket of a worker's peer listener (no file in the file system).
inline std::string peerSocketName(const std::string& key, int serial, uint32_t incarnation) {
  return namePrefix(key) + "peer" + std::to_string(serial) + "." + std::to_string(incarnation);
}

// Abstract unix socket on which a worker of a new generation takes business links (reload).
inline std::string handoverSocketName(const std::string& key, int serial, uint32_t incarnation) {
  return namePrefix(key) + "handover" + std::to_string(serial) + "." + std::to_string(incarnation);
}

}  // namespace netsvr::shm
