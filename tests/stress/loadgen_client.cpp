#include "loadgen_client.hpp"

#include <arpa/inet.h>
#include <uv.h>

#include <cstdio>
#include <memory>
#include <vector>

#include "payload.hpp"

namespace stress {
namespace {

struct Client {
  WsConn ws;
  int64_t group = -1;    // from the welcome (or the first message)
  uint64_t lastSeq = 0;  // last 'M' seq seen (seqs start at 1)
  bool opened = false;
  bool ended = false;  // got its group's 'E'
};

class ClientProcess : public WsHandler {
 public:
  ClientProcess(const ClientOptions& o, SharedArea& shared, int proc)
      : o_(o),
        shared_(shared),
        stats_(shared.stats(proc)),
        groupConns_(shared.groupConns(proc)),
        groupRecv_(shared.groupRecv(proc)),
        groupTotal_(shared.groupTotal()),
        fanMax_(shared.fanMax(proc)),
        fanCount_(shared.fanCount(proc)),
        clients_(o.count) {}

  int run() {
    std::string error;
    if (!parseWsUrl(o_.url, endpoint_, error)) {
      fprintf(stderr, "loadgen: %s\n", error.c_str());
      return 2;
    }
    endpoint_.verifyAccept = o_.verifyAccept;
    endpoint_.keySeed = o_.keySeed;
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &connectTimer_);
    uv_timer_init(&loop_, &tickTimer_);
    uv_timer_init(&loop_, &closeTimer_);
    connectTimer_.data = tickTimer_.data = closeTimer_.data = this;
    connectStartNs_ = monoNs();
    uv_timer_start(
        &connectTimer_, [](uv_timer_t* t) { self(t)->connectSome(); }, 0, 5);
    uv_timer_start(
        &tickTimer_, [](uv_timer_t* t) { self(t)->tick(); }, 100, 100);
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return 0;
  }

  // ---- WsHandler ---------------------------------------------------------------------------
  void onOpen(WsConn& c) override {
    Client& cl = client(c);
    cl.opened = true;
    --pending_;
    uint64_t now = uint64_t(monoNs());
    bump(stats_.opened);
    bump(stats_.openNow);
    st(stats_.lastOpenNs, now);
  }

  void onMessage(WsConn& c, std::string_view data) override {
    Client& cl = client(c);
    int64_t now = monoNs();
    Header h;
    if (!decodePayload(data, h)) return bump(stats_.foreign);
    const bool forAll = h.group == kAllClients;
    if (h.group >= shared_.groups() && !forAll) return bump(stats_.foreign);
    if (h.kind == kKindWelcome) {
      if (cl.group < 0 && !forAll) {
        cl.group = h.group;
        bump(groupConns_[h.group]);
      }
      bump(stats_.welcomed);
      st(stats_.lastWelcomeNs, uint64_t(now));
      return;
    }
    if (cl.group < 0 && !forAll) {  // data before the welcome: take the group from the message
      cl.group = h.group;
      bump(groupConns_[h.group]);
    }
    if (h.kind == kKindGroupEnd) {
      if (!forAll) st(groupTotal_[h.group], h.seq + 1);
      return;
    }
    if (h.kind == kKindEnd) {
      if (forAll)
        st(stats_.allTotal, h.seq + 1);
      else
        st(groupTotal_[h.group], h.seq + 1);
      if (!cl.ended) {
        cl.ended = true;
        bump(stats_.ends);
        bump(stats_.settled);
      }
      return;
    }
    // data message
    uint64_t us = now > h.sentNs ? uint64_t(now - h.sentNs) / 1000 : 0;
    bump(stats_.hist[histBucket(us)]);
    bump(stats_.latSumUs, us);
    raiseTo(stats_.latMaxUs, us);
    if (rd(stats_.received) == 0) st(stats_.firstRxNs, uint64_t(now));
    bump(stats_.received);
    st(stats_.lastRxNs, uint64_t(now));
    if (forAll)
      bump(stats_.allReceived);
    else if (cl.group >= 0)
      bump(groupRecv_[cl.group]);
    if (h.seq <= cl.lastSeq)
      bump(stats_.outOfOrder);
    else
      cl.lastSeq = h.seq;
    if (h.seq > 0 && h.seq <= shared_.msgs()) {
      bump(fanCount_[h.seq - 1]);
      raiseTo(fanMax_[h.seq - 1], us);
    }
  }

  void onServerClose(WsConn& /*c*/, int code) override {
    if (!stopping_) bump(stats_.closeCodes[closeCodeSlot(code)]);
  }

