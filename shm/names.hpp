// Names of an instance's shared-memory objects. Every name derives from the instance key (a
// hash of the pid file's absolute path), so instances with different config files coexist and
// a stale instance's objects can be found and removed by prefix.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace netsvr::shm {

inline std::string instanceKeyFor(const std::string& absolutePidFile) {
  uint64_t h = 1469598103934665603ULL;  // FNV-1a 64
  for (unsigned char c : absolutePidFile) h = (h ^ c) * 1099511628211ULL;
  char out[17];
  snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
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

}  // namespace netsvr::shm
