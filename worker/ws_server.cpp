#include "worker/ws_server.hpp"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <malloc.h>
#include <algorithm>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <new>

#include "cmd.pb.h"
#include "common/log.hpp"
#include "common/startup_memory.hpp"
#include "connClose.pb.h"
#include "connOpen.pb.h"
#include "connOpenResp.pb.h"
#include "transfer.pb.h"
#include "worker/biz_link.hpp"
#include "worker/http_client.hpp"
#include "worker/lws_context.hpp"
#include "worker/pm_deflate.hpp"
#include "worker/worker.hpp"
#include "worker/ws_handshake.hpp"

namespace netsvr {

namespace {

// lws per-connection receive buffer, bytes (LWS-NOTES.md), allocated by lws for every
// connection at the upgrade. Larger messages arrive in several callbacks and are reassembled.
// With wss lws parses every frame, so it gets 512 B.
constexpr size_t kRxBufferSize = 512;
// Without TLS our own reader parses frames (worker/ws_read.cpp) and lws reads nothing, except
// for a connection whose descriptor could not be duplicated: 128 B still holds any control
// frame whole (payload <= 125), and saves 384 B of every idle connection (docs/PERFORMANCE.md).
constexpr size_t kRxBufferSizeOwnReader = 128;
// Most bytes lws hands to one send(2). Left at 0, lws caps each send at the receive buffer size
// (512 + 20 B) and sends the rest of a larger frame only after the next POLLOUT: two sends, four
// epoll_ctl calls and a loop turn of latency per 1 KiB message. The kernel takes what fits in
// the socket buffer; lws keeps only an unsent rest.
constexpr size_t kTxPacketSize = 1 << 20;
constexpr uint32_t kCloseGraceSeconds = 2;  // §6.8: TCP force-closed 2 s after our close frame
int lwsCallback(lws* wsi, lws_callback_reasons reason, void* /*user*/, void* in, size_t len) {
  auto* server = static_cast<WsServer*>(lws_context_user(lws_get_context(wsi)));
  if (!server) return 0;
  try {
    return server->onLwsEvent(wsi, int(reason), in, len);
  } catch (const std::exception& e) {
    LOG_ERROR("websocket callback %d: %s", int(reason), e.what());
    return -1;
  }
}

const lws_protocols kProtocols[] = {
    {"netsvr", lwsCallback, 0, kRxBufferSize, 0, nullptr, kTxPacketSize},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};
const lws_protocols kProtocolsOwnReader[] = {
    {"netsvr", lwsCallback, 0, kRxBufferSizeOwnReader, 0, nullptr, kTxPacketSize},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

void lwsLog(int level, const char* line) {
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) --n;
  if (level & LLL_ERR)
    LOG_WARN("lws: %.*s", int(n), line);
  else
    LOG_DEBUG("lws: %.*s", int(n), line);
}

std::string headerValue(lws* wsi, lws_token_indexes token) {
  int len = lws_hdr_total_length(wsi, token);
  if (len <= 0) return {};
  std::string out(size_t(len) + 1, '\0');
  int n = lws_hdr_copy(wsi, out.data(), len + 1, token);
  out.resize(n > 0 ? size_t(n) : 0);
  return out;
}

// The first of possibly several headers of that name (lws joins repeated headers; §5 wants
// the first one's value).
std::string firstHeaderValue(lws* wsi, lws_token_indexes token) {
  char buf[1024];
  int n = lws_hdr_copy_fragment(wsi, buf, sizeof buf, token, 0);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

// Writes a complete HTTP/1.1 response and asks lws to close. lws_return_http_status() would
// emit an HTTP/1.0 status line, which strict clients refuse (LWS-NOTES.md).
int respondHttp(lws* wsi, int code, const char* text, std::string_view body) {
  unsigned char buf[LWS_PRE + 1024];
  unsigned char* start = buf + LWS_PRE;
  unsigned char* p = start;
  unsigned char* end = buf + sizeof buf - 1;
  std::string status = "HTTP/1.1 " + std::to_string(code) + " " + text;
  if (lws_add_http_header_by_name(wsi, nullptr,
                                  reinterpret_cast<const unsigned char*>(status.data()),
                                  int(status.size()), &p, end) ||
      lws_add_http_header_by_token(
          wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
          reinterpret_cast<const unsigned char*>("text/plain; charset=utf-8"), 25, &p, end) ||
      lws_add_http_header_content_length(wsi, body.size(), &p, end) ||
      lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
                                   reinterpret_cast<const unsigned char*>("close"), 5, &p, end) ||
      lws_finalize_http_header(wsi, &p, end) || size_t(end - p) < body.size())
    return -1;
  memcpy(p, body.data(), body.size());
  p += body.size();
  lws_write(wsi, start, size_t(p - start), LWS_WRITE_HTTP_HEADERS);
  return -1;
}

}  // namespace

static_assert(sizeof(Conn) <= 96, "per-connection state must stay small");

WsServer::WsServer(Worker& worker) : worker_(worker) {
  sendType_ = worker.config.customer.sendMessageType == 2 ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
  uint64_t hb = uint64_t(worker.config.customer.heartbeatInterval.count()) / 1000;
  heartbeatSeconds_ = uint32_t(hb ? hb : 1);
  handshakeMs_ = uint64_t(worker.config.customer.handshakeTimeout.count());
  ownReader_ = worker.config.customer.tlsCertFile.empty();
  // Autobahn's suite sends messages of up to 16 MiB and reads their echo back.
  constexpr uint64_t kAutobahnLimit = 64u << 20;
  const auto& cfg = worker.config.customer;
  receiveLimit_ = worker.config.autobahn
                      ? std::max<uint64_t>(uint64_t(cfg.receivePackLimit), kAutobahnLimit)
                      : uint64_t(cfg.receivePackLimit);
  sendQueueLimit_ = worker.config.autobahn
                        ? std::max<uint64_t>(uint64_t(cfg.sendQueueLimit), 2 * kAutobahnLimit)
                        : uint64_t(cfg.sendQueueLimit);
}

http::HandshakeRules WsServer::handshakeRules() const {
  http::HandshakeRules rules;
  rules.handlePattern = worker_.config.customer.handlePattern;
  rules.allowOrigin = &worker_.config.customer.allowOrigin;
  rules.autobahn = worker_.config.autobahn;
  return rules;
}

void WsServer::start() {
  lws_set_log_level(LLL_ERR | (log::enabled(log::Level::Debug) ? LLL_WARN : 0), lwsLog);
  void* loops[] = {worker_.loop};
  lws_context_creation_info info =
      foreignLoopContextInfo(loops, ownReader_ ? kProtocolsOwnReader : kProtocols, this, &context_);
  info.timeout_secs = unsigned(std::max<uint64_t>(1, handshakeMs_ / 1000));
  // No lws validity checks. By default lws 4.1 pings every connection after 300 s and hangs up
  // at 310 s unless *it* saw a PONG, which it never does: our reader takes the frames (every
  // client was dropped after 310 s, whatever it sent). Its timer also sat in one sorted list per
  // worker, so each new connection walked all the others (O(n) per accept: 0.4 ms at 5,000).
  // Liveness is Customer.HeartbeatInterval's, checked by sweep().
  static const lws_retry_bo_t kNoValidityChecks = {};
  info.retry_and_idle_policy = &kNoValidityChecks;
  const auto& cfg = worker_.config.customer;
  pmd::Settings deflate;  // permessage-deflate: our extension, never lws's built-in one
  deflate.level = cfg.compressionLevel;
  deflate.receiveLimit = receiveLimit_;
  if (worker_.config.autobahn) deflate.minCompressSize = 0;  // §6.2: threshold 0 in Autobahn mode
  info.extensions = pmd::extensions(deflate);                // nullptr when CompressionLevel = 0
  if (!info.extensions)
    LOG_DEBUG("permessage-deflate not negotiated (Customer.CompressionLevel = 0)");
  if (!cfg.tlsCertFile.empty()) {  // wss: OpenSSL through lws on every adopted socket
    info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.ssl_cert_filepath = cfg.tlsCertFile.c_str();
    info.ssl_private_key_filepath = cfg.tlsKeyFile.c_str();
    info.alpn = "http/1.1";  // no h2: websockets and our raw status lines are HTTP/1.1 only
  }
  vhost_ = createContextAndVhost(info, context_, "websocket");

  for (int set = 0; set < worker_.listenSets; ++set) {
    auto* poll = new uv_poll_t;
    poll->data = this;
    uv_poll_init(worker_.loop, poll, worker_.clientListenFd(set));
    uv_poll_start(poll, UV_READABLE, onAcceptable);
    acceptPolls_.push_back(poll);
  }
  sweepTimer_ = new uv_timer_t;
  sweepTimer_->data = this;
  uv_timer_init(worker_.loop, sweepTimer_);
  // Every second at most; sooner when the handshake timeout is shorter (it is checked here too).
  uint64_t sweepMs = std::clamp<uint64_t>(handshakeMs_ / 4, 50, 1000);
  // The first sweep runs as the loop starts: it gives back the start-up memory at once.
  uv_timer_start(sweepTimer_, onSweep, 0, sweepMs);
  flushCheck_ = new uv_check_t;
  flushCheck_->data = this;
  uv_check_init(worker_.loop, flushCheck_);
  flushPrepare_ = new uv_prepare_t;
  flushPrepare_->data = this;
  uv_prepare_init(worker_.loop, flushPrepare_);
  const char* batching = getenv("NETSVR_WRITE_BATCHING");
  batchWrites_ = !(batching && strcmp(batching, "0") == 0);
  // io_uring sends need our reader (no TLS) and the batch; NETSVR_IO_URING=0 turns them off.
  const char* uring = getenv("NETSVR_IO_URING");
  if (batchWrites_ && ownReader_ && !(uring && strcmp(uring, "0") == 0)) {
    std::string why;
    uring_ = UringSender::create(worker_.loop, why);
    if (!uring_) LOG_INFO("client frames are sent one send(2) each: %s", why.c_str());
  }
  const char* direct = getenv("NETSVR_DIRECT");
  directOff_ = direct && strcmp(direct, "0") == 0;
}

void WsServer::link(Conn* conn) {
  conn->next = head_;
  if (head_) head_->prev = conn;
  head_ = conn;
}

void WsServer::unlink(Conn* conn) {
  if (conn->prev)
    conn->prev->next = conn->next;
  else
    head_ = conn->next;
  if (conn->next) conn->next->prev = conn->prev;
  conn->prev = conn->next = nullptr;
}

void WsServer::freeConn(Conn* conn) {
  if (conn->handshake && conn->handshake->callbackId)
    worker_.http->cancel(conn->handshake->callbackId);
  dropQueue(*conn);
  dropFlight(*conn);
  releaseReader(conn->reader);
  conn->reader = nullptr;
  if (conn->flags & Conn::FlushDue) dirty_[conn->dirtyIndex] = nullptr;
  unlink(conn);
  --sockets_;
  worker_.info().sockets.fetch_sub(1, std::memory_order_relaxed);
  delete conn;
  checkStopped();
}

Conn* WsServer::findOpen(uint64_t key) const {
  const auto& data = worker_.table->unlockedData();
  auto it = data.conns.find(key);
  if (it == data.conns.end()) return nullptr;
  auto* conn = reinterpret_cast<Conn*>(it->second.localRef);
  return conn->phase == Conn::Open ? conn : nullptr;
}

int WsServer::onLwsEvent(lws* wsi, int reason, void* in, size_t len) {
  auto* conn = static_cast<Conn*>(lws_get_opaque_user_data(wsi));
  switch (reason) {
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
      if (!conn) return -1;
      Handshake& hs = *conn->handshake;
      if (hs.checked) return 0;  // §5.2 was applied to the peeked head (ws_accept.cpp)
      // wss: the head was encrypted when peeked; check what lws parsed of it.
      const auto& cfg = worker_.config.customer;
      if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return respondHttp(wsi, 405, "Method Not Allowed", "Method Not Allowed");
      std::string path = headerValue(wsi, WSI_TOKEN_GET_URI);
      if (!worker_.config.autobahn && path != cfg.handlePattern)
        return respondHttp(wsi, 404, "Not Found", "Not Found");
      if (!cfg.allowOrigin.empty() && !worker_.config.autobahn) {
        std::string origin = headerValue(wsi, WSI_TOKEN_ORIGIN);
        bool allowed = false;
        for (const auto& o : cfg.allowOrigin)
          if (!origin.empty() && origin.find(o) != std::string::npos) allowed = true;
        if (!allowed) return respondHttp(wsi, 403, "Forbidden", "Forbidden");
      }
      if (headerValue(wsi, WSI_TOKEN_VERSION) != "13")
        return respondHttp(wsi, 426, "Upgrade Required", "Upgrade Required");
      hs.xForwardedFor = firstHeaderValue(wsi, WSI_TOKEN_X_FORWARDED_FOR);
      hs.xRealIp = firstHeaderValue(wsi, WSI_TOKEN_HTTP_X_REAL_IP);
      char frag[1024];  // lws decodes the query: rebuild it from its fragments, as near as it gets
      for (int i = 0; lws_hdr_copy_fragment(wsi, frag, sizeof frag, WSI_TOKEN_HTTP_URI_ARGS, i) > 0;
           ++i) {
        if (i) hs.rawQuery += '&';
        hs.rawQuery += frag;
      }
      return 0;
    }
    case LWS_CALLBACK_HTTP:  // wss only: plain sockets are answered before lws sees them
      if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
        return respondHttp(wsi, 405, "Method Not Allowed", "Method Not Allowed");
      return respondHttp(wsi, 200, "OK", "Hello netsvr");
    case LWS_CALLBACK_ADD_HEADERS:  // completes our Sec-WebSocket-Extensions answer
      if (conn && pmd::negotiating(wsi)) conn->flags |= Conn::Compressed;
      pmd::onAddHeaders(wsi, in);
      return 0;
    case LWS_CALLBACK_ESTABLISHED:
      if (!conn) return -1;
      if (ownReader_) startReading(*conn);
      openConnection(*conn);
      return 0;
    case LWS_CALLBACK_RECEIVE:
      // Our reader parses frames (ws_read.cpp); what lws still hands over was buffered with the
      // request head and is dropped, as the Go gateway drops it (§5.2).
      if (conn) onFrameBytes(*conn, static_cast<const char*>(in), len);
      return 0;
    case LWS_CALLBACK_SERVER_WRITEABLE:
      return conn ? onWritable(*conn) : 0;
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      // After our own close frame the client's answer ends the connection without an echo.
      return conn && (conn->flags & Conn::CloseSent) ? 1 : 0;
    case LWS_CALLBACK_CLOSED:
    case LWS_CALLBACK_CLOSED_HTTP:
      if (conn) closedConnection(*conn);
      return 0;
    case LWS_CALLBACK_WSI_DESTROY:
      if (!conn) return 0;
      lws_set_opaque_user_data(wsi, nullptr);
      if (conn->phase == Conn::Adopting) {
        conn->flags |= Conn::Destroyed;  // adopt() frees it when lws returns
      } else {
        closedConnection(*conn);
        freeConn(conn);
      }
      return 0;
    default:
      return 0;
  }
}

