// The shared registry of business links registered on the worker port (shm/control.hpp): each
// worker adds and removes its own links; Unregister may remove any worker's link by connId.
// Apart from biz_link.cpp so that the worker-port handlers can be fuzzed without sockets.
#include <algorithm>
#include <cstring>

#include "worker/biz_link.hpp"
#include "worker/worker.hpp"

namespace netsvr {

bool BizLinks::addToRegistry(BizLink& link) {
  auto& registry = (*worker.control)->registry;
  shm::RobustLock lock(registry.mutex);
  for (auto& entry : registry.entries) {
    if (entry.used) continue;
    entry.ownerSerial = uint32_t(worker.serial);
    entry.linkId = link.id;
    entry.events = link.events;
    memcpy(entry.connId, link.connId.data(), std::min(link.connId.size(), sizeof entry.connId));
    entry.used = 1;
    registry.version.fetch_add(1);
    worker.info().bizLinks.fetch_add(1);
    return true;
  }
  return false;
}

void BizLinks::removeFromRegistry(uint32_t linkId) {
  auto& registry = (*worker.control)->registry;
  shm::RobustLock lock(registry.mutex);
  for (auto& entry : registry.entries) {
    if (entry.used && entry.ownerSerial == uint32_t(worker.serial) && entry.linkId == linkId) {
      entry.used = 0;
      registry.version.fetch_add(1);
      worker.info().bizLinks.fetch_sub(1);
    }
  }
}

void BizLinks::withdrawFromRegistry() {
  for (auto& [id, link] : links_)
    if (link->events) removeFromRegistry(id);
}

bool BizLinks::moveRegistryEntry(uint32_t linkId, int toSerial, uint32_t toLinkId) {
  auto& control = worker.control->block();
  auto& registry = control.registry;
  shm::RobustLock lock(registry.mutex);
  for (auto& entry : registry.entries) {
    if (entry.used && entry.ownerSerial == uint32_t(worker.serial) && entry.linkId == linkId) {
      entry.ownerSerial = uint32_t(toSerial);
      entry.linkId = toLinkId;
      registry.version.fetch_add(1);
      worker.info().bizLinks.fetch_sub(1);
      control.workers[toSerial].bizLinks.fetch_add(1);
      return true;
    }
  }
  return false;
}

void BizLinks::moveRegistryEntryBack(int fromSerial, uint32_t fromLinkId, BizLink& link) {
  {
    auto& control = worker.control->block();
    auto& registry = control.registry;
    shm::RobustLock lock(registry.mutex);
    for (auto& entry : registry.entries) {
      if (entry.used && entry.ownerSerial == uint32_t(fromSerial) && entry.linkId == fromLinkId) {
        entry.ownerSerial = uint32_t(worker.serial);
        entry.linkId = link.id;
        registry.version.fetch_add(1);
        control.workers[fromSerial].bizLinks.fetch_sub(1);
        worker.info().bizLinks.fetch_add(1);
        return;
      }
    }
  }
  // The master removed it with the dead worker's links: register again (at the end of the
  // round robin).
  addToRegistry(link);
}

bool BizLinks::removeByConnId(std::string_view connId) {
  if (connId.size() != kConnIdLength) return false;
  auto& registry = (*worker.control)->registry;
  shm::RobustLock lock(registry.mutex);
  bool removed = false;
  for (auto& entry : registry.entries) {
    if (entry.used && std::string_view(entry.connId, kConnIdLength) == connId) {
      entry.used = 0;
      registry.version.fetch_add(1);
      worker.control->block().workers[entry.ownerSerial].bizLinks.fetch_sub(1);
      removed = true;
    }
  }
  return removed;
}

}  // namespace netsvr
