// Worker port (PROTOCOL.md §3): Register and Unregister. Everything else closes the link.
#include "cmd.pb.h"
#include "common/log.hpp"
#include "common/uniqid.hpp"
#include "registerReq.pb.h"
#include "registerResp.pb.h"
#include "unRegisterReq.pb.h"
#include "unRegisterResp.pb.h"
#include "worker/biz_link.hpp"
#include "worker/worker.hpp"

namespace netsvr {
namespace {

constexpr int32_t kEventBits =
    int32_t(Event::OnOpen) | int32_t(Event::OnClose) | int32_t(Event::OnMessage);

void replyRegister(BizLink& link, netsvr::registerResp::RegisterRespCode code,
                   const std::string& connId) {
  netsvr::registerResp::RegisterResp resp;
  resp.set_code(code);
  resp.set_message(netsvr::registerResp::RegisterRespCode_Name(code));
  if (!connId.empty()) resp.set_connid(connId);
  link.send(encodePacket(netsvr::cmd::Register, resp.SerializeAsString()));
}

void onRegister(BizLinks& links, BizLink& link, std::string_view body) {
  using netsvr::registerResp::RegisterRespCode;
  netsvr::registerReq::RegisterReq req;
  if (!req.ParseFromArray(body.data(), int(body.size()))) {
    replyRegister(link, netsvr::registerResp::UnmarshalError, "");
    return;
  }
  if ((req.events() & kEventBits) == 0) {
    replyRegister(link, netsvr::registerResp::InvalidEvent, "");
    return;
  }
  if (link.events > 0) {
    replyRegister(link, netsvr::registerResp::DuplicateRegister, "");
    return;
  }
  const Config& c = links.worker.config;
  link.events = req.events();
  link.connId = formatConnId(c.worker.address.ip, c.worker.address.port, link.peerIp, link.peerPort,
                             link.acceptedAt);
  // Join the registry before answering: a business that opens a client as soon as it reads
  // the answer must find itself registered on every worker. The answer still precedes every
  // event on this link: events reach it only through this loop, after this function returns.
  if (!links.addToRegistry(link)) {
    // No RegisterRespCode says so, and a Success would leave the business waiting for events
    // that never come: close, and let the SDK retry once others have left.
    LOG_WARN("business link %u: registry full (%d links); closing", link.id, shm::kMaxBizLinks);
    link.events = 0;
    link.close();
    return;
  }
  replyRegister(link, netsvr::registerResp::Success, link.connId);
  LOG_INFO("business link %u registered for events %d (connId %s)", link.id, link.events,
           link.connId.c_str());
}

void onUnregister(BizLinks& links, BizLink& link, std::string_view body) {
  netsvr::unRegisterReq::UnRegisterReq req;
  if (!req.ParseFromArray(body.data(), int(body.size()))) {
    LOG_WARN("business link %u: undecodable UnRegisterReq ignored", link.id);
    return;
  }
  if (links.removeByConnId(req.connid()))
    LOG_INFO("business link with connId %s unregistered", req.connid().c_str());
  link.send(encodePacket(netsvr::cmd::Unregister, std::string_view()));
}

}  // namespace

bool handleWorkerPortPacket(BizLinks& links, BizLink& link, uint32_t cmd, std::string_view body) {
  switch (cmd) {
    case netsvr::cmd::Register:
      onRegister(links, link, body);
      return true;
    case netsvr::cmd::Unregister:
      onUnregister(links, link, body);
      return true;
    default:
      return false;
  }
}

}  // namespace netsvr
