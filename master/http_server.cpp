#include "master/http_server.hpp"

#include "worker/lws_context.hpp"

#include <libwebsockets.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "common/log.hpp"
#include "master/listeners.hpp"

namespace netsvr {
namespace {

constexpr size_t kChunk = 16384;  // bytes of body per lws_write

// A response being written; lives from LWS_CALLBACK_HTTP until its last byte (or the close).
struct Pending {
  std::string body;
  size_t sent = 0;
};

void dropPending(lws* wsi) {
  delete static_cast<Pending*>(lws_get_opaque_user_data(wsi));
  lws_set_opaque_user_data(wsi, nullptr);
}

int protocolCallback(lws* wsi, lws_callback_reasons reason, void*, void* in, size_t len) {
  return HttpServer::callback(wsi, int(reason), in, len);
}

const lws_protocols kProtocols[] = {
    {"http", protocolCallback, 0, 0, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

// Headers, then the body from LWS_CALLBACK_HTTP_WRITEABLE. Returns non-zero to close.
int startResponse(lws* wsi, const HttpResponse& response) {
  unsigned char buf[LWS_PRE + 1024];
  unsigned char* start = buf + LWS_PRE;
  unsigned char* p = start;
  unsigned char* end = buf + sizeof buf - 1;
  const char noStore[] = "no-store";
  if (lws_add_http_common_headers(wsi, response.status, response.contentType.c_str(),
                                  response.body.size(), &p, end) ||
      lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CACHE_CONTROL,
                                   reinterpret_cast<const unsigned char*>(noStore),
                                   int(sizeof noStore - 1), &p, end) ||
      lws_finalize_write_http_header(wsi, start, &p, end))
    return 1;
  dropPending(wsi);
  lws_set_opaque_user_data(wsi, new Pending{response.body, 0});
  lws_callback_on_writable(wsi);
  return 0;
}

int writeBody(lws* wsi) {
  auto* pending = static_cast<Pending*>(lws_get_opaque_user_data(wsi));
  if (!pending) return 0;
  size_t n = std::min(kChunk, pending->body.size() - pending->sent);
  bool last = pending->sent + n == pending->body.size();
  auto buf = std::make_unique<unsigned char[]>(LWS_PRE + kChunk);
  memcpy(buf.get() + LWS_PRE, pending->body.data() + pending->sent, n);
  if (lws_write(wsi, buf.get() + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) !=
      int(n))
    return -1;
  pending->sent += n;
  if (!last) {
    lws_callback_on_writable(wsi);
    return 0;
  }
  dropPending(wsi);
  return lws_http_transaction_completed(wsi) ? -1 : 0;  // keep-alive, or close
}

}  // namespace

HttpServer::HttpServer(uv_loop_t* loop, Handler handler)
    : loop_(loop), handler_(std::move(handler)) {}

HttpServer::~HttpServer() {
  if (context_ && destroyCalls_ == 1) lws_context_destroy(context_);
  if (listenFd_ >= 0) ::close(listenFd_);
}

int HttpServer::callback(lws* wsi, int reason, void* in, size_t) {
  auto* self = static_cast<HttpServer*>(lws_context_user(lws_get_context(wsi)));
  switch (reason) {
    case LWS_CALLBACK_HTTP: {
      if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0) {  // only GET is served
        HttpResponse notAllowed{405, "text/plain; charset=utf-8", "405 method not allowed\n"};
        return startResponse(wsi, notAllowed);
      }
      std::string_view path = in ? static_cast<const char*>(in) : "/";
      return startResponse(wsi, self->handler_(path));
    }
    case LWS_CALLBACK_HTTP_WRITEABLE:
      return writeBody(wsi);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_WSI_DESTROY:
      dropPending(wsi);
      return 0;
    default:
      return lws_callback_http_dummy(wsi, lws_callback_reasons(reason), nullptr, in, 0);
  }
}

void HttpServer::listen(const std::string& address) {
  sockaddr_in addr = resolveListenAddress("Metrics.ListenAddress", address);
  listenFd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(listenFd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (listenFd_ < 0 || bind(listenFd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listenFd_, 128) != 0)
    throw std::runtime_error("Metrics.ListenAddress = \"" + address + "\": " + strerror(errno));

  lws_set_log_level(LLL_ERR, [](int, const char* line) { LOG_WARN("lws (http): %s", line); });
  void* loops[] = {loop_};
  lws_context_creation_info info = foreignLoopContextInfo(loops, kProtocols, this, &context_);
  vhost_ = createContextAndVhost(info, context_, "HTTP");

  acceptPoll_ = new uv_poll_t;
  acceptPoll_->data = this;
  uv_poll_init(loop_, acceptPoll_, listenFd_);
  uv_poll_start(acceptPoll_, UV_READABLE, onAcceptable);
}

void HttpServer::onAcceptable(uv_poll_t* handle, int status, int) {
  auto* self = static_cast<HttpServer*>(handle->data);
  if (status != 0) return;
  for (;;) {
    int fd = accept4(self->listenFd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: the next readiness retries
    }
    // On failure lws has already closed the socket (LWS-NOTES.md).
    if (!lws_adopt_socket_vhost(self->vhost_, fd)) LOG_WARN("status page: lws refused a socket");
  }
}

void HttpServer::close() {
  if (acceptPoll_) {
    uv_close(reinterpret_cast<uv_handle_t*>(acceptPoll_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    acceptPoll_ = nullptr;
  }
  if (context_ && destroyCalls_ == 0) {
    lws_context_destroy(context_);  // the first of two calls: closes lws's handles on the loop
    destroyCalls_ = 1;
  }
}

}  // namespace netsvr
