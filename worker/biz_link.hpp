// Business links: framed TCP connections from business processes on the worker port (register,
// then receive events) and on the task port (commands). Plain libuv; memory is freed in the
// close callback of the last handle.
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/handover_msg.hpp"
#include "common/packet.hpp"
#include "shm/control.hpp"

namespace netsvr {

struct Worker;
class BizLinks;

enum class Event : int32_t { OnOpen = 1, OnClose = 2, OnMessage = 4 };

class BizLink {
 public:
  enum class Port : uint8_t { Worker, Task };

  BizLink(BizLinks& owner, Port port, uint32_t id, uint32_t maxPacket);
  bool accept(uv_stream_t* server);
  // Queues a framed packet. On the worker port at most Worker.SendChanCap packets wait; beyond
  // that the packet is dropped and counted (metric 10). `isEvent` counts metrics 4 and 5.
  void send(std::string packet, bool isEvent = false);
  void close();
  void pause();  // stops reading (a task link waiting for another worker's acknowledgement)
  void resume();

  // Reload handover (worker/handover_*.cpp). The old worker freezes the link (no reading, no
  // read deadline; commands already read stay unprocessed and travel in the Offer), and thaws
  // it if the move fails. The new worker adopts the socket neither reading nor writing until
  // the old one has written its last byte (Drained: releaseWrites, then startReading).
  void freeze();
  void thaw();
  handover::Offer offer(uint32_t fromSerial) const;
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }
  bool adopt(uv_stream_t* ipcPipe, const handover::Offer& offer);
  void startReading();
  void releaseWrites();
  bool writesDone() const {
    return !closing_ && !holdWrites_ && queued_ == 0 && pendingWriteBytes() == 0;
  }
  void closeMoved();  // the new worker owns the socket: close our descriptor, quietly
  // Still arriving from an older worker (its writes are held): not ready to move on.
  bool arriving() const { return holdWrites_; }
  void offerSent() { ++offersInFlight_; }  // the link outlives the write that passes its socket
  void offerWritten();
  size_t pendingWriteBytes() const {
    return closing_ ? 0
                    : uv_stream_get_write_queue_size(reinterpret_cast<const uv_stream_t*>(&tcp_));
  }

  const Port port;
  const uint32_t id;
  int32_t events = 0;  // registered Event bits (worker port)
  std::string connId;
  uint32_t peerIp = 0;
  uint16_t peerPort = 0;
  uint32_t acceptedAt = 0;  // unix seconds

 private:
  struct Write;
  void initHandles();
  void write(std::string packet);  // to the socket (after the checks of send)
  static void onAlloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf);
  static void onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);
  static void onDeadline(uv_timer_t* timer);
  static void onSendDeadline(uv_timer_t* timer);
  void armSendDeadline();
  static void onClosed(uv_handle_t* handle);
  void deleteIfDone();
  void processPackets();
  void armDeadline();

  BizLinks& owner_;
  uv_tcp_t tcp_{};
  uv_timer_t deadline_{};      // ReadDeadline: no packet for this long closes the link
  uv_timer_t sendDeadline_{};  // SendDeadline: queued output without progress for this long
  PacketDecoder decoder_;
  size_t queued_ = 0;  // packets waiting in libuv's queue (the kernel has not taken them)
  int openHandles_ = 0;
  bool closing_ = false;
  bool paused_ = false;
  bool frozen_ = false;
  bool movingOut_ = false;  // frozen for a handover (which may be from here to a newer worker)
  uint16_t offersInFlight_ = 0;
  bool holdWrites_ = false;
  std::vector<std::string> heldWrites_;  // adopted, until the old worker's last write is done
};

class BizLinks {
 public:
  explicit BizLinks(Worker& worker);
  void start();  // listens on the inherited worker-port and task-port sockets
  void stopAccepting();
  void closeAll();

  // Is a business registered (on any worker) for this event?
  bool hasReceiver(Event event);
  // Sends an event packet to one registered business, round robin over all workers' links.
  void emitEvent(Event event, uint32_t cmd, const std::string& body);
  // The ConnClose of a departed connection (WsServer::takeCloseBody builds it): to a link of
  // ours at once; to another worker's link through the peer link, which builds it once the link
  // has room.
  void emitClose(uint64_t key);
  // A peer asks us to write an event packet to one of our links.
  void deliverFromPeer(uint32_t linkId, std::string packet);

  // Registry of this worker's registered links (worker_port.cpp).
  bool addToRegistry(BizLink& link);  // false: the registry is full
  void removeFromRegistry(uint32_t linkId);
  void withdrawFromRegistry();                   // all of this worker's links, which stay open
  bool removeByConnId(std::string_view connId);  // any worker's link

  void onLinkClosed(BizLink& link);
  // Asks every worker to hold receiver-less events for a while (our links are going away).
  void holdEventsWhileBusinessReconnects(int32_t events);
  int32_t registeredEvents() const;  // Event bits of this worker's registered links
  size_t heldEvents() const { return held_.size(); }
  void dropHeld();  // stopping: nobody will register to take them
  static constexpr uint64_t kHoldWindowMs = uint64_t(shm::kHoldEventsMs);
  size_t pendingWriteBytes() const;
  BizLink* find(uint32_t id) const;
  std::vector<BizLink*> all() const;
  // Reload handover: a link of the old generation arrives (the socket is pending on ipcPipe).
  BizLink* adopt(uv_stream_t* ipcPipe, const handover::Offer& offer);
  // The registry entry of one of our links now names a new worker's link (same place in the
  // round robin); false if the link is not in the registry. moveBack undoes it.
  bool moveRegistryEntry(uint32_t linkId, int toSerial, uint32_t toLinkId);
  void moveRegistryEntryBack(int fromSerial, uint32_t fromLinkId, BizLink& link);
  Worker& worker;

 private:
  static void onConnection(uv_stream_t* server, int status);
  void refreshReceivers();

  struct Receiver {
    uint32_t serial;
    uint32_t linkId;
  };
  std::unordered_map<uint32_t, BizLink*> links_;
  std::vector<Receiver> receivers_[3];  // OnOpen, OnClose, OnMessage
  uint64_t registryVersion_ = 0;
  uint32_t nextId_ = 1;
  struct Listener {
    uv_tcp_t tcp;
    BizLinks* owner;
    bool workerPort;
  };
  std::vector<Listener*> listeners_;

  // Events held while no business is registered during a reconnection window (in order).
  struct Held {
    Event event;
    uint32_t cmd;
    std::string body;
    uint64_t sinceMs;
  };
  bool holding(Event event) const;
  void hold(Event event, uint32_t cmd, const std::string& body);
  void flushHeld();
  void sendNow(Event event, uint32_t cmd, const std::string& body);
  Receiver nextReceiver(Event event);  // round robin over every worker's registered links
  std::vector<Held> held_;
  size_t heldBytes_ = 0;
  uv_timer_t* heldTimer_ = nullptr;
  bool listening_ = false;
};

// Worker port (worker_port.cpp): false closes the link.
bool handleWorkerPortPacket(BizLinks& links, BizLink& link, uint32_t cmd, std::string_view body);
// Task port (task_port.cpp): false closes the link.
bool handleTaskPacket(Worker& worker, BizLink& link, uint32_t cmd, std::string_view body);

}  // namespace netsvr
