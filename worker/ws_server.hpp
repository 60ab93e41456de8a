// The websocket side of a worker: accepts on the inherited client socket, hands each socket to
// libwebsockets (on the worker's libuv loop), and keeps the small per-connection state.
#pragma once

#include <uv.h>

#include "common/request_head.hpp"
#include "common/token_bucket.hpp"
#include "common/ws_frame.hpp"
#include "worker/uring_sender.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct lws;
struct lws_context;
struct lws_vhost;

namespace netsvr {
namespace connOpenResp {
class ConnOpenResp;
}
namespace shm {
struct ConnSnapshot;
}

struct Worker;

// A message body framed once and shared by every connection it is queued on. The payload sits
// after LWS_PRE bytes of headroom, where lws writes each connection's frame header.
struct OutMessage {
  enum Kind : uint8_t {
    Data,    // a data frame of Customer.SendMessageType
    Text,    // a text frame whatever SendMessageType says (Autobahn echo)
    Binary,  // a binary frame likewise
    Close,   // a close frame: status code and reason
    Pong,    // the answer to a client's Ping, with its payload
  };
  uint32_t refs;
  uint32_t size;  // payload bytes
  Kind kind;
  unsigned char bytes[1];  // LWS_PRE + size

  static OutMessage* make(std::string_view payload, Kind kind = Data);
  unsigned char* payload() { return bytes + kHeadroom; }
  void release();
  static const size_t kHeadroom;
};

struct Handshake;
struct WsReader;
struct SendFlight;

struct Conn {
  enum Phase : uint8_t { Adopting, Http, Opening, Open, Closing };
  enum Flag : uint16_t {
    InTable = 1,          // visible to commands (completed open processing)
    CloseSent = 2,        // our close frame is on the wire
    Destroyed = 4,        // lws freed the wsi while we were still adopting it
    FlushDue = 8,         // in the write batch of this loop iteration (dirtyIndex is its place)
    Compressed = 16,      // permessage-deflate was negotiated
    KillAfterClose = 32,  // close TCP as soon as our close frame is written (§6.1, §6.3)
    Uring = 64,           // data frames go out through io_uring (ws_write.cpp), not lws_write
    LwsWrote = 128,       // a Uring connection wrote through lws: lws may hold an unsent rest
    // No lws at all: we answered the upgrade (ws_accept.cpp), the reader's descriptor is the
    // socket and every frame, Close and Pong included, goes out through io_uring.
    Direct = 256,
    Dying = 512,  // a Direct connection killNow() ended: freed at the end of the loop iteration
  };
  struct OutNode {
    OutMessage* message;
    OutNode* next;
  };

  lws* wsi = nullptr;
  Conn* prev = nullptr;  // every connection of the worker, for the sweep and for stop
  Conn* next = nullptr;
  OutNode* outHead = nullptr;
  OutNode* outTail = nullptr;
  std::unique_ptr<Handshake> handshake;  // only until open processing is done
  WsReader* reader = nullptr;            // inbound frames (worker/ws_read.cpp), once open
  SendFlight* flight = nullptr;          // data frames handed to io_uring and not yet all sent
  uint64_t key = 0;                      // (acceptTime << 32) | counter, see uniqid.hpp
  uint32_t lastActive = 0;               // monotonic seconds
  uint32_t queuedBytes = 0;              // outbound payload bytes waiting in the queue
  uint32_t dirtyIndex = 0;               // place in WsServer::dirty_ while FlushDue
  FixedWindow window;                    // per-connection limiter (§9.2)
  Phase phase = Adopting;
  uint16_t flags = 0;
};

// Reads and drops what the client sent (a few reads at most), so that closing the socket sends
// FIN, not RST: Linux resets a connection closed with unread input, and an RST can destroy what
// the client has not read yet (a refusal, our Close frame).
void drainInput(int fd);
// Frees a connection's reader (worker/ws_read.cpp); its descriptor is closed with its handle.
void releaseReader(WsReader* reader);
// The reader's duplicate of the connection's socket (-1: none); the io_uring path sends on it.
int readerFd(const WsReader* reader);

class WsServer {
 public:
  explicit WsServer(Worker& worker);
  ~WsServer();
  WsServer(const WsServer&) = delete;
  WsServer& operator=(const WsServer&) = delete;

  void start();  // begins accepting on the inherited client sockets
  void stopAccepting();
  // Closes every open client with `code` (reload drain time over).
  void closeAll(uint16_t code, std::string_view reason);
  // Calls done() once no connection is left (stop: after closing them; drain: as they leave).
  void whenEmpty(void (*done)(void*), void* arg);
  // Stops accepting and closes every client with 1001; calls done() once all are gone.
  void stop(void (*done)(void*), void* arg);
  http::HandshakeRules handshakeRules() const;
  // Second half of the lws shutdown dance (must run outside the loop, see LWS-NOTES.md).
  void destroyContext();

