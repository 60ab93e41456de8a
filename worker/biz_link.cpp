#include "worker/biz_link.hpp"

#include "worker/read_buffer.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <ctime>

#include "cmd.pb.h"
#include "common/log.hpp"
#include "common/packet.hpp"
#include "shm/conn_table.hpp"
#include "worker/handover.hpp"
#include "worker/peer_links.hpp"
#include "worker/router.hpp"
#include "worker/worker.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {

struct BizLink::Write {
  uv_write_t req;
  std::string data;
  BizLink* link;
};

namespace {
int eventIndex(Event e) {
  return e == Event::OnOpen ? 0 : e == Event::OnClose ? 1 : 2;
}
}  // namespace

BizLink::BizLink(BizLinks& owner, Port port, uint32_t id, uint32_t maxPacket)
    : port(port), id(id), owner_(owner), decoder_(maxPacket) {}

void BizLink::initHandles() {
  uv_loop_t* loop = owner_.worker.loop;
  uv_tcp_init(loop, &tcp_);
  uv_timer_init(loop, &deadline_);
  uv_timer_init(loop, &sendDeadline_);
  tcp_.data = deadline_.data = sendDeadline_.data = this;
  openHandles_ = 3;
}

bool BizLink::accept(uv_stream_t* server) {
  initHandles();
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) {
    close();
    return false;
  }
  uv_tcp_nodelay(&tcp_, 1);
  sockaddr_storage peer{};
  int len = sizeof peer;
  if (uv_tcp_getpeername(&tcp_, reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
    if (peer.ss_family == AF_INET) {
      auto* in = reinterpret_cast<sockaddr_in*>(&peer);
      peerIp = ntohl(in->sin_addr.s_addr);
      peerPort = ntohs(in->sin_port);
    } else if (peer.ss_family == AF_INET6) {  // Go takes the last 4 bytes of the address
      auto* in6 = reinterpret_cast<sockaddr_in6*>(&peer);
      const uint8_t* b = in6->sin6_addr.s6_addr;
      peerIp = (uint32_t(b[12]) << 24) | (uint32_t(b[13]) << 16) | (uint32_t(b[14]) << 8) | b[15];
      peerPort = ntohs(in6->sin6_port);
    }
  }
  acceptedAt = uint32_t(time(nullptr));
  armDeadline();
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  return true;
}

void BizLink::armDeadline() {
  const Config& c = owner_.worker.config;
  auto ms = port == Port::Worker ? c.worker.readDeadline : c.task.readDeadline;
  uv_timer_start(&deadline_, onDeadline, uint64_t(ms.count()), 0);
}

void BizLink::onDeadline(uv_timer_t* timer) {
  auto* link = static_cast<BizLink*>(timer->data);
  LOG_INFO("%s link %u: no packet within the read deadline; closing",
           link->port == Port::Worker ? "worker" : "task", link->id);
  link->close();
}

// Worker.SendDeadline / Task.SendDeadline (PROTOCOL.md §2.4): while packets wait for the kernel,
// each completed write restarts the clock; when none completes for that long, the business is
// not reading and the link is closed (metric 10). A packet may be half written by then, so the
// link cannot be kept as Go keeps it after a write that wrote nothing.
void BizLink::armSendDeadline() {
  const Config& c = owner_.worker.config;
  auto ms = port == Port::Worker ? c.worker.sendDeadline : c.task.sendDeadline;
  uv_timer_start(&sendDeadline_, onSendDeadline, uint64_t(ms.count()), 0);
}

void BizLink::onSendDeadline(uv_timer_t* timer) {
  auto* link = static_cast<BizLink*>(timer->data);
  LOG_WARN("%s link %u: %zu bytes not taken by the business within the send deadline; closing",
           link->port == Port::Worker ? "worker" : "task", link->id, link->pendingWriteBytes());
  link->owner_.worker.mark(10);
  link->close();
}

void BizLink::onAlloc(uv_handle_t* handle, size_t, uv_buf_t* buf) {
  auto* link = static_cast<BizLink*>(handle->data);
  const Config& c = link->owner_.worker.config;
  sharedReadBuffer(
      size_t(link->port == Port::Worker ? c.worker.readBufferSize : c.task.readBufferSize), buf);
}

