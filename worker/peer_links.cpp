#include "worker/peer_links.hpp"

#include "worker/read_buffer.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <deque>

#include "cmd.pb.h"
#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "shm/conn_table.hpp"
#include "shm/names.hpp"
#include "worker/biz_link.hpp"
#include "worker/handover.hpp"
#include "worker/router.hpp"
#include "worker/worker.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {
namespace {

constexpr uint32_t kMaxPeerPacket = 256u << 20;  // bytes; far above any business packet limit

}  // namespace

struct PeerLinks::Link {
  uv_pipe_t pipe{};
  PeerLinks* owner = nullptr;
  int serial = -1;  // peer serial for outbound links, -1 for inbound
  uint32_t incarnation = 0;
  PacketDecoder decoder{kMaxPeerPacket};
  bool closing = false;
  // Frames waiting for the link to have room, in order. An entry without a frame is the ConnClose
  // of a departed connection, built when its turn comes; once one waits, every later frame on
  // this link waits behind it (a fence acknowledgement must follow every event before it).
  struct Pending {
    std::string frame;
    uint64_t closeKey = 0;
    uint32_t linkId = 0;
  };
  std::deque<Pending> backlog;

  void close() {
    if (closing) return;
    closing = true;
    owner->forget(this);
    uv_close(reinterpret_cast<uv_handle_t*>(&pipe),
             [](uv_handle_t* h) { delete static_cast<Link*>(h->data); });
  }
};

PeerLinks::PeerLinks(Worker& worker) : worker_(worker) {}

void PeerLinks::start() {
  int fd = listenAbstract(
      shm::peerSocketName(worker_.instanceKey, worker_.serial, worker_.incarnation), 512);
  if (fd < 0) throw std::runtime_error(std::string("peer socket: ") + strerror(errno));
  uv_pipe_init(worker_.loop, &listener_, 0);
  listener_.data = this;
  uv_pipe_open(&listener_, fd);
  if (uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 512, onConnection) != 0)
    throw std::runtime_error("peer socket: uv_listen failed");
  listening_ = true;
}

void PeerLinks::stop() {
  if (listening_) uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  listening_ = false;
  std::vector<Link*> links;
  links.assign(all_.begin(), all_.end());
  for (Link* link : links) link->close();
}

void PeerLinks::forget(Link* link) {
  all_.erase(link);
  size_t before = queuedBytes();
  for (auto& p : link->backlog) {  // lost with the link, like the writes libuv cancels
    if (p.frame.empty()) {
      --waitingCloses_;
      worker_.table->takeDeparted(p.closeKey, nullptr);
      worker_.mark(10);
    } else {
      backlogBytes_ -= p.frame.size();
    }
  }
  link->backlog.clear();
  // Task links paused for our queue resume when it falls below the low-water mark; the frames
  // dropped here never complete a write that would notice.
  if (before >= kPeerLowWater && queuedBytes() < kPeerLowWater) onPeersDrained(worker_);
  if (link->serial >= 0) {
    auto it = outbound_.find(link->serial);
    if (it != outbound_.end() && it->second == link) outbound_.erase(it);
    onPeerGone(worker_, link->serial);  // nothing more will be acknowledged by it
  }
}

static void allocBuffer(uv_handle_t*, size_t suggested, uv_buf_t* buf) {
  sharedReadBuffer(suggested, buf);
}

void PeerLinks::onConnection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* self = static_cast<PeerLinks*>(server->data);
  auto* link = new Link;
  link->owner = self;
  uv_pipe_init(self->worker_.loop, &link->pipe, 0);
  link->pipe.data = link;
  auto discard = [](Link* l) {
    uv_close(reinterpret_cast<uv_handle_t*>(&l->pipe),
             [](uv_handle_t* h) { delete static_cast<Link*>(h->data); });
  };
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&link->pipe)) != 0) {
    discard(link);
    return;
  }
  uv_os_fd_t fd = -1;
  ucred cred{};
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(&link->pipe), &fd) != 0 ||
      !shm::peerIsListed(fd, self->worker_.control->block(), cred)) {
    LOG_WARN(
        "peer link: refused a connection from pid %d uid %u: not a worker or announcer of "
        "this instance",
        int(cred.pid), unsigned(cred.uid));
    discard(link);
    return;
  }
  self->all_.insert(link);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&link->pipe), allocBuffer,
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* l = static_cast<Link*>(s->data);
        if (n > 0) l->decoder.feed(buf->base, size_t(n));
        if (n < 0) {
          l->close();
          return;
        }
        std::string_view payload;
        for (;;) {
          auto st = l->decoder.next(payload);
          if (st == PacketDecoder::Status::NeedMore) break;
          uint32_t cmd;
          std::string_view body;
          if (st == PacketDecoder::Status::TooLarge || !splitCommand(payload, cmd, body)) {
            LOG_ERROR("peer link: corrupt packet; closing");
            l->close();
            return;
          }
          try {  // nothing may throw across libuv's C callback
            l->owner->dispatch(cmd, body);
          } catch (const std::exception& e) {
            LOG_ERROR("peer cmd %u failed: %s", cmd, e.what());
          }
          if (l->closing) return;
        }
        l->decoder.shrinkIfIdle();
      });
}

