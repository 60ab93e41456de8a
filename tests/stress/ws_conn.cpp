#include "ws_conn.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sys/socket.h>

#include <strings.h>
#include <cstring>

namespace stress {
namespace {

constexpr size_t kMaxHead = 16384;             // larger 101 responses are refused
constexpr uint64_t kMaxMessage = 64ull << 20;  // larger server frames are a protocol error
constexpr char kGuid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Mask keys need not be unpredictable for a load tool, only varied: a per-thread xorshift.
uint32_t nextMask() {
  static thread_local uint64_t s = splitmix64(uint64_t(uv_hrtime()));
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return uint32_t(s);
}

// Sec-WebSocket-Key of connection `id`: base64 of 16 pseudo-random bytes (24 chars).
std::string wsKey(const WsEndpoint& ep, uint32_t id) {
  unsigned char raw[16];
  uint64_t a = splitmix64(ep.keySeed ^ (uint64_t(id) << 1));
  uint64_t b = splitmix64(ep.keySeed ^ ((uint64_t(id) << 1) | 1));
  memcpy(raw, &a, 8);
  memcpy(raw + 8, &b, 8);
  unsigned char out[32];
  int n = EVP_EncodeBlock(out, raw, 16);
  return std::string(reinterpret_cast<char*>(out), size_t(n));
}

std::string acceptFor(const std::string& key) {
  std::string src = key + kGuid;
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(src.data()), src.size(), digest);
  unsigned char out[40];
  int n = EVP_EncodeBlock(out, digest, SHA_DIGEST_LENGTH);
  return std::string(reinterpret_cast<char*>(out), size_t(n));
}

struct WriteReq {
  uv_write_t req;
  std::string data;
};

void onWritten(uv_write_t* req, int /*status*/) {
  // A failed write shows up as a read error on the same socket; nothing to do here.
  delete reinterpret_cast<WriteReq*>(req);
}

bool writeRaw(WsConn& c, const char* p, size_t n) {
  auto* stream = reinterpret_cast<uv_stream_t*>(&c.tcp);
  uv_buf_t b = uv_buf_init(const_cast<char*>(p), unsigned(n));
  int r = uv_try_write(stream, &b, 1);
  if (r == int(n)) return true;
  if (r < 0 && r != UV_EAGAIN) return false;
  size_t done = r > 0 ? size_t(r) : 0;
  auto* w = new WriteReq;
  w->data.assign(p + done, n - done);
  uv_buf_t rest = uv_buf_init(w->data.data(), unsigned(w->data.size()));
  if (uv_write(&w->req, stream, &rest, 1, onWritten) != 0) {
    delete w;
    return false;
  }
  return true;
}

void onHandleClosed(uv_handle_t* h) {
  WsConn& c = *static_cast<WsConn*>(h->data);
  delete c.pending;
  c.pending = nullptr;
  delete c.frag;
  c.frag = nullptr;
  c.state = WsState::Closed;
  c.handler->onClosed(c, c.endReason);
}

bool stopped(const WsConn& c) {
  return c.state == WsState::Closed || uv_is_closing(reinterpret_cast<const uv_handle_t*>(&c.tcp));
}

bool sendFrame(WsConn& c, uint8_t opcode, std::string_view payload) {
  size_t len = payload.size();
  size_t hdr = 2 + (len < 126 ? 0 : len <= 0xffff ? 2 : 8) + 4;
  char stackBuf[512];
  std::string heapBuf;
  char* f = stackBuf;
  if (hdr + len > sizeof stackBuf) {
    heapBuf.resize(hdr + len);
    f = heapBuf.data();
  }
  f[0] = char(0x80 | opcode);
  size_t o = 2;
  if (len < 126) {
    f[1] = char(0x80 | len);
  } else if (len <= 0xffff) {
    f[1] = char(0x80 | 126);
    f[2] = char(len >> 8);
    f[3] = char(len);
    o = 4;
  } else {
    f[1] = char(0x80 | 127);
    for (int i = 0; i < 8; ++i) f[2 + i] = char(uint64_t(len) >> (56 - 8 * i));
    o = 10;
  }
  uint32_t m = nextMask();
  unsigned char mask[4];
  memcpy(mask, &m, 4);
  memcpy(f + o, mask, 4);
  o += 4;
  for (size_t i = 0; i < len; ++i) f[o + i] = char(uint8_t(payload[i]) ^ mask[i & 3]);
  return writeRaw(c, f, hdr + len);
}

// Close frame received: echo it unless we started the close, then drop the socket.
void handleClose(WsConn& c, const char* p, size_t len) {
  int code = len >= 2 ? (int(uint8_t(p[0])) << 8) | uint8_t(p[1]) : 1005;
  bool weStarted = c.closeSent;
  c.handler->onServerClose(c, code);
  if (stopped(c)) return;
  if (!c.closeSent) {
    c.closeSent = true;
    sendFrame(c, 0x8, std::string_view(p, len >= 2 ? 2 : 0));
  }
  wsAbort(c, weStarted ? kEndNormal : kEndServerClose);
}

void handleFrame(WsConn& c, bool fin, uint8_t op, const char* p, size_t len) {
  switch (op) {
    case 0x1:
    case 0x2:
      if (c.frag) return wsAbort(c, kEndProtocol);
      if (fin) return c.handler->onMessage(c, std::string_view(p, len));
      c.frag = new std::string(p, len);
      return;
    case 0x0:
      if (!c.frag) return wsAbort(c, kEndProtocol);
      c.frag->append(p, len);
      if (c.frag->size() > kMaxMessage) return wsAbort(c, kEndProtocol);
      if (fin) {
        std::string* msg = c.frag;
        c.frag = nullptr;
        c.handler->onMessage(c, *msg);
        delete msg;
      }
      return;
    case 0x8:
      return handleClose(c, p, len);
    case 0x9:
      if (c.state == WsState::Open) sendFrame(c, 0xA, std::string_view(p, len));
      return;
    case 0xA:
      return;
    default:
      return wsAbort(c, kEndProtocol);
  }
}

// Parses whole frames from p[0..n); returns the bytes consumed. `p` is writable (unmasking).
size_t parseFrames(WsConn& c, char* p, size_t n) {
  size_t off = 0;
  while (!stopped(c)) {
    size_t avail = n - off;
    if (avail < 2) break;
    auto* q = reinterpret_cast<const uint8_t*>(p + off);
    bool fin = q[0] & 0x80;
    uint8_t op = q[0] & 0x0f;
    bool masked = q[1] & 0x80;
    uint64_t len = q[1] & 0x7f;
    size_t hdr = 2;
    if (len == 126) {
      if (avail < 4) break;
      len = (uint64_t(q[2]) << 8) | q[3];
      hdr = 4;
    } else if (len == 127) {
      if (avail < 10) break;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | q[2 + i];
      hdr = 10;
    }
    if (len > kMaxMessage) {
      wsAbort(c, kEndProtocol);
      break;
    }
    size_t maskAt = hdr;
    if (masked) hdr += 4;
    if (avail < hdr + len) break;
    char* payload = p + off + hdr;
    if (masked) {  // servers must not mask; tolerate it
      for (size_t i = 0; i < len; ++i) payload[i] = char(uint8_t(payload[i]) ^ q[maskAt + (i & 3)]);
    }
    off += hdr + size_t(len);
    handleFrame(c, fin, op, payload, size_t(len));
  }
  return off;
}

bool headerEquals(std::string_view head, const char* name, const std::string& value) {
  size_t nameLen = strlen(name);
  size_t pos = 0;
  while ((pos = head.find("\r\n", pos)) != std::string_view::npos) {
    pos += 2;
    if (head.size() - pos > nameLen && strncasecmp(head.data() + pos, name, nameLen) == 0 &&
        head[pos + nameLen] == ':') {
      size_t v = pos + nameLen + 1;
      while (v < head.size() && (head[v] == ' ' || head[v] == '\t')) ++v;
      size_t e = head.find("\r\n", v);
      std::string_view got = head.substr(v, (e == std::string_view::npos ? head.size() : e) - v);
      while (!got.empty() && (got.back() == ' ' || got.back() == '\t')) got.remove_suffix(1);
      return got == value;
    }
  }
  return false;
}

// Bytes consumed; on success switches to Open and goes on with the frames after the head.
size_t parseHandshake(WsConn& c, char* p, size_t n) {
  std::string_view data(p, n);
  size_t end = data.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (n > kMaxHead) wsAbort(c, kEndHandshakeFailed);
    return 0;
  }
  std::string_view head = data.substr(0, end);
  bool ok = head.starts_with("HTTP/1.1 101");
  if (ok && c.endpoint->verifyAccept)
    ok = headerEquals(head, "sec-websocket-accept", acceptFor(wsKey(*c.endpoint, c.id)));
  if (!ok) {
    wsAbort(c, kEndHandshakeFailed);
    return n;
  }
  c.state = WsState::Open;
  c.handler->onOpen(c);
  size_t used = end + 4;
  if (stopped(c)) return n;
  return used + parseFrames(c, p + used, n - used);
}

