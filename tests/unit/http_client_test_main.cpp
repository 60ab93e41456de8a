// Standalone test of worker/http_client against a local Python http.server that the test starts
// (and kills) itself. Build, e.g.:
//   g++ -std=c++20 -Wall -Wextra -Werror -fsanitize=address,undefined -I. (continued)
//       worker/http_client.cpp tests/unit/http_client_test_main.cpp -luv -lcurl -o /tmp/httpc
// Needs /usr/bin/python3. Each test case uses its own uv loop and checks it closes cleanly.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "worker/http_client.hpp"

extern char** environ;

using namespace std::chrono_literals;
using netsvr::HttpClient;
using netsvr::HttpResult;

namespace {

// HTTP/1.1 keep-alive server. Paths: /ok fixed body; /status500; /slow (2 s); /close (204);
// /echo (Content-Type, Accept, Expect header lines, then the request body); /big (5 MiB);
// /reset and /conns (server-side count of accepted TCP connections).
const char* kServerPy = R"PY(
import http.server, sys, threading, time
conns = 0
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def setup(self):
        global conns
        with lock:
            conns += 1
        super().setup()
    def log_message(self, *a):
        pass
    def reply(self, code, body=b""):
        self.send_response(code)
        if code != 204:
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)
    def do_POST(self):
        global conns
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        p = self.path
        if p == "/ok":
            self.reply(200, b"\x08\x01hello\x00world")
        elif p == "/status500":
            self.reply(500, b"oops")
        elif p == "/slow":
            time.sleep(2)
            self.reply(200, b"late")
        elif p == "/close":
            self.reply(204)
        elif p == "/echo":
            h = self.headers
            head = "%s\n%s\n%s\n" % (h.get("Content-Type"), h.get("Accept"), h.get("Expect"))
            self.reply(200, head.encode() + body)
        elif p == "/big":
            self.reply(200, b"x" * (5 * 1024 * 1024))
        elif p == "/reset":
            with lock:
                conns = 0
            self.reply(200)
        elif p == "/conns":
            with lock:
                c = conns
            self.reply(200, str(c).encode())
        else:
            self.reply(404)
class S(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096
    def handle_error(self, request, client_address):
        pass
s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
)PY";

struct PyServer {
  pid_t pid = -1;
  int port = 0;
  PyServer() {
    int fds[2];
    if (pipe(fds) != 0) return;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    const char* argv[] = {"/usr/bin/python3", "-u", "-c", kServerPy, nullptr};
    if (posix_spawn(&pid, argv[0], &fa, nullptr, const_cast<char* const*>(argv), environ) != 0) pid = -1;
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line += c;  // the port, once it listens
    close(fds[0]);
    port = line.empty() ? 0 : std::stoi(line);
  }
  ~PyServer() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
  std::string url(const char* path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
};

PyServer& server() {
  static PyServer s;
  REQUIRE(s.port > 0);
  return s;
}

// Runs the loop until pred() holds or timeoutMs passes (checked every 1 ms). Returns pred().
bool runUntil(uv_loop_t* loop, const std::function<bool()>& pred, uint64_t timeoutMs) {
  struct Ctx {
    const std::function<bool()>* pred;
    uint64_t deadline;
  } ctx{&pred, uv_now(loop) + timeoutMs};
  uv_timer_t t;
  uv_timer_init(loop, &t);
  t.data = &ctx;
  uv_timer_start(
      &t,
      [](uv_timer_t* h) {
        auto* c = static_cast<Ctx*>(h->data);
        if ((*c->pred)() || uv_now(h->loop) >= c->deadline) uv_stop(h->loop);
      },
      1, 1);
  uv_run(loop, UV_RUN_DEFAULT);
  uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
  uv_run(loop, UV_RUN_NOWAIT);  // runs the close
  return pred();
}

// A loop per test case; finish() shuts the client down and requires the loop to close.
struct Loop {
  uv_loop_t loop;
  Loop() { uv_loop_init(&loop); }
  void finish(HttpClient& c) {
    c.shutdown();
    uv_run(&loop, UV_RUN_DEFAULT);  // must return: no handle of the client remains active
    CHECK(uv_loop_close(&loop) == 0);
  }
};

constexpr const char* kProto = "application/x-protobuf";

int freePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);  // nobody listens there now: connect is refused
  return ntohs(a.sin_port);
}

}  // namespace

TEST_CASE("200 POST returns status and body; request carries protobuf headers and body") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  const std::string payload("\x08\x01\x00\xff proto \x7f", 12);
  int calls = 0;
  HttpResult echo, ok, noAccept;
  c.post(srv.url("/echo"), payload, kProto, true, 3000ms, [&](HttpResult r) { echo = std::move(r), ++calls; });
  c.post(srv.url("/ok"), "x", kProto, true, 3000ms, [&](HttpResult r) { ok = std::move(r), ++calls; });
  c.post(srv.url("/echo"), "b", kProto, false, 3000ms, [&](HttpResult r) { noAccept = std::move(r), ++calls; });
  CHECK(calls == 0);  // never synchronously inside post()
  CHECK(c.inFlight() == 3);
  REQUIRE(runUntil(&L.loop, [&] { return calls == 3; }, 5000));
  CHECK(c.inFlight() == 0);

  CHECK(echo.ok);
  CHECK(echo.status == 200);
  CHECK(echo.body == "application/x-protobuf\napplication/x-protobuf\nNone\n" + payload);
  CHECK(netsvr::callbackErrorText(echo).empty());

  CHECK(ok.ok);
  CHECK(ok.status == 200);
  CHECK(ok.body == std::string("\x08\x01hello\x00world", 13));
  CHECK(ok.error.empty());

  CHECK(noAccept.body == "application/x-protobuf\nNone\nNone\nb");  // no Accept header at all
  L.finish(c);
}

