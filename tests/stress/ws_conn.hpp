// A lean RFC 6455 websocket client connection on libuv, for load generation: a few hundred
// bytes per connection, one shared read buffer per thread, no per-connection timers.
//
// Life of a connection: wsConnect() -> TCP connect from a given source address -> HTTP upgrade
// (random Sec-WebSocket-Key, 101 status and Sec-WebSocket-Accept verified) -> frames. Server
// frames are parsed (text, binary, continuation, close, ping -> pong); client frames are masked.
// Every connection ends with exactly one WsHandler::onClosed() call, after which the WsConn may
// be reused.
#pragma once

#include <netinet/in.h>
#include <uv.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace stress {

struct WsConn;

// Callbacks, all on the loop thread. A callback may call wsSend/wsClose/wsAbort on the connection.
class WsHandler {
 public:
  virtual ~WsHandler() = default;
  virtual void onOpen(WsConn& c) = 0;                            // 101 received and verified
  virtual void onMessage(WsConn& c, std::string_view data) = 0;  // text or binary message
  virtual void onServerClose(WsConn& c, int code) = 0;           // Close frame from the server
  virtual void onClosed(WsConn& c, int reason) = 0;              // socket closed (WsEnd)
};

enum class WsState : uint8_t { Idle, Connecting, Handshaking, Open, Closing, Closed };

// Why a connection ended (WsHandler::onClosed's reason).
enum WsEnd : int {
  kEndNormal = 0,       // we sent Close (or aborted on purpose)
  kEndServerClose,      // the server sent Close first
  kEndConnectFailed,    // TCP connect failed
  kEndHandshakeFailed,  // no 101, bad accept key, or the socket closed during the handshake
  kEndReset,            // EOF or socket error without a Close frame
  kEndProtocol,         // malformed frame from the server
};

// Where to connect; shared by all connections.
struct WsEndpoint {
  sockaddr_in server{};
  std::string host;  // Host header value
  std::string path;  // request target
  bool verifyAccept = true;
  uint64_t keySeed = 0;  // Sec-WebSocket-Key = f(keySeed, WsConn::id): random, but not stored
};

// Parses ws://host:port/path (IPv4 literal or "localhost"). False with `error` set otherwise.
bool parseWsUrl(const std::string& url, WsEndpoint& ep, std::string& error);

struct WsConn {
  uv_tcp_t tcp{};
  WsHandler* handler = nullptr;
  const WsEndpoint* endpoint = nullptr;
  uint32_t id = 0;  // the owner's number for this connection (also seeds the key)
  WsState state = WsState::Idle;
  bool closeSent = false;
  int endReason = kEndNormal;
  std::string* pending = nullptr;  // unparsed bytes: partial HTTP head or partial frame
  std::string* frag = nullptr;     // payload of a fragmented message being assembled
};

// Starts a connection from `source` (port 0: chosen at connect time, IP_BIND_ADDRESS_NO_PORT).
// False (nothing started, no onClosed) when no socket could be created (e.g. EMFILE); `error`
// says why. Otherwise the outcome arrives through the handler.
bool wsConnect(WsConn& c, uv_loop_t* loop, const WsEndpoint& ep, const sockaddr_in& source,
               WsHandler* handler, std::string& error);

// Sends one masked frame (FIN set). False when the connection is not open or the write failed.
bool wsSend(WsConn& c, uint8_t opcode, std::string_view payload);
inline bool wsSendText(WsConn& c, std::string_view text) {
  return wsSend(c, 0x1, text);
}

// Starts the close handshake (Close frame with `code`); the socket closes when the server
// answers or drops the connection. Aborts at once if the connection is not open.
void wsClose(WsConn& c, uint16_t code);

// Closes the socket now (no Close frame).
void wsAbort(WsConn& c, int reason);

}  // namespace stress
