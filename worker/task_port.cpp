// Task port (PROTOCOL.md §4): one table maps every Cmd to its handler, and every packet of a
// link is processed strictly in arrival order (DECISIONS 5). A command whose writes another
// worker applies pauses its link until that worker acknowledges.
#include "cmd.pb.h"
#include "common/log.hpp"
#include "worker/peer_links.hpp"
#include "worker/task_context.hpp"

#include <unordered_map>

namespace netsvr {
namespace {

using Handler = void (*)(TaskContext&, std::string_view body);
struct CmdSpec {
  uint32_t cmd;
  Handler handler;
};

const CmdSpec kCommands[] = {
    {netsvr::cmd::ConnInfoUpdate, cmdConnInfoUpdate},
    {netsvr::cmd::ConnInfoDelete, cmdConnInfoDelete},
    {netsvr::cmd::Broadcast, cmdBroadcast},
    {netsvr::cmd::Multicast, cmdMulticast},
    {netsvr::cmd::MulticastByCustomerId, cmdMulticastByCustomerId},
    {netsvr::cmd::SingleCast, cmdSingleCast},
    {netsvr::cmd::SingleCastBulk, cmdSingleCastBulk},
    {netsvr::cmd::SingleCastByCustomerId, cmdSingleCastByCustomerId},
    {netsvr::cmd::SingleCastBulkByCustomerId, cmdSingleCastBulkByCustomerId},
    {netsvr::cmd::TopicSubscribe, cmdTopicSubscribe},
    {netsvr::cmd::TopicUnsubscribe, cmdTopicUnsubscribe},
    {netsvr::cmd::TopicDelete, cmdTopicDelete},
    {netsvr::cmd::TopicPublish, cmdTopicPublish},
    {netsvr::cmd::TopicPublishBulk, cmdTopicPublishBulk},
    {netsvr::cmd::ForceOffline, cmdForceOffline},
    {netsvr::cmd::ForceOfflineByCustomerId, cmdForceOfflineByCustomerId},
    {netsvr::cmd::ForceOfflineGuest, cmdForceOfflineGuest},
    {netsvr::cmd::CheckOnline, cmdCheckOnline},
    {netsvr::cmd::CustomerIdList, cmdCustomerIdList},
    {netsvr::cmd::CustomerIdCount, cmdCustomerIdCount},
    {netsvr::cmd::UniqIdList, cmdUniqIdList},
    {netsvr::cmd::UniqIdCount, cmdUniqIdCount},
    {netsvr::cmd::TopicList, cmdTopicList},
    {netsvr::cmd::TopicCount, cmdTopicCount},
    {netsvr::cmd::TopicUniqIdList, cmdTopicUniqIdList},
    {netsvr::cmd::TopicUniqIdCount, cmdTopicUniqIdCount},
    {netsvr::cmd::TopicCustomerIdList, cmdTopicCustomerIdList},
    {netsvr::cmd::TopicCustomerIdToUniqIdsList, cmdTopicCustomerIdToUniqIdsList},
    {netsvr::cmd::TopicCustomerIdCount, cmdTopicCustomerIdCount},
    {netsvr::cmd::ConnInfo, cmdConnInfo},
    {netsvr::cmd::ConnInfoByCustomerId, cmdConnInfoByCustomerId},
    {netsvr::cmd::Metrics, cmdMetrics},
    {netsvr::cmd::Limit, cmdLimit},
};

const CmdSpec* findCommand(uint32_t cmd) {
  // Cmd values sit in two dense runs: 900002001.. (class A/B) and 900003003.. (class C).
  for (const auto& spec : kCommands)
    if (spec.cmd == cmd) return &spec;
  return nullptr;
}

// Acknowledgements a paused task link waits for.
struct Waiting {
  uint32_t linkId;
  int serial;
  uint64_t sinceMs;
};
std::unordered_map<uint32_t, Waiting> gWaiting;  // by request id
std::unordered_map<uint32_t, uint32_t> gWaitingPerLink;
std::vector<uint32_t> gWaitingForPeers;  // links paused until the peer links drain
uint32_t gNextRequestId = 1;
uv_timer_t* gWaitTimer = nullptr;
constexpr uint64_t kAckTimeoutMs = 5000;  // a peer that neither answers nor dies

// Links are resumed from the loop, never inside the call that released them: a resumed link
// runs its next commands at once, which must not happen in the middle of a peer-link operation.
std::vector<uint32_t> gToResume;
uv_timer_t* gResumeTimer = nullptr;

void resumeLater(Worker& worker, uint32_t linkId) {
  gToResume.push_back(linkId);
  if (!gResumeTimer) {
    gResumeTimer = new uv_timer_t;
    uv_timer_init(worker.loop, gResumeTimer);
    gResumeTimer->data = &worker;
    uv_unref(reinterpret_cast<uv_handle_t*>(gResumeTimer));
  }
  uv_timer_start(
      gResumeTimer,
      [](uv_timer_t* t) {
        auto& w = *static_cast<Worker*>(t->data);
        std::vector<uint32_t> ids;
        ids.swap(gToResume);
        for (uint32_t id : ids)
          if (!gWaitingPerLink.count(id))
            if (BizLink* link = w.links->find(id)) link->resume();
      },
      0, 0);
}

void release(Worker& worker, uint32_t requestId) {
  auto it = gWaiting.find(requestId);
  if (it == gWaiting.end()) return;
  uint32_t linkId = it->second.linkId;
  gWaiting.erase(it);
  auto count = gWaitingPerLink.find(linkId);
  if (count == gWaitingPerLink.end() || --count->second > 0) return;
  gWaitingPerLink.erase(count);
  resumeLater(worker, linkId);
}

void checkWaitTimeouts(Worker& worker) {
  uint64_t now = uv_now(worker.loop);
  std::vector<uint32_t> expired;
  for (const auto& [id, w] : gWaiting)
    if (now - w.sinceMs > kAckTimeoutMs) expired.push_back(id);
  for (uint32_t id : expired) {
    auto it = gWaiting.find(id);
    if (it == gWaiting.end()) continue;  // released meanwhile
    LOG_WARN("worker serial %d did not acknowledge request %u in %llu ms", it->second.serial, id,
             static_cast<unsigned long long>(kAckTimeoutMs));
    release(worker, id);
  }
}

}  // namespace

void TaskContext::forward(int serial, bool ack) {
  uint32_t requestId = 0;
  if (ack) {
    requestId = gNextRequestId++;
    if (requestId == 0) requestId = gNextRequestId++;
  }
  if (!worker.peers->sendTask(serial, requestId, payload)) return;
  if (ack) {
    gWaiting[requestId] = Waiting{link->id, serial, uv_now(worker.loop)};
    ++gWaitingPerLink[link->id];
    if (!gWaitTimer) {
      gWaitTimer = new uv_timer_t;
      uv_timer_init(worker.loop, gWaitTimer);
      gWaitTimer->data = &worker;
      uv_unref(reinterpret_cast<uv_handle_t*>(gWaitTimer));
      uv_timer_start(
          gWaitTimer, [](uv_timer_t* t) { checkWaitTimeouts(*static_cast<Worker*>(t->data)); },
          1000, 1000);
    }
  }
}

bool handleTaskPacket(Worker& worker, BizLink& link, uint32_t cmd, std::string_view body) {
  const CmdSpec* spec = findCommand(cmd);
  if (!spec) return false;
  std::string_view payload(body.data() - kCmdSize, body.size() + kCmdSize);
  TaskContext ctx{worker, &link, cmd, payload};
  spec->handler(ctx, body);
  if (gWaitingPerLink.count(link.id)) {
    link.pause();
  } else if (worker.peers->queuedBytes() > PeerLinks::kPeerHighWater) {
    link.pause();  // backpressure: other workers take our forwarded commands too slowly
    gWaitingForPeers.push_back(link.id);
  }
  return true;
}

void runForwardedTask(Worker& worker, std::string_view payload) {
  uint32_t cmd;
  std::string_view body;
  if (!splitCommand(payload, cmd, body)) return;
  const CmdSpec* spec = findCommand(cmd);
  if (!spec) return;
  TaskContext ctx{worker, nullptr, cmd, payload};
  spec->handler(ctx, body);
}

void onPeerAck(Worker& worker, uint32_t requestId) {
  release(worker, requestId);
}

void onPeerGone(Worker& worker, int serial) {
  std::vector<uint32_t> ids;
  for (const auto& [id, w] : gWaiting)
    if (w.serial == serial) ids.push_back(id);
  for (uint32_t id : ids) release(worker, id);
}

void onPeersDrained(Worker& worker) {
  std::vector<uint32_t> links;
  links.swap(gWaitingForPeers);
  for (uint32_t id : links) resumeLater(worker, id);
}

bool taskLinkAwaitingAck(uint32_t linkId) {
  return gWaitingPerLink.count(linkId) != 0;
}

void onTaskLinkClosed(uint32_t linkId) {
  if (!gWaitingPerLink.erase(linkId)) return;
  for (auto it = gWaiting.begin(); it != gWaiting.end();)
    it = it->second.linkId == linkId ? gWaiting.erase(it) : std::next(it);
}

}  // namespace netsvr
