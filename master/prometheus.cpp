#include "master/prometheus.hpp"

#include <cstdio>

namespace netsvr {

std::string renderPrometheus(const shm::ControlBlock& control, const std::vector<int>& items) {
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
        metricItemName(item), item);
    add("# TYPE netsvr_%s_total counter\n", metricItemName(item));
    add("netsvr_%s_total{item=\"%d\"} %lld\n", metricItemName(item), item, count);
    add("# TYPE netsvr_%s_rate1 gauge\n", metricItemName(item));
    add("netsvr_%s_rate1{item=\"%d\"} %.6f\n", metricItemName(item), item, r1);
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

}  // namespace netsvr
