// Reading client frames (PROTOCOL.md §6.1, §6.5). libwebsockets 4.1.6 cannot be told to answer
// protocol violations with the Close frames of §6.1, nor to report Pings, so once a connection
// is open its inbound bytes are read here, from a duplicate of the socket, and parsed by
// common/ws_frame (docs/DESIGN.md "Reading client frames"); lws keeps writing. With wss lws must
// decrypt, so it parses frames too and hands the payloads to onFrameBytes().
#include <fcntl.h>
#include <libwebsockets.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "worker/pm_deflate.hpp"
#include "worker/worker.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {

struct WsReader {
  uv_poll_t poll;  // on `fd`, readable
  WsServer* server = nullptr;
  Conn* conn = nullptr;  // null once the connection is freed (the handle is closing)
  int fd = -1;           // a duplicate of the lws socket; -1: lws reads (wss)
  bool polling = false;  // reading
  bool writing = false;  // waiting for POLLOUT (Direct connections; lws's own otherwise)
  uint64_t skip = 0;     // payload bytes still to drop (frames that come while closing)
  std::string pending;   // the start of a frame whose end has not arrived
  std::string message;   // fragments of the message being read
  ws::MessageState state;
};

namespace {

constexpr size_t kReadBytes = 64 * 1024;  // one recv(2); a worker has one such buffer
constexpr int kReadsPerWakeup = 4;        // then other connections get their turn

char* readBuffer() {
  static thread_local std::unique_ptr<char[]> buf(new char[kReadBytes]);
  return buf.get();
}

}  // namespace

// The reader's poll: readable while reading, writable while a Direct connection waits for room.
void WsServer::updatePoll(WsReader& r) {
  int events = (r.polling ? UV_READABLE : 0) | (r.writing ? UV_WRITABLE : 0);
  if (events)
    uv_poll_start(&r.poll, events, onReadable);
  else
    uv_poll_stop(&r.poll);
}

void WsServer::startReading(Conn& conn, int ownedFd) {
  auto* r = new WsReader;
  r->server = this;
  r->conn = &conn;
  conn.reader = r;
  if (ownedFd >= 0) {
    r->fd = ownedFd;
  } else if (!ownReader_) {
    return;
  } else {
    int fd = int(lws_get_socket_fd(conn.wsi));
    r->fd = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
  }
  if (r->fd < 0) {
    // Out of descriptors: lws goes on reading this one (its own rules, not §6.1's).
    LOG_WARN("cannot duplicate a client socket (%s): lws parses its frames", strerror(errno));
    return;
  }
  r->poll.data = r;
  uv_poll_init(worker_.loop, &r->poll, r->fd);
  uv_poll_start(&r->poll, UV_READABLE, onReadable);
  r->polling = true;
  if (conn.wsi) lws_rx_flow_control(conn.wsi, 0);  // lws no longer reads the socket
  // Data frames go out through io_uring, framed by us; a compressed connection's frames are
  // deflated inside lws_write (worker/pm_deflate_lws.cpp), so they stay with lws.
  if (uring_ && !(conn.flags & Conn::Compressed)) conn.flags |= Conn::Uring;
}

void WsServer::waitWritable(Conn& conn) {
  if (conn.wsi) {
    lws_callback_on_writable(conn.wsi);
    return;
  }
  WsReader* r = conn.reader;
  if (!r || r->fd < 0 || r->writing || (conn.flags & Conn::Dying)) return;
  r->writing = true;
  updatePoll(*r);
}

void WsServer::stopReading(Conn& conn) {
  WsReader* r = conn.reader;
  if (!r || !r->polling) return;
  r->polling = false;
  updatePoll(*r);
  r->pending = std::string();
  r->message = std::string();
}

int readerFd(const WsReader* r) {
  return r ? r->fd : -1;
}

// Called by freeConn(): the descriptor is closed with the handle.
void releaseReader(WsReader* r) {
  if (!r) return;
  r->conn = nullptr;
  if (r->fd < 0) {
    delete r;
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&r->poll), [](uv_handle_t* h) {
    auto* reader = static_cast<WsReader*>(h->data);
    drainInput(reader->fd);  // a Direct connection's socket ends here (lws read to its end)
    close(reader->fd);
    delete reader;
  });
}

void WsServer::onReadable(uv_poll_t* handle, int status, int events) {
  auto* r = static_cast<WsReader*>(handle->data);
  if (!r->conn) return;
  if (status < 0) {
    if (r->polling || r->writing) r->server->readerClosedInput(*r->conn);
    return;
  }
  if ((events & UV_WRITABLE) && r->writing) {
    r->writing = false;
    updatePoll(*r);
    r->server->writeNow(*r->conn);  // never frees the connection (killNow() defers that)
  }
  if ((events & UV_READABLE) && r->polling) r->server->readFrames(*r->conn);
}

