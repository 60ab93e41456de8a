// Counters that loadgen's client processes share with the controlling process: one anonymous
// shared mapping made before fork(). Each client process writes only its own ProcStats and its
// own per-group / per-message arrays (single writer), the controller only reads them (plus the
// stop flag, which only the controller writes). Plain integers accessed through atomic_ref.
#pragma once

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <stdexcept>

#include "latency_hist.hpp"

namespace stress {

inline uint64_t rd(const uint64_t& x) {
  return std::atomic_ref<uint64_t>(const_cast<uint64_t&>(x)).load(std::memory_order_relaxed);
}
inline void st(uint64_t& x, uint64_t v) {
  std::atomic_ref<uint64_t>(x).store(v, std::memory_order_relaxed);
}
inline void bump(uint64_t& x, uint64_t n = 1) {
  st(x, rd(x) + n);
}  // single writer
inline void raiseTo(uint64_t& x, uint64_t v) {
  if (v > rd(x)) st(x, v);
}

inline constexpr int kCloseCodeSlots = 17;  // 1000..1015, then "other"
inline int closeCodeSlot(int code) {
  return code >= 1000 && code <= 1015 ? code - 1000 : 16;
}

struct alignas(64) ProcStats {
  uint64_t opened = 0;  // 101 received
  uint64_t connectFailed = 0;
  uint64_t handshakeFailed = 0;  // includes "no socket" (EMFILE)
  uint64_t openNow = 0;
  uint64_t closedByServer = 0;  // Close frame from the gateway before we asked
  uint64_t reset = 0;           // dropped without a Close frame, before we asked
  uint64_t protocolErrors = 0;
  uint64_t welcomed = 0;     // 'W' received: bizsim logged the client in
  uint64_t received = 0;     // 'M' messages
  uint64_t ends = 0;         // clients that received their group's 'E'
  uint64_t allReceived = 0;  // 'M' messages for every client (group kAllClients, mix broadcasts)
  uint64_t allTotal = 0;     // 1 + the count of the 'E' with group kAllClients, once seen
  uint64_t settled = 0;      // opened clients with an 'E', or closed before getting one
  uint64_t outOfOrder = 0;   // 'M' with seq <= the last seq this client saw
  uint64_t foreign = 0;      // messages that are not ours (or a group out of range)
  uint64_t sendFailed = 0;
  uint64_t lastOpenNs = 0, lastWelcomeNs = 0, firstRxNs = 0, lastRxNs = 0;
  uint64_t latSumUs = 0, latMaxUs = 0;
  uint64_t closeCodes[kCloseCodeSlots] = {};
  uint64_t hist[kHistBuckets] = {};
};

struct Control {
  uint64_t stop = 0;  // set by the controller: close every connection and exit
};

// Layout: Control | ProcStats[procs] | groupTotal[groups] | per proc: groupConns[groups],
// groupRecv[groups], fanMax[msgs], fanCount[msgs]. groupTotal[g] = 1 + count of an 'E' seen.
class SharedArea {
 public:
  SharedArea(int procs, size_t groups, size_t msgs) : procs_(procs), groups_(groups), msgs_(msgs) {
    perProc_ = (2 * groups_ + 2 * msgs_) * sizeof(uint64_t);
    statsOff_ = align(sizeof(Control));
    totalsOff_ = align(statsOff_ + sizeof(ProcStats) * size_t(procs));
    arraysOff_ = align(totalsOff_ + groups_ * sizeof(uint64_t));
    size_ = arraysOff_ + perProc_ * size_t(procs);
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap of the shared statistics failed");
    base_ = static_cast<char*>(p);
    new (base_) Control();
    for (int i = 0; i < procs; ++i)
      new (base_ + statsOff_ + sizeof(ProcStats) * size_t(i)) ProcStats();
  }
  SharedArea(const SharedArea&) = delete;
  SharedArea& operator=(const SharedArea&) = delete;
  ~SharedArea() { munmap(base_, size_); }

  int procs() const { return procs_; }
  size_t groups() const { return groups_; }
  size_t msgs() const { return msgs_; }
  Control& control() { return *reinterpret_cast<Control*>(base_); }
  ProcStats& stats(int proc) {
    return *reinterpret_cast<ProcStats*>(base_ + statsOff_ + sizeof(ProcStats) * size_t(proc));
  }
  uint64_t* groupTotal() { return reinterpret_cast<uint64_t*>(base_ + totalsOff_); }
  uint64_t* groupConns(int proc) { return array(proc, 0); }
  uint64_t* groupRecv(int proc) { return array(proc, groups_); }
  uint64_t* fanMax(int proc) { return array(proc, 2 * groups_); }
  uint64_t* fanCount(int proc) { return array(proc, 2 * groups_ + msgs_); }

 private:
  static size_t align(size_t n) { return (n + 4095) & ~size_t(4095); }
  uint64_t* array(int proc, size_t at) {
    return reinterpret_cast<uint64_t*>(base_ + arraysOff_ + perProc_ * size_t(proc)) + at;
  }
  int procs_;
  size_t groups_, msgs_, perProc_ = 0, statsOff_ = 0, totalsOff_ = 0, arraysOff_ = 0, size_ = 0;
  char* base_ = nullptr;
};

}  // namespace stress
