// The control segment (DESIGN.md §3): worker table, business-link registry, runtime limits and
// per-worker metric blocks. Fixed layout of plain atomics, so any process reads it without
// asking a worker (`netsvr status`, Prometheus, the master after a crash).
#pragma once

#include <sys/socket.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "common/meter.hpp"
#include "common/token_bucket.hpp"
#include "common/uniqid.hpp"
#include "shm/robust_mutex.hpp"

namespace netsvr::shm {

inline constexpr uint32_t kControlMagic = 0x4E535652;  // "NSVR"
inline constexpr uint32_t kLayoutVersion = 6;          // bump on any layout change
inline constexpr int kMaxBizLinks = 1024;              // registered worker-port links, all workers
using netsvr::kMetricItems;

enum class WorkerState : uint32_t { Free = 0, Starting, Running, Draining, Exited };
// Moving a worker's business links to the new generation on reload (worker/handover_*.cpp):
// the master sets Asked before it signals the worker; the worker ends at Done or Failed.
enum class HandoverState : uint32_t { Idle = 0, Asked, Moving, Done, Failed };
const char* workerStateName(WorkerState state);
// Serving its clients and links: commands are routed to it, peers connect to it.
inline bool isLive(WorkerState s) {
  return s == WorkerState::Running || s == WorkerState::Draining;
}

// One meter of §10 as written by its owner worker; readers sum over workers.
struct MeterSlot {
  std::atomic<int64_t> count{0};
  std::atomic<double> rate1{0}, rate5{0}, rate15{0};  // events per second (EWMA)
};

// A token bucket shared by all workers; its rate is ControlBlock::limitOn*.
struct SharedBucket {
  RobustMutex mutex;
  TokenBucket bucket;
};

// Indexed by worker serial (the high byte of every uniqId counter the worker hands out).
struct WorkerInfo {
  std::atomic<uint32_t> state{0};        // WorkerState
  std::atomic<uint32_t> incarnation{0};  // bumped each time the serial is (re)assigned
  std::atomic<int32_t> pid{0};
  std::atomic<uint32_t> slot{0};
  std::atomic<uint32_t> generation{0};
  std::atomic<int64_t> clients{0};           // websocket connections that completed open
  std::atomic<int64_t> sockets{0};           // accepted client TCP connections not yet closed
  std::atomic<int64_t> bizLinks{0};          // registered worker-port links
  std::atomic<int64_t> taskLinks{0};         // open task-port links
  std::atomic<uint32_t> quiet{0};            // stopping, with every client gone and its events sent
  std::atomic<int32_t> announcerPid{0};      // reading this dead worker's table (written by itself)
  std::atomic<uint32_t> handover{0};         // HandoverState
  std::atomic<uint32_t> handoverVersion{0};  // the handover format this worker writes and reads
  char handoverError[240] = {};              // why links stayed (Failed), written by the worker
  MeterSlot meters[kMetricItems + 1];        // index = item number; 0 unused
};

struct BizLinkEntry {
  uint32_t used = 0;
  uint32_t ownerSerial = 0;
  uint32_t linkId = 0;  // the owner's local id of the link
  int32_t events = 0;   // Event bits of RegisterReq
  char connId[kConnIdLength] = {};
};

// Registered business links of every worker. Writers (a worker registering/unregistering its
// own links, the master removing a dead worker's) hold the mutex and bump `version`; event
// senders keep a private copy and refresh it when `version` moved.
struct BizRegistry {
  RobustMutex mutex;
  std::atomic<uint64_t> version{1};
  BizLinkEntry entries[kMaxBizLinks];
  std::atomic<uint64_t> roundRobin[3];  // OnOpen, OnClose, OnMessage counters
};

// One sample a second, written by the master, of what the status page charts: the clients online
// and every metric item's gateway-wide count (rates are differences between samples). In shared
// memory so that `netsvr status --json` shows the same history as the master's /status.json.
inline constexpr int kHistorySamples = 300;  // five minutes
struct HistorySample {
  std::atomic<int64_t> unixSec{0};
  std::atomic<int64_t> clients{0};
  std::atomic<int64_t> counts[kMetricItems + 1];
};
struct StatusHistory {
  std::atomic<uint64_t> written{0};  // samples so far; the newest is at (written - 1) % size
  HistorySample samples[kHistorySamples];
};

// The text of the config file in force (read by the master at start and at each reload), for the
// status page. A sequence lock: odd while the master writes, readers retry.
inline constexpr size_t kConfigTextMax = 32768;
struct ConfigText {
  std::atomic<uint32_t> sequence{0};
  std::atomic<uint32_t> length{0};
  char text[kConfigTextMax] = {};
};

struct ControlBlock {
  uint32_t magic = 0;
  uint32_t layoutVersion = 0;
  std::atomic<int32_t> masterPid{0};
  std::atomic<uint32_t> reloadsDone{0};  // bumped when a reload finished or was refused
  char reloadError[512] = {};            // "" when the last reload succeeded
  std::atomic<uint32_t> generation{0};   // the newest generation started by the master
  // `netsvr reload` writes its own executable here before it signals: the new generation runs
  // that binary (an upgrade from another path). Empty: the master's own path.
  char reloadBinary[4096] = {};
  std::atomic<int64_t> startedAt{0};  // unix seconds, for the meters' mean rate
  // Until then (unix ms) events with no registered receiver are held, not dropped: a reload or
  // a crash just closed business links, and the SDKs are reconnecting (3 s back-off).
  // One deadline per event kind (OnOpen, OnClose, OnMessage): only what the lost links served.
  std::atomic<int64_t> holdEventsUntilMs[3];
  std::atomic<int32_t> limitOnOpen{0};  // current global token-bucket rates (Limit command)
  std::atomic<int32_t> limitOnMessage{0};
  SharedBucket onOpenBucket;  // §9.1, global for the whole gateway
  SharedBucket onMessageBucket;
  std::atomic<int64_t> retiredMeters[kMetricItems + 1];  // counts of workers that are gone
  WorkerInfo workers[kMaxWorkerSerials];
  BizRegistry registry;
  // fnv1a64 of the config file the serving generation loaded: `status` compares the file on disk.
  std::atomic<uint64_t> configHash{0};
  StatusHistory history;
  ConfigText config;
};

inline constexpr int64_t kHoldEventsMs = 10000;  // longer than the SDK's 3 s reconnect back-off

// Asks every worker to hold events of these kinds (Event bits: 1 OnOpen, 2 OnClose,
// 4 OnMessage) for kHoldEventsMs instead of dropping them: the links that served them are gone
// and their business is reconnecting. Only ever extends a deadline.
void holdEvents(ControlBlock& control, int32_t events, int64_t nowUnixMs);

// One metric item over the whole gateway: every worker that is not Free plus the counts of the
// workers that are gone (the Metrics command and /metrics).
struct MeterTotal {
  int64_t count = 0;
  double rate1 = 0, rate5 = 0, rate15 = 0;  // events per second
};
MeterTotal meterTotal(const ControlBlock& control, int item);

// Appends one history sample (the master, once a second).
void recordHistory(ControlBlock& control, int64_t unixSec);
// Config text: the master publishes it; readers get a consistent copy (truncated to the buffer).
void publishConfigText(ControlBlock& control, const std::string& text);
std::string readConfigText(const ControlBlock& control);
// Is `pid` a worker (in any state but Free) or an announcer of this instance? Peer links accept
// only such processes.
bool listsProcess(const ControlBlock& control, int32_t pid);
// An abstract unix socket has no file permissions: any local process can connect to one (the
// names are listed in /proc/net/unix). Is the process at the other end of `fd` one of our own
// user's that the control block lists? `cred` tells who it was, for the log.
bool peerIsListed(int fd, const ControlBlock& control, ucred& cred);

// RAII owner of a mapping of the control segment.
class ControlSegment {
 public:
  // Creates (replacing any stale one) and initialises. Throws std::runtime_error.
  static std::unique_ptr<ControlSegment> create(const std::string& name);
  // Opens an existing one; nullptr (and `error` set) when absent or of another layout.
  static std::unique_ptr<ControlSegment> open(const std::string& name, std::string& error);
  static void remove(const std::string& name);

  ~ControlSegment();
  ControlBlock* operator->() const { return block_; }
  ControlBlock& block() const { return *block_; }

 private:
  ControlSegment(void* base, size_t size) : block_(static_cast<ControlBlock*>(base)), size_(size) {}
  ControlBlock* block_;
  size_t size_;
};

}  // namespace netsvr::shm