void WsServer::refuse(Conn& conn, uint16_t code, std::string_view reason) {
  conn.phase = Conn::Open;  // a close frame needs an established websocket
  closePolitely(conn, code, reason);
}

// §6.4 with DECISIONS 3 and 4: checks, the optional OnOpen callback (the connection stays
// invisible and its messages wait meanwhile), then registration, then the ConnOpen event.
void WsServer::openConnection(Conn& conn) {
  const auto& cfg = worker_.config.customer;
  if (worker_.stopping) return refuse(conn, 1012, "service restart");
  if (cfg.maxOnlineNum > 0 && worker_.onlineSockets() > cfg.maxOnlineNum)
    return refuse(conn, 1013, "open rate limited, try again later");
  if (!worker_.allowOpen()) {
    worker_.mark(8);
    return refuse(conn, 1013, "open rate limited, try again later");
  }
  Handshake& hs = *conn.handshake;
  netsvr::connOpen::ConnOpen open;
  open.set_uniqid(worker_.uniqIdOf(conn.key));
  open.set_rawquery(hs.rawQuery);
  open.set_xforwardedfor(hs.xForwardedFor);
  open.set_xrealip(hs.xRealIp);
  open.set_remoteaddr(hs.remoteAddr);
  hs.connOpen = open.SerializeAsString();
  conn.lastActive = monotonicSeconds();
  if (cfg.onOpenCallbackApi.empty()) return finishOpen(conn, nullptr);

  conn.phase = Conn::Opening;
  Conn* target = &conn;
  hs.callbackId = worker_.http->post(
      cfg.onOpenCallbackApi, hs.connOpen, "application/x-protobuf", true, cfg.callbackApiDeadline,
      [this, target](HttpResult result) {
        Conn& c = *target;  // alive: freeConn() cancels a pending callback
        c.handshake->callbackId = 0;
        if (c.phase != Conn::Opening) return;
        std::string error = callbackErrorText(result);
        netsvr::connOpenResp::ConnOpenResp resp;
        if (error.empty() && !resp.ParseFromString(result.body))
          error = "invalid ConnOpenResp in the callback response";
        if (!error.empty()) {
          LOG_WARN("OnOpenCallbackApi for %s: %s", worker_.uniqIdOf(c.key).c_str(), error.c_str());
          return refuse(c, 1011, error);
        }
        if (!resp.allow()) {
          c.phase = Conn::Open;
          if (!resp.data().empty()) deliver(c, resp.data());
          return closePolitely(c, 1008, "unauthorized");
        }
        finishOpen(c, &resp);
      });
}

