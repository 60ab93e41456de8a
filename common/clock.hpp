// The clocks the gateway reads. Header-only; the only I/O is the clock itself.
#pragma once

#include <cstdint>
#include <ctime>

namespace netsvr {

// Nanoseconds on the monotonic clock (token buckets: they must not jump with the wall clock).
inline int64_t monotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// Seconds on the monotonic clock (heartbeat arithmetic).
inline uint32_t monotonicSeconds() {
  return uint32_t(monotonicNs() / 1000000000);
}

// Unix time in milliseconds: deadlines shared between processes through shared memory.
inline int64_t unixMs() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

}  // namespace netsvr
