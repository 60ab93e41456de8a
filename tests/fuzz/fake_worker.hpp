// A worker without sockets, for the fuzz targets that drive the task dispatch table
// (worker/task_port.cpp, cmd_*.cpp) and the worker-port handlers (worker_port.cpp).
//
// Real: the control block and two routing tables in shared memory (names unique to this
// process, removed at exit), the Router, the registry of business links. Stand-ins
// (fake_worker.cpp, linked instead of ws_*.cpp, biz_link.cpp and peer_links.cpp): the websocket
// server holds a fixed client set, business links record what they were sent, peer links record
// forwarded requests so that they can be acknowledged.
//
// This worker has serial 0; serial 1 is another live worker with a table of its own, so commands
// route to it as well. Both own clients bound to customerIds c0..c2 and topics t0..t2.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "worker/biz_link.hpp"
#include "worker/worker.hpp"

namespace netsvr::fuzz {

inline constexpr uint32_t kTaskIp = 0x7F000001;  // 127.0.0.1
inline constexpr uint16_t kTaskPort = 6062;
inline constexpr uint32_t kAcceptTime = 0x60000000;
inline constexpr int kClientsPerWorker = 6;

class FakeWorker {
 public:
  // The one instance of this process (created on first use).
  static FakeWorker& get();

  // Puts the client set back as it was before the last input (commands change it).
  void reset();
  // What the loop would do next: acknowledges every forwarded write, fires every pending timer
  // (delayed ForceOfflineGuest, resumes of paused links) and runs the close callbacks.
  void settle();

  Worker worker;
  BizLinks* links = nullptr;
  BizLink* taskLink = nullptr;
  BizLink* workerLink = nullptr;

  // The uniqId text of client `i` of worker `serial` (for seeds and checks).
  static std::string uniqId(int serial, int i);

 private:
  FakeWorker();
};

// Recorded by the stand-ins.
struct FakeStats {
  uint64_t delivered = 0;             // frames queued on clients
  uint64_t kicked = 0;                // clients closed by a command
  uint64_t replies = 0;               // packets sent on business links
  std::vector<uint32_t> pendingAcks;  // request ids forwarded with an acknowledgement due
};
FakeStats& fakeStats();

}  // namespace netsvr::fuzz
