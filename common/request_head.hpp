// The websocket handshake checks of PROTOCOL.md §5.2 on a client's HTTP request head, in the
// table's order, with DECISIONS.md 1 (path only) and 2 (Connection as a token list). Pure code:
// the worker peeks the head off the socket (worker/ws_accept.cpp), writes the refusal this
// returns itself, or hands an accepted socket to libwebsockets for the 101.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace netsvr::http {

// Bytes up to and including the "\r\n\r\n" that ends the head; 0 while it has not arrived.
size_t headLength(std::string_view bytes);

struct HandshakeRules {
  std::string_view handlePattern;                         // Customer.HandlePattern
  const std::vector<std::string>* allowOrigin = nullptr;  // Customer.AllowOrigin; empty: any
  bool autobahn = false;  // any path and any origin (echo test mode)
};

struct Verdict {
  int status = 101;         // 101: upgrade; otherwise the status of the refusal
  std::string_view reason;  // the status line's text
  std::string_view body;
  // Captured for ConnOpen (§5), views into the head; set when status == 101.
  std::string_view rawQuery;       // after '?', as sent
  std::string_view xForwardedFor;  // the first X-Forwarded-For header's value, verbatim
  std::string_view xRealIp;        // the first X-Real-IP header's value
  std::string_view wsKey;          // Sec-WebSocket-Key
  bool offersExtensions = false;   // a Sec-WebSocket-Extensions header came (permessage-deflate?)
};

// A refusal; the body is the status text unless given (as the Go gateway answers).
Verdict refusal(int status, std::string_view reason, std::string_view body = {});

// `head` is the request head including its final "\r\n\r\n".
Verdict checkHandshake(std::string_view head, const HandshakeRules& rules);

// "HTTP/1.1 <status> <reason>\r\nConnection: close\r\n[...]\r\n<body>", as the Go gateway writes
// it (no Content-Length: the body ends with the connection).
std::string refusalResponse(const Verdict& verdict);
// §5.2's 101 answer, given Sec-WebSocket-Accept's value (no extension, no subprotocol).
std::string upgradeResponse(std::string_view acceptValue);

}  // namespace netsvr::http