void BizLink::onRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* link = static_cast<BizLink*>(stream->data);
  if (nread > 0) link->decoder_.feed(buf->base, size_t(nread));
  if (nread < 0) {
    link->close();
    return;
  }
  link->processPackets();
}

void BizLink::processPackets() {
  const Config& c = owner_.worker.config;
  const std::string& heartbeat =
      port == Port::Worker ? c.worker.heartbeatMessage : c.task.heartbeatMessage;
  std::string_view payload;
  while (!closing_ && !paused_ && !frozen_) {
    auto status = decoder_.next(payload);
    if (status == PacketDecoder::Status::NeedMore) break;
    if (status == PacketDecoder::Status::TooLarge) {
      LOG_WARN("%s link %u: packet longer than ReceivePackLimit; closing",
               port == Port::Worker ? "worker" : "task", id);
      close();
      return;
    }
    armDeadline();
    if (payload == heartbeat) continue;
    uint32_t cmd;
    std::string_view body;
    if (!splitCommand(payload, cmd, body)) {
      LOG_WARN("link %u: packet of %zu bytes has no cmd; closing", id, payload.size());
      close();
      return;
    }
    bool keep = false;
    try {  // nothing may throw across libuv's C callback that called us
      keep = port == Port::Worker ? handleWorkerPortPacket(owner_, *this, cmd, body)
                                  : handleTaskPacket(owner_.worker, *this, cmd, body);
    } catch (const std::exception& e) {
      LOG_ERROR("link %u: cmd %u failed: %s; closing", id, cmd, e.what());
      close();
      return;
    }
    if (!keep) {
      LOG_WARN("%s link %u: cmd %u is not accepted on this port; closing",
               port == Port::Worker ? "worker" : "task", id, cmd);
      close();
      return;
    }
  }
  if (!paused_ && !frozen_) decoder_.shrinkIfIdle();
}

void BizLink::pause() {
  if (paused_ || closing_) return;
  paused_ = true;
  if (!frozen_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));  // the kernel buffers
}

void BizLink::resume() {
  if (!paused_ || closing_) return;
  paused_ = false;
  if (frozen_) return;  // thaw() or the new worker goes on
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  processPackets();
}

void BizLink::freeze() {
  if (closing_) return;
  movingOut_ = true;
  if (frozen_) return;
  frozen_ = true;
  if (!paused_) uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
  uv_timer_stop(&deadline_);
}

void BizLink::thaw() {
  movingOut_ = false;
  if (!frozen_ || closing_ || holdWrites_) return;  // still arriving: Drained starts it
  frozen_ = false;
  armDeadline();
  if (paused_) return;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  processPackets();
}

handover::Offer BizLink::offer(uint32_t fromSerial) const {
  handover::Offer o;
  o.taskPort = port == Port::Task;
  o.fromSerial = fromSerial;
  o.fromLinkId = id;
  o.events = events;
  o.peerIp = peerIp;
  o.peerPort = peerPort;
  o.acceptedAt = acceptedAt;
  o.connId = connId;
  o.input = std::string(decoder_.pending());
  return o;
}

bool BizLink::adopt(uv_stream_t* ipcPipe, const handover::Offer& offer) {
  initHandles();
  frozen_ = true;      // reading and writing start on Drained: until then the old worker may
  holdWrites_ = true;  // take the link back, and must find every byte where it left it
  if (uv_accept(ipcPipe, reinterpret_cast<uv_stream_t*>(&tcp_)) != 0) {
    close();
    return false;
  }
  events = offer.events;
  connId = offer.connId;
  peerIp = offer.peerIp;
  peerPort = offer.peerPort;
  acceptedAt = offer.acceptedAt;
  if (!offer.input.empty()) decoder_.feed(offer.input.data(), offer.input.size());
  return true;
}

void BizLink::startReading() {
  if (closing_ || movingOut_) return;  // moving on already: the next worker reads it
  frozen_ = false;
  armDeadline();
  if (paused_) return;
  uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), onAlloc, onRead);
  processPackets();
}

void BizLink::releaseWrites() {
  if (!holdWrites_) return;
  holdWrites_ = false;
  std::vector<std::string> held;
  held.swap(heldWrites_);
  for (std::string& packet : held) write(std::move(packet));
}

void BizLink::closeMoved() {
  close();  // our descriptor only: no shutdown, the socket stays open in the new worker
}

