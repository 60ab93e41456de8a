// Peer links (DESIGN.md §4): unix stream sockets between the workers of an instance, connected
// lazily, framed like the business protocol with internal command ids. The kernel provides the
// buffering and the flow control.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/packet.hpp"

namespace netsvr {

struct Worker;

enum PeerCmd : uint32_t {
  // body: [u32 sender serial][u32 request id][task payload: cmd + protobuf] to run on the
  // receiver's clients; a request id other than 0 asks for a kPeerAck once it is applied.
  kPeerTask = 1,
  kPeerEvent = 2,   // body: [u32 linkId][framed event packet] for one of the receiver's links
  kPeerAck = 3,     // body: [u32 request id]
  kPeerClosed = 4,  // body: a ConnClose of a dead worker's client, to send to the business
  // Reload handover (worker/handover.hpp). body: [u32 sender serial][u32 fence id]. The answer
  // goes on the receiver's own link to the sender, behind every event it sent there before.
  kPeerFence = 5,
  kPeerFenceAck = 6,  // body: [u32 sender serial][u32 fence id]
};

class PeerLinks {
 public:
  explicit PeerLinks(Worker& worker);
  void start();  // listens on this worker's abstract socket
  void stop();

  bool sendTask(int serial, uint32_t requestId, std::string_view taskPayload);
  bool sendEvent(int serial, uint32_t linkId, std::string_view packet);
  // The ConnClose of a departed connection (shm::ConnTable::depart) for one of the peer's links:
  // built now if the link has room, else when it drains, so a burst of closes (10,000 clients
  // leaving at once) queues keys rather than copies of their sessions.
  bool sendClose(int serial, uint32_t linkId, uint64_t key);
  size_t waitingCloses() const { return waitingCloses_; }
  bool sendFence(int serial, uint32_t fenceId) { return sendPair(serial, kPeerFence, fenceId); }
  // Bytes written to peers (or waiting behind a ConnClose) but not yet taken by the kernel. A task
  // link stops reading while this is above kPeerHighWater, so a flood of forwarded commands cannot
  // grow memory.
  size_t queuedBytes() const { return queued_ + backlogBytes_; }
  static constexpr size_t kPeerHighWater = 4u << 20;  // bytes
  static constexpr size_t kPeerLowWater = 1u << 20;   // bytes

 private:
  struct Link;
  static void onConnection(uv_stream_t* server, int status);
  Link* outboundTo(int serial);
  bool send(int serial, uint32_t cmd, std::string_view head, std::string_view body);
  static std::string frame(uint32_t cmd, std::string_view head, std::string_view body);
  std::string closeFrame(uint32_t linkId, uint64_t key);  // takes the departed record
  bool write(Link* link, std::string data);
  void pump(Link* link);
  static bool hasRoom(Link* link);
  void dispatch(uint32_t cmd, std::string_view body);
  bool sendPair(int serial, uint32_t cmd, uint32_t value);  // body [u32 our serial][u32 value]
  void forget(Link* link);

  Worker& worker_;
  uv_pipe_t listener_{};
  bool listening_ = false;
  std::unordered_map<int, Link*> outbound_;  // by peer serial
  std::unordered_set<Link*> all_;
  size_t queued_ = 0;         // given to uv_write, not yet completed
  size_t backlogBytes_ = 0;   // built frames waiting in backlogs behind a ConnClose
  size_t waitingCloses_ = 0;  // backlog entries that are ConnCloses still to build
};

}  // namespace netsvr
