// Non-blocking HTTP POST client for the optional callbacks (PROTOCOL.md §8): libcurl's multi
// interface driven by the worker's libuv loop. One HttpClient per worker loop; its multi handle
// owns curl's connection cache, so keep-alive connections to the callback server are reused.
// No threads are created per request (curl may still use its resolver thread for host names).
//
// Threading: every method must be called on the loop's thread; `done` callbacks run there too.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace netsvr {

// ok = the HTTP exchange completed (any status, including 4xx/5xx); then `status` and `body`
// hold the response. ok = false: transport error, timeout or oversized response; `error` says
// which (curl's text, or "response too large"), `body` is empty.
struct HttpResult {
  bool ok = false;
  long status = 0;
  std::string body;
  std::string error;
};

class HttpClient {
 public:
  // Response bodies larger than this (bytes) fail with "response too large".
  static constexpr size_t kMaxResponseBytes = 4u << 20;
  // Used when a caller passes a deadline <= 0 (DECISIONS.md O7: never unbounded), ms.
  static constexpr std::chrono::milliseconds kDefaultDeadline{3000};
  // Idle + busy connections curl keeps in its cache for reuse (like Go's MaxIdleConns=100).
  static constexpr long kMaxCachedConnections = 100;

  explicit HttpClient(uv_loop_t* loop);
  ~HttpClient();  // calls shutdown() if not done yet; the loop must still be open
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Starts a POST of `body` to `url` with header `Content-Type: <contentType>` and, when
  // acceptProtobuf, `Accept: application/x-protobuf`. `deadline` bounds the whole request
  // (connect + send + receive). `done` runs later on the loop thread, exactly once, unless
  // cancel()/shutdown() comes first; it is never called synchronously inside post().
  // `done` may call post()/cancel()/shutdown() but must not destroy the HttpClient.
  // Returns an id > 0; after shutdown() returns 0 and `done` is never called.
  uint64_t post(const std::string& url, std::string body, const char* contentType,
                bool acceptProtobuf, std::chrono::milliseconds deadline,
                std::function<void(HttpResult)> done);
  // Aborts the request (its connection is closed if mid-transfer); `done` is not called
  // afterwards. Unknown or finished ids are ignored.
  void cancel(uint64_t id);
  // Requests started and whose `done` has not run yet (nor been cancelled).
  size_t inFlight() const { return requests_.size(); }
  // Cancels every request without calling its `done`, closes cached connections, the multi
  // handle and every uv handle (freed in their close callbacks). Call before the loop's final
  // uv_run; afterwards uv_loop_close succeeds as far as this client is concerned. Idempotent.
  void shutdown();

 private:
  struct Request;
  struct Socket;

  static int onCurlSocket(void* easy, int fd, int what, void* clientp, void* socketp) noexcept;
  static int onCurlTimer(void* multi, long timeoutMs, void* clientp) noexcept;
  static void onUvTimer(uv_timer_t* t) noexcept;
  static void onUvPoll(uv_poll_t* p, int status, int events) noexcept;
  static void onDeferTimer(uv_timer_t* t) noexcept;
  static size_t onWrite(char* data, size_t size, size_t n, void* userp) noexcept;

  int handleSocket(int fd, int what, Socket* sock);
  void socketAction(int fd, int evBitmask);
  void processCompletions();
  void deliver(std::vector<std::pair<uint64_t, HttpResult>>& results);
  void closeSocket(Socket* sock);
  void fail(uint64_t id, std::string error);
  void destroyRequest(Request& r);
  void initMulti();

  uv_loop_t* loop_;
  void* multi_ = nullptr;             // CURLM*; void* keeps <curl/curl.h> out of this header
  uv_timer_t* timer_ = nullptr;       // curl's timeout timer; heap, freed in its close callback
  uv_timer_t* deferTimer_ = nullptr;  // delivers failures detected inside post()
  std::vector<uint64_t> deferred_;    // ids whose failure awaits deferTimer_
  std::unordered_map<uint64_t, std::unique_ptr<Request>> requests_;
  std::unordered_set<Socket*> sockets_;  // polled sockets, to close them on shutdown
  uint64_t nextId_ = 1;
  bool shutdown_ = false;
  bool multiTried_ = false;
};

// The error text of a failed OnOpen call, as the gateway closes the client with it: non-200
// status => "receive error http status code: <n>" (PROTOCOL.md §8.1); transport errors =>
// curl's error text (r.error). Empty when r is a 200 response (then decode the body).
std::string callbackErrorText(const HttpResult& r);

}  // namespace netsvr