  void onClosed(WsConn& c, int reason) override {
    Client& cl = client(c);
    --live_;
    if (!cl.opened) {
      --pending_;
      bump(reason == kEndConnectFailed ? stats_.connectFailed : stats_.handshakeFailed);
    } else {
      st(stats_.openNow, rd(stats_.openNow) - 1);
      if (!cl.ended) bump(stats_.settled);
      if (!stopping_) {
        if (reason == kEndServerClose)
          bump(stats_.closedByServer);
        else if (reason == kEndProtocol)
          bump(stats_.protocolErrors);
        else
          bump(stats_.reset);
      }
    }
    if (stopping_ && live_ == 0) finish();
  }

 private:
  static ClientProcess* self(uv_timer_t* t) { return static_cast<ClientProcess*>(t->data); }
  Client& client(WsConn& c) { return clients_[c.id - o_.firstId]; }

  void connectSome() {
    if (stopping_) return;
    uint64_t allowed = o_.count;
    if (o_.connectRate > 0) {
      double elapsed = double(monoNs() - connectStartNs_) / 1e9;
      allowed = uint64_t(elapsed * o_.connectRate) + 1;
    }
    while (next_ < o_.count && next_ < allowed && pending_ < o_.maxPending) {
      uint32_t local = next_++;
      Client& cl = clients_[local];
      cl.ws.id = o_.firstId + local;
      sockaddr_in src{};
      src.sin_family = AF_INET;
      src.sin_addr.s_addr = htonl(0x7f000000u | (1 + cl.ws.id % o_.sourceIps));
      std::string error;
      if (!wsConnect(cl.ws, &loop_, endpoint_, src, this, error)) {
        bump(stats_.handshakeFailed);
        if (!reportedSocketError_) {
          fprintf(stderr, "loadgen: cannot create a socket: %s\n", error.c_str());
          reportedSocketError_ = true;
        }
        continue;
      }
      ++live_;
      ++pending_;
    }
    if (next_ >= o_.count) uv_timer_stop(&connectTimer_);
  }

  void tick() {
    if (!stopping_ && rd(shared_.control().stop)) return stopAll();
    if (++ticks_ % 10 != 0 || o_.heartbeatS == 0) return;
    // Once a second: the heartbeat for the connections whose turn it is (spread over N s).
    uint64_t second = ticks_ / 10;
    for (uint32_t i = uint32_t(second % o_.heartbeatS); i < o_.count; i += o_.heartbeatS) {
      WsConn& ws = clients_[i].ws;
      if (ws.state == WsState::Open && !wsSendText(ws, o_.heartbeat)) bump(stats_.sendFailed);
    }
  }

  void stopAll() {
    stopping_ = true;
    uv_timer_stop(&connectTimer_);
    for (uint32_t i = 0; i < next_; ++i) {
      WsConn& ws = clients_[i].ws;
      if (ws.state == WsState::Open)
        wsClose(ws, 1000);
      else if (ws.state == WsState::Connecting || ws.state == WsState::Handshaking)
        wsAbort(ws, kEndNormal);
    }
    if (live_ == 0) return finish();
    uv_timer_start(
        &closeTimer_,
        [](uv_timer_t* t) {
          ClientProcess* p = self(t);
          for (uint32_t i = 0; i < p->next_; ++i) wsAbort(p->clients_[i].ws, kEndNormal);
        },
        uint64_t(o_.closeTimeoutS * 1000), 0);
  }

  void finish() {
    uv_close(reinterpret_cast<uv_handle_t*>(&connectTimer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&tickTimer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&closeTimer_), nullptr);
  }

  const ClientOptions& o_;
  SharedArea& shared_;
  ProcStats& stats_;
  uint64_t* groupConns_;
  uint64_t* groupRecv_;
  uint64_t* groupTotal_;
  uint64_t* fanMax_;
  uint64_t* fanCount_;
  std::vector<Client> clients_;
  WsEndpoint endpoint_;
  uv_loop_t loop_{};
  uv_timer_t connectTimer_{}, tickTimer_{}, closeTimer_{};
  int64_t connectStartNs_ = 0;
  uint32_t next_ = 0;
  uint32_t pending_ = 0;
  uint64_t live_ = 0;
  uint64_t ticks_ = 0;
  bool stopping_ = false;
  bool reportedSocketError_ = false;
};

}  // namespace

int runClientProcess(const ClientOptions& options, SharedArea& shared, int procIndex) {
  auto p = std::make_unique<ClientProcess>(options, shared, procIndex);
  return p->run();
}

}  // namespace stress
