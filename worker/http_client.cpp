// libcurl multi + libuv glue, following curl's documented "multi_socket" pattern:
// curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION -> one uv_poll_t per socket)
// and when to time out (CURLMOPT_TIMERFUNCTION -> one uv_timer_t); libuv tells curl which
// socket is ready (curl_multi_socket_action). User callbacks (`done`) only run after
// curl_multi_socket_action has returned, never inside a curl callback, so they may start or
// cancel requests freely.
#include "worker/http_client.hpp"

#include <curl/curl.h>

#include "worker/curl_dl.hpp"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <mutex>
#include <utility>

namespace netsvr {

namespace {

std::once_flag gCurlInitOnce;

CURLM* M(void* p) {
  return static_cast<CURLM*>(p);
}

}  // namespace

struct HttpClient::Request {
  uint64_t id = 0;
  CURL* easy = nullptr;
  curl_slist* headers = nullptr;
  std::string body;  // request body; curl reads it in place (CURLOPT_POSTFIELDS), so it must
                     // outlive the transfer
  std::string resp;  // response body received so far
  std::function<void(HttpResult)> done;
  std::string earlyError;  // failure found inside post(), delivered by deferTimer_
  bool inMulti = false;
  bool tooLarge = false;
  char errbuf[CURL_ERROR_SIZE] = {0};
};

// One polled socket. Lives on the heap because the uv_poll_t must stay valid until its close
// callback, which may run after the HttpClient is gone.
struct HttpClient::Socket {
  uv_poll_t poll;
  curl_socket_t fd;
  HttpClient* owner;
};

HttpClient::HttpClient(uv_loop_t* loop) : loop_(loop) {
  timer_ = new uv_timer_t;
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  deferTimer_ = new uv_timer_t;
  uv_timer_init(loop_, deferTimer_);
  deferTimer_->data = this;
}

// On the first post(), not in the constructor: a gateway without callbacks never loads libcurl
// (worker/curl_dl.cpp), and its processes stay about 4 MiB smaller.
void HttpClient::initMulti() {
  if (multiTried_) return;
  multiTried_ = true;
  // curl_global_init is not thread-safe and must run once per process before any other call.
  std::call_once(gCurlInitOnce, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
  if (!multi_) {
    // Without a multi handle every post() fails (asynchronously) instead of crashing.
    return;
  }
  curl_multi_setopt(M(multi_), CURLMOPT_SOCKETFUNCTION, &HttpClient::onCurlSocket);
  curl_multi_setopt(M(multi_), CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(M(multi_), CURLMOPT_TIMERFUNCTION, &HttpClient::onCurlTimer);
  curl_multi_setopt(M(multi_), CURLMOPT_TIMERDATA, this);
  curl_multi_setopt(M(multi_), CURLMOPT_MAXCONNECTS, kMaxCachedConnections);
}

HttpClient::~HttpClient() {
  shutdown();
}

uint64_t HttpClient::post(const std::string& url, std::string body, const char* contentType,
                          bool acceptProtobuf, std::chrono::milliseconds deadline,
                          std::function<void(HttpResult)> done) {
  if (shutdown_) return 0;
  const uint64_t id = nextId_++;
  auto owned = std::make_unique<Request>();
  Request& r = *owned;
  r.id = id;
  r.body = std::move(body);
  r.done = std::move(done);
  requests_.emplace(id, std::move(owned));

  initMulti();
  if (!multi_) {
    const char* why = curlLoadError();
    fail(id, why ? why : "curl_multi_init failed");
    return id;
  }
  r.easy = curl_easy_init();
  if (!r.easy) {
    fail(id, "curl_easy_init failed");
    return id;
  }
  std::string ct =
      std::string("Content-Type: ") + (contentType ? contentType : "application/octet-stream");
  std::vector<const char*> lines{ct.c_str()};
  // Without acceptProtobuf, "Accept:" removes curl's default "Accept: */*" (Go sends none).
  lines.push_back(acceptProtobuf ? "Accept: application/x-protobuf" : "Accept:");
  // An empty "Expect:" stops curl from sending "Expect: 100-continue" for bodies > 1 KiB,
  // which costs a round trip (or a 1 s wait with servers that never answer 100).
  lines.push_back("Expect:");
  for (const char* line : lines) {
    curl_slist* h = curl_slist_append(r.headers, line);  // returns nullptr (list intact) on OOM
    if (!h) {
      fail(id, "out of memory building request headers");
      return id;
    }
    r.headers = h;
  }

  long ms = deadline.count() > 0
                ? static_cast<long>(std::min<long long>(deadline.count(), LONG_MAX))
                : static_cast<long>(kDefaultDeadline.count());
  CURL* e = r.easy;
  curl_easy_setopt(e, CURLOPT_PRIVATE, &r);
  curl_easy_setopt(e, CURLOPT_URL, url.c_str());
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, r.body.data());
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r.headers);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms);  // total: resolve + connect + send + receive
  curl_easy_setopt(e, CURLOPT_NOSIGNAL,
                   1L);  // no SIGALRM-based DNS timeouts in a multi-process server
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &HttpClient::onWrite);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &r);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r.errbuf);
  // Like Go's http.Client: follow up to 10 redirects (301/302/303 become GET, 307/308 keep
  // the POST body), http(s) only.
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
#if LIBCURL_VERSION_NUM >= 0x075500  // 7.85.0: *_STR variants
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(e, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif

  // add_handle only schedules the transfer (it arms our timer with 0 ms); the connection is
  // opened on the next loop iteration, so `done` can never run inside post().
  CURLMcode mc = curl_multi_add_handle(M(multi_), e);
  if (mc != CURLM_OK) {
    fail(id, curl_multi_strerror(mc));
    return id;
  }
  r.inMulti = true;
  return id;
}

