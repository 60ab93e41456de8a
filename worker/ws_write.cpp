// The write path of a worker's websocket side: shared messages, the per-connection queue, write
// batching per loop iteration (docs/DESIGN.md "Writing to clients") and the close frame.
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>

#include "common/log.hpp"
#include "worker/worker.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {

const size_t OutMessage::kHeadroom = LWS_PRE;

namespace {

// Bytes a connection's batch may hold before it is written without waiting for the end of the
// loop iteration: several segments' worth, far below Customer.SendQueueLimit's default 1 MiB.
constexpr uint32_t kBatchFlushBytes = 64 * 1024;
// lws 4.1 keeps LWS_WRITE_CLOSE (4, between HTTP and PING) in its private headers.
constexpr auto kWriteClose = lws_write_protocol(4);

bool isData(OutMessage::Kind kind) {
  return kind == OutMessage::Data || kind == OutMessage::Text || kind == OutMessage::Binary;
}

}  // namespace

int WsServer::writeProtocolOf(uint8_t kind) const {
  switch (kind) {
    case OutMessage::Text:
      return LWS_WRITE_TEXT;
    case OutMessage::Binary:
      return LWS_WRITE_BINARY;
    default:
      return sendType_;
  }
}

OutMessage* OutMessage::make(std::string_view payload, Kind kind) {
  void* mem = malloc(sizeof(OutMessage) + kHeadroom + payload.size());
  if (!mem) throw std::bad_alloc();
  auto* m = static_cast<OutMessage*>(mem);
  m->refs = 1;
  m->size = uint32_t(payload.size());
  m->kind = kind;
  if (!payload.empty()) memcpy(m->payload(), payload.data(), payload.size());
  return m;
}

void OutMessage::release() {
  if (--refs == 0) free(this);
}

void WsServer::deliver(Conn& conn, OutMessage* message) {
  if (conn.phase != Conn::Open) return;
  size_t frame = message->size + (message->size < 126 ? 2 : message->size < 65536 ? 4 : 10);
  if (conn.queuedBytes + message->size > sendQueueLimit_) {
    worker_.mark(11);
    worker_.mark(12, int64_t(frame));
    LOG_INFO("client %s: send queue full (%u bytes waiting, Customer.SendQueueLimit %llu): closing",
             worker_.uniqIdOf(conn.key).c_str(), conn.queuedBytes,
             static_cast<unsigned long long>(sendQueueLimit_));
    closePolitely(conn, 1008, "send queue full");
    return;
  }
  worker_.mark(6);
  worker_.mark(7, int64_t(frame));
  bool idle = !conn.outHead && !lwsHoldsRest(conn);
  if (idle && !batchWrites_) {
    // Nothing waits: write now. One send(2) instead of arming POLLOUT, waking up and disarming
    // it (two epoll_ctl calls and a loop turn); lws keeps any unsent rest and finishes it itself.
    if (lws_write(conn.wsi, message->payload(), message->size,
                  lws_write_protocol(writeProtocolOf(message->kind))) < 0)
      writeFailed(conn);
    return;
  }
  ++message->refs;
  bool wasEmpty = !conn.outHead;
  enqueue(conn, message);
  conn.queuedBytes += message->size;
  if (conn.flags & Conn::FlushDue) {
    // A burst to one client: hand it to the kernel now rather than holding it all until the end
    // of the iteration (it counts against SendQueueLimit while it waits here). With an unsent
    // rest inside lws, POLLOUT is already asked for.
    if (conn.queuedBytes >= kBatchFlushBytes && !lwsHoldsRest(conn)) writeNow(conn);
    return;
  }
  // A non-empty queue that is not in this iteration's batch waits for POLLOUT.
  if (!wasEmpty) return;
  if (!idle) {
    waitWritable(conn);
    return;
  }
  conn.flags |= Conn::FlushDue;
  conn.dirtyIndex = uint32_t(dirty_.size());
  if (dirty_.empty()) armFlush();
  dirty_.push_back(&conn);
}

