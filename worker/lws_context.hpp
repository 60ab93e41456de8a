// What every libwebsockets context of ours shares (the worker's websocket server and the
// master's HTTP server): it runs on our libuv loop (a foreign loop) and has no listener of its
// own, since we accept sockets ourselves and hand them to lws; IPv4 only; no uid/gid change.
#pragma once

#include <libwebsockets.h>

#include <stdexcept>
#include <string>

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

// Creates the context and returns its default vhost. Start-up only: throws, naming `what`.
inline lws_vhost* createContextAndVhost(const lws_context_creation_info& info,
                                        lws_context*& context, const char* what) {
  context = lws_create_context(&info);
  if (!context)
    throw std::runtime_error(std::string("cannot create the ") + what +
                             " context (is libwebsockets-evlib-uv installed?)");
  lws_vhost* vhost = lws_get_vhost_by_name(context, "default");
  if (!vhost) throw std::runtime_error(std::string(what) + ": lws created no default vhost");
  return vhost;
}

}  // namespace netsvr
