// Per-connection state that exists only until a connection has opened (ws_server.cpp and
// ws_accept.cpp share it).
#pragma once

#include <uv.h>

#include <cstdint>
#include <string>
#include <vector>

#include "worker/ws_server.hpp"

namespace netsvr {

struct Handshake {
  std::string rawQuery;
  bool checked = false;  // §5.2 passed on the peeked head; lws only performs the upgrade
  std::string xForwardedFor;
  std::string xRealIp;
  std::string remoteAddr;
  uint64_t acceptedAtMs = 0;         // uv_now() at accept
  uv_poll_t* peekPoll = nullptr;     // set while waiting for the request line, before adoption
  std::string connOpen;              // the serialized ConnOpen, sent after opening
  uint64_t callbackId = 0;           // pending OnOpenCallbackApi request
  std::vector<std::string> waiting;  // client messages received while the callback is pending
  std::string wsKey;                 // Sec-WebSocket-Key, for a Direct upgrade
  bool direct = false;               // upgraded without lws (Conn::Direct)
};

struct WsServer::PendingAccept {
  uv_poll_t poll;
  WsServer* server;
  Conn* conn;
  int fd;
  bool adopt;         // false: the socket is given up (closed) when the poll handle is closed
  size_t peeked = 0;  // bytes of the request head and after it, when it was judged
};

}  // namespace netsvr