void WsServer::finishOpen(Conn& conn, const netsvr::connOpenResp::ConnOpenResp* resp) {
  const auto& cfg = worker_.config.customer;
  if (!worker_.table->insert(conn.key, reinterpret_cast<uint64_t>(&conn)))
    return refuse(conn, 1013, "server busy, try again later");
  conn.flags |= Conn::InTable;
  conn.phase = Conn::Open;
  conn.window.init(cfg.limitZeroWindowMaxRequests);
  worker_.info().clients.fetch_add(1, std::memory_order_relaxed);
  worker_.mark(1);
  if (resp) {  // seeded state is indexed before anyone can see the connection
    if (!resp->newsession().empty()) worker_.table->setSession(conn.key, resp->newsession());
    if (!resp->newcustomerid().empty())
      worker_.table->setCustomerId(conn.key, resp->newcustomerid());
    if (!resp->newtopics().empty())
      worker_.table->subscribe(conn.key, std::vector<std::string_view>(resp->newtopics().begin(),
                                                                       resp->newtopics().end()));
    if (!resp->data().empty()) deliver(conn, resp->data());
  }
  std::unique_ptr<Handshake> hs = std::move(conn.handshake);
  worker_.links->emitEvent(Event::OnOpen, netsvr::cmd::ConnOpen, hs->connOpen);
  for (const auto& message : hs->waiting) {  // what the client sent during the callback, in order
    if (conn.phase != Conn::Open) break;
    onMessage(conn, message);
  }
}

