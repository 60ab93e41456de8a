// A small websocket server built like worker/ws_server.cpp (lws 4.1.6 on a foreign libuv loop,
// accepted sockets adopted into a vhost without a listener) with worker/pm_deflate as its only
// extension. Used by tests/unit/pm_deflate_probe_test.py; not part of the gateway.
//
//   pm_deflate_probe_server PORT LEVEL RECEIVE_LIMIT [nohook]
//
// Every complete client message is echoed back, except:
//   "!stats"      -> a JSON line with pm_deflate statistics, VmRSS and the connection count
//   "!fan:<text>" -> <text> is written to every open connection from one shared buffer
// A message longer than RECEIVE_LIMIT is answered with close 1009, as the gateway does.
#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <set>
#include <string>

#include "worker/pm_deflate.hpp"

namespace {

struct Msg {  // one payload with LWS_PRE headroom, shared by every connection it is written to
  std::string bytes;
  bool close = false;
  unsigned char* payload() { return reinterpret_cast<unsigned char*>(bytes.data()) + LWS_PRE; }
  size_t size() const { return bytes.size() - LWS_PRE; }
};
std::shared_ptr<Msg> makeMsg(const std::string& s, bool close = false) {
  auto m = std::make_shared<Msg>();
  m->bytes.assign(LWS_PRE, '\0');
  m->bytes += s;
  m->close = close;
  return m;
}

struct Conn {
  lws* wsi = nullptr;
  std::string partial;
  std::deque<std::shared_ptr<Msg>> out;
  bool closing = false;
};

std::set<Conn*> gConns;
Conn* gNoConn = nullptr;
uint64_t gLimit = 2097152;
uint64_t gPongs = 0;
bool gNoHook = false;  // "nohook": ADD_HEADERS not forwarded (the integration forgotten)

long rssKb() {
  FILE* f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long kb = -1;
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, "VmRSS:", 6)) kb = atol(line + 6);
  fclose(f);
  return kb;
}

void queue(Conn* c, std::shared_ptr<Msg> m) {
  if (c->closing) return;
  if (m->close) c->closing = true;
  c->out.push_back(std::move(m));
  lws_callback_on_writable(c->wsi);
}

void onMessage(Conn* c, const std::string& msg) {
  if (msg == "!stats") {
    auto s = netsvr::pmd::stats();
    char buf[768];
    snprintf(buf, sizeof buf,
             "{\"negotiated\":%llu,\"declined\":%llu,\"deflated\":%llu,\"cacheHits\":%llu,"
             "\"sentCompressed\":%llu,\"sentPlain\":%llu,\"inflated\":%llu,\"inflateErrors\":%llu,"
             "\"oversized\":%llu,\"inflatersLive\":%llu,\"rssKb\":%ld,\"conns\":%zu,\"pongs\":%llu}",
             (unsigned long long)s.negotiated, (unsigned long long)s.declined,
             (unsigned long long)s.deflatedMessages, (unsigned long long)s.cacheHits,
             (unsigned long long)s.sentCompressed, (unsigned long long)s.sentPlain,
             (unsigned long long)s.inflatedMessages, (unsigned long long)s.inflateErrors,
             (unsigned long long)s.oversized, (unsigned long long)s.inflatersLive, rssKb(), gConns.size(),
             (unsigned long long)gPongs);
    queue(c, makeMsg(buf));
    return;
  }
  if (msg.rfind("!fan:", 0) == 0) {
    auto m = makeMsg(msg.substr(5));
    for (Conn* other : gConns) queue(other, m);
    return;
  }
  queue(c, makeMsg(msg));
}

int callback(lws* wsi, lws_callback_reasons reason, void* user, void* in, size_t len) {
  Conn*& slot = *static_cast<Conn**>(user ? user : &gNoConn);  // per-session data: one pointer
  Conn* c = slot;
  switch (reason) {
    case LWS_CALLBACK_ADD_HEADERS:
      if (!gNoHook) netsvr::pmd::onAddHeaders(wsi, in);
      return 0;
    case LWS_CALLBACK_ESTABLISHED:
      c = slot = new Conn;
      c->wsi = wsi;
      gConns.insert(c);
      return 0;
    case LWS_CALLBACK_RECEIVE_PONG:
      if (!c) return 0;
      ++gPongs;
      return 0;
    case LWS_CALLBACK_RECEIVE: {
      if (!c || c->closing) return 0;
      size_t remaining = lws_remaining_packet_payload(wsi);
      if (c->partial.size() + len + remaining > gLimit) {
        c->partial.clear();
        std::string payload = "\x03\xf1message too big";  // 1009
        queue(c, makeMsg(payload, true));
        return 0;
      }
      c->partial.append(static_cast<const char*>(in), len);
      if (lws_is_final_fragment(wsi) && remaining == 0) {
        std::string msg;
        msg.swap(c->partial);
        onMessage(c, msg);
      }
      return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
      if (!c || c->out.empty()) return 0;
      auto m = c->out.front();
      c->out.pop_front();
      int type = m->close ? 4 /* LWS_WRITE_CLOSE */ : LWS_WRITE_TEXT;
      if (lws_write(wsi, m->payload(), m->size(), lws_write_protocol(type)) < 0) return -1;
      if (m->close) {
        lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, 1);
        return 0;
      }
      if (!c->out.empty()) lws_callback_on_writable(wsi);
      return 0;
    }
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
      return c && c->closing ? 1 : 0;
    case LWS_CALLBACK_CLOSED:
      if (!c) return 0;
      gConns.erase(c);
      delete c;
      slot = nullptr;
      return 0;
    default:
      return 0;
  }
}

const lws_protocols kProtocols[] = {
    {"probe", callback, sizeof(Conn*), 1024, 0, nullptr, 0},
    {nullptr, nullptr, 0, 0, 0, nullptr, 0},
};

lws_vhost* gVhost;

void onAcceptable(uv_poll_t* h, int status, int) {
  if (status) return;
  int lfd = -1;
  uv_fileno(reinterpret_cast<uv_handle_t*>(h), &lfd);
  for (;;) {
    int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    lws_adopt_socket_vhost(gVhost, fd);  // on failure lws has closed fd
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s PORT LEVEL RECEIVE_LIMIT [nohook]\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  netsvr::pmd::Settings settings;
  settings.level = atoi(argv[2]);
  settings.receiveLimit = strtoull(argv[3], nullptr, 10);
  gLimit = settings.receiveLimit;
  gNoHook = argc > 4 && !strcmp(argv[4], "nohook");

  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;  // lws sizes its fd table from this at context creation
  setrlimit(RLIMIT_NOFILE, &rl);
  lws_set_log_level(LLL_ERR, nullptr);

  uv_loop_t* loop = uv_default_loop();
  lws_context_creation_info info{};
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DISABLE_IPV6;
  void* loops[] = {loop};
  info.foreign_loops = loops;
  info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
  info.protocols = kProtocols;
  info.extensions = netsvr::pmd::extensions(settings);
  info.gid = -1;
  info.uid = -1;
  lws_context* ctx = lws_create_context(&info);
  if (!ctx) return 1;
  gVhost = lws_get_vhost_by_name(ctx, "default");

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) || listen(lfd, 4096)) {
    perror("bind/listen");
    return 1;
  }
  uv_poll_t poll;
  uv_poll_init(loop, &poll, lfd);
  uv_poll_start(&poll, UV_READABLE, onAcceptable);
  printf("ready %d\n", port);
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  return 0;
}