  // deliver() and closePolitely() only queue and change the phase: they never free a connection
  // nor edit the routing table, so callers may walk the table's indexes while calling them.
  // Queues a data frame (Customer.SendMessageType) unless the connection is closing.
  void deliver(Conn& conn, OutMessage* message);
  void deliver(Conn& conn, std::string_view data);
  // A connection's end, given its serialized ConnClose: OnCloseCallbackApi if configured, then
  // the ConnClose event (§8.2). Also for the clients of a crashed worker (announcer).
  void reportClosed(std::string body);
  // The ConnClose body of a departed connection (shm::ConnTable::depart), whose record it frees;
  // empty if there is none.
  std::string takeCloseBody(uint64_t key);
  // Close frame, then the TCP connection at the latest 2 s later (PROTOCOL.md §6.8).
  void closePolitely(Conn& conn, uint16_t code, std::string_view reason);
  // The connection with this key if it lives on this worker and completed opening.
  Conn* findOpen(uint64_t key) const;
  template <class F>
  void forEachOpen(F&& f) {
    for (Conn* c = head_; c; c = c->next)
      if (c->phase == Conn::Open && (c->flags & Conn::InTable)) f(*c);
  }

  // Reading client frames (worker/ws_read.cpp).
  void onFrameBytes(Conn& conn, const char* data, size_t len);  // lws-read bytes (wss only)
  void readerClosedInput(Conn& conn);  // the client's side of the TCP connection ended

  // lws glue (public for the C callback).
  int onLwsEvent(lws* wsi, int reason, void* in, size_t len);

 private:
  std::string closeBody(uint64_t key, shm::ConnSnapshot&& snapshot) const;
  struct PendingAccept;
  static void onAcceptable(uv_poll_t* handle, int status, int events);
  static void onPeekable(uv_poll_t* handle, int status, int events);
  static void onPeekClosed(uv_handle_t* handle);
  void judgeHead(PendingAccept& pending, std::string_view head);
  static void onSweep(uv_timer_t* handle);
  void abandon(Conn& conn);  // drops a socket that has not completed the upgrade
  void acceptAll(int listenFd);
  // Out of descriptors (EMFILE and the like): accept nothing for 500 ms instead of spinning on
  // a listening socket that stays readable (and logging each try).
  void pauseAccepting(int err);
  static void onAcceptResume(uv_timer_t* handle);
  void adopt(Conn* conn, int fd);
  // The upgrade without lws (Conn::Direct): drops the request head and what came with it
  // (`peeked` bytes), writes the 101 and opens the connection.
  void acceptDirect(Conn* conn, int fd, size_t peeked);
  bool directAllowed(const http::Verdict& verdict) const;
  // Frees Direct connections that killNow() ended, once the iteration's callbacks are done.
  void reapDying();
  void armFlush();  // the end-of-iteration handles (flushDirty)
  void link(Conn* conn);
  void unlink(Conn* conn);
  void sweep();
  uint64_t handshakeLimitMs() const;
  void openConnection(Conn& conn);
  void finishOpen(Conn& conn, const netsvr::connOpenResp::ConnOpenResp* resp);
  void refuse(Conn& conn, uint16_t code, std::string_view reason);
  void closedConnection(Conn& conn);
  void onMessage(Conn& conn, std::string_view data);
  int onWritable(Conn& conn);
  // Inbound frames: our own parser on a duplicate of the socket (docs/DESIGN.md says why).
  // `ownedFd`: a Direct connection's socket; otherwise the reader reads a duplicate of lws's.
  void startReading(Conn& conn, int ownedFd = -1);
  // POLLOUT, then writeNow(): lws's writable callback, or the reader's poll (Direct).
  void waitWritable(Conn& conn);
  // Can frames still be written to it: lws has it, or it is Direct (ours).
  static bool hasSocket(const Conn& conn) { return conn.wsi || (conn.flags & Conn::Direct); }
  void stopReading(Conn& conn);
  static void onReadable(uv_poll_t* handle, int status, int events);
  static void updatePoll(WsReader& reader);
  void readFrames(Conn& conn);
  // Returns bytes consumed from `bytes`; stops early once the connection fails or closes.
  size_t consumeFrames(Conn& conn, char* bytes, size_t len);
  void onDataFrame(Conn& conn, const ws::FrameHeader& h, const ws::FramePlace& place,
                   char* payload);
  void onControlFrame(Conn& conn, const ws::FrameHeader& h, std::string_view payload);
  void onCompleteMessage(Conn& conn, uint8_t opcode, bool compressed, std::string_view data);
  // §6.1: a Close frame with `payload` (code + reason), then the TCP connection is closed at once.
  void failConnection(Conn& conn, std::string_view closePayload);
  void failConnection(Conn& conn, uint16_t code, std::string_view reason);
  // TCP closed now, no (more) close frame; with dropUnsent, bytes the client has not taken are
  // dropped (RST) instead of lingering in the kernel.
  void killNow(Conn& conn, bool dropUnsent = false);
  void queueControl(Conn& conn, OutMessage* message);
  // Hands the queued frames on: through io_uring for a Uring connection (queued there; the
  // batch goes to the kernel at the next submit()), otherwise lws_write until the queue is empty
  // or the socket takes no more (then POLLOUT is asked for). -1: a write failed.
  int writeQueued(Conn& conn);
  // writeQueued() outside the end-of-iteration batch: submits at once.
  int writeNow(Conn& conn);
  // Takes the first message off the queue (one reference, now the caller's).
  OutMessage* popFront(Conn& conn);
  void enqueue(Conn& conn, OutMessage* message);
  void freeNode(Conn::OutNode* node);
  // May lws hold part of a frame it could not send yet? (An lws call, a cache miss per
  // connection: a Uring connection asks only after lws wrote for it.)
  bool lwsHoldsRest(const Conn& conn) const;
  void dropQueue(Conn& conn);
  int writeProtocolOf(uint8_t kind) const;  // an lws_write_protocol
  void flushDirty();
  void writeFailed(Conn& conn);
  // io_uring path (Conn::Uring): hands the leading data frames to the kernel in one sendmsg.
  int writeQueuedUring(Conn& conn);
  int writeQueuedLws(Conn& conn);
  static void onFlightDone(UringSender::Op* op, int result);
  void finishFlight(SendFlight* flight, int result);
  SendFlight* newFlight();
  void recycle(SendFlight* flight);
  void dropFlight(Conn& conn);
  void freeConn(Conn* conn);
  void checkStopped();