void BizLink::send(std::string packet, bool isEvent) {
  if (closing_) return;
  const Worker& w = owner_.worker;
  // Worker.SendChanCap bounds the packets the kernel has not taken yet (Go's channel capacity);
  // beyond it the business does not read fast enough and the packet is dropped (metric 10).
  if (port == Port::Worker && queued_ + heldWrites_.size() >= size_t(w.config.worker.sendChanCap)) {
    w.mark(10);
    return;
  }
  if (isEvent) {
    w.mark(4);
    w.mark(5, int64_t(packet.size()));
  }
  if (holdWrites_) {
    heldWrites_.push_back(std::move(packet));
    return;
  }
  write(std::move(packet));
}

void BizLink::write(std::string packet) {
  if (closing_) return;
  const Worker& w = owner_.worker;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  size_t offset = 0;
  if (uv_stream_get_write_queue_size(stream) == 0) {  // nothing queued: try the kernel directly
    uv_buf_t direct = uv_buf_init(packet.data(), unsigned(packet.size()));
    int n = uv_try_write(stream, &direct, 1);
    if (n == int(packet.size())) return;
    if (n < 0 && n != UV_EAGAIN) {
      w.mark(10);
      close();
      return;
    }
    if (n > 0) offset = size_t(n);
  }
  auto* write = new Write{{}, std::move(packet), this};
  write->req.data = write;
  uv_buf_t buf = uv_buf_init(write->data.data() + offset, unsigned(write->data.size() - offset));
  if (queued_ == 0) armSendDeadline();
  ++queued_;
  int rc = uv_write(&write->req, stream, &buf, 1, [](uv_write_t* req, int status) {
    auto* wr = static_cast<Write*>(req->data);
    BizLink* link = wr->link;
    --link->queued_;
    if (!link->closing_) {  // progress: the kernel took a packet
      if (link->queued_ > 0)
        link->armSendDeadline();
      else
        uv_timer_stop(&link->sendDeadline_);
    }
    if (status < 0 && status != UV_ECANCELED) {
      link->owner_.worker.mark(10);
      link->close();
    }
    delete wr;
    link->deleteIfDone();
  });
  if (rc != 0) {
    --queued_;
    delete write;
    w.mark(10);
    close();
  }
}

void BizLink::close() {
  if (closing_) return;
  closing_ = true;
  owner_.onLinkClosed(*this);
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), onClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&deadline_), onClosed);
  uv_close(reinterpret_cast<uv_handle_t*>(&sendDeadline_), onClosed);
}

// The last of: the handles' close callbacks, the queued writes, an Offer that passes our socket
// (libuv reads the handle when it writes the Offer).
void BizLink::deleteIfDone() {
  if (closing_ && openHandles_ == 0 && queued_ == 0 && offersInFlight_ == 0) delete this;
}

void BizLink::offerWritten() {
  --offersInFlight_;
  deleteIfDone();
}

void BizLink::onClosed(uv_handle_t* handle) {
  auto* link = static_cast<BizLink*>(handle->data);
  // Pending writes are cancelled before the close callback; the last one out frees the link.
  --link->openHandles_;
  link->deleteIfDone();
}

// --- BizLinks ------------------------------------------------------------------------------

BizLinks::BizLinks(Worker& w) : worker(w) {}

void BizLinks::start() {
  for (int set = 0; set < worker.listenSets; ++set) {
    for (bool workerPort : {true, false}) {
      auto* l = new Listener{{}, this, workerPort};
      uv_tcp_init(worker.loop, &l->tcp);
      l->tcp.data = l;
      listeners_.push_back(l);
      int fd = workerPort ? worker.workerListenFd(set) : worker.taskListenFd(set);
      if (uv_tcp_open(&l->tcp, fd) != 0 ||
          uv_listen(reinterpret_cast<uv_stream_t*>(&l->tcp), 4096, onConnection) != 0)
        throw std::runtime_error("cannot listen on the inherited business-port socket");
    }
  }
  listening_ = true;
}

void BizLinks::onConnection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* listener = static_cast<Listener*>(server->data);
  BizLinks* self = listener->owner;
  bool isWorkerPort = listener->workerPort;
  const Config& c = self->worker.config;
  auto* link = new BizLink(*self, isWorkerPort ? BizLink::Port::Worker : BizLink::Port::Task,
                           self->nextId_++,
                           isWorkerPort ? c.worker.receivePackLimit : c.task.receivePackLimit);
  if (!isWorkerPort) self->worker.info().taskLinks.fetch_add(1);  // onLinkClosed takes it back
  if (!link->accept(server)) return;
  self->links_[link->id] = link;
}

