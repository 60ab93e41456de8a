// Accepting client sockets: accept4, wait for the whole request head and apply the §5.2 checks
// to it (refusals are written here), then hand the socket to libwebsockets for the upgrade.
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "common/request_head.hpp"
#include "worker/worker.hpp"
#include "worker/ws_handshake.hpp"

namespace netsvr {
namespace {

// A request head must fit here (Go's default limit for a whole head is far larger, but no
// websocket client sends 8 KiB of headers); a longer one is refused with 400.
constexpr size_t kPeekBytes = 8192;

}  // namespace

void drainInput(int fd) {
  char sink[4096];
  for (int i = 0; i < 4 && recv(fd, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
  }
}

void WsServer::onAcceptable(uv_poll_t* handle, int status, int) {
  int fd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(handle), &fd);
  if (status == 0) static_cast<WsServer*>(handle->data)->acceptAll(fd);
}

void WsServer::acceptAll(int listenFd) {
  for (;;) {
    sockaddr_storage peer{};
    socklen_t peerLen = sizeof peer;
    int fd = accept4(listenFd, reinterpret_cast<sockaddr*>(&peer), &peerLen,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        pauseAccepting(errno);
      else if (errno != EAGAIN && errno != EWOULDBLOCK)
        LOG_WARN("accept: %s", strerror(errno));
      return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* conn = new Conn;
    conn->handshake = std::make_unique<Handshake>();
    char ip[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, ip, sizeof ip);
    else if (peer.ss_family == AF_INET6)
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, ip, sizeof ip);
    conn->handshake->remoteAddr = ip;
    conn->handshake->acceptedAtMs = uv_now(worker_.loop);
    UniqIdParts id = worker_.nextUniqId();
    conn->key = uniqKeyOf(id.timestamp, id.counter);
    link(conn);
    ++sockets_;
    worker_.info().sockets.fetch_add(1, std::memory_order_relaxed);

    // Wait for the request line so that the raw query can be read before lws decodes it.
    auto* pending = new PendingAccept{{}, this, conn, fd, true};
    pending->poll.data = pending;
    conn->handshake->peekPoll = &pending->poll;
    uv_poll_init(worker_.loop, &pending->poll, fd);
    uv_poll_start(&pending->poll, UV_READABLE | UV_DISCONNECT, onPeekable);
  }
}

// Waits until the request head is complete (peeking, so that lws reads it again), then applies
// §5.2: a refusal is written here and the socket closed; an upgrade goes to lws.
void WsServer::onPeekable(uv_poll_t* handle, int status, int events) {
  auto* pending = static_cast<PendingAccept*>(handle->data);
  WsServer* self = pending->server;
  Conn* conn = pending->conn;
  char buf[kPeekBytes];
  ssize_t n = status == 0 ? recv(pending->fd, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT) : -1;
  if (n < 0 && (errno == EAGAIN || errno == EINTR) && status == 0) return;
  if (n <= 0) {
    pending->adopt = false;  // closed or failed before the head was complete
  } else if (!self->worker_.config.customer.tlsCertFile.empty()) {
    // wss: the head is encrypted; lws checks what it can (onLwsEvent, CONFIRM_UPGRADE).
  } else {
    std::string_view bytes(buf, size_t(n));
    size_t headBytes = http::headLength(bytes);
    if (!headBytes && (events & UV_DISCONNECT)) {
      pending->adopt = false;  // the client stopped sending before its head was complete
    } else if (!headBytes && size_t(n) < sizeof buf) {
      // Wake up only once more bytes than these are there: a level-triggered poll on unread
      // bytes would fire again at once.
      int lowat = int(n) + 1;
      setsockopt(pending->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
      return;
    } else {
      pending->peeked = size_t(n);
      self->judgeHead(*pending, bytes.substr(0, headBytes));
    }
  }
  conn->handshake->peekPoll = nullptr;
  uv_poll_stop(handle);
  // lws polls the same fd once adopted; libuv allows one poll handle per fd, so the adoption
  // happens only after ours is fully closed.
  uv_close(reinterpret_cast<uv_handle_t*>(handle), onPeekClosed);
}

// §5.2 on a complete head (empty: the head did not fit in kPeekBytes): the refusal is written
// here; an accepted socket keeps what ConnOpen needs and goes to lws.
void WsServer::judgeHead(PendingAccept& pending, std::string_view head) {
  http::Verdict verdict = head.empty() ? http::refusal(400, "Bad Request")
                                       : http::checkHandshake(head, handshakeRules());
  if (verdict.status != 101) {
    drainInput(pending.fd);
    std::string response = http::refusalResponse(verdict);
    if (send(pending.fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
      LOG_DEBUG("refusal to a client: %s", strerror(errno));
    shutdown(pending.fd, SHUT_WR);
    pending.adopt = false;
    return;
  }
  Handshake& hs = *pending.conn->handshake;
  hs.rawQuery = verdict.rawQuery;
  hs.xForwardedFor = verdict.xForwardedFor;
  hs.xRealIp = verdict.xRealIp;
  hs.checked = true;
  hs.direct = directAllowed(verdict);
  if (hs.direct) hs.wsKey = verdict.wsKey;
  int lowat = 1;
  setsockopt(pending.fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
}

void WsServer::onPeekClosed(uv_handle_t* handle) {
  auto* pending = static_cast<PendingAccept*>(handle->data);
  if (pending->adopt && pending->conn->handshake->direct) {
    pending->server->acceptDirect(pending->conn, pending->fd, pending->peeked);
  } else if (pending->adopt) {
    pending->server->adopt(pending->conn, pending->fd);
  } else {
    close(pending->fd);
    pending->server->freeConn(pending->conn);
  }
  delete pending;
}

void WsServer::abandon(Conn& conn) {
  if (conn.handshake && conn.handshake->peekPoll) {
    auto* pending = static_cast<PendingAccept*>(conn.handshake->peekPoll->data);
    conn.handshake->peekPoll = nullptr;
    pending->adopt = false;
    uv_close(reinterpret_cast<uv_handle_t*>(&pending->poll), onPeekClosed);
  } else if (conn.wsi && conn.phase == Conn::Http) {
    // lws's own timers would keep a half-sent request for its idle timeout; a shut-down socket
    // makes lws close it at its next read.
    shutdown(lws_get_socket_fd(conn.wsi), SHUT_RDWR);
  }
}

void WsServer::adopt(Conn* conn, int fd) {
  lws_adopt_desc_t desc{};
  desc.vh = vhost_;
  int type = LWS_ADOPT_HTTP | LWS_ADOPT_SOCKET;
  if (!worker_.config.customer.tlsCertFile.empty()) type |= LWS_ADOPT_ALLOW_SSL;
  desc.type = lws_adoption_type(type);
  desc.fd.sockfd = fd;
  desc.opaque = conn;
  lws* wsi = lws_adopt_descriptor_vhost_via_info(&desc);
  if (!wsi) {
    // lws has closed the fd already (LWS-NOTES.md).
    LOG_WARN("lws refused to adopt a client socket");
    freeConn(conn);
    return;
  }
  if (conn->flags & Conn::Destroyed) {
    freeConn(conn);
    return;
  }
  conn->wsi = wsi;
  conn->phase = Conn::Http;
}

// lws is needed for wss (it decrypts), for permessage-deflate (our extension runs inside it) and
// where our frames cannot leave through io_uring (its lws_write fallback). Otherwise it would
// only hold ~1.4 KiB per connection that nothing uses once the 101 is out (docs/DESIGN.md).
bool WsServer::directAllowed(const http::Verdict& verdict) const {
  if (!ownReader_ || !uring_ || directOff_) return false;
  // Levels -2..9 but 0 negotiate permessage-deflate (pm_deflate_lws.cpp).
  return !(verdict.offersExtensions && worker_.config.customer.compressionLevel != 0);
}

void WsServer::acceptDirect(Conn* conn, int fd, size_t peeked) {
  // §5.2: the head is consumed and whatever came with it is discarded, as lws discards it.
  char sink[kPeekBytes];
  while (peeked > 0) {
    ssize_t n = recv(fd, sink, std::min(peeked, sizeof sink), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    peeked -= size_t(n);
  }
  // Sec-WebSocket-Accept = base64(SHA-1(key + GUID)), RFC 6455 §4.2.2 (lws's SHA-1 and base64).
  std::string keyed = conn->handshake->wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char digest[20];
  lws_SHA1(reinterpret_cast<const unsigned char*>(keyed.data()), keyed.size(), digest);
  char accept[32];
  int acceptLen = lws_b64_encode_string(reinterpret_cast<const char*>(digest), int(sizeof digest),
                                        accept, int(sizeof accept));
  std::string response =
      http::upgradeResponse(std::string_view(accept, acceptLen > 0 ? size_t(acceptLen) : 0));
  // A new socket's send buffer is empty: the ~130 bytes go at once or the client is gone.
  if (acceptLen <= 0 || send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT) !=
                            ssize_t(response.size())) {
    close(fd);
    freeConn(conn);
    return;
  }
  conn->flags |= Conn::Direct;
  conn->phase = Conn::Http;
  startReading(*conn, fd);
  openConnection(*conn);
}

void WsServer::pauseAccepting(int err) {
  constexpr uint64_t kAcceptPauseMs = 500;
  // No accept runs until the timer restarts the polls, so this logs once per pause.
  for (uv_poll_t* poll : acceptPolls_) uv_poll_stop(poll);
  rlimit files{};
  getrlimit(RLIMIT_NOFILE, &files);
  // A client holds one descriptor here, two when lws has it (lws's and our reader's duplicate).
  LOG_WARN(
      "accept: %s with %lld client sockets open (open-files limit %llu): accepting again "
      "in %llu ms",
      strerror(err), static_cast<long long>(sockets_),
      static_cast<unsigned long long>(files.rlim_cur),
      static_cast<unsigned long long>(kAcceptPauseMs));
  if (!acceptPause_) {
    acceptPause_ = new uv_timer_t;
    acceptPause_->data = this;
    uv_timer_init(worker_.loop, acceptPause_);
    uv_unref(reinterpret_cast<uv_handle_t*>(acceptPause_));  // keeps no loop alive
  }
  uv_timer_start(acceptPause_, onAcceptResume, kAcceptPauseMs, 0);
}

void WsServer::onAcceptResume(uv_timer_t* handle) {
  auto* self = static_cast<WsServer*>(handle->data);
  for (uv_poll_t* poll : self->acceptPolls_) uv_poll_start(poll, UV_READABLE, onAcceptable);
}

void WsServer::stopAccepting() {
  for (uv_poll_t* poll : acceptPolls_)
    uv_close(reinterpret_cast<uv_handle_t*>(poll),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  acceptPolls_.clear();
}

}  // namespace netsvr