// Deliveries made by I/O callbacks are written by the check handle right after them; those made
// by timer callbacks (a resumed task link, an HTTP callback's answer) by the prepare handle,
// before the loop blocks in poll (an active check handle does not keep poll short).
void WsServer::armFlush() {
  if (!flushCheck_) return;  // stopped
  uv_check_start(flushCheck_, [](uv_check_t* h) { static_cast<WsServer*>(h->data)->flushDirty(); });
  uv_prepare_start(flushPrepare_,
                   [](uv_prepare_t* h) { static_cast<WsServer*>(h->data)->flushDirty(); });
}

void WsServer::flushDirty() {
  // By index over dirty_ itself: freeConn() clears the entry of a connection freed meanwhile.
  // Writing never frees a connection nor delivers (a failure only schedules the kill).
  for (size_t i = 0; i < dirty_.size(); ++i) {
    Conn* conn = dirty_[i];
    if (!conn) continue;
    dirty_[i] = nullptr;
    conn->flags &= uint16_t(~Conn::FlushDue);
    // Closing: closePolitely() asked for POLLOUT, onWritable() sends the rest and the close.
    if (conn->phase != Conn::Open) continue;
    writeQueued(*conn);
  }
  if (uring_) uring_->submit();  // the batch's sendmsgs, one system call per 256
  dirty_.clear();
  uv_check_stop(flushCheck_);
  uv_prepare_stop(flushPrepare_);
  reapDying();  // last: freeing the last connection of a stop closes these handles
}

void WsServer::reapDying() {
  std::vector<Conn*> dying;
  dying.swap(dying_);
  for (Conn* conn : dying) {
    closedConnection(*conn);
    freeConn(conn);  // closes the socket with the reader's handle
  }
}

