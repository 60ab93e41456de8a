// Reload handover, new side (worker/handover.hpp): takes business links from workers of an
// older generation; and the channel plumbing both sides share.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "shm/names.hpp"
#include "worker/biz_link.hpp"
#include "worker/handover.hpp"
#include "worker/worker.hpp"

namespace netsvr {

using handover::DecodeResult;
using handover::Reply;
using handover::Type;

void Handover::listen() {
  int fd = listenAbstract(
      shm::handoverSocketName(worker_.instanceKey, worker_.serial, worker_.incarnation), 64);
  if (fd < 0) throw std::runtime_error(std::string("handover socket: ") + strerror(errno));
  uv_pipe_init(worker_.loop, &listener_, 0);
  listener_.data = this;
  uv_pipe_open(&listener_, fd);
  if (uv_listen(reinterpret_cast<uv_stream_t*>(&listener_), 64, onInboundConnection) != 0)
    throw std::runtime_error("handover socket: uv_listen failed");
  listening_ = true;
}

void Handover::stop() {
  if (listening_) uv_close(reinterpret_cast<uv_handle_t*>(&listener_), nullptr);
  listening_ = false;
  std::vector<Channel*> in(inbound_.begin(), inbound_.end());
  for (Channel* c : in) onInboundGone(*c);
  if (tick_) {
    uv_close(reinterpret_cast<uv_handle_t*>(tick_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    tick_ = nullptr;
  }
}

bool Handover::sendOn(Channel& channel, std::string data) {
  if (channel.closing) return false;
  struct Write {
    uv_write_t req;
    std::string data;
  };
  auto* write = new Write{{}, std::move(data)};
  write->req.data = write;
  uv_buf_t buf = uv_buf_init(write->data.data(), unsigned(write->data.size()));
  if (uv_write(&write->req, reinterpret_cast<uv_stream_t*>(&channel.pipe), &buf, 1,
               [](uv_write_t* req, int) { delete static_cast<Write*>(req->data); }) != 0) {
    delete write;
    return false;
  }
  return true;
}

// Pending writes (a Drained, an Abort) go out before the close: shutdown waits for them.
void Handover::closeChannel(Channel* channel) {
  if (channel->closing) return;
  channel->closing = true;
  if (channel->pause) {
    uv_close(reinterpret_cast<uv_handle_t*>(channel->pause),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    channel->pause = nullptr;
  }
  auto close = [](uv_handle_t* h) {
    uv_close(h, [](uv_handle_t* handle) { delete static_cast<Channel*>(handle->data); });
  };
  auto* stream = reinterpret_cast<uv_stream_t*>(&channel->pipe);
  uv_read_stop(stream);
  auto* req = new uv_shutdown_t;
  if (uv_shutdown(req, stream, [](uv_shutdown_t* r, int) {
        auto* handle = reinterpret_cast<uv_handle_t*>(r->handle);
        delete r;
        uv_close(handle, [](uv_handle_t* h) { delete static_cast<Channel*>(h->data); });
      }) != 0) {
    delete req;
    close(reinterpret_cast<uv_handle_t*>(&channel->pipe));
  }
}

// The other side went away or broke the protocol: each side cleans up what it had under way.
void Handover::dropChannel(Channel& channel) {
  if (channel.serial >= 0) {
    channels_.erase(channel.serial);
    onChannelGone(channel);
    closeChannel(&channel);
  } else {
    onInboundGone(channel);
  }
}

void Handover::onChannelRead(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  auto* channel = static_cast<Channel*>(stream->data);
  Handover* self = channel->owner;
  if (channel->closing) return;
  if (nread < 0) {
    self->dropChannel(*channel);
    return;
  }
  channel->decoder.feed(buf->base, size_t(nread));
  std::string_view payload;
  for (;;) {
    auto status = channel->decoder.next(payload);
    if (status == PacketDecoder::Status::NeedMore) break;
    Type type;
    std::string_view body;
    if (status == PacketDecoder::Status::TooLarge ||
        handover::decodeType(payload, type, body) != DecodeResult::Ok) {
      LOG_ERROR("handover channel: corrupt message; closing it");
      self->dropChannel(*channel);
      return;
    }
    if (channel->serial >= 0) {
      Reply reply;
      if (handover::decodeReply(type, body, reply) == DecodeResult::Ok)
        self->onReply(*channel, type, reply);
    } else {
      channel->queue.emplace_back(payload);
    }
  }
  if (channel->serial < 0) self->processInbound(*channel);
}

void Handover::onInboundConnection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* self = static_cast<Handover*>(server->data);
  auto* channel = new Channel;
  channel->owner = self;
  uv_pipe_init(self->worker_.loop, &channel->pipe, 1);
  channel->pipe.data = channel;
  auto* stream = reinterpret_cast<uv_stream_t*>(&channel->pipe);
  uv_os_fd_t fd = -1;
  ucred cred{};
  if (uv_accept(server, stream) != 0 ||
      uv_fileno(reinterpret_cast<uv_handle_t*>(&channel->pipe), &fd) != 0 ||
      !shm::peerIsListed(fd, self->worker_.control->block(), cred)) {
    LOG_WARN("handover socket: refused a connection from pid %d: not a worker of this instance",
             int(cred.pid));
    channel->closing = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&channel->pipe),
             [](uv_handle_t* h) { delete static_cast<Channel*>(h->data); });
    return;
  }
  self->inbound_.insert(channel);
  uv_read_start(
      stream,
      [](uv_handle_t*, size_t, uv_buf_t* buf) {
        static char scratch[64 * 1024];
        *buf = uv_buf_init(scratch, sizeof scratch);
      },
      onChannelRead);
}

void Handover::processInbound(Channel& in) {
  if (in.pause) return;
  uint64_t now = uv_now(worker_.loop);
  if (testPauseMs_ && !in.queue.empty()) {  // tests: a window in which to kill this worker
    LOG_INFO("handover: pausing %llu ms before taking links (NETSVR_TEST_HANDOVER_PAUSE_MS)",
             static_cast<unsigned long long>(testPauseMs_));
    pauseUntilMs_ = now + testPauseMs_;
    testPauseMs_ = 0;
  }
  if (now < pauseUntilMs_ && !in.queue.empty()) {
    in.pause = new uv_timer_t;
    uv_timer_init(worker_.loop, in.pause);
    in.pause->data = &in;
    uv_timer_start(
        in.pause,
        [](uv_timer_t* t) {
          auto* channel = static_cast<Channel*>(t->data);
          channel->pause = nullptr;
          uv_close(reinterpret_cast<uv_handle_t*>(t),
                   [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
          channel->owner->processInbound(*channel);
        },
        pauseUntilMs_ - now, 0);
    return;
  }
  std::vector<std::string> queue;
  queue.swap(in.queue);
  for (const std::string& payload : queue) {
    Type type;
    std::string_view body;
    handover::decodeType(payload, type, body);
    onInbound(in, type, body);
    if (in.closing) return;
  }
}

void Handover::onInbound(Channel& in, Type type, std::string_view body) {
  auto* pipe = reinterpret_cast<uv_stream_t*>(&in.pipe);
  if (type == Type::Offer) {
    handover::Offer offer;
    auto result = handover::decodeOffer(body, offer);
    // The socket comes with the Offer's first byte: it is pending by now, whatever we decide.
    bool hasSocket = uv_pipe_pending_count(&in.pipe) > 0;
    std::string refusal;
    if (result == DecodeResult::UnknownVersion)
      refusal = "handover format " + std::to_string(offer.version) + "; this binary reads " +
                std::to_string(handover::kOldestReadableVersion) + ".." +
                std::to_string(handover::kVersion);
    else if (result != DecodeResult::Ok)
      refusal = "malformed offer";
    else if (!hasSocket)
      refusal = "no socket came with the offer";
    else if (worker_.stopping || worker_.draining)
      refusal = "this worker is not serving";
    BizLink* link = nullptr;
    if (refusal.empty()) {
      link = worker_.links->adopt(pipe, offer);
      if (!link) refusal = "cannot adopt the socket";
    } else if (hasSocket) {  // close our copy: the old worker keeps the link
      auto* discard = new uv_tcp_t;
      uv_tcp_init(worker_.loop, discard);
      uv_accept(pipe, reinterpret_cast<uv_stream_t*>(discard));
      uv_close(reinterpret_cast<uv_handle_t*>(discard),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    }
    if (!refusal.empty()) {
      LOG_WARN("handover: refused link %u of worker serial %u: %s", offer.fromLinkId,
               offer.fromSerial, refusal.c_str());
      sendOn(in, handover::encodeReply(Type::Refuse, Reply{offer.fromLinkId, 0, refusal}));
      return;
    }
    in.adopted.insert(link->id);
    LOG_INFO("handover: took %s link %u of worker serial %u as link %u",
             offer.taskPort ? "task" : "worker", offer.fromLinkId, offer.fromSerial, link->id);
    sendOn(in, handover::encodeReply(Type::Accept, Reply{offer.fromLinkId, link->id, {}}));
    return;
  }
  Reply reply;
  if (handover::decodeReply(type, body, reply) != DecodeResult::Ok) return;
  if ((type != Type::Drained && type != Type::Abort) || !in.adopted.erase(reply.linkId)) return;
  BizLink* link = worker_.links->find(reply.linkId);
  if (!link) return;
  if (type == Type::Abort) {
    link->close();
  } else {  // ours: what we held goes out first, then the business's next bytes
    link->releaseWrites();
    link->startReading();
  }
}

// The old worker went away before Drained: it takes its links back if it lives (we have read
// nothing from them), and if it died they die with it, as in any crash. Our copies close.
void Handover::onInboundGone(Channel& in) {
  for (uint32_t id : in.adopted) {
    if (BizLink* link = worker_.links->find(id)) link->close();
  }
  in.adopted.clear();
  inbound_.erase(&in);
  closeChannel(&in);
}

}  // namespace netsvr
