// FNV-1a, 64 bits: the same value in every process and binary version (std::hash promises
// neither), for names of shared objects and the hash of the shared-memory indexes.
#pragma once

#include <cstdint>
#include <string_view>

namespace netsvr {

inline uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace netsvr