void WsServer::closedConnection(Conn& conn) {
  if (conn.phase != Conn::Adopting) conn.phase = Conn::Closing;
  if (!(conn.flags & Conn::InTable)) return;
  conn.flags &= uint16_t(~Conn::InTable);
  worker_.info().clients.fetch_sub(1, std::memory_order_relaxed);
  worker_.mark(2);
  const auto& cfg = worker_.config.customer;
  if (!worker_.links->hasReceiver(Event::OnClose) && cfg.onCloseCallbackApi.empty()) {
    worker_.table->erase(conn.key, nullptr);
    return;
  }
  // Without a callback, the event is built when the link it goes to can take it: the record waits
  // in the table meanwhile, out of every index (a burst of closes queues no copies of sessions).
  if (cfg.onCloseCallbackApi.empty() && worker_.table->depart(conn.key)) {
    worker_.links->emitClose(conn.key);
    return;
  }
  shm::ConnSnapshot snapshot;
  worker_.table->erase(conn.key, &snapshot);
  reportClosed(closeBody(conn.key, std::move(snapshot)));
}

std::string WsServer::closeBody(uint64_t key, shm::ConnSnapshot&& snapshot) const {
  netsvr::connClose::ConnClose close;
  close.set_uniqid(worker_.uniqIdOf(key));
  close.set_customerid(std::move(snapshot.customerId));
  close.set_session(std::move(snapshot.session));
  for (auto& t : snapshot.topics) close.add_topics(std::move(t));
  return close.SerializeAsString();
}