void BizLinks::stopAccepting() {
  if (!listening_) return;
  listening_ = false;
  for (Listener* l : listeners_)
    uv_close(reinterpret_cast<uv_handle_t*>(&l->tcp),
             [](uv_handle_t* h) { delete static_cast<Listener*>(h->data); });
  listeners_.clear();
}

void BizLinks::closeAll() {
  std::vector<BizLink*> all;
  for (auto& [id, link] : links_) all.push_back(link);
  for (BizLink* link : all) link->close();
}

size_t BizLinks::pendingWriteBytes() const {
  size_t total = 0;
  for (const auto& [id, link] : links_) total += link->pendingWriteBytes();
  return total;
}

std::vector<BizLink*> BizLinks::all() const {
  std::vector<BizLink*> out;
  for (const auto& [id, link] : links_) out.push_back(link);
  return out;
}

BizLink* BizLinks::adopt(uv_stream_t* ipcPipe, const handover::Offer& offer) {
  const Config& c = worker.config;
  auto port = offer.taskPort ? BizLink::Port::Task : BizLink::Port::Worker;
  auto* link = new BizLink(*this, port, nextId_++,
                           offer.taskPort ? c.task.receivePackLimit : c.worker.receivePackLimit);
  if (offer.taskPort) worker.info().taskLinks.fetch_add(1);  // onLinkClosed takes it back
  links_[link->id] = link;
  if (!link->adopt(ipcPipe, offer)) return nullptr;  // closed (and forgotten) already
  return link;
}

BizLink* BizLinks::find(uint32_t id) const {
  auto it = links_.find(id);
  return it == links_.end() ? nullptr : it->second;
}

void BizLinks::onLinkClosed(BizLink& link) {
  links_.erase(link.id);
  if (worker.handover) worker.handover->onLinkClosed(link);
  if (link.port == BizLink::Port::Task) {
    worker.info().taskLinks.fetch_sub(1);
    onTaskLinkClosed(link.id);
  }
  if (link.events) removeFromRegistry(link.id);
}

void BizLinks::refreshReceivers() {
  auto& registry = (*worker.control)->registry;
  uint64_t version = registry.version.load(std::memory_order_acquire);
  if (version == registryVersion_) return;
  shm::RobustLock lock(registry.mutex);
  for (auto& list : receivers_) list.clear();
  for (const auto& entry : registry.entries) {
    if (!entry.used) continue;
    for (Event e : {Event::OnOpen, Event::OnClose, Event::OnMessage})
      if (entry.events & int32_t(e))
        receivers_[eventIndex(e)].push_back({entry.ownerSerial, entry.linkId});
  }
  registryVersion_ = registry.version.load();
}

namespace {
constexpr size_t kHoldLimitBytes = 64u << 20;  // beyond this, events are dropped (metric 10)
constexpr uint64_t kHeldFlushIntervalMs = 20;

}  // namespace

void BizLinks::holdEventsWhileBusinessReconnects(int32_t events) {
  holdEvents(worker.control->block(), events, unixMs());
}

int32_t BizLinks::registeredEvents() const {
  int32_t events = 0;
  for (const auto& [id, link] : links_) events |= link->events;
  return events;
}

bool BizLinks::holding(Event event) const {
  return unixMs() < (*worker.control)->holdEventsUntilMs[eventIndex(event)].load();
}

void BizLinks::hold(Event event, uint32_t cmd, const std::string& body) {
  if (worker.stopping) {  // the gateway is going away: no business will register again here
    worker.mark(10);
    return;
  }
  if (held_.empty()) LOG_INFO("holding events until a business registers for them again");
  if (heldBytes_ + body.size() > kHoldLimitBytes) {
    worker.mark(10);
    return;
  }
  held_.push_back(Held{event, cmd, body, uv_now(worker.loop)});
  heldBytes_ += body.size();
  if (!heldTimer_) {
    heldTimer_ = new uv_timer_t;
    uv_timer_init(worker.loop, heldTimer_);
    heldTimer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(heldTimer_));
  }
  if (!uv_is_active(reinterpret_cast<uv_handle_t*>(heldTimer_)))
    uv_timer_start(
        heldTimer_, [](uv_timer_t* t) { static_cast<BizLinks*>(t->data)->flushHeld(); },
        kHeldFlushIntervalMs, kHeldFlushIntervalMs);
}

