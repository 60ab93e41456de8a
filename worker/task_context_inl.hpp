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
  bool seen[kMaxWorkerSerials] = {};
  for (const auto& id : uniqIds) {
    uint64_t key;
    int owner = worker.router->ownerOf(id, key);
    if (owner < 0 || owner == worker.serial || seen[owner] || !worker.router->isLive(owner))
      continue;
    seen[owner] = true;
    forward(owner, ack);
  }
}

// Calls f(Conn&) for each open local connection listed in index[name]. f may deliver and close
// politely, which never edits the table (WsServer: only a connection's end does), so the index
// is walked in place.
template <class F>
void forEachLocalIn(Worker& w, const shm::IndexMap& index, std::string_view name, F&& f) {
  if (name.empty()) return;
  auto it = index.find(name, shm::StableHash(), shm::StringEqual());
  if (it == index.end()) return;
  for (uint64_t key : it->second)
    if (Conn* conn = w.ws->findOpen(key)) f(*conn);
}

template <class F>
void forEachLocalOfCustomer(Worker& w, std::string_view customerId, F&& f) {
  forEachLocalIn(w, w.table->unlockedData().byCustomer, customerId, f);
}

template <class F>
void forEachLocalOfTopic(Worker& w, std::string_view topic, F&& f) {
  forEachLocalIn(w, w.table->unlockedData().byTopic, topic, f);
}

// May the index of these names (another worker's NamePresence) hold any of the non-empty ones?
template <class Range>
bool anyMayBeIn(const shm::NamePresence& names, const Range& wanted) {
  for (const auto& name : wanted)
    if (!name.empty() && names.mayHold(std::string_view(name))) return true;
  return false;
}

// The open connection of a uniqId if this worker owns it.
inline Conn* localConn(Worker& w, std::string_view uniqId) {
  uint64_t key;
  return w.router->ownerOf(uniqId, key) == w.serial ? w.ws->findOpen(key) : nullptr;
}

}  // namespace netsvr