void HttpClient::cancel(uint64_t id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  std::unique_ptr<Request> r = std::move(it->second);
  requests_.erase(it);
  destroyRequest(*r);  // may call onCurlSocket (REMOVE) / onCurlTimer synchronously
}

void HttpClient::destroyRequest(Request& r) {
  if (r.easy) {
    if (r.inMulti && multi_) curl_multi_remove_handle(M(multi_), r.easy);
    r.inMulti = false;
    curl_easy_cleanup(r.easy);
    r.easy = nullptr;
  }
  if (r.headers) {
    curl_slist_free_all(r.headers);
    r.headers = nullptr;
  }
}

void HttpClient::fail(uint64_t id, std::string error) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  it->second->earlyError = std::move(error);
  deferred_.push_back(id);
  if (!shutdown_) uv_timer_start(deferTimer_, &HttpClient::onDeferTimer, 0, 0);
}

void HttpClient::shutdown() {
  if (shutdown_) return;
  shutdown_ = true;
  deferred_.clear();
  // Move out first: curl callbacks fired by remove_handle must not see a half-cleared map.
  auto reqs = std::move(requests_);
  requests_.clear();
  for (auto& [id, r] : reqs) destroyRequest(*r);
  reqs.clear();

  if (multi_) {
    // Detach our callbacks, then stop polling every socket *before* curl closes the fds in
    // curl_multi_cleanup (libuv must not poll a closed fd).
    curl_multi_setopt(M(multi_), CURLMOPT_SOCKETFUNCTION, nullptr);
    curl_multi_setopt(M(multi_), CURLMOPT_TIMERFUNCTION, nullptr);
  }
  auto socks = std::move(sockets_);
  sockets_.clear();
  for (Socket* s : socks)
    uv_close(reinterpret_cast<uv_handle_t*>(&s->poll),
             [](uv_handle_t* h) { delete static_cast<Socket*>(h->data); });
  if (multi_) {
    curl_multi_cleanup(M(multi_));  // closes the cached keep-alive connections
    multi_ = nullptr;
  }
  auto closeTimer = [](uv_timer_t*& t) {
    if (!t) return;
    uv_close(reinterpret_cast<uv_handle_t*>(t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    t = nullptr;
  };
  closeTimer(timer_);
  closeTimer(deferTimer_);
}

// ---- curl -> libuv ----

int HttpClient::onCurlSocket(void* /*easy*/, int fd, int what, void* clientp,
                             void* socketp) noexcept {
  try {
    return static_cast<HttpClient*>(clientp)->handleSocket(fd, what, static_cast<Socket*>(socketp));
  } catch (...) {
    // Not -1: that makes curl abort *every* transfer of the multi handle. Unpolled, this
    // socket's transfer still fails by its CURLOPT_TIMEOUT_MS (curl's timer is independent).
    std::fputs("netsvr http client: exception in socket callback\n", stderr);
    return 0;
  }
}

int HttpClient::handleSocket(int fd, int what, Socket* sock) {
  if (what == CURL_POLL_REMOVE) {
    if (sock) closeSocket(sock);
    curl_multi_assign(M(multi_), fd, nullptr);
    return 0;
  }
  if (!sock) {
    sock = new Socket{};
    sock->fd = fd;
    sock->owner = this;
    if (int rc = uv_poll_init_socket(loop_, &sock->poll, fd); rc != 0) {
      delete sock;  // never initialised as a handle: plain delete is correct
      // Returning 0 (see onCurlSocket): the transfer fails by its deadline instead.
      std::fprintf(stderr, "netsvr http client: uv_poll_init_socket(%d): %s\n", fd,
                   uv_strerror(rc));
      return 0;
    }
    sock->poll.data = sock;
    sockets_.insert(sock);
    curl_multi_assign(M(multi_), fd, sock);
  }
  int events = 0;
  if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
  if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
  if (int rc = uv_poll_start(&sock->poll, events, &HttpClient::onUvPoll); rc != 0)
    std::fprintf(stderr, "netsvr http client: uv_poll_start(%d): %s\n", fd, uv_strerror(rc));
  return 0;
}

void HttpClient::closeSocket(Socket* sock) {
  sockets_.erase(sock);
  // uv_close stops polling now (before curl closes the fd); the memory goes in the callback.
  uv_close(reinterpret_cast<uv_handle_t*>(&sock->poll),
           [](uv_handle_t* h) { delete static_cast<Socket*>(h->data); });
}

int HttpClient::onCurlTimer(void* /*multi*/, long timeoutMs, void* clientp) noexcept {
  auto* self = static_cast<HttpClient*>(clientp);
  if (!self->timer_) return 0;
  // curl's rule: -1 = delete the timer; otherwise (re)arm it, 0 meaning "as soon as possible".
  // socket_action must not be called from here, so 0 ms becomes a next-iteration timer.
  if (timeoutMs < 0)
    uv_timer_stop(self->timer_);
  else
    uv_timer_start(self->timer_, &HttpClient::onUvTimer, static_cast<uint64_t>(timeoutMs), 0);
  return 0;
}

// ---- libuv -> curl ----

void HttpClient::onUvTimer(uv_timer_t* t) noexcept {
  try {
    static_cast<HttpClient*>(t->data)->socketAction(CURL_SOCKET_TIMEOUT, 0);
  } catch (...) {
    std::fputs("netsvr http client: exception in timer callback\n", stderr);
  }
}

void HttpClient::onUvPoll(uv_poll_t* p, int status, int events) noexcept {
  try {
    auto* s = static_cast<Socket*>(p->data);
    int mask = 0;
    if (status < 0) {
      mask = CURL_CSELECT_ERR;
    } else {
      if (events & (UV_READABLE | UV_DISCONNECT)) mask |= CURL_CSELECT_IN;
      if (events & UV_WRITABLE) mask |= CURL_CSELECT_OUT;
    }
    // `s` may be closed (freed later) inside socket_action; only the owner is used afterwards.
    s->owner->socketAction(s->fd, mask);
  } catch (...) {
    std::fputs("netsvr http client: exception in poll callback\n", stderr);
  }
}

void HttpClient::socketAction(int fd, int evBitmask) {
  if (!multi_) return;
  int running = 0;
  curl_multi_socket_action(M(multi_), fd, evBitmask, &running);
  processCompletions();
}

size_t HttpClient::onWrite(char* data, size_t size, size_t n, void* userp) noexcept {
  auto* r = static_cast<Request*>(userp);
  const size_t len = size * n;
  if (r->resp.size() + len > kMaxResponseBytes) {
    r->tooLarge = true;
    return 0;  // short write => curl aborts with CURLE_WRITE_ERROR
  }
  try {
    r->resp.append(data, len);
  } catch (...) {
    return 0;
  }
  return len;
}

// Collects every finished transfer first, then runs the callbacks: a callback may cancel
// another finished request (which then must not be delivered) or start new ones.
void HttpClient::processCompletions() {
  std::vector<std::pair<uint64_t, HttpResult>> results;
  CURLMsg* m;
  int left = 0;
  while (multi_ && (m = curl_multi_info_read(M(multi_), &left)) != nullptr) {
    if (m->msg != CURLMSG_DONE) continue;
    CURL* easy = m->easy_handle;
    const CURLcode code = m->data.result;  // m is invalid after remove_handle
    char* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    auto* r = reinterpret_cast<Request*>(priv);
    curl_multi_remove_handle(M(multi_), easy);
    if (!r) continue;
    r->inMulti = false;
    HttpResult res;
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    res.status = status;
    if (code == CURLE_OK) {
      res.ok = true;
      res.body = std::move(r->resp);
    } else if (r->tooLarge) {
      res.error = "response too large";
    } else {
      res.error = r->errbuf[0] ? std::string(r->errbuf) : std::string(curl_easy_strerror(code));
    }
    results.emplace_back(r->id, std::move(res));
  }
  deliver(results);
}

void HttpClient::deliver(std::vector<std::pair<uint64_t, HttpResult>>& results) {
  for (auto& [id, res] : results) {
    auto it = requests_.find(id);
    if (it == requests_.end()) continue;  // cancelled (or shut down) by an earlier callback
    std::unique_ptr<Request> r = std::move(it->second);
    requests_.erase(it);
    auto done = std::move(r->done);
    destroyRequest(*r);
    r.reset();
    if (!done) continue;
    try {
      done(std::move(res));
    } catch (...) {
      std::fputs("netsvr http client: exception in completion callback\n", stderr);
    }
  }
}

void HttpClient::onDeferTimer(uv_timer_t* t) noexcept {
  try {
    auto* self = static_cast<HttpClient*>(t->data);
    std::vector<std::pair<uint64_t, HttpResult>> results;
    for (uint64_t id : std::exchange(self->deferred_, {})) {
      auto it = self->requests_.find(id);
      if (it == self->requests_.end()) continue;
      HttpResult res;
      res.error = it->second->earlyError;
      results.emplace_back(id, std::move(res));
    }
    self->deliver(results);
  } catch (...) {
    std::fputs("netsvr http client: exception in deferred callback\n", stderr);
  }
}

std::string callbackErrorText(const HttpResult& r) {
  if (!r.ok) return r.error.empty() ? std::string("http request failed") : r.error;
  if (r.status != 200) return "receive error http status code: " + std::to_string(r.status);
  return {};
}

}  // namespace netsvr