// Sends held events in order once a receiver is back; drops those older than the window.
void BizLinks::flushHeld() {
  refreshReceivers();
  size_t done = 0;
  uint64_t now = uv_now(worker.loop);
  for (; done < held_.size(); ++done) {
    Held& h = held_[done];
    if (!receivers_[eventIndex(h.event)].empty()) {
      sendNow(h.event, h.cmd, h.body);
    } else if (now - h.sinceMs > kHoldWindowMs) {
      worker.mark(10);
    } else {
      break;  // keep the order: later events wait behind this one
    }
    heldBytes_ -= h.body.size();
  }
  held_.erase(held_.begin(), held_.begin() + long(done));
  if (held_.empty()) uv_timer_stop(heldTimer_);
}

void BizLinks::dropHeld() {
  if (held_.empty()) return;
  LOG_WARN("stopping: %zu events held for a reconnecting business are dropped", held_.size());
  worker.mark(10, int64_t(held_.size()));
  held_.clear();
  heldBytes_ = 0;
}

bool BizLinks::hasReceiver(Event event) {
  refreshReceivers();
  return !receivers_[eventIndex(event)].empty() || holding(event);
}

void BizLinks::emitEvent(Event event, uint32_t cmd, const std::string& body) {
  refreshReceivers();
  if (receivers_[eventIndex(event)].empty() || !held_.empty()) {
    if (holding(event) || !held_.empty()) hold(event, cmd, body);
    return;  // no business registered for it: discarded, as in Go
  }
  sendNow(event, cmd, body);
}

void BizLinks::emitClose(uint64_t key) {
  refreshReceivers();
  if (receivers_[eventIndex(Event::OnClose)].empty() || !held_.empty()) {
    emitEvent(Event::OnClose, netsvr::cmd::ConnClose, worker.ws->takeCloseBody(key));
    return;
  }
  Receiver r = nextReceiver(Event::OnClose);
  if (r.serial == uint32_t(worker.serial)) {
    deliverFromPeer(r.linkId, encodePacket(netsvr::cmd::ConnClose, worker.ws->takeCloseBody(key)));
  } else if (!worker.peers->sendClose(int(r.serial), r.linkId, key)) {
    worker.table->takeDeparted(key, nullptr);
    worker.mark(10);
  }
}

BizLinks::Receiver BizLinks::nextReceiver(Event event) {
  auto& list = receivers_[eventIndex(event)];
  uint64_t turn = (*worker.control)->registry.roundRobin[eventIndex(event)].fetch_add(1);
  return list[turn % list.size()];
}

void BizLinks::sendNow(Event event, uint32_t cmd, const std::string& body) {
  Receiver r = nextReceiver(event);
  std::string packet = encodePacket(cmd, body);
  if (r.serial == uint32_t(worker.serial)) {
    deliverFromPeer(r.linkId, std::move(packet));
  } else if (!worker.peers->sendEvent(int(r.serial), r.linkId, packet)) {
    worker.mark(10);
  }
}

void BizLinks::deliverFromPeer(uint32_t linkId, std::string packet) {
  BizLink* link = find(linkId);
  if (link && link->events) {
    link->send(std::move(packet), true);
    return;
  }
  // The link unregistered or closed while the event was on its way here (another worker chose
  // it from the registry a moment before): choose again among the receivers there are now, or
  // hold the event, rather than lose it.
  uint32_t cmd =
      packet.size() >= kLengthSize + kCmdSize ? readBe32(packet.data() + kLengthSize) : 0;
  Event event = cmd == netsvr::cmd::ConnOpen    ? Event::OnOpen
                : cmd == netsvr::cmd::ConnClose ? Event::OnClose
                : cmd == netsvr::cmd::Transfer  ? Event::OnMessage
                                                : Event(0);
  refreshReceivers();
  if (event == Event(0) || (receivers_[eventIndex(event)].empty() && !holding(event))) {
    worker.mark(10);
    return;
  }
  emitEvent(event, cmd, packet.substr(kLengthSize + kCmdSize));
}

}  // namespace netsvr
