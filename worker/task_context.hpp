// What a task-command handler works with, and the routing helpers all handlers share.
//
// A handler runs in one of two roles. On the worker that received the command from a business
// link it *routes*: it forwards the payload, once, to each other worker that has targets, and
// acts on its own clients. On a worker that received the payload from a peer it only acts on
// its own clients. Writes that change another worker's table are acknowledged by that worker,
// and the business link is paused until every acknowledgement is in (read-your-writes).
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/packet.hpp"
#include "shm/conn_table.hpp"
#include "worker/biz_link.hpp"
#include "worker/worker.hpp"

namespace netsvr {

struct Conn;

struct TaskContext {
  Worker& worker;
  BizLink* link;  // nullptr when a peer forwarded the payload
  uint32_t cmd;
  std::string_view payload;  // cmd + body, forwarded as is

  bool routing() const { return link != nullptr; }
  void reply(const google::protobuf::MessageLite& message) const {
    if (link) link->send(encodePacket(cmd, message.SerializeAsString()));
  }
  // Forwards the payload to `serial` (never to this worker); `ack`: wait for it to be applied.
  void forward(int serial, bool ack);
  // Forwards to every other live worker whose table satisfies pred(const shm::TableData&).
  template <class Pred>
  void forwardWhere(Pred&& pred, bool ack);
  // Forwards to the owners (other than this worker) of the listed uniqIds.
  template <class Range>
  void forwardToOwners(const Range& uniqIds, bool ack);
};

// Handler families (cmd_cast.cpp, cmd_conn.cpp, cmd_query.cpp).
void cmdBroadcast(TaskContext&, std::string_view body);
void cmdMulticast(TaskContext&, std::string_view body);
void cmdMulticastByCustomerId(TaskContext&, std::string_view body);
void cmdSingleCast(TaskContext&, std::string_view body);
void cmdSingleCastBulk(TaskContext&, std::string_view body);
void cmdSingleCastByCustomerId(TaskContext&, std::string_view body);
void cmdSingleCastBulkByCustomerId(TaskContext&, std::string_view body);
void cmdTopicPublish(TaskContext&, std::string_view body);
void cmdTopicPublishBulk(TaskContext&, std::string_view body);

void cmdConnInfoUpdate(TaskContext&, std::string_view body);
void cmdConnInfoDelete(TaskContext&, std::string_view body);
void cmdTopicSubscribe(TaskContext&, std::string_view body);
void cmdTopicUnsubscribe(TaskContext&, std::string_view body);
void cmdTopicDelete(TaskContext&, std::string_view body);
void cmdForceOffline(TaskContext&, std::string_view body);
void cmdForceOfflineByCustomerId(TaskContext&, std::string_view body);
void cmdForceOfflineGuest(TaskContext&, std::string_view body);

void cmdCheckOnline(TaskContext&, std::string_view body);
void cmdCustomerIdList(TaskContext&, std::string_view body);
void cmdCustomerIdCount(TaskContext&, std::string_view body);
void cmdUniqIdList(TaskContext&, std::string_view body);
void cmdUniqIdCount(TaskContext&, std::string_view body);
void cmdTopicList(TaskContext&, std::string_view body);
void cmdTopicCount(TaskContext&, std::string_view body);
void cmdTopicUniqIdList(TaskContext&, std::string_view body);
void cmdTopicUniqIdCount(TaskContext&, std::string_view body);
void cmdTopicCustomerIdList(TaskContext&, std::string_view body);
void cmdTopicCustomerIdToUniqIdsList(TaskContext&, std::string_view body);
void cmdTopicCustomerIdCount(TaskContext&, std::string_view body);
void cmdConnInfo(TaskContext&, std::string_view body);
void cmdConnInfoByCustomerId(TaskContext&, std::string_view body);
void cmdMetrics(TaskContext&, std::string_view body);
void cmdLimit(TaskContext&, std::string_view body);

template <class M>
bool parseBody(M& message, std::string_view body) {
  return message.ParseFromArray(body.data(), int(body.size()));
}

// --- local helpers (this worker's clients) -------------------------------------------------

// Calls f(Conn&) for each open local connection bound to customerId.
template <class F>
void forEachLocalOfCustomer(Worker& w, std::string_view customerId, F&& f);
// Calls f(Conn&) for each open local subscriber of topic.
template <class F>
void forEachLocalOfTopic(Worker& w, std::string_view topic, F&& f);

}  // namespace netsvr

#include "worker/task_context_inl.hpp"
