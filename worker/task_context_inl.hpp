// Template bodies of task_context.hpp.
#pragma once

#include "worker/router.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {

template <class Pred>
void TaskContext::forwardWhere(Pred&& pred, bool ack) {
  if (!routing()) return;
  std::vector<int> targets;  // forwarded after the tables' locks are released
  worker.router->forEachTable([&](int serial, const shm::TableData& data) {
    if (serial != worker.serial && pred(data)) targets.push_back(serial);
  });
  for (int serial : targets) forward(serial, ack);
}

template <class Range>
void TaskContext::forwardToOwners(const Range& uniqIds, bool ack) {
  if (!routing()) return;
  bool seen[256] = {};
  for (const auto& id : uniqIds) {
    uint64_t key;
    int owner = worker.router->ownerOf(id, key);
    if (owner < 0 || owner == worker.serial || seen[owner] || !worker.router->isLive(owner)) continue;
    seen[owner] = true;
    forward(owner, ack);
  }
}

// Keys are copied first: delivering may close a connection, which edits the index.
template <class F>
void forEachLocalOfCustomer(Worker& w, std::string_view customerId, F&& f) {
  if (customerId.empty()) return;
  const auto& index = w.table->unlockedData().byCustomer;
  auto it = index.find(customerId, shm::StableHash(), shm::StringEqual());
  if (it == index.end()) return;
  std::vector<uint64_t> keys(it->second.begin(), it->second.end());
  for (uint64_t key : keys)
    if (Conn* conn = w.ws->findOpen(key)) f(*conn);
}

template <class F>
void forEachLocalOfTopic(Worker& w, std::string_view topic, F&& f) {
  if (topic.empty()) return;
  const auto& index = w.table->unlockedData().byTopic;
  auto it = index.find(topic, shm::StableHash(), shm::StringEqual());
  if (it == index.end()) return;
  std::vector<uint64_t> keys(it->second.begin(), it->second.end());
  for (uint64_t key : keys)
    if (Conn* conn = w.ws->findOpen(key)) f(*conn);
}

}  // namespace netsvr
