#include "master/prometheus.hpp"

#include <cstring>
#include <ctime>

#include "common/log.hpp"
#include "master/listeners.hpp"

namespace netsvr {
namespace {

// PROTOCOL.md §10, item number → metric name.
const char* const kItemNames[shm::kMetricItems + 1] = {
    "",
    "client_opens",
    "client_closes",
    "client_heartbeats",
    "business_packets",
    "business_bytes",
    "client_frames",
    "client_frame_bytes",
    "open_limited",
    "message_limited",
    "business_send_failures",
    "client_send_failures",
    "client_send_failure_bytes",
    "connection_limited",
};

constexpr size_t kMaxRequestHead = 8192;  // bytes; a scrape request is far smaller

struct Client {
  uv_tcp_t tcp;
  PrometheusEndpoint* endpoint;
  std::string head;
  std::string response;
  uv_write_t write;
};

void closeClient(Client* c) {
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&c->tcp))) return;
  uv_close(reinterpret_cast<uv_handle_t*>(&c->tcp),
           [](uv_handle_t* h) { delete static_cast<Client*>(h->data); });
}

}  // namespace

PrometheusEndpoint::PrometheusEndpoint(uv_loop_t* loop, const shm::ControlBlock& control,
                                       std::vector<int> items)
    : loop_(loop), control_(control), items_(std::move(items)) {}

std::string PrometheusEndpoint::render(const shm::ControlBlock& control,
                                       const std::vector<int>& items) {
  std::string out;
  char line[512];
  auto add = [&](const char* fmt, auto... args) {
    snprintf(line, sizeof line, fmt, args...);
    out += line;
  };
  for (int item : items) {
    shm::MeterTotal total = shm::meterTotal(control, item);
    long long count = total.count;
    double r1 = total.rate1;
    add("# HELP netsvr_%s_total netsvr metric item %d (PROTOCOL.md section 10).\n",
        kItemNames[item], item);
    add("# TYPE netsvr_%s_total counter\n", kItemNames[item]);
    add("netsvr_%s_total{item=\"%d\"} %lld\n", kItemNames[item], item, count);
    add("# TYPE netsvr_%s_rate1 gauge\n", kItemNames[item]);
    add("netsvr_%s_rate1{item=\"%d\"} %.6f\n", kItemNames[item], item, r1);
  }
  out += "# HELP netsvr_connections Websocket clients that completed opening, per worker.\n";
  out += "# TYPE netsvr_connections gauge\n";
  std::string links =
      "# HELP netsvr_business_links Registered worker-port links, per worker.\n# TYPE "
      "netsvr_business_links gauge\n";
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    const auto& w = control.workers[serial];
    auto state = shm::WorkerState(w.state.load());
    if (state == shm::WorkerState::Free || state == shm::WorkerState::Exited) continue;
    add("netsvr_connections{slot=\"%u\",generation=\"%u\",pid=\"%d\",state=\"%s\"} %lld\n",
        w.slot.load(), w.generation.load(), w.pid.load(), shm::workerStateName(state),
        static_cast<long long>(w.clients.load()));
    snprintf(line, sizeof line,
             "netsvr_business_links{slot=\"%u\",generation=\"%u\",pid=\"%d\"} %lld\n",
             w.slot.load(), w.generation.load(), w.pid.load(),
             static_cast<long long>(w.bizLinks.load()));
    links += line;
  }
  out += links;
  add("# TYPE netsvr_generation gauge\nnetsvr_generation %u\n", control.generation.load());
  add("# TYPE netsvr_start_time_seconds gauge\nnetsvr_start_time_seconds %lld\n",
      static_cast<long long>(control.startedAt.load()));
  return out;
}

void PrometheusEndpoint::listen(const std::string& address) {
  sockaddr_in addr = resolveListenAddress("Metrics.ListenAddress", address);
  uv_tcp_init(loop_, &server_);
  server_.data = this;
  int rc = uv_tcp_bind(&server_, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0) rc = uv_listen(reinterpret_cast<uv_stream_t*>(&server_), 128, onConnection);
  listening_ = true;
  if (rc != 0)
    throw std::runtime_error("Metrics.ListenAddress = \"" + address + "\": " + uv_strerror(rc));
}

void PrometheusEndpoint::close() {
  if (listening_) uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  listening_ = false;
}

void PrometheusEndpoint::onConnection(uv_stream_t* server, int status) {
  if (status < 0) return;
  auto* self = static_cast<PrometheusEndpoint*>(server->data);
  auto* c = new Client{};
  c->endpoint = self;
  uv_tcp_init(self->loop_, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp)) != 0) {
    closeClient(c);
    return;
  }
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&c->tcp),
      [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
        buf->base = static_cast<char*>(malloc(suggested));
        buf->len = buf->base ? suggested : 0;
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        auto* c = static_cast<Client*>(s->data);
        if (n > 0) c->head.append(buf->base, size_t(n));
        free(buf->base);
        if (n < 0 || c->head.size() > kMaxRequestHead) {
          closeClient(c);
          return;
        }
        if (c->head.find("\r\n\r\n") == std::string::npos) return;
        uv_read_stop(s);
        bool metrics = c->head.rfind("GET /metrics", 0) == 0;
        std::string body =
            metrics ? render(c->endpoint->control_, c->endpoint->items_) : "404 page not found\n";
        c->response = std::string(metrics ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 404 Not Found\r\n") +
                      "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        uv_buf_t out = uv_buf_init(c->response.data(), unsigned(c->response.size()));
        c->write.data = c;
        if (uv_write(&c->write, s, &out, 1,
                     [](uv_write_t* w, int) { closeClient(static_cast<Client*>(w->data)); }) != 0)
          closeClient(c);  // no callback will come
      });
}

}  // namespace netsvr
