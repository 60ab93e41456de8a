// Finding where a command's targets live (DESIGN.md §3 rule 4): the owner of a uniqId is in
// its counter's high byte; customerId and topic targets are found in each worker's table.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <unordered_map>

#include "common/uniqid.hpp"
#include "shm/conn_table.hpp"

namespace netsvr {

struct Worker;

class Router {
 public:
  explicit Router(Worker& worker) : worker_(worker) {}

  // The owner serial of a uniqId of this gateway and its key; -1 if it cannot be ours.
  int ownerOf(std::string_view uniqId, uint64_t& key) const;
  bool isLive(int serial) const;

  // Calls f(serial, const shm::TableData&) for every live worker, this one included. A table
  // whose owner died holding its lock is skipped: its connections are gone.
  template <class F>
  void forEachTable(F&& f) {
    for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
      if (!isLive(serial)) continue;
      shm::ConnTable* table = tableOf(serial);
      if (table) table->read([&](const shm::TableData& data) { f(serial, data); });
    }
  }

 private:
  shm::ConnTable* tableOf(int serial);

  struct Remote {
    uint32_t incarnation = 0;
    std::unique_ptr<shm::ConnTable> table;
  };
  Worker& worker_;
  std::unordered_map<int, Remote> remotes_;
};

// Runs a task payload forwarded by another worker, on this worker's clients only.
void runForwardedTask(Worker& worker, std::string_view payload);
// Acknowledgements of forwarded writes (task_port.cpp).
void onPeerAck(Worker& worker, uint32_t requestId);
void onPeerGone(Worker& worker, int serial);
void onTaskLinkClosed(uint32_t linkId);
// A command of this task link waits for another worker's acknowledgement (task_port.cpp).
bool taskLinkAwaitingAck(uint32_t linkId);
void onPeersDrained(Worker& worker);

}  // namespace netsvr
