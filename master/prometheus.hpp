// `/metrics` in the Prometheus text format, rendered by the master from the shared control
// block, so scraping never touches a worker's event loop (served by master/status_endpoint.cpp).
#pragma once

#include <string>
#include <vector>

#include "shm/control.hpp"

namespace netsvr {

// The exposition text for the enabled metric items (pure: reads the control block only).
std::string renderPrometheus(const shm::ControlBlock& control, const std::vector<int>& items);

}  // namespace netsvr