std::string WsServer::takeCloseBody(uint64_t key) {
  shm::ConnSnapshot snapshot;
  if (!worker_.table->takeDeparted(key, &snapshot)) return {};
  return closeBody(key, std::move(snapshot));
}

void WsServer::reportClosed(std::string body) {
  const auto& cfg = worker_.config.customer;
  if (cfg.onCloseCallbackApi.empty()) {
    worker_.links->emitEvent(Event::OnClose, netsvr::cmd::ConnClose, body);
    return;
  }
  // §8.2: the callback first, then the event, whatever the callback answered.
  Worker* w = &worker_;
  worker_.http->post(cfg.onCloseCallbackApi, body, "application/x-protobuf", false,
                     cfg.callbackApiDeadline, [w, body](HttpResult result) {
                       if (!result.ok) LOG_WARN("OnCloseCallbackApi: %s", result.error.c_str());
                       w->links->emitEvent(Event::OnClose, netsvr::cmd::ConnClose, body);
                     });
}

void WsServer::onMessage(Conn& conn, std::string_view data) {
  conn.lastActive = monotonicSeconds();
  if (conn.phase == Conn::Opening) {  // the open callback is pending: keep the order
    conn.handshake->waiting.emplace_back(data);
    return;
  }
  if (data == worker_.config.customer.heartbeatMessage) {
    worker_.mark(3);
    return;
  }
  if (!worker_.links->hasReceiver(Event::OnMessage)) return;
  const auto& cfg = worker_.config.customer;
  if (!conn.window.allow(uint32_t(time(nullptr)), uint32_t(cfg.limitWindowSize.count() / 1000),
                         cfg.limitWindowMaxRequests)) {
    worker_.mark(13);
    return;
  }
  if (!worker_.allowMessage()) {
    worker_.mark(9);
    return;
  }
  netsvr::transfer::Transfer transfer;
  transfer.set_uniqid(worker_.uniqIdOf(conn.key));
  const auto& conns = worker_.table->unlockedData().conns;
  auto it = conns.find(conn.key);
  if (it != conns.end()) {
    const auto& rec = it->second;
    transfer.set_customerid(rec.customerId.data(), rec.customerId.size());
    transfer.set_session(rec.session.data(), rec.session.size());
    for (const auto& t : rec.topics) transfer.add_topics(t.data(), t.size());
  }
  transfer.set_data(data.data(), data.size());
  if (log::enabled(log::Level::Debug))
    LOG_DEBUG("client %s sent %zu bytes", transfer.uniqid().c_str(), data.size());
  worker_.links->emitEvent(Event::OnMessage, netsvr::cmd::Transfer, transfer.SerializeAsString());
}