void WsServer::readFrames(Conn& conn) {
  WsReader& r = *conn.reader;
  char* buf = readBuffer();
  for (int round = 0; round < kReadsPerWakeup && r.polling; ++round) {
    ssize_t n = recv(r.fd, buf, kReadBytes, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) return readerClosedInput(conn);
    if (r.pending.empty()) {
      size_t used = consumeFrames(conn, buf, size_t(n));
      if (r.polling && used < size_t(n)) r.pending.assign(buf + used, size_t(n) - used);
    } else {
      r.pending.append(buf, size_t(n));
      size_t used = consumeFrames(conn, r.pending.data(), r.pending.size());
      if (r.polling) {
        r.pending.erase(0, used);
        if (r.pending.empty()) r.pending = std::string();  // an idle connection holds no buffer
      }
    }
    if (size_t(n) < kReadBytes) return;
  }
}

size_t WsServer::consumeFrames(Conn& conn, char* bytes, size_t len) {
  WsReader& r = *conn.reader;
  const uint64_t limit = receiveLimit_;
  size_t at = 0;
  while (at < len && r.polling) {
    if (r.skip) {
      size_t n = size_t(std::min<uint64_t>(r.skip, len - at));
      at += n;
      r.skip -= n;
      continue;
    }
    ws::FrameHeader h;
    if (!ws::parseHeader(std::string_view(bytes + at, len - at), h)) break;
    if (ws::Violation v = r.state.check(h, conn.flags & Conn::Compressed)) {
      LOG_DEBUG("client %s broke the protocol: %.*s", worker_.uniqIdOf(conn.key).c_str(),
                int(v.reason.size()), v.reason.data());
      failConnection(conn, v.code, v.reason);
      return len;
    }
    bool closing = conn.phase != Conn::Open && conn.phase != Conn::Opening;
    bool tooBig = !h.isControl() && r.message.size() + h.length > limit;
    if ((closing && h.opcode != ws::kClose) || tooBig) {
      // Nothing more from this client reaches the business: drop the payload as it arrives.
      r.state.advance(h);
      at += h.size;
      r.skip = h.length;
      if (tooBig) {
        r.message = std::string();
        closePolitely(conn, 1009, "message too big");  // DECISIONS.md 6: while frames arrive
      }
      continue;
    }
    if (len - at - h.size < h.length) break;  // the payload's end has not arrived
    ws::FramePlace place = r.state.advance(h);
    char* payload = bytes + at + h.size;
    ws::unmask(payload, size_t(h.length), h.mask);
    at += h.size + size_t(h.length);
    if (h.isControl())
      onControlFrame(conn, h, std::string_view(payload, size_t(h.length)));
    else
      onDataFrame(conn, h, place, payload);
  }
  return at;
}

void WsServer::onDataFrame(Conn& conn, const ws::FrameHeader& h, const ws::FramePlace& place,
                           char* payload) {
  WsReader& r = *conn.reader;
  if (h.fin && h.opcode != ws::kContinuation) {  // a whole message in one frame: no copy
    onCompleteMessage(conn, place.messageOpcode, place.compressed,
                      std::string_view(payload, size_t(h.length)));
    return;
  }
  r.message.append(payload, size_t(h.length));
  if (!place.endsMessage) return;
  std::string message = std::move(r.message);
  r.message = std::string();
  onCompleteMessage(conn, place.messageOpcode, place.compressed, message);
}

void WsServer::onCompleteMessage(Conn& conn, uint8_t opcode, bool compressed,
                                 std::string_view data) {
  std::string inflated;
  if (compressed) {
    switch (pmd::inflateMessage(data, receiveLimit_, inflated)) {
      case pmd::InflateResult::Ok:
        data = inflated;
        break;
      case pmd::InflateResult::TooBig:
        return closePolitely(conn, 1009, "message too big");
      case pmd::InflateResult::Invalid:
        return failConnection(conn, 1007, "invalid deflate stream");
    }
  }
  if (opcode == ws::kText && !ws::validUtf8(data))
    return failConnection(conn, 1007, "invalid utf8 in text message");
  if (worker_.config.autobahn) {  // §12.2: an echo server, same opcode, no business
    conn.lastActive = monotonicSeconds();
    OutMessage* echo =
        OutMessage::make(data, opcode == ws::kText ? OutMessage::Text : OutMessage::Binary);
    deliver(conn, echo);
    echo->release();
    return;
  }
  onMessage(conn, data);
}

