// Task port (PROTOCOL.md §4): one table maps every Cmd to its handler. A handler runs either
// for a business link (it routes: acts on this worker's clients and forwards to the owners of
// the others) or for a peer that forwarded the payload (it acts on this worker's clients only).
#include <google/protobuf/message_lite.h>

#include "broadcast.pb.h"
#include "cmd.pb.h"
#include "common/log.hpp"
#include "singleCast.pb.h"
#include "uniqIdCountResp.pb.h"
#include "uniqIdListResp.pb.h"
#include "worker/biz_link.hpp"
#include "worker/peer_links.hpp"
#include "worker/router.hpp"
#include "worker/worker.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {
namespace {

struct TaskContext {
  Worker& worker;
  BizLink* link;             // nullptr when a peer forwarded the payload
  uint32_t cmd;
  std::string_view payload;  // cmd + body, forwarded as is
  bool forwarded() const { return link == nullptr; }
  void reply(const google::protobuf::MessageLite& message) const {
    if (link) link->send(encodePacket(cmd, message.SerializeAsString()));
  }
};

template <class M>
bool parse(M& message, std::string_view body) {
  return message.ParseFromArray(body.data(), int(body.size()));
}

// --- fire-and-forget ----------------------------------------------------------------------

void singleCast(TaskContext& ctx, std::string_view body) {
  netsvr::singleCast::SingleCast req;
  if (!parse(req, body) || req.uniqid().empty() || req.data().empty()) return;
  uint64_t key;
  int owner = ctx.worker.router->ownerOf(req.uniqid(), key);
  if (owner < 0) return;
  if (owner == ctx.worker.serial) {
    if (Conn* conn = ctx.worker.ws->findOpen(key)) ctx.worker.ws->deliver(*conn, req.data());
  } else if (!ctx.forwarded() && ctx.worker.router->isLive(owner)) {
    ctx.worker.peers->sendTask(owner, ctx.payload);
  }
}

void broadcast(TaskContext& ctx, std::string_view body) {
  netsvr::broadcast::Broadcast req;
  if (!parse(req, body) || req.data().empty()) return;
  OutMessage* message = OutMessage::make(req.data());  // framed once for every client
  ctx.worker.ws->forEachOpen([&](Conn& conn) { ctx.worker.ws->deliver(conn, message); });
  message->release();
  if (!ctx.forwarded()) ctx.worker.router->forwardToOthers(ctx.payload);
}

// --- request/response ----------------------------------------------------------------------

void uniqIdCount(TaskContext& ctx, std::string_view) {
  int64_t count = 0;
  ctx.worker.router->forEachTable([&](int, const shm::TableData& t) { count += int64_t(t.conns.size()); });
  netsvr::uniqIdCountResp::UniqIdCountResp resp;
  resp.set_count(int32_t(count));
  ctx.reply(resp);
}

void uniqIdList(TaskContext& ctx, std::string_view) {
  netsvr::uniqIdListResp::UniqIdListResp resp;
  ctx.worker.router->forEachTable([&](int, const shm::TableData& t) {
    for (const auto& [key, rec] : t.conns) resp.add_uniqids(ctx.worker.uniqIdOf(key));
  });
  ctx.reply(resp);
}

void notYetImplemented(TaskContext& ctx, std::string_view) {
  LOG_WARN("task cmd %u is not implemented yet; ignored", ctx.cmd);
}

using Handler = void (*)(TaskContext&, std::string_view body);
struct CmdSpec {
  uint32_t cmd;
  Handler handler;
};

// Every command of the task port. Anything else closes the link (§2.3).
const CmdSpec kCommands[] = {
    {netsvr::cmd::ConnInfoUpdate, notYetImplemented},
    {netsvr::cmd::ConnInfoDelete, notYetImplemented},
    {netsvr::cmd::Broadcast, broadcast},
    {netsvr::cmd::Multicast, notYetImplemented},
    {netsvr::cmd::MulticastByCustomerId, notYetImplemented},
    {netsvr::cmd::SingleCast, singleCast},
    {netsvr::cmd::SingleCastBulk, notYetImplemented},
    {netsvr::cmd::SingleCastByCustomerId, notYetImplemented},
    {netsvr::cmd::SingleCastBulkByCustomerId, notYetImplemented},
    {netsvr::cmd::TopicSubscribe, notYetImplemented},
    {netsvr::cmd::TopicUnsubscribe, notYetImplemented},
    {netsvr::cmd::TopicDelete, notYetImplemented},
    {netsvr::cmd::TopicPublish, notYetImplemented},
    {netsvr::cmd::TopicPublishBulk, notYetImplemented},
    {netsvr::cmd::ForceOffline, notYetImplemented},
    {netsvr::cmd::ForceOfflineByCustomerId, notYetImplemented},
    {netsvr::cmd::ForceOfflineGuest, notYetImplemented},
    {netsvr::cmd::CheckOnline, notYetImplemented},
    {netsvr::cmd::CustomerIdList, notYetImplemented},
    {netsvr::cmd::CustomerIdCount, notYetImplemented},
    {netsvr::cmd::UniqIdList, uniqIdList},
    {netsvr::cmd::UniqIdCount, uniqIdCount},
    {netsvr::cmd::TopicList, notYetImplemented},
    {netsvr::cmd::TopicCount, notYetImplemented},
    {netsvr::cmd::TopicUniqIdList, notYetImplemented},
    {netsvr::cmd::TopicUniqIdCount, notYetImplemented},
    {netsvr::cmd::TopicCustomerIdList, notYetImplemented},
    {netsvr::cmd::TopicCustomerIdToUniqIdsList, notYetImplemented},
    {netsvr::cmd::TopicCustomerIdCount, notYetImplemented},
    {netsvr::cmd::ConnInfo, notYetImplemented},
    {netsvr::cmd::ConnInfoByCustomerId, notYetImplemented},
    {netsvr::cmd::Metrics, notYetImplemented},
    {netsvr::cmd::Limit, notYetImplemented},
};

const CmdSpec* findCommand(uint32_t cmd) {
  for (const auto& spec : kCommands)
    if (spec.cmd == cmd) return &spec;
  return nullptr;
}

}  // namespace

bool handleTaskPacket(Worker& worker, BizLink& link, uint32_t cmd, std::string_view body) {
  const CmdSpec* spec = findCommand(cmd);
  if (!spec) return false;
  std::string_view payload(body.data() - kCmdSize, body.size() + kCmdSize);
  TaskContext ctx{worker, &link, cmd, payload};
  spec->handler(ctx, body);
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

}  // namespace netsvr