void PeerLinks::dispatch(uint32_t cmd, std::string_view body) {
  switch (cmd) {
    case kPeerTask: {
      if (body.size() < 8) break;
      uint32_t sender = readBe32(body.data());
      uint32_t requestId = readBe32(body.data() + 4);
      if (sender >= uint32_t(kMaxWorkerSerials) || int(sender) == worker_.serial) {
        LOG_ERROR("peer link: task from invalid serial %u ignored", sender);
        break;
      }
      try {
        runForwardedTask(worker_, body.substr(8));
      } catch (const std::exception& e) {
        LOG_ERROR("forwarded task failed: %s", e.what());
      }
      if (requestId) {  // acknowledged whatever happened, so the sender's link never waits in vain
        char id[4];
        writeBe32(id, requestId);
        send(int(sender), kPeerAck, {}, std::string_view(id, 4));
      }
      break;
    }
    case kPeerClosed:
      worker_.mark(2);
      worker_.ws->reportClosed(std::string(body));  // a crashed worker's client (announcer)
      break;
    case kPeerAck:
      if (body.size() >= 4) onPeerAck(worker_, readBe32(body.data()));
      break;
    case kPeerEvent:
      if (body.size() >= 4)
        worker_.links->deliverFromPeer(readBe32(body.data()), std::string(body.substr(4)));
      break;
    case kPeerFence:
    case kPeerFenceAck: {
      if (body.size() < 8) break;
      uint32_t sender = readBe32(body.data());
      uint32_t fenceId = readBe32(body.data() + 4);
      if (sender >= uint32_t(kMaxWorkerSerials) || int(sender) == worker_.serial) break;
      if (cmd == kPeerFence)
        sendPair(int(sender), kPeerFenceAck, fenceId);
      else if (worker_.handover)
        worker_.handover->onFenceAck(int(sender), fenceId);
      break;
    }
    default:
      LOG_ERROR("peer link: unknown internal cmd %u", cmd);
  }
}

PeerLinks::Link* PeerLinks::outboundTo(int serial) {
  const auto& info = (*worker_.control)->workers[serial];
  uint32_t incarnation = info.incarnation.load();
  auto it = outbound_.find(serial);
  if (it != outbound_.end()) {
    if (it->second->incarnation == incarnation) return it->second;
    it->second->close();  // the serial now belongs to a new worker
  }
  if (!shm::isLive(shm::WorkerState(info.state.load()))) return nullptr;
  int fd = connectAbstract(shm::peerSocketName(worker_.instanceKey, serial, incarnation), true);
  if (fd < 0) {
    LOG_WARN("peer link to worker serial %d: %s", serial, strerror(errno));
    return nullptr;
  }
  auto* link = new Link;
  link->owner = this;
  link->serial = serial;
  link->incarnation = incarnation;
  uv_pipe_init(worker_.loop, &link->pipe, 0);
  link->pipe.data = link;
  uv_pipe_open(&link->pipe, fd);
  // Outbound links carry no replies yet; reading only notices when the peer goes away.
  uv_read_start(reinterpret_cast<uv_stream_t*>(&link->pipe), allocBuffer,
                [](uv_stream_t* s, ssize_t n, const uv_buf_t*) {
                  if (n < 0) static_cast<Link*>(s->data)->close();
                });
  outbound_[serial] = link;
  all_.insert(link);
  return link;
}

