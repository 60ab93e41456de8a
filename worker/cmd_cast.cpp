// Fire-and-forget deliveries (PROTOCOL.md §4.4, class A). Each crosses once to each worker that
// holds targets, and each worker frames a shared message once for all of its clients.
#include <unordered_set>

#include "broadcast.pb.h"
#include "common/bulk_pairs.hpp"
#include "multicast.pb.h"
#include "multicastByCustomerId.pb.h"
#include "singleCast.pb.h"
#include "singleCastBulk.pb.h"
#include "singleCastBulkByCustomerId.pb.h"
#include "singleCastByCustomerId.pb.h"
#include "topicPublish.pb.h"
#include "topicPublishBulk.pb.h"
#include "worker/task_context.hpp"

namespace netsvr {
namespace {

// Owns one reference to a shared message.
struct Shared {
  explicit Shared(std::string_view data) : message(OutMessage::make(data)) {}
  ~Shared() { message->release(); }
  Shared(const Shared&) = delete;
  Shared& operator=(const Shared&) = delete;
  OutMessage* message;
};

}  // namespace

void cmdBroadcast(TaskContext& ctx, std::string_view body) {
  netsvr::broadcast::Broadcast req;
  if (!parseBody(req, body) || req.data().empty()) return;
  if (ctx.routing())
    ctx.forwardWhere([](const shm::TableData& t) { return !t.conns.empty(); }, false);
  Shared shared(req.data());
  ctx.worker.ws->forEachOpen([&](Conn& conn) { ctx.worker.ws->deliver(conn, shared.message); });
}

void cmdSingleCast(TaskContext& ctx, std::string_view body) {
  netsvr::singleCast::SingleCast req;
  if (!parseBody(req, body) || req.uniqid().empty() || req.data().empty()) return;
  ctx.forwardToOwners(std::array<std::string_view, 1>{req.uniqid()}, false);
  if (Conn* conn = localConn(ctx.worker, req.uniqid())) ctx.worker.ws->deliver(*conn, req.data());
}

void cmdMulticast(TaskContext& ctx, std::string_view body) {
  netsvr::multicast::Multicast req;
  if (!parseBody(req, body) || req.data().empty() || req.uniqids().empty()) return;
  ctx.forwardToOwners(req.uniqids(), false);
  Shared shared(req.data());
  for (const auto& id : req.uniqids())  // duplicates are delivered twice, as in Go
    if (Conn* conn = localConn(ctx.worker, id)) ctx.worker.ws->deliver(*conn, shared.message);
}

void cmdMulticastByCustomerId(TaskContext& ctx, std::string_view body) {
  netsvr::multicastByCustomerId::MulticastByCustomerId req;
  if (!parseBody(req, body) || req.data().empty()) return;
  ctx.forwardWhere(
      [&](const shm::TableData& t) { return anyMayBeIn(t.customerNames, req.customerids()); },
      false);
  std::vector<std::string_view> distinct;
  std::unordered_set<std::string_view> seen;
  for (const auto& id : req.customerids())
    if (!id.empty() && seen.insert(id).second) distinct.push_back(id);
  Shared shared(req.data());
  for (auto id : distinct)
    forEachLocalOfCustomer(ctx.worker, id,
                           [&](Conn& conn) { ctx.worker.ws->deliver(conn, shared.message); });
}

void cmdSingleCastByCustomerId(TaskContext& ctx, std::string_view body) {
  netsvr::singleCastByCustomerId::SingleCastByCustomerId req;
  if (!parseBody(req, body) || req.customerid().empty() || req.data().empty()) return;
  ctx.forwardWhere(
      [&](const shm::TableData& t) {
        return anyMayBeIn(t.customerNames, std::array<std::string_view, 1>{req.customerid()});
      },
      false);
  Shared shared(req.data());
  forEachLocalOfCustomer(ctx.worker, req.customerid(),
                         [&](Conn& conn) { ctx.worker.ws->deliver(conn, shared.message); });
}

void cmdSingleCastBulk(TaskContext& ctx, std::string_view body) {
  netsvr::singleCastBulk::SingleCastBulk req;
  if (!parseBody(req, body)) return;
  ctx.forwardToOwners(req.uniqids(), false);
  forEachBulkPair(req.uniqids(), req.data(), [&](const std::string& id, const std::string& data) {
    Conn* conn = localConn(ctx.worker, id);
    if (!conn) return false;
    ctx.worker.ws->deliver(*conn, data);
    return conn->phase == Conn::Open;  // rule 1 stops at the first failed send
  });
}

void cmdSingleCastBulkByCustomerId(TaskContext& ctx, std::string_view body) {
  netsvr::singleCastBulkByCustomerId::SingleCastBulkByCustomerId req;
  if (!parseBody(req, body)) return;
  ctx.forwardWhere(
      [&](const shm::TableData& t) { return anyMayBeIn(t.customerNames, req.customerids()); },
      false);
  forEachBulkPair(
      req.customerids(), req.data(), [&](const std::string& id, const std::string& data) {
        Shared shared(data);
        forEachLocalOfCustomer(ctx.worker, id,
                               [&](Conn& conn) { ctx.worker.ws->deliver(conn, shared.message); });
        return true;
      });
}

void cmdTopicPublish(TaskContext& ctx, std::string_view body) {
  netsvr::topicPublish::TopicPublish req;
  if (!parseBody(req, body) || req.data().empty()) return;
  ctx.forwardWhere([&](const shm::TableData& t) { return anyMayBeIn(t.topicNames, req.topics()); },
                   false);
  Shared shared(req.data());
  for (const auto& topic : req.topics())  // no dedup across topics, as in Go
    forEachLocalOfTopic(ctx.worker, topic,
                        [&](Conn& conn) { ctx.worker.ws->deliver(conn, shared.message); });
}

void cmdTopicPublishBulk(TaskContext& ctx, std::string_view body) {
  netsvr::topicPublishBulk::TopicPublishBulk req;
  if (!parseBody(req, body)) return;
  ctx.forwardWhere([&](const shm::TableData& t) { return anyMayBeIn(t.topicNames, req.topics()); },
                   false);
  forEachBulkPair(req.topics(), req.data(), [&](const std::string& topic, const std::string& data) {
    Shared shared(data);
    forEachLocalOfTopic(ctx.worker, topic,
                        [&](Conn& conn) { ctx.worker.ws->deliver(conn, shared.message); });
    return true;
  });
}

}  // namespace netsvr
