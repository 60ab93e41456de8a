// A framed business link to the gateway's worker or task port (PROTOCOL.md §2) on libuv:
// packets are queued with send() and leave on flush() (one write per batch); received packets
// are split with netsvr::PacketDecoder and handed to a callback as (cmd, body).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/packet.hpp"

namespace stress {

class BizLink {
 public:
  using PacketFn = std::function<void(uint32_t cmd, std::string_view body)>;
  using StatusFn = std::function<void(int status)>;  // connect result (0 = ok) or link lost (< 0)

  BizLink(uv_loop_t* loop, std::string name);
  BizLink(const BizLink&) = delete;
  BizLink& operator=(const BizLink&) = delete;

  void connect(const sockaddr_in& addr, StatusFn onConnect, PacketFn onPacket, StatusFn onLost);

  // Queues one command packet (serialised protobuf body) / a heartbeat packet (no cmd).
  void send(uint32_t cmd, std::string_view body) { netsvr::appendPacket(out_, cmd, body); }
  void sendHeartbeat(std::string_view heartbeat);
  // Writes everything queued. Bytes that the socket did not take stay in libuv's write queue.
  void flush();

  // Bytes written to the socket but not yet taken by the kernel (the gateway reads too slowly).
  size_t backlog() const { return tcp_.write_queue_size + out_.size(); }
  bool connected() const { return connected_; }
  void close();

 private:
  static void onConnected(uv_connect_t* req, int status);
  static void onRead(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);

  uv_loop_t* loop_;
  std::string name_;
  uv_tcp_t tcp_{};
  uv_connect_t connectReq_{};
  netsvr::PacketDecoder decoder_{64u << 20};
  std::string out_;
  std::string readBuf_;
  StatusFn onConnect_, onLost_;
  PacketFn onPacket_;
  bool connected_ = false;
  bool closed_ = false;
};

}  // namespace stress
