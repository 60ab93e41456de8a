// The gateway's state as JSON: /status.json on the master's HTTP listener, the data behind the
// status page, and `netsvr status --json`. Everything comes from the control block, so both
// show the same thing and neither asks a worker.
#pragma once

#include <string>

#include "shm/control.hpp"

namespace netsvr {

// {"instance", "masterPid", "startedAt", "now", "generation", "generations": [{"generation",
//  "workers": [{"serial", "slot", "pid", "state", "clients", "businessLinks", "taskLinks"}]}],
//  "totals": {...}, "metrics": [{"item", "name", "count", "rate1", "rate5", "rate15"}],
//  "history": {"time": [...], "clients": [...], "messagesIn": [...], "messagesOut": [...],
//  "opens": [...], "closes": [...]}, "config": {"path", "text"}}
// Series in "history" are per second, oldest first; the rates are differences between samples.
std::string renderStatusJson(const shm::ControlBlock& control, const std::string& instance,
                             const std::string& configPath, int64_t nowUnixSec);

}  // namespace netsvr