TEST_CASE("non-200 statuses are transport successes; OnOpen error text") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  HttpResult r500, r204;
  int calls = 0;
  c.post(srv.url("/status500"), "x", kProto, true, 3000ms, [&](HttpResult r) { r500 = std::move(r), ++calls; });
  c.post(srv.url("/close"), "x", kProto, false, 3000ms, [&](HttpResult r) { r204 = std::move(r), ++calls; });
  REQUIRE(runUntil(&L.loop, [&] { return calls == 2; }, 5000));
  CHECK(r500.ok);
  CHECK(r500.status == 500);
  CHECK(r500.body == "oops");
  CHECK(netsvr::callbackErrorText(r500) == "receive error http status code: 500");
  CHECK(r204.ok);
  CHECK(r204.status == 204);
  CHECK(r204.body.empty());
  CHECK(netsvr::callbackErrorText(r204) == "receive error http status code: 204");
  L.finish(c);
}

TEST_CASE("deadline: a slow server times out on time and the loop keeps running") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  // A 10 ms ticker proves the loop is not blocked while the request waits.
  uv_timer_t ticker;
  int ticks = 0;
  uv_timer_init(&L.loop, &ticker);
  ticker.data = &ticks;
  uv_timer_start(&ticker, [](uv_timer_t* t) { ++*static_cast<int*>(t->data); }, 10, 10);

  HttpResult res;
  bool done = false;
  uint64_t doneAtMs = 0;
  const uint64_t start = uv_hrtime();
  c.post(srv.url("/slow"), "x", kProto, true, 300ms, [&](HttpResult r) {
    res = std::move(r);
    done = true;
    doneAtMs = (uv_hrtime() - start) / 1000000;
  });
  REQUIRE(runUntil(&L.loop, [&] { return done; }, 3000));
  uv_close(reinterpret_cast<uv_handle_t*>(&ticker), nullptr);
  MESSAGE("timed out after " << doneAtMs << " ms, ticks " << ticks << ", error: " << res.error);
  CHECK_FALSE(res.ok);
  CHECK(res.error.find("timed out") != std::string::npos);
  CHECK(netsvr::callbackErrorText(res) == res.error);
  CHECK(doneAtMs >= 290);
  CHECK(doneAtMs < 1000);
  CHECK(ticks >= 20);  // ~30 expected in 300 ms
  L.finish(c);
}

TEST_CASE("deadline <= 0 is not unbounded (3 s default, DECISIONS O7)") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  HttpResult res;
  bool done = false;
  c.post(srv.url("/ok"), "x", kProto, true, 0ms, [&](HttpResult r) { res = std::move(r), done = true; });
  REQUIRE(runUntil(&L.loop, [&] { return done; }, 5000));
  CHECK(res.ok);  // a fast server still answers within the default deadline
  L.finish(c);
}

TEST_CASE("connection refused and malformed URLs fail with curl's error text") {
  Loop L;
  HttpClient c(&L.loop);
  HttpResult refused, bad;
  int calls = 0;
  c.post("http://127.0.0.1:" + std::to_string(freePort()) + "/x", "x", kProto, true, 3000ms,
         [&](HttpResult r) { refused = std::move(r), ++calls; });
  c.post("ftp://127.0.0.1/x", "x", kProto, true, 3000ms, [&](HttpResult r) { bad = std::move(r), ++calls; });
  REQUIRE(runUntil(&L.loop, [&] { return calls == 2; }, 5000));
  MESSAGE("refused: " << refused.error << " | bad: " << bad.error);
  CHECK_FALSE(refused.ok);
  CHECK_FALSE(refused.error.empty());
  CHECK(netsvr::callbackErrorText(refused) == refused.error);
  CHECK_FALSE(bad.ok);
  CHECK_FALSE(bad.error.empty());
  L.finish(c);
}

TEST_CASE("response bodies are capped") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  HttpResult res;
  bool done = false;
  c.post(srv.url("/big"), "x", kProto, true, 5000ms, [&](HttpResult r) { res = std::move(r), done = true; });
  REQUIRE(runUntil(&L.loop, [&] { return done; }, 8000));
  CHECK_FALSE(res.ok);
  CHECK(res.error == "response too large");
  CHECK(res.body.empty());
  L.finish(c);
}