size_t process(WsConn& c, char* p, size_t n) {
  if (c.state == WsState::Handshaking) return parseHandshake(c, p, n);
  return parseFrames(c, p, n);
}

void onAlloc(uv_handle_t*, size_t, uv_buf_t* buf) {
  static thread_local char readBuf[65536];  // consumed inside onRead, so one per thread is enough
  *buf = uv_buf_init(readBuf, sizeof readBuf);
}

void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  WsConn& c = *static_cast<WsConn*>(s->data);
  if (nread == 0 || stopped(c)) return;
  if (nread < 0) {
    int reason = c.state == WsState::Handshaking ? kEndHandshakeFailed
                 : c.closeSent                   ? kEndNormal
                                                 : kEndReset;
    return wsAbort(c, reason);
  }
  size_t n = size_t(nread);
  if (c.pending) {
    c.pending->append(buf->base, n);
    size_t used = process(c, c.pending->data(), c.pending->size());
    if (stopped(c)) return;
    c.pending->erase(0, used);
    if (c.pending->empty()) {
      delete c.pending;
      c.pending = nullptr;
    }
  } else {
    size_t used = process(c, buf->base, n);
    if (!stopped(c) && used < n) c.pending = new std::string(buf->base + used, n - used);
  }
}

void onConnect(uv_connect_t* req, int status) {
  WsConn& c = *static_cast<WsConn*>(req->data);
  delete req;
  if (stopped(c)) return;
  if (status < 0) return wsAbort(c, kEndConnectFailed);
  c.state = WsState::Handshaking;
  auto* stream = reinterpret_cast<uv_stream_t*>(&c.tcp);
  if (uv_read_start(stream, onAlloc, onRead) != 0) return wsAbort(c, kEndHandshakeFailed);
  const WsEndpoint& ep = *c.endpoint;
  std::string request;
  request.reserve(200);
  request += "GET ";
  request += ep.path;
  request += " HTTP/1.1\r\nHost: ";
  request += ep.host;
  request +=
      "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: "
      "13\r\nSec-WebSocket-Key: ";
  request += wsKey(ep, c.id);
  request += "\r\n\r\n";
  if (!writeRaw(c, request.data(), request.size())) wsAbort(c, kEndHandshakeFailed);
}

}  // namespace