// A draining worker gives sockets that have not sent a request line a second at most: they hold
// up its exit, and a client that retries lands on the new generation.
uint64_t WsServer::handshakeLimitMs() const {
  constexpr uint64_t kDrainingLimitMs = 1000;
  return worker_.draining ? std::min(handshakeMs_, kDrainingLimitMs) : handshakeMs_;
}

void WsServer::onSweep(uv_timer_t* handle) {
  static_cast<WsServer*>(handle->data)->sweep();
}

void WsServer::sweep() {
  uint32_t now = monotonicSeconds();
  int unfinished = 0;  // sockets dropped for not completing the upgrade in time
  for (Conn* c = head_; c;) {
    Conn* next = c->next;
    if (c->phase == Conn::Open && now - c->lastActive > heartbeatSeconds_) {
      closePolitely(*c, 1001, "heartbeat timeout");
    } else if (c->phase == Conn::Closing && hasSocket(*c) &&
               now - c->lastActive >= kCloseGraceSeconds) {
      killNow(*c, true);  // §6.8: the TCP connection ends 2 s after our close frame at the latest
    } else if (c->handshake && c->phase != Conn::Opening &&
               uv_now(worker_.loop) - c->handshake->acceptedAtMs >= handshakeLimitMs()) {
      abandon(*c);  // never completed the upgrade in time (DECISIONS 8)
      ++unfinished;
    }
    c = next;
  }
  if (unfinished)  // one line per sweep, not one per socket: a slow-loris crowd is thousands
    LOG_INFO("closed %d sockets that did not complete the websocket handshake within %llu ms",
             unfinished, static_cast<unsigned long long>(handshakeLimitMs()));
  if (!startupReleased_) {  // the first sweep, as the loop starts: start-up is over
    startupReleased_ = true;
    size_t bytes = releaseStartupMemory(StartupRelease::LinkerTables);
    LOG_DEBUG("start-up memory given back: %zu KiB", bytes / 1024);
  }
  // glibc keeps the heap of mass disconnects; give it back once a few thousand have left.
  constexpr int64_t kTrimAfterClosed = 2048;
  if (peakSockets_ - sockets_ >= kTrimAfterClosed) {
    malloc_trim(0);
    peakSockets_ = sockets_;
  }
  peakSockets_ = std::max(peakSockets_, sockets_);
  if (worker_.stopping && head_) {  // a stop that takes long: say what it waits for
    int phases[5] = {};
    for (Conn* c = head_; c; c = c->next) ++phases[c->phase];
    LOG_INFO("waiting for sockets to close: adopting %d, http %d, opening %d, open %d, closing %d",
             phases[Conn::Adopting], phases[Conn::Http], phases[Conn::Opening], phases[Conn::Open],
             phases[Conn::Closing]);
  }
  if (worker_.table->fullErrors() && log::enabled(log::Level::Debug))
    LOG_DEBUG("routing table: %llu writes refused for lack of space",
              static_cast<unsigned long long>(worker_.table->fullErrors()));
}