  Worker& worker_;
  lws_context* context_ = nullptr;
  int destroyCalls_ = 0;
  lws_vhost* vhost_ = nullptr;
  std::vector<uv_poll_t*> acceptPolls_;
  uv_timer_t* sweepTimer_ = nullptr;
  uv_timer_t* acceptPause_ = nullptr;  // restarts accepting after pauseAccepting()
  // Write batching: deliveries of one loop iteration are queued and written after its I/O
  // callbacks (uv_check) or, for those made by timers, before the loop polls (uv_prepare), so a
  // connection that gets several frames in one iteration gets them in one send.
  // NETSVR_WRITE_BATCHING=0 turns it off (benchmark comparison).
  uv_check_t* flushCheck_ = nullptr;
  uv_prepare_t* flushPrepare_ = nullptr;
  std::vector<Conn*> dirty_;  // connections with frames to write at the end of this iteration
  std::vector<Conn*> dying_;  // Direct connections to free at the end of this iteration
  bool batchWrites_ = true;
  // Sends through io_uring: null where the kernel refuses it or NETSVR_IO_URING=0.
  std::unique_ptr<UringSender> uring_;
  std::vector<SendFlight*> spareFlights_;  // finished flights, reused
  Conn::OutNode* spareNodes_ = nullptr;    // queue nodes, reused (a malloc per delivery saved)
  size_t spareNodeCount_ = 0;
  Conn* head_ = nullptr;
  int64_t sockets_ = 0;           // accepted TCP connections still open (Go's online count)
  int64_t peakSockets_ = 0;       // since the last malloc_trim
  bool startupReleased_ = false;  // releaseStartupMemory() ran (the first sweep, at once)
  void (*stopDone_)(void*) = nullptr;
  void* stopArg_ = nullptr;
  uint32_t heartbeatSeconds_ = 120;
  uint64_t handshakeMs_ = 10000;  // Customer.HandshakeTimeout
  int sendType_ = 0;              // lws_write_protocol of data frames (Customer.SendMessageType)
  bool directOff_ = false;        // NETSVR_DIRECT=0: every connection through lws (comparison)
  bool ownReader_ = true;         // false with wss: lws decrypts, so lws parses frames too
  // Bounds on one client message and on a client's queued output, bytes. Customer's
  // ReceivePackLimit and SendQueueLimit, or far larger in Autobahn mode (§12.2: no limits).
  uint64_t receiveLimit_ = 0;
  uint64_t sendQueueLimit_ = 0;
};

}  // namespace netsvr