std::string PeerLinks::frame(uint32_t cmd, std::string_view head, std::string_view body) {
  std::string out;
  out.reserve(8 + head.size() + body.size());
  out.resize(8);
  writeBe32(out.data(), uint32_t(4 + head.size() + body.size()));
  writeBe32(out.data() + 4, cmd);
  out.append(head);
  out.append(body);
  return out;
}

bool PeerLinks::send(int serial, uint32_t cmd, std::string_view head, std::string_view body) {
  Link* link = outboundTo(serial);
  if (!link) return false;
  std::string data = frame(cmd, head, body);
  if (!link->backlog.empty()) {
    backlogBytes_ += data.size();
    link->backlog.push_back(Link::Pending{std::move(data)});
    return true;
  }
  return write(link, std::move(data));
}

// Room: libuv holds nothing unsent for the link, i.e. the kernel took every byte so far.
bool PeerLinks::hasRoom(Link* link) {
  return uv_stream_get_write_queue_size(reinterpret_cast<uv_stream_t*>(&link->pipe)) == 0;
}

bool PeerLinks::sendClose(int serial, uint32_t linkId, uint64_t key) {
  Link* link = outboundTo(serial);
  if (!link) return false;
  if (link->backlog.empty() && hasRoom(link)) return write(link, closeFrame(linkId, key));
  if (link->backlog.empty())
    LOG_DEBUG("peer link to worker serial %d is full: ConnClose events wait in the table", serial);
  link->backlog.push_back(Link::Pending{{}, key, linkId});
  ++waitingCloses_;
  return true;
}

std::string PeerLinks::closeFrame(uint32_t linkId, uint64_t key) {
  std::string packet = encodePacket(netsvr::cmd::ConnClose, worker_.ws->takeCloseBody(key));
  char id[4];
  writeBe32(id, linkId);
  return frame(kPeerEvent, std::string_view(id, 4), packet);
}

// Writes what waits while the kernel takes it; the completion of the last write comes back here.
void PeerLinks::pump(Link* link) {
  while (!link->backlog.empty() && !link->closing && hasRoom(link)) {
    Link::Pending next = std::move(link->backlog.front());
    link->backlog.pop_front();
    if (next.frame.empty()) {
      --waitingCloses_;
      next.frame = closeFrame(next.linkId, next.closeKey);
    } else {
      backlogBytes_ -= next.frame.size();
    }
    if (!write(link, std::move(next.frame))) return;
  }
}

bool PeerLinks::write(Link* link, std::string data) {
  struct Write {
    uv_write_t req;
    std::string data;
    PeerLinks* owner;
    Link* link;  // alive: libuv completes (or cancels) every write before the close callback
  };
  auto* w = new Write{{}, std::move(data), this, link};
  w->req.data = w;
  uv_buf_t buf = uv_buf_init(w->data.data(), unsigned(w->data.size()));
  queued_ += w->data.size();
  int rc = uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&link->pipe), &buf, 1,
                    [](uv_write_t* req, int) {
                      auto* w = static_cast<Write*>(req->data);
                      PeerLinks* owner = w->owner;
                      Link* link = w->link;
                      size_t before = owner->queuedBytes();
                      owner->queued_ -= w->data.size();
                      delete w;
                      if (!link->backlog.empty()) owner->pump(link);
                      if (before >= kPeerLowWater && owner->queuedBytes() < kPeerLowWater)
                        onPeersDrained(owner->worker_);
                    });
  if (rc != 0) {
    queued_ -= w->data.size();
    delete w;
    link->close();
    return false;
  }
  return true;
}

bool PeerLinks::sendTask(int serial, uint32_t requestId, std::string_view taskPayload) {
  char head[8];
  writeBe32(head, uint32_t(worker_.serial));
  writeBe32(head + 4, requestId);
  return send(serial, kPeerTask, std::string_view(head, 8), taskPayload);
}

bool PeerLinks::sendPair(int serial, uint32_t cmd, uint32_t value) {
  char body[8];
  writeBe32(body, uint32_t(worker_.serial));
  writeBe32(body + 4, value);
  return send(serial, cmd, {}, std::string_view(body, 8));
}

bool PeerLinks::sendEvent(int serial, uint32_t linkId, std::string_view packet) {
  char id[4];
  writeBe32(id, linkId);
  return send(serial, kPeerEvent, std::string_view(id, 4), packet);
}

}  // namespace netsvr
