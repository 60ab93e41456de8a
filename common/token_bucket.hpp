// Rate limiters of PROTOCOL.md §9. Pure code: time comes in as an argument.
#pragma once

#include <algorithm>
#include <cstdint>

namespace netsvr {

// §9.1: `rate` tokens per second, at most `burst`, initially full; one token per check. A rate
// <= 0 disables the bucket. Plain data, so it can live in shared memory under a lock.
struct TokenBucket {
  double tokens = 0;
  double burst = 0;
  int64_t lastNs = 0;

  void init(int32_t rate, int64_t nowNs) {
    burst = rate > 0 ? rate : 0;
    tokens = burst;
    lastNs = nowNs;
  }
  bool take(int32_t rate, int64_t nowNs) {
    if (rate <= 0) return true;
    if (nowNs > lastNs) {
      tokens = std::min(burst, tokens + double(nowNs - lastNs) * rate / 1e9);
      lastNs = nowNs;
    }
    if (tokens < 1) return false;
    tokens -= 1;
    return true;
  }
};

// §9.2: per-connection fixed window. The first `zeroWindow` messages always pass; then at most
// `maxRequests` per window, and a new window starts only when more than `windowSeconds` whole
// seconds have passed (Go's strict comparison).
struct FixedWindow {
  uint32_t windowStart = 0;  // unix seconds
  int32_t count = 0;         // negative while in the initial "zero window"

  void init(int32_t zeroWindow) { count = -zeroWindow; }
  bool allow(uint32_t nowSeconds, uint32_t windowSeconds, int32_t maxRequests) {
    if (count < 0) {
      ++count;
      return true;
    }
    if (nowSeconds - windowStart > windowSeconds) {
      windowStart = nowSeconds;
      count = 0;
    }
    if (count < maxRequests) {
      ++count;
      return true;
    }
    return false;
  }
};

}  // namespace netsvr
