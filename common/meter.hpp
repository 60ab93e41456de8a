// The meters of PROTOCOL.md §10 (rcrowley/go-metrics): exponentially weighted moving averages
// ticked every 5 s. Pure code.
#pragma once

#include <cmath>
#include <cstdint>

namespace netsvr {

inline constexpr int kMetricItems = 13;  // metric items 1..13 (PROTOCOL.md §10)

// PROTOCOL.md §10, item number -> name (Prometheus metric names, the status page); "" for 0.
inline const char* metricItemName(int item) {
  static const char* const kNames[kMetricItems + 1] = {
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
  return item >= 0 && item <= kMetricItems ? kNames[item] : "";
}

inline constexpr double kMeterTickSeconds = 5.0;

struct Ewma {
  double alpha;
  double rate = 0;  // events per second
  bool started = false;

  explicit Ewma(double minutes) : alpha(1 - std::exp(-kMeterTickSeconds / 60.0 / minutes)) {}
  // `events` happened during the last tick.
  void tick(int64_t events) {
    double instant = double(events) / kMeterTickSeconds;
    if (started) {
      rate += alpha * (instant - rate);
    } else {
      rate = instant;  // the first tick takes the instantaneous rate
      started = true;
    }
  }
};

struct MeterRates {
  Ewma m1{1}, m5{5}, m15{15};
  int64_t lastCount = 0;
  void tick(int64_t count) {
    int64_t events = count - lastCount;
    lastCount = count;
    m1.tick(events);
    m5.tick(events);
    m15.tick(events);
  }
};

}  // namespace netsvr
