// Commands that change connections (PROTOCOL.md §4.4, class B). They run on the owner of each
// connection; the routing worker waits for the owners' acknowledgements before it reads the
// link's next command, so a business always reads its own writes.
#include "connInfoDelete.pb.h"
#include "connInfoUpdate.pb.h"
#include "forceOffline.pb.h"
#include "forceOfflineByCustomerId.pb.h"
#include "forceOfflineGuest.pb.h"
#include "topicDelete.pb.h"
#include "topicSubscribe.pb.h"
#include "topicUnsubscribe.pb.h"
#include "worker/task_context.hpp"

#include <algorithm>

namespace netsvr {
namespace {

constexpr uint16_t kPolicyViolation = 1008;

std::vector<std::string_view> views(const google::protobuf::RepeatedPtrField<std::string>& list) {
  return std::vector<std::string_view>(list.begin(), list.end());
}

void kick(Worker& w, Conn& conn, const std::string& data, const char* reason) {
  if (!data.empty()) w.ws->deliver(conn, data);
  w.ws->closePolitely(conn, kPolicyViolation, reason);
}

// A delayed ForceOfflineGuest: the lookup happens when it fires.
struct GuestTimer {
  uv_timer_t timer;
  Worker* worker;
  std::vector<std::string> uniqIds;
  std::string data;
};

void forceGuestsOffline(Worker& w, const std::vector<std::string>& uniqIds,
                        const std::string& data) {
  for (const auto& id : uniqIds) {
    Conn* conn = localConn(w, id);
    if (!conn) continue;
    const auto& conns = w.table->unlockedData().conns;
    auto it = conns.find(conn->key);
    if (it == conns.end() || !it->second.session.empty() || !it->second.customerId.empty())
      continue;
    kick(w, *conn, data, "forceOfflineGuest");
  }
}

}  // namespace

void cmdConnInfoUpdate(TaskContext& ctx, std::string_view body) {
  netsvr::connInfoUpdate::ConnInfoUpdate req;
  if (!parseBody(req, body) || req.uniqid().empty()) return;
  ctx.forwardToOwners(std::array<std::string_view, 1>{req.uniqid()}, true);
  Conn* conn = localConn(ctx.worker, req.uniqid());
  if (!conn) return;
  auto& table = *ctx.worker.table;
  if (!req.newsession().empty()) table.setSession(conn->key, req.newsession());
  if (!req.newcustomerid().empty()) table.setCustomerId(conn->key, req.newcustomerid());
  if (!req.newtopics().empty()) {  // replace the topics
    table.unsubscribe(conn->key, {}, true);
    table.subscribe(conn->key, views(req.newtopics()));
  }
  if (!req.data().empty()) ctx.worker.ws->deliver(*conn, req.data());
}

void cmdConnInfoDelete(TaskContext& ctx, std::string_view body) {
  netsvr::connInfoDelete::ConnInfoDelete req;
  if (!parseBody(req, body) || req.uniqid().empty()) return;
  ctx.forwardToOwners(std::array<std::string_view, 1>{req.uniqid()}, true);
  Conn* conn = localConn(ctx.worker, req.uniqid());
  if (!conn) return;
  auto& table = *ctx.worker.table;
  if (req.deltopic()) table.unsubscribe(conn->key, {}, true);
  if (req.delsession()) table.setSession(conn->key, "");
  if (req.delcustomerid()) table.setCustomerId(conn->key, "");
  if (!req.data().empty()) ctx.worker.ws->deliver(*conn, req.data());
}

void cmdTopicSubscribe(TaskContext& ctx, std::string_view body) {
  netsvr::topicSubscribe::TopicSubscribe req;
  if (!parseBody(req, body) || req.uniqid().empty() || req.topics().empty()) return;
  ctx.forwardToOwners(std::array<std::string_view, 1>{req.uniqid()}, true);
  Conn* conn = localConn(ctx.worker, req.uniqid());
  if (!conn) return;
  ctx.worker.table->subscribe(conn->key, views(req.topics()));
  if (!req.data().empty()) ctx.worker.ws->deliver(*conn, req.data());
}

void cmdTopicUnsubscribe(TaskContext& ctx, std::string_view body) {
  netsvr::topicUnsubscribe::TopicUnsubscribe req;
  if (!parseBody(req, body) || req.uniqid().empty() || req.topics().empty()) return;
  ctx.forwardToOwners(std::array<std::string_view, 1>{req.uniqid()}, true);
  Conn* conn = localConn(ctx.worker, req.uniqid());
  if (!conn) return;
  ctx.worker.table->unsubscribe(conn->key, views(req.topics()), false);
  if (!req.data().empty()) ctx.worker.ws->deliver(*conn, req.data());
}

void cmdTopicDelete(TaskContext& ctx, std::string_view body) {
  netsvr::topicDelete::TopicDelete req;
  if (!parseBody(req, body) || req.topics().empty()) return;
  ctx.forwardWhere([&](const shm::TableData& t) { return anyMayBeIn(t.topicNames, req.topics()); },
                   true);
  std::vector<uint64_t> lost;
  for (const auto& topic : req.topics())
    if (!topic.empty()) ctx.worker.table->deleteTopic(topic, lost);
  if (req.data().empty()) return;
  std::sort(lost.begin(), lost.end());
  lost.erase(std::unique(lost.begin(), lost.end()), lost.end());  // data once per connection
  for (uint64_t key : lost)
    if (Conn* conn = ctx.worker.ws->findOpen(key)) ctx.worker.ws->deliver(*conn, req.data());
}

void cmdForceOffline(TaskContext& ctx, std::string_view body) {
  netsvr::forceOffline::ForceOffline req;
  if (!parseBody(req, body) || req.uniqids().empty()) return;
  ctx.forwardToOwners(req.uniqids(), true);
  for (const auto& id : req.uniqids())
    if (Conn* conn = localConn(ctx.worker, id)) kick(ctx.worker, *conn, req.data(), "forceOffline");
}

void cmdForceOfflineByCustomerId(TaskContext& ctx, std::string_view body) {
  netsvr::forceOfflineByCustomerId::ForceOfflineByCustomerId req;
  if (!parseBody(req, body) || req.customerids().empty()) return;
  ctx.forwardWhere(
      [&](const shm::TableData& t) { return anyMayBeIn(t.customerNames, req.customerids()); },
      true);
  for (const auto& id : req.customerids())
    forEachLocalOfCustomer(ctx.worker, id, [&](Conn& conn) {
      kick(ctx.worker, conn, req.data(), "forceOfflineByCustomerId");
    });
}

void cmdForceOfflineGuest(TaskContext& ctx, std::string_view body) {
  netsvr::forceOfflineGuest::ForceOfflineGuest req;
  if (!parseBody(req, body) || req.uniqids().empty()) return;
  ctx.forwardToOwners(req.uniqids(), true);
  std::vector<std::string> mine;
  for (const auto& id : req.uniqids()) {
    uint64_t key;
    if (ctx.worker.router->ownerOf(id, key) == ctx.worker.serial) mine.push_back(id);
  }
  if (mine.empty()) return;
  if (req.delay() <= 0) {
    forceGuestsOffline(ctx.worker, mine, req.data());
    return;
  }
  auto* pending = new GuestTimer{{}, &ctx.worker, std::move(mine), req.data()};
  uv_timer_init(ctx.worker.loop, &pending->timer);
  pending->timer.data = pending;
  uv_unref(reinterpret_cast<uv_handle_t*>(&pending->timer));  // does not hold up a stop
  uv_timer_start(
      &pending->timer,
      [](uv_timer_t* t) {
        auto* p = static_cast<GuestTimer*>(t->data);
        if (!p->worker->stopping) forceGuestsOffline(*p->worker, p->uniqIds, p->data);
        uv_close(reinterpret_cast<uv_handle_t*>(t),
                 [](uv_handle_t* h) { delete static_cast<GuestTimer*>(h->data); });
      },
      uint64_t(req.delay()) * 1000, 0);
}

}  // namespace netsvr
