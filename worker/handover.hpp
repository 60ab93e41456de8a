// Reload handover (DESIGN.md, Lifecycle): the business links of a worker of the old generation
// move, as live sockets (SCM_RIGHTS over a libuv IPC pipe), to workers of the new generation.
// The business sees nothing: same socket, same registration and connId, same place in the
// event round robin, no byte lost or written twice.
//
// Old side (handover_send.cpp), per link: freeze (stop reading) -> wait until no command of
// the link waits for another worker -> Offer (state, unprocessed input, the socket) -> Accept
// -> move the registry entry -> fence: every live worker answers a kPeerFence on the
// same peer link as its events, so every event routed to us before the move is here -> write
// them, Drained, close our descriptor. Until Drained we hold the socket too: if the new worker
// goes away first, the link is taken back (registry entry restored, reading resumed).
// New side (handover_receive.cpp): adopt the socket, neither reading nor writing it until
// Drained (so that the old worker can take it back at any moment before).
#pragma once

#include <uv.h>

#include <cstdint>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/handover_msg.hpp"
#include "common/packet.hpp"

namespace netsvr {

struct Worker;
class BizLink;

class Handover {
 public:
  // A unix stream between an old and a new worker, opened in IPC mode (it carries sockets).
  struct Channel {
    uv_pipe_t pipe{};
    Handover* owner = nullptr;
    int serial = -1;                  // the new worker, on the old side; -1 on the new side
    PacketDecoder decoder{1u << 30};  // an Offer carries the unprocessed input of a link
    bool closing = false;
    std::vector<std::string> queue;        // new side: packets not processed yet (test pause)
    uv_timer_t* pause = nullptr;           // new side: a test pause holds the queue
    std::unordered_set<uint32_t> adopted;  // new side: our ids of links not Drained yet
  };

  explicit Handover(Worker& worker);
  ~Handover();

  // New side: accept Offers on this worker's abstract handover socket (before it is Running).
  void listen();
  void stop();

  // Old side: moves every business link to the newest generation. false: nothing to move
  // (`done` is not called). Otherwise `done(arg)` runs once every link moved, stayed or closed.
  using Done = void (*)(void* arg);
  bool moveAll(bool reportToMaster, Done done, void* arg);
  bool moving() const { return !moves_.empty(); }
  // Stopping: links not committed yet stay (and close with the rest); the others are released.
  void cancel();
  void onFenceAck(int fromSerial, uint32_t fenceId);
  void onLinkClosed(BizLink& link);

 private:
  // ---- old side
  enum class Stage { Quiescing, Offered, Committed, Moved, Stayed, Gone };
  struct Move {
    uint32_t linkId;
    int target;  // serial of the new worker
    Stage stage = Stage::Quiescing;
    uint32_t newLinkId = 0;
    bool registered = false;  // its registry entry was moved
    uint32_t fence = 0;       // the fence round that covers the move (0: none yet)
    uint64_t sinceMs = 0;     // when the current stage began (loop time)
  };
  static void onTick(uv_timer_t* timer);
  void tick();
  Channel* channelTo(int serial, std::string& error);
  void sendOffer(Move& move);
  void onReply(Channel& channel, handover::Type type, const handover::Reply& reply);
  void onChannelGone(Channel& channel);
  void takeBack(Move& move, const std::string& why);
  void startFence();
  void checkFence();
  void finish();
  Move* findMove(uint32_t linkId);

  // ---- new side
  static void onInboundConnection(uv_stream_t* server, int status);
  void processInbound(Channel& in);
  void onInbound(Channel& in, handover::Type type, std::string_view body);
  void onInboundGone(Channel& in);

  // ---- shared
  static bool sendOn(Channel& channel, std::string data);  // false: the channel is failing
  static void onChannelRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  void closeChannel(Channel* channel);
  void dropChannel(Channel& channel);

  Worker& worker_;
  // old side
  std::vector<Move> moves_;
  std::unordered_map<int, Channel*> channels_;  // by target serial (outbound)
  uv_timer_t* tick_ = nullptr;
  bool report_ = false;
  Done done_ = nullptr;
  void* doneArg_ = nullptr;
  std::string failure_;
  uint32_t fenceId_ = 0;         // the newest fence round
  uint32_t fenceCompleted_ = 0;  // every round up to this one is answered
  uint64_t fenceSinceMs_ = 0;
  std::set<int> fencePending_;
  // new side
  uv_pipe_t listener_{};
  bool listening_ = false;
  std::set<Channel*> inbound_;
  uint64_t testPauseMs_ = 0;   // NETSVR_TEST_HANDOVER_PAUSE_MS: delay the first Accepts (tests)
  uint64_t pauseUntilMs_ = 0;  // loop time until which Offers wait (tests)
};

}  // namespace netsvr