// A write failed: write nothing more to it (Closing keeps deliver(), the flush and the sweep away)
// and let lws close it from its own loop turn, or end a Direct connection ourselves.
void WsServer::writeFailed(Conn& conn) {
  conn.phase = Conn::Closing;
  if (conn.flags & Conn::Direct) return killNow(conn, true);
  lws_set_timeout(conn.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

int WsServer::writeQueued(Conn& conn) {
  return (conn.flags & Conn::Uring) ? writeQueuedUring(conn) : writeQueuedLws(conn);
}

int WsServer::writeNow(Conn& conn) {
  int rc = writeQueued(conn);
  if (uring_) uring_->submit();
  return rc;
}

OutMessage* WsServer::popFront(Conn& conn) {
  Conn::OutNode* node = conn.outHead;
  conn.outHead = node->next;
  if (!conn.outHead) conn.outTail = nullptr;
  OutMessage* message = node->message;
  freeNode(node);
  return message;
}

bool WsServer::lwsHoldsRest(const Conn& conn) const {
  return conn.wsi && (!(conn.flags & Conn::Uring) || (conn.flags & Conn::LwsWrote)) &&
         lws_partial_buffered(conn.wsi);
}

int WsServer::writeQueuedLws(Conn& conn) {
  if (conn.outHead) conn.flags |= Conn::LwsWrote;  // Uring connections: see lwsHoldsRest()
  int fd = -1;
  int rc = 0;
  while (conn.outHead && !lws_partial_buffered(conn.wsi)) {
    Conn::OutNode* node = conn.outHead;
    if (fd < 0 && node->next && isData(node->message->kind)) {
      // TCP_CORK: the kernel holds the frames until uncorked and sends them in full segments.
      fd = int(lws_get_socket_fd(conn.wsi));
      int on = 1;
      if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    }
    OutMessage* message = popFront(conn);
    if (message->kind == OutMessage::Close) {
      rc = lws_write(conn.wsi, message->payload(), message->size, kWriteClose);
      conn.flags |= Conn::CloseSent;
    } else if (message->kind == OutMessage::Pong) {
      rc = lws_write(conn.wsi, message->payload(), message->size, LWS_WRITE_PONG);
    } else {
      conn.queuedBytes -= message->size;
      rc = lws_write(conn.wsi, message->payload(), message->size,
                     lws_write_protocol(writeProtocolOf(message->kind)));
    }
    message->release();
    if (rc < 0) break;
  }
  if (fd >= 0) {
    int off = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
  }
  if (rc < 0) {
    writeFailed(conn);
    return -1;
  }
  if (conn.outHead) {
    lws_callback_on_writable(conn.wsi);
  } else if ((conn.flags & Conn::KillAfterClose) && (conn.flags & Conn::CloseSent)) {
    // §6.1: the close frame of a protocol failure is out; lws flushes any unsent rest of it
    // before the socket is shut down.
    if (!lws_partial_buffered(conn.wsi))
      killNow(conn);
    else
      lws_callback_on_writable(conn.wsi);
  }
  return 0;
}

void WsServer::dropQueue(Conn& conn) {
  while (conn.outHead) popFront(conn)->release();
  conn.queuedBytes = 0;
}

// Appends a message (one reference, the caller's) at the tail of the connection's queue.
void WsServer::enqueue(Conn& conn, OutMessage* message) {
  Conn::OutNode* node = spareNodes_;
  if (node) {
    spareNodes_ = node->next;
    --spareNodeCount_;
    *node = {message, nullptr};
  } else {
    node = new Conn::OutNode{message, nullptr};
  }
  if (conn.outTail)
    conn.outTail->next = node;
  else
    conn.outHead = node;
  conn.outTail = node;
}

void WsServer::freeNode(Conn::OutNode* node) {
  constexpr size_t kSpareNodes = 4096;  // 16 B each
  if (spareNodeCount_ >= kSpareNodes) {
    delete node;
    return;
  }
  node->next = spareNodes_;
  spareNodes_ = node;
  ++spareNodeCount_;
}

void WsServer::deliver(Conn& conn, std::string_view data) {
  OutMessage* message = OutMessage::make(data);
  deliver(conn, message);
  message->release();
}

void WsServer::closePolitely(Conn& conn, uint16_t code, std::string_view reason) {
  if (conn.phase == Conn::Opening) conn.phase = Conn::Open;
  if (conn.phase != Conn::Open || !hasSocket(conn)) return;
  conn.phase = Conn::Closing;
  enqueue(conn, OutMessage::make(ws::closePayload(code, reason), OutMessage::Close));
  conn.lastActive = monotonicSeconds();  // while Closing: when the close began (sweep())
  waitWritable(conn);
}

int WsServer::onWritable(Conn& conn) {
  return writeNow(conn);
}

// ---- the io_uring path -----------------------------------------------------------------------

// The leading frames of a connection's queue, handed to the kernel as one sendmsg: a header of
// ours and the shared payload per frame. Data frames only on a connection lws upgraded (its Close
// and Pong frames go through lws_write once no flight is under way, so lws knows of the close);
// every frame on a Direct one.
struct SendFlight : UringSender::Op {
  static constexpr uint32_t kFrames = 32;         // frames per sendmsg at most
  static constexpr uint32_t kBytes = 256 * 1024;  // no frame is added past this many bytes
  WsServer* server = nullptr;
  Conn* conn = nullptr;   // null once the connection was freed while the kernel held the flight
  bool inKernel = false;  // queued or submitted, its completion not yet run
  uint32_t frames = 0;
  uint32_t iovCount = 0;
  uint32_t nextIov = 0;  // the first iovec not yet sent in full (after a partial send)
  OutMessage* messages[kFrames];
  uint8_t heads[kFrames][ws::kMaxServerHeader];
  iovec iov[2 * kFrames];
};

WsServer::~WsServer() {
  for (SendFlight* f : spareFlights_) delete f;
  while (Conn::OutNode* node = spareNodes_) {
    spareNodes_ = node->next;
    delete node;
  }
}

SendFlight* WsServer::newFlight() {
  if (spareFlights_.empty()) {
    auto* f = new SendFlight;
    f->server = this;
    f->done = onFlightDone;
    return f;
  }
  SendFlight* f = spareFlights_.back();
  spareFlights_.pop_back();
  return f;
}

void WsServer::recycle(SendFlight* f) {
  for (uint32_t i = 0; i < f->frames; ++i) f->messages[i]->release();
  f->frames = f->iovCount = f->nextIov = 0;
  f->conn = nullptr;
  f->inKernel = false;
  constexpr size_t kSpares = 64;  // ~1.7 KiB each
  if (spareFlights_.size() < kSpares)
    spareFlights_.push_back(f);
  else
    delete f;
}

void WsServer::dropFlight(Conn& conn) {
  SendFlight* f = conn.flight;
  if (!f) return;
  conn.flight = nullptr;
  if (f->inKernel) {
    f->conn = nullptr;  // its completion recycles it
    uring_->cancel(f);  // it may wait for a client that reads no more
    uring_->submit();
  } else {
    recycle(f);
  }
}

int WsServer::writeQueuedUring(Conn& conn) {
  int fd = readerFd(conn.reader);  // the same socket as lws's descriptor
  if (SendFlight* f = conn.flight) {
    if (!f->inKernel && fd >= 0) {  // stopped by a full socket; now writable: the rest
      f->inKernel = true;
      uring_->queue(fd, f);
    }
    return 0;  // the rest of the queue follows the flight's completion
  }
  const bool direct = conn.flags & Conn::Direct;  // no lws: Close and Pong frames go here too
  if (!direct &&
      (fd < 0 || !conn.outHead || !isData(conn.outHead->message->kind) || lwsHoldsRest(conn)))
    return writeQueuedLws(conn);
  if (!conn.outHead || fd < 0) {
    // §6.1: the close frame of a protocol failure is out (the kernel has every byte of it).
    if ((conn.flags & Conn::KillAfterClose) && (conn.flags & Conn::CloseSent)) killNow(conn);
    return 0;
  }
  SendFlight* f = newFlight();
  uint32_t bytes = 0;
  while (conn.outHead && f->frames < SendFlight::kFrames && bytes < SendFlight::kBytes &&
         (direct || isData(conn.outHead->message->kind))) {
    OutMessage* message = popFront(conn);
    uint32_t i = f->frames++;
    f->messages[i] = message;
    uint8_t opcode;
    if (message->kind == OutMessage::Close) {
      opcode = ws::kClose;
      conn.flags |= Conn::CloseSent;
    } else if (message->kind == OutMessage::Pong) {
      opcode = ws::kPong;
    } else {
      conn.queuedBytes -= message->size;
      opcode = writeProtocolOf(message->kind) == LWS_WRITE_BINARY ? ws::kBinary : ws::kText;
    }
    size_t head = ws::serverFrameHeader(opcode, message->size, f->heads[i]);
    f->iov[f->iovCount++] = {f->heads[i], head};
    f->iov[f->iovCount++] = {message->payload(), message->size};
    bytes += message->size;
    if (opcode == ws::kClose) break;  // nothing follows our close frame
  }
  f->msg.msg_iov = f->iov;
  f->msg.msg_iovlen = f->iovCount;
  f->conn = &conn;
  f->inKernel = true;
  conn.flight = f;
  uring_->queue(fd, f);
  return 0;
}

void WsServer::onFlightDone(UringSender::Op* op, int result) {
  auto* f = static_cast<SendFlight*>(op);
  f->server->finishFlight(f, result);
}

void WsServer::finishFlight(SendFlight* f, int result) {
  f->inKernel = false;
  Conn* conn = f->conn;
  if (!conn) {  // freed while the kernel held it
    recycle(f);
    return;
  }
  if (result < 0 && result != -EAGAIN && result != -EWOULDBLOCK && result != -EINTR) {
    conn->flight = nullptr;
    recycle(f);
    writeFailed(*conn);
    return;
  }
  size_t sent = result > 0 ? size_t(result) : 0;
  while (f->nextIov < f->iovCount && sent >= f->iov[f->nextIov].iov_len)
    sent -= f->iov[f->nextIov++].iov_len;
  if (f->nextIov < f->iovCount) {
    // The socket took part of it: the rest goes when it is writable again (onWritable). (A
    // send that finds it full waits in the kernel instead, and completes through the eventfd.)
    if (log::enabled(log::Level::Debug))
      LOG_DEBUG("client %s: the socket is full (%d bytes taken): the rest waits for POLLOUT",
                worker_.uniqIdOf(conn->key).c_str(), result);
    iovec& partial = f->iov[f->nextIov];
    partial.iov_base = static_cast<char*>(partial.iov_base) + sent;
    partial.iov_len -= sent;
    f->msg.msg_iov = f->iov + f->nextIov;
    f->msg.msg_iovlen = f->iovCount - f->nextIov;
    waitWritable(*conn);
    return;
  }
  conn->flight = nullptr;
  recycle(f);
  writeQueued(*conn);  // what was queued meanwhile, or the Close frame
}

}  // namespace netsvr
