// A small HTTP/1.1 server for the master (/metrics, /status.json, the status page) on
// libwebsockets and the master's libuv loop. We bind the listening socket ourselves (so that a
// bad Metrics.ListenAddress fails start-up with the reason) and hand each accepted socket to lws,
// which parses the requests, keeps connections alive and writes the responses.
#pragma once

#include <uv.h>

#include <functional>
#include <string>
#include <string_view>

struct lws;
struct lws_context;
struct lws_vhost;

namespace netsvr {

struct HttpResponse {
  unsigned status = 200;
  std::string contentType;
  std::string body;
};

class HttpServer {
 public:
  // Answers a GET for `path` (the URL path without the query string).
  using Handler = std::function<HttpResponse(std::string_view path)>;

  HttpServer(uv_loop_t* loop, Handler handler);
  ~HttpServer();  // the second lws_context_destroy: after uv_run has returned (LWS-NOTES.md)
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds `address` (host:port) and starts serving. Throws std::runtime_error.
  void listen(const std::string& address);
  // Stops accepting and starts closing lws's handles; run the loop afterwards to let them close.
  void close();

  // The lws protocol callback (public for the protocol table only).
  static int callback(lws* wsi, int reason, void* in, size_t len);

 private:
  static void onAcceptable(uv_poll_t* handle, int status, int events);
  uv_loop_t* loop_;
  Handler handler_;
  lws_context* context_ = nullptr;
  lws_vhost* vhost_ = nullptr;
  int listenFd_ = -1;
  uv_poll_t* acceptPoll_ = nullptr;
  int destroyCalls_ = 0;
};

}  // namespace netsvr
