#include "biz_link.hpp"

#include <cstdio>

namespace stress {
namespace {

struct WriteReq {
  uv_write_t req;
  std::string data;
};

}  // namespace

BizLink::BizLink(uv_loop_t* loop, std::string name) : loop_(loop), name_(std::move(name)) {
  uv_tcp_init(loop_, &tcp_);
  tcp_.data = this;
  connectReq_.data = this;
  readBuf_.resize(256 * 1024);
}

void BizLink::connect(const sockaddr_in& addr, StatusFn onConnect, PacketFn onPacket,
                      StatusFn onLost) {
  onConnect_ = std::move(onConnect);
  onPacket_ = std::move(onPacket);
  onLost_ = std::move(onLost);
  uv_tcp_nodelay(&tcp_, 1);
  int r =
      uv_tcp_connect(&connectReq_, &tcp_, reinterpret_cast<const sockaddr*>(&addr), onConnected);
  if (r != 0) onConnect_(r);
}

void BizLink::onConnected(uv_connect_t* req, int status) {
  auto* self = static_cast<BizLink*>(req->data);
  if (self->closed_) return;
  if (status == 0) {
    self->connected_ = true;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&self->tcp_),
        [](uv_handle_t* h, size_t, uv_buf_t* buf) {
          auto* link = static_cast<BizLink*>(h->data);
          *buf = uv_buf_init(link->readBuf_.data(), unsigned(link->readBuf_.size()));
        },
        onRead);
  }
  self->onConnect_(status);
  self->flush();  // whatever was queued before the link was up
}

void BizLink::onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* self = static_cast<BizLink*>(s->data);
  if (nread == 0 || self->closed_) return;
  if (nread < 0) {
    self->connected_ = false;
    self->close();
    self->onLost_(int(nread));
    return;
  }
  self->decoder_.feed(buf->base, size_t(nread));
  std::string_view payload;
  for (;;) {
    auto st = self->decoder_.next(payload);
    if (st == netsvr::PacketDecoder::Status::NeedMore) break;
    if (st == netsvr::PacketDecoder::Status::TooLarge) {
      fprintf(stderr, "bizsim: %s: packet too large\n", self->name_.c_str());
      self->close();
      self->onLost_(UV_EPROTO);
      return;
    }
    uint32_t cmd = 0;
    std::string_view body;
    if (!netsvr::splitCommand(payload, cmd, body)) continue;
    self->onPacket_(cmd, body);
    if (self->closed_) return;
  }
}

void BizLink::sendHeartbeat(std::string_view heartbeat) {
  size_t at = out_.size();
  out_.resize(at + netsvr::kLengthSize);
  netsvr::writeBe32(out_.data() + at, uint32_t(heartbeat.size()));
  out_.append(heartbeat);
}

void BizLink::flush() {
  if (out_.empty() || !connected_ || closed_) return;
  auto* stream = reinterpret_cast<uv_stream_t*>(&tcp_);
  uv_buf_t b = uv_buf_init(out_.data(), unsigned(out_.size()));
  int r = uv_try_write(stream, &b, 1);
  if (r == int(out_.size())) {
    out_.clear();
    return;
  }
  if (r < 0 && r != UV_EAGAIN) {
    fprintf(stderr, "bizsim: %s: write failed: %s\n", name_.c_str(), uv_strerror(r));
    out_.clear();
    return;
  }
  auto* w = new WriteReq;
  w->data = out_.substr(r > 0 ? size_t(r) : 0);
  out_.clear();
  uv_buf_t rest = uv_buf_init(w->data.data(), unsigned(w->data.size()));
  uv_write(&w->req, stream, &rest, 1,
           [](uv_write_t* req, int) { delete reinterpret_cast<WriteReq*>(req); });
}

void BizLink::close() {
  if (closed_) return;
  closed_ = true;
  connected_ = false;
  if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(&tcp_)))
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), nullptr);
}

}  // namespace stress
