// `/metrics` in the Prometheus text format, served by the master from the shared control block,
// so scraping never touches a worker's event loop (Metrics.ListenAddress, off by default).
#pragma once

#include <uv.h>

#include <string>
#include <vector>

#include "shm/control.hpp"

namespace netsvr {

class PrometheusEndpoint {
 public:
  PrometheusEndpoint(uv_loop_t* loop, const shm::ControlBlock& control, std::vector<int> items);
  // Throws std::runtime_error when the address cannot be bound.
  void listen(const std::string& address);
  void close();
  void setItems(std::vector<int> items) { items_ = std::move(items); }  // Metrics.Item on reload

  // The exposition text (pure: reads the control block only).
  static std::string render(const shm::ControlBlock& control, const std::vector<int>& items);

 private:
  static void onConnection(uv_stream_t* server, int status);
  uv_loop_t* loop_;
  const shm::ControlBlock& control_;
  std::vector<int> items_;
  uv_tcp_t server_{};
  bool listening_ = false;
};

}  // namespace netsvr
