// What the master serves on Metrics.ListenAddress: `/` the live status page, `/status.json` the
// data behind it, `/metrics` the Prometheus text. Reachable only where that address points.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "master/http_server.hpp"
#include "shm/control.hpp"

namespace netsvr {

class StatusEndpoint {
 public:
  StatusEndpoint(uv_loop_t* loop, const shm::ControlBlock& control, std::string instance,
                 std::string configPath, std::vector<int> items);
  void listen(const std::string& address) { server_.listen(address); }  // throws
  void close() { server_.close(); }
  void setItems(std::vector<int> items) { items_ = std::move(items); }  // Metrics.Item on reload

 private:
  HttpResponse respond(std::string_view path) const;
  const shm::ControlBlock& control_;
  std::string instance_;
  std::string configPath_;
  std::vector<int> items_;
  HttpServer server_;
};

}  // namespace netsvr