bool parseWsUrl(const std::string& url, WsEndpoint& ep, std::string& error) {
  if (!url.starts_with("ws://")) {
    error = "only ws:// URLs are supported: " + url;
    return false;
  }
  std::string rest = url.substr(5);
  size_t slash = rest.find('/');
  std::string hostPort = rest.substr(0, slash);
  ep.path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = hostPort.rfind(':');
  std::string host = colon == std::string::npos ? hostPort : hostPort.substr(0, colon);
  int port = colon == std::string::npos ? 80 : atoi(hostPort.c_str() + colon + 1);
  if (host == "localhost") host = "127.0.0.1";
  ep.host = hostPort;
  if (port <= 0 || port > 65535 || uv_ip4_addr(host.c_str(), port, &ep.server) != 0) {
    error = "bad host:port in " + url + " (an IPv4 address is needed)";
    return false;
  }
  return true;
}

bool wsConnect(WsConn& c, uv_loop_t* loop, const WsEndpoint& ep, const sockaddr_in& source,
               WsHandler* handler, std::string& error) {
  c.handler = handler;
  c.endpoint = &ep;
  c.state = WsState::Connecting;
  c.closeSent = false;
  c.endReason = kEndNormal;
  int r = uv_tcp_init_ex(loop, &c.tcp, AF_INET);
  if (r != 0) {
    c.state = WsState::Closed;
    error = uv_strerror(r);
    return false;
  }
  c.tcp.data = &c;
  uv_os_fd_t fd;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&c.tcp), &fd) == 0) {
    int one = 1;
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
  }
  uv_tcp_nodelay(&c.tcp, 1);
  r = uv_tcp_bind(&c.tcp, reinterpret_cast<const sockaddr*>(&source), 0);
  auto* req = new uv_connect_t;
  req->data = &c;
  if (r == 0)
    r = uv_tcp_connect(req, &c.tcp, reinterpret_cast<const sockaddr*>(&ep.server), onConnect);
  if (r != 0) {
    delete req;
    wsAbort(c, kEndConnectFailed);  // onClosed follows from the loop
  }
  return true;
}

bool wsSend(WsConn& c, uint8_t opcode, std::string_view payload) {
  if (c.state != WsState::Open || stopped(c)) return false;
  return sendFrame(c, opcode, payload);
}

void wsClose(WsConn& c, uint16_t code) {
  if (stopped(c)) return;
  if (c.state != WsState::Open) return wsAbort(c, kEndNormal);
  char body[2] = {char(code >> 8), char(code)};
  c.closeSent = true;
  c.state = WsState::Closing;
  if (!sendFrame(c, 0x8, std::string_view(body, 2))) wsAbort(c, kEndNormal);
}

void wsAbort(WsConn& c, int reason) {
  auto* h = reinterpret_cast<uv_handle_t*>(&c.tcp);
  if (c.state == WsState::Closed || uv_is_closing(h)) return;
  c.endReason = reason;
  uv_close(h, onHandleClosed);
}

}  // namespace stress