TEST_CASE("1000 concurrent POSTs all complete") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  constexpr int kN = 1000;
  int done = 0, good = 0;
  const uint64_t start = uv_hrtime();
  for (int i = 0; i < kN; ++i)
    c.post(srv.url("/ok"), "req" + std::to_string(i), kProto, true, 30000ms, [&](HttpResult r) {
      ++done;
      if (r.ok && r.status == 200 && r.body.size() == 13) ++good;
    });
  CHECK(c.inFlight() == kN);
  REQUIRE(runUntil(&L.loop, [&] { return done == kN; }, 40000));
  MESSAGE(kN << " concurrent POSTs in " << (uv_hrtime() - start) / 1000000 << " ms");
  CHECK(good == kN);
  CHECK(c.inFlight() == 0);
  L.finish(c);
}

TEST_CASE("keep-alive: sequential requests reuse one connection") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  constexpr int kN = 50;
  int okCount = 0;
  bool finished = false;
  std::string conns;
  std::function<void(int)> next = [&](int i) {
    const char* path = i == 0 ? "/reset" : i <= kN ? "/ok" : "/conns";
    c.post(srv.url(path), "x", kProto, true, 3000ms, [&, i](HttpResult r) {
      if (r.ok && r.status == 200) ++okCount;
      if (i <= kN) {
        next(i + 1);  // post() from inside a completion callback
      } else {
        conns = r.body;
        finished = true;
      }
    });
  };
  next(0);
  REQUIRE(runUntil(&L.loop, [&] { return finished; }, 10000));
  MESSAGE("new server connections after /reset: " << conns);
  CHECK(okCount == kN + 2);
  CHECK(conns == "0");  // every request after /reset went over the /reset connection
  L.finish(c);
}

TEST_CASE("cancel suppresses the callback") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  int slowCalls = 0, okCalls = 0;
  // Cancelled before the loop ever ran.
  uint64_t a = c.post(srv.url("/ok"), "x", kProto, true, 3000ms, [&](HttpResult) { ++slowCalls; });
  c.cancel(a);
  CHECK(c.inFlight() == 0);
  // Cancelled mid-transfer, from another request's completion callback.
  uint64_t b = c.post(srv.url("/slow"), "x", kProto, true, 5000ms, [&](HttpResult) { ++slowCalls; });
  c.post(srv.url("/ok"), "x", kProto, true, 3000ms, [&](HttpResult r) {
    CHECK(r.ok);
    ++okCalls;
    c.cancel(b);
    c.cancel(b);       // twice: ignored
    c.cancel(987654);  // unknown: ignored
  });
  CHECK(a != b);
  CHECK_FALSE(runUntil(&L.loop, [&] { return slowCalls > 0; }, 2500));  // /slow would answer at 2 s
  CHECK(okCalls == 1);
  CHECK(slowCalls == 0);
  CHECK(c.inFlight() == 0);
  L.finish(c);
}

TEST_CASE("shutdown with requests in flight leaves the loop closable") {
  auto& srv = server();
  Loop L;
  HttpClient c(&L.loop);
  int calls = 0;
  for (int i = 0; i < 5; ++i) c.post(srv.url("/slow"), "x", kProto, true, 5000ms, [&](HttpResult) { ++calls; });
  c.post("http://127.0.0.1:" + std::to_string(freePort()) + "/", "x", kProto, true, 5000ms, [&](HttpResult) { ++calls; });
  runUntil(&L.loop, [] { return false; }, 100);  // connections established, requests sent
  CHECK(c.inFlight() == 5);                      // the refused one has already completed
  CHECK(calls == 1);
  c.shutdown();
  c.shutdown();  // idempotent
  CHECK(c.inFlight() == 0);
  CHECK(c.post(srv.url("/ok"), "x", kProto, true, 1000ms, [&](HttpResult) { ++calls; }) == 0);
  uv_run(&L.loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&L.loop) == 0);
  CHECK(calls == 1);
}

TEST_CASE("shutdown from inside a completion callback, and destructor without shutdown") {
  auto& srv = server();
  {
    Loop L;
    HttpClient c(&L.loop);
    int calls = 0;
    c.post(srv.url("/slow"), "x", kProto, true, 5000ms, [&](HttpResult) { ++calls; });
    c.post(srv.url("/ok"), "x", kProto, true, 5000ms, [&](HttpResult) {
      ++calls;
      c.shutdown();
    });
    runUntil(&L.loop, [&] { return calls > 0; }, 3000);
    uv_run(&L.loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&L.loop) == 0);
    CHECK(calls == 1);
  }
  {
    Loop L;
    {
      HttpClient c(&L.loop);
      bool done = false;
      c.post(srv.url("/ok"), "x", kProto, true, 3000ms, [&](HttpResult) { done = true; });
      REQUIRE(runUntil(&L.loop, [&] { return done; }, 3000));
      c.post(srv.url("/slow"), "x", kProto, true, 3000ms, [&](HttpResult) { FAIL("called after destruction"); });
      runUntil(&L.loop, [] { return false; }, 50);
    }  // ~HttpClient shuts down; the handles are freed by the next run
    uv_run(&L.loop, UV_RUN_DEFAULT);
    CHECK(uv_loop_close(&L.loop) == 0);
  }
}
