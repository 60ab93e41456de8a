// What every libwebsockets context of ours shares (the worker's websocket server and the
// master's HTTP server): it runs on our libuv loop (a foreign loop) and has no listener of its
// own, since we accept sockets ourselves and hand them to lws; IPv4 only; no uid/gid change.
#pragma once

#include <libwebsockets.h>

namespace netsvr {

// `loops` must hold the loop in [0] and stay alive until lws_create_context() returns.
inline lws_context_creation_info foreignLoopContextInfo(void** loops,
                                                        const lws_protocols* protocols, void* user,
                                                        lws_context** pcontext) {
  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6;
  info.foreign_loops = loops;
  info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  info.protocols = protocols;
  info.user = user;
  info.pcontext = pcontext;
  info.gid = -1;
  info.uid = -1;
  return info;
}

}  // namespace netsvr