void WsServer::onControlFrame(Conn& conn, const ws::FrameHeader& h, std::string_view payload) {
  switch (h.opcode) {
    case ws::kPing:  // §6.1: Pong with the same payload; the client is alive
      conn.lastActive = monotonicSeconds();
      worker_.mark(3);
      queueControl(conn, OutMessage::make(payload, OutMessage::Pong));
      return;
    case ws::kClose: {
      if (ws::Violation v = ws::checkClosePayload(payload))
        return failConnection(conn, v.code, v.reason);
      if (conn.phase == Conn::Closing) return killNow(conn);  // it answers our close: no echo
      return failConnection(conn, payload);                   // echo, then close
    }
    default:  // Pong: not a sign of life (§6.6)
      return;
  }
}

void WsServer::readerClosedInput(Conn& conn) {
  killNow(conn);
}

void WsServer::failConnection(Conn& conn, uint16_t code, std::string_view reason) {
  failConnection(conn, ws::closePayload(code, reason));
}

void WsServer::failConnection(Conn& conn, std::string_view closePayload) {
  stopReading(conn);
  if (conn.phase == Conn::Closing || !hasSocket(conn)) return killNow(conn);  // a close is out
  conn.phase = Conn::Closing;  // frames queued before the offence still go out first
  conn.flags |= Conn::KillAfterClose;
  enqueue(conn, OutMessage::make(closePayload, OutMessage::Close));
  conn.lastActive = monotonicSeconds();  // a frame stuck behind a full window: sweep() ends it
  writeNow(conn);                        // kills the connection once the frame is out
}

void WsServer::killNow(Conn& conn, bool dropUnsent) {
  stopReading(conn);
  if (conn.phase != Conn::Adopting) conn.phase = Conn::Closing;
  conn.lastActive = monotonicSeconds();  // sweep() tries again 2 s later if lws still holds it
  bool direct = conn.flags & Conn::Direct;
  if (direct && (conn.flags & Conn::Dying)) return;
  if (!hasSocket(conn)) return;
  int fd = direct ? readerFd(conn.reader) : int(lws_get_socket_fd(conn.wsi));
  int unsent = 0;
  if (fd >= 0 && dropUnsent && ioctl(fd, SIOCOUTQ, &unsent) == 0 && unsent > 0) {
    // A client that does not read: reset rather than keep its unsent bytes (up to megabytes
    // of kernel buffer) until the kernel gives up on it.
    linger reset{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
  }
  if (fd >= 0) shutdown(fd, SHUT_RDWR);  // FIN now, after what the kernel already holds
  if (direct) {  // ours to close: at the end of this iteration, callers still hold `conn`
    if (WsReader* r = conn.reader; r && r->writing) {
      r->writing = false;  // nothing more goes out
      updatePoll(*r);
    }
    conn.flags |= Conn::Dying;
    dying_.push_back(&conn);
    armFlush();
    return;
  }
  // lws closes a socket only once it reads its end (it waits for that after its own shutdown):
  // let it read again; with both directions shut down its next read sees the end at once.
  lws_rx_flow_control(conn.wsi, 1);
  lws_set_timeout(conn.wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

void WsServer::queueControl(Conn& conn, OutMessage* message) {
  enqueue(conn, message);
  writeNow(conn);
}

// lws parsed the frame (wss, or no descriptor left for our reader); its payload arrives here in
// pieces, and lws answers Pings itself.
void WsServer::onFrameBytes(Conn& conn, const char* data, size_t len) {
  if (conn.phase != Conn::Open && conn.phase != Conn::Opening) return;
  if (!conn.reader) startReading(conn);
  WsReader& r = *conn.reader;
  if (r.fd >= 0) return;  // buffered by lws with the request head: dropped, as Go drops it
  bool complete = lws_is_final_fragment(conn.wsi) && lws_remaining_packet_payload(conn.wsi) == 0;
  size_t limit = size_t(receiveLimit_);
  if (r.message.size() + len + lws_remaining_packet_payload(conn.wsi) > limit) {
    r.message = std::string();
    return closePolitely(conn, 1009, "message too big");
  }
  if (complete && r.message.empty()) return onMessage(conn, std::string_view(data, len));
  r.message.append(data, len);
  if (!complete) return;
  std::string message = std::move(r.message);
  r.message = std::string();
  onMessage(conn, message);
}

}  // namespace netsvr
