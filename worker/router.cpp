#include "worker/router.hpp"

#include "common/log.hpp"
#include "shm/names.hpp"
#include "worker/peer_links.hpp"
#include "worker/worker.hpp"

namespace netsvr {

int Router::ownerOf(std::string_view uniqId, uint64_t& key) const {
  UniqIdParts parts;
  if (!parseUniqId(uniqId, parts)) return -1;
  const Config& c = worker_.config;
  if (parts.ip != c.task.address.ip || parts.port != c.task.address.port) return -1;
  key = uniqKeyOf(parts.timestamp, parts.counter);
  return ownerSerialOf(parts.counter);
}

bool Router::isLive(int serial) const {
  return shm::isLive(
      shm::WorkerState((*worker_.control)->workers[serial].state.load(std::memory_order_acquire)));
}

shm::ConnTable* Router::tableOf(int serial) {
  if (serial == worker_.serial) return worker_.table.get();
  uint32_t incarnation = (*worker_.control)->workers[serial].incarnation.load();
  Remote& remote = remotes_[serial];
  if (!remote.table || remote.incarnation != incarnation) {
    std::string error;
    remote.table =
        shm::ConnTable::open(shm::workerSegmentName(worker_.instanceKey, serial), false, error);
    remote.incarnation = incarnation;
    if (!remote.table)
      LOG_WARN("cannot read the table of worker serial %d: %s", serial, error.c_str());
  }
  return remote.table.get();
}

}  // namespace netsvr