void WsServer::closeAll(uint16_t code, std::string_view reason) {
  for (Conn* c = head_; c;) {
    Conn* next = c->next;
    if (c->phase == Conn::Open || c->phase == Conn::Opening)
      closePolitely(*c, code, reason);
    else
      abandon(*c);
    c = next;
  }
}

void WsServer::stop(void (*done)(void*), void* arg) {
  stopAccepting();
  closeAll(1001, "going away");
  whenEmpty(done, arg);
}

void WsServer::whenEmpty(void (*done)(void*), void* arg) {
  stopDone_ = done;
  stopArg_ = arg;
  checkStopped();
}

void WsServer::checkStopped() {
  if (!stopDone_ || head_) return;
  for (uv_timer_t** timer : {&sweepTimer_, &acceptPause_}) {
    if (!*timer) continue;
    uv_close(reinterpret_cast<uv_handle_t*>(*timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    *timer = nullptr;
  }
  if (flushCheck_) {
    uv_close(reinterpret_cast<uv_handle_t*>(flushCheck_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_check_t*>(h); });
    flushCheck_ = nullptr;
  }
  if (flushPrepare_) {
    uv_close(reinterpret_cast<uv_handle_t*>(flushPrepare_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_prepare_t*>(h); });
    flushPrepare_ = nullptr;
  }
  auto done = stopDone_;
  stopDone_ = nullptr;
  done(stopArg_);
}

// With a foreign loop lws must be destroyed twice: once inside the loop (it closes its handles)
// and once after uv_run has returned (it frees the rest) — LWS-NOTES.md.
void WsServer::destroyContext() {
  uring_.reset();  // its eventfd handle closes in the loop run that follows
  if (!context_) return;
  lws_context_destroy(context_);
  if (++destroyCalls_ == 2) context_ = nullptr;
}

}  // namespace netsvr
