// A worker process (DESIGN.md §2): one libuv loop running the websocket server (lws), the
// business links of the worker and task ports, and the peer links to the other workers.
#pragma once

#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/uniqid.hpp"
#include "shm/conn_table.hpp"
#include "shm/control.hpp"

namespace netsvr {

struct WorkerOptions {
  std::string configPath;
  int slot = 0;
  uint32_t generation = 0;
  int serial = 0;
};

int runWorker(const WorkerOptions& options);

class WsServer;
class BizLinks;
class PeerLinks;
class Router;
class HttpClient;
class Handover;

// Listening sockets inherited from the master: fds 3, 4, 5 are the client, worker and task
// sockets of one slot set, 6, 7, 8 of the next, and so on. A worker accepts on several sets
// when a reload lowered the number of workers (no socket is ever left without an acceptor).
inline constexpr int kFirstListenFd = 3;
inline constexpr const char* kListenSetsEnv = "NETSVR_LISTEN_SETS";  // number of sets

// Everything a worker's modules share. One per process, owned by runWorker().
struct Worker {
  Config config;
  std::string instanceKey;
  int slot = 0;
  uint32_t generation = 0;
  int serial = 0;
  uint32_t incarnation = 0;
  uv_loop_t* loop = nullptr;
  std::unique_ptr<shm::ControlSegment> control;
  std::unique_ptr<shm::ConnTable> table;  // this worker's own routing table (single writer)
  std::string uniqIdPrefix;               // 12 hex chars: task IPv4 and port
  bool stopping = false;
  bool draining = false;  // an older generation after a reload: no new connections
  int listenSets = 1;     // inherited socket sets (see kFirstListenFd)
  int clientListenFd(int set) const { return kFirstListenFd + 3 * set; }
  int workerListenFd(int set) const { return kFirstListenFd + 3 * set + 1; }
  int taskListenFd(int set) const { return kFirstListenFd + 3 * set + 2; }

  WsServer* ws = nullptr;
  BizLinks* links = nullptr;
  PeerLinks* peers = nullptr;
  Router* router = nullptr;
  HttpClient* http = nullptr;    // open/close callbacks
  Handover* handover = nullptr;  // business links moving between generations on reload

  shm::WorkerInfo& info() const { return (*control)->workers[serial]; }
  void mark(int item, int64_t amount = 1) const {
    if (metricEnabled[item]) info().meters[item].count.fetch_add(amount, std::memory_order_relaxed);
  }
  bool metricEnabled[shm::kMetricItems + 1] = {};

  std::unique_ptr<UniqIdGenerator> uniqIds;
  UniqIdParts nextUniqId();
  std::string uniqIdOf(uint64_t key) const { return uniqIdFromKey(uniqIdPrefix, key); }
  // Accepted client sockets on every worker (Go's online count, §6.4 step 2).
  int64_t onlineSockets() const;
  // The global OnOpen and OnMessage token buckets (§9.1), shared by every worker.
  bool allowOpen() const;
  bool allowMessage() const;
};

}  // namespace netsvr
