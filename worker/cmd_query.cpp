// Request/response commands (PROTOCOL.md §4.4, class C). They read every live worker's table
// (this worker's without a lock, the others' under their robust locks) and answer at once.
#include <ctime>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "checkOnlineReq.pb.h"
#include "checkOnlineResp.pb.h"
#include "connInfoByCustomerIdReq.pb.h"
#include "connInfoByCustomerIdResp.pb.h"
#include "connInfoReq.pb.h"
#include "connInfoResp.pb.h"
#include "customerIdCountResp.pb.h"
#include "customerIdListResp.pb.h"
#include "limitReq.pb.h"
#include "limitResp.pb.h"
#include "metricsResp.pb.h"
#include "topicCountResp.pb.h"
#include "topicCustomerIdCountReq.pb.h"
#include "topicCustomerIdCountResp.pb.h"
#include "topicCustomerIdListReq.pb.h"
#include "topicCustomerIdListResp.pb.h"
#include "topicCustomerIdToUniqIdsListReq.pb.h"
#include "topicCustomerIdToUniqIdsListResp.pb.h"
#include "topicListResp.pb.h"
#include "topicUniqIdCountReq.pb.h"
#include "topicUniqIdCountResp.pb.h"
#include "topicUniqIdListReq.pb.h"
#include "topicUniqIdListResp.pb.h"
#include "uniqIdCountResp.pb.h"
#include "uniqIdListResp.pb.h"
#include "worker/task_context.hpp"

namespace netsvr {
namespace {

using shm::TableData;

const shm::KeyGroup* findIn(const shm::IndexMap& index, std::string_view name) {
  auto it = index.find(name, shm::StableHash(), shm::StringEqual());
  return it == index.end() ? nullptr : &it->second;
}

template <class S>  // a shm::ShmString or a shm::TopicRef
std::string str(const S& s) {
  return std::string(s.data(), s.size());
}

// Distinct non-empty customerIds of a topic's subscribers in one table.
void customersOfTopic(const TableData& t, std::string_view topic, std::set<std::string>& out) {
  const shm::KeyGroup* keys = findIn(t.byTopic, topic);
  if (!keys) return;
  for (uint64_t key : *keys) {
    auto it = t.conns.find(key);
    if (it != t.conns.end() && !it->second.customerId.empty())
      out.insert(str(it->second.customerId));
  }
}

// Topics that exist anywhere, with their distinct customerIds over all workers.
std::map<std::string, std::set<std::string>> topicCustomers(TaskContext& ctx,
                                                            const std::vector<std::string>& topics,
                                                            bool all) {
  std::map<std::string, std::set<std::string>> result;
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    if (all) {
      for (const auto& [name, keys] : t.byTopic)
        customersOfTopic(t, shm::view(name), result[str(name)]);
      return;
    }
    for (const auto& topic : topics)
      if (!topic.empty() && findIn(t.byTopic, topic)) customersOfTopic(t, topic, result[topic]);
  });
  return result;
}

std::vector<std::string> toVector(const google::protobuf::RepeatedPtrField<std::string>& list) {
  return std::vector<std::string>(list.begin(), list.end());
}

}  // namespace

void cmdCheckOnline(TaskContext& ctx, std::string_view body) {
  netsvr::checkOnlineReq::CheckOnlineReq req;
  if (!parseBody(req, body)) return;
  std::vector<bool> found(size_t(req.uniqids_size()), false);
  ctx.worker.router->forEachTable([&](int serial, const TableData& t) {
    for (int i = 0; i < req.uniqids_size(); ++i) {
      uint64_t key;
      if (ctx.worker.router->ownerOf(req.uniqids(i), key) == serial && t.conns.count(key))
        found[size_t(i)] = true;
    }
  });
  netsvr::checkOnlineResp::CheckOnlineResp resp;
  for (int i = 0; i < req.uniqids_size(); ++i)
    if (found[size_t(i)]) resp.add_uniqids(req.uniqids(i));
  ctx.reply(resp);
}

// The distinct names of one index over all workers.
static std::set<std::string> allNames(TaskContext& ctx, shm::IndexMap TableData::*index) {
  std::set<std::string> names;
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    for (const auto& [name, keys] : t.*index) names.insert(str(name));
  });
  return names;
}

void cmdCustomerIdList(TaskContext& ctx, std::string_view) {
  netsvr::customerIdListResp::CustomerIdListResp resp;
  for (const auto& id : allNames(ctx, &TableData::byCustomer)) resp.add_customerids(id);
  ctx.reply(resp);
}

void cmdCustomerIdCount(TaskContext& ctx, std::string_view) {
  netsvr::customerIdCountResp::CustomerIdCountResp resp;
  resp.set_count(int32_t(allNames(ctx, &TableData::byCustomer).size()));
  ctx.reply(resp);
}

void cmdUniqIdList(TaskContext& ctx, std::string_view) {
  netsvr::uniqIdListResp::UniqIdListResp resp;
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    for (const auto& [key, rec] : t.conns) resp.add_uniqids(ctx.worker.uniqIdOf(key));
  });
  ctx.reply(resp);
}

void cmdUniqIdCount(TaskContext& ctx, std::string_view) {
  int64_t count = 0;
  ctx.worker.router->forEachTable(
      [&](int, const TableData& t) { count += int64_t(t.conns.size()); });
  netsvr::uniqIdCountResp::UniqIdCountResp resp;
  resp.set_count(int32_t(count));
  ctx.reply(resp);
}

void cmdTopicList(TaskContext& ctx, std::string_view) {
  netsvr::topicListResp::TopicListResp resp;
  for (const auto& topic : allNames(ctx, &TableData::byTopic)) resp.add_topics(topic);
  ctx.reply(resp);
}

void cmdTopicCount(TaskContext& ctx, std::string_view) {
  netsvr::topicCountResp::TopicCountResp resp;
  resp.set_count(int32_t(allNames(ctx, &TableData::byTopic).size()));
  ctx.reply(resp);
}

// Distinct non-empty topics of a request, in a stable order.
static std::set<std::string> distinctTopics(
    const google::protobuf::RepeatedPtrField<std::string>& topics) {
  std::set<std::string> out;
  for (const auto& t : topics)
    if (!t.empty()) out.insert(t);
  return out;
}

void cmdTopicUniqIdList(TaskContext& ctx, std::string_view body) {
  netsvr::topicUniqIdListReq::TopicUniqIdListReq req;
  if (!parseBody(req, body)) return;
  auto topics = distinctTopics(req.topics());
  netsvr::topicUniqIdListResp::TopicUniqIdListResp resp;
  auto& items = *resp.mutable_items();
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    for (const auto& topic : topics) {
      const shm::KeyGroup* keys = findIn(t.byTopic, topic);
      if (!keys) continue;
      auto& item = items[topic];
      for (uint64_t key : *keys) item.add_uniqids(ctx.worker.uniqIdOf(key));
    }
  });
  ctx.reply(resp);
}

void cmdTopicUniqIdCount(TaskContext& ctx, std::string_view body) {
  netsvr::topicUniqIdCountReq::TopicUniqIdCountReq req;
  if (!parseBody(req, body)) return;
  auto topics = distinctTopics(req.topics());
  netsvr::topicUniqIdCountResp::TopicUniqIdCountResp resp;
  auto& items = *resp.mutable_items();
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    if (req.countall()) {
      for (const auto& [name, keys] : t.byTopic) items[str(name)] += int32_t(keys.size());
      return;
    }
    for (const auto& topic : topics)
      if (const shm::KeyGroup* keys = findIn(t.byTopic, topic))
        items[topic] += int32_t(keys->size());
  });
  ctx.reply(resp);
}

void cmdTopicCustomerIdList(TaskContext& ctx, std::string_view body) {
  netsvr::topicCustomerIdListReq::TopicCustomerIdListReq req;
  if (!parseBody(req, body)) return;
  netsvr::topicCustomerIdListResp::TopicCustomerIdListResp resp;
  for (const auto& [topic, customers] : topicCustomers(ctx, toVector(req.topics()), false)) {
    auto& item = (*resp.mutable_items())[topic];  // present even with no customerIds
    for (const auto& id : customers) item.add_customerids(id);
  }
  ctx.reply(resp);
}

void cmdTopicCustomerIdCount(TaskContext& ctx, std::string_view body) {
  netsvr::topicCustomerIdCountReq::TopicCustomerIdCountReq req;
  if (!parseBody(req, body)) return;
  netsvr::topicCustomerIdCountResp::TopicCustomerIdCountResp resp;
  for (const auto& [topic, customers] : topicCustomers(ctx, toVector(req.topics()), req.countall()))
    (*resp.mutable_items())[topic] = int32_t(customers.size());
  ctx.reply(resp);
}

void cmdTopicCustomerIdToUniqIdsList(TaskContext& ctx, std::string_view body) {
  netsvr::topicCustomerIdToUniqIdsListReq::TopicCustomerIdToUniqIdsListReq req;
  if (!parseBody(req, body)) return;
  auto byTopic = topicCustomers(ctx, toVector(req.topics()), false);
  // Every connection of each of those customers, subscribed to the topic or not (§4.4).
  std::map<std::string, std::vector<std::string>> connsOf;
  for (const auto& [topic, customers] : byTopic)
    for (const auto& id : customers) connsOf[id];
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    for (auto& [id, list] : connsOf)
      if (const shm::KeyGroup* keys = findIn(t.byCustomer, id))
        for (uint64_t key : *keys) list.push_back(ctx.worker.uniqIdOf(key));
  });
  netsvr::topicCustomerIdToUniqIdsListResp::TopicCustomerIdToUniqIdsListResp resp;
  for (const auto& [topic, customers] : byTopic) {
    auto& inner = *(*resp.mutable_items())[topic].mutable_items();
    for (const auto& id : customers)
      for (const auto& uniqId : connsOf[id]) inner[id].add_uniqids(uniqId);
  }
  ctx.reply(resp);
}

void cmdConnInfo(TaskContext& ctx, std::string_view body) {
  netsvr::connInfoReq::ConnInfoReq req;
  if (!parseBody(req, body)) return;
  netsvr::connInfoResp::ConnInfoResp resp;
  auto& items = *resp.mutable_items();
  ctx.worker.router->forEachTable([&](int serial, const TableData& t) {
    for (const auto& id : req.uniqids()) {
      uint64_t key;
      if (ctx.worker.router->ownerOf(id, key) != serial) continue;
      auto it = t.conns.find(key);
      if (it == t.conns.end()) continue;
      auto& item = items[id];
      if (req.reqsession()) item.set_session(str(it->second.session));
      if (req.reqcustomerid()) item.set_customerid(str(it->second.customerId));
      if (req.reqtopic())
        for (const auto& topic : it->second.topics) item.add_topics(str(topic));
    }
  });
  ctx.reply(resp);
}

void cmdConnInfoByCustomerId(TaskContext& ctx, std::string_view body) {
  netsvr::connInfoByCustomerIdReq::ConnInfoByCustomerIdReq req;
  if (!parseBody(req, body)) return;
  std::set<std::string> distinct;
  for (const auto& id : req.customerids())
    if (!id.empty()) distinct.insert(id);
  netsvr::connInfoByCustomerIdResp::ConnInfoByCustomerIdResp resp;
  auto& items = *resp.mutable_items();
  ctx.worker.router->forEachTable([&](int, const TableData& t) {
    for (const auto& id : distinct) {
      const shm::KeyGroup* keys = findIn(t.byCustomer, id);
      if (!keys) continue;
      auto& list = items[id];
      for (uint64_t key : *keys) {
        auto it = t.conns.find(key);
        if (it == t.conns.end()) continue;
        auto* item = list.add_items();
        if (req.reqsession()) item->set_session(str(it->second.session));
        if (req.requniqid()) item->set_uniqid(ctx.worker.uniqIdOf(key));
        if (req.reqtopic())
          for (const auto& topic : it->second.topics) item->add_topics(str(topic));
      }
    }
  });
  ctx.reply(resp);
}

void cmdMetrics(TaskContext& ctx, std::string_view) {
  netsvr::metricsResp::MetricsResp resp;
  const auto& control = ctx.worker.control->block();
  double uptime = std::max(1.0, double(time(nullptr) - control.startedAt.load()));
  for (int item : ctx.worker.config.metricsItems) {
    shm::MeterTotal total = shm::meterTotal(control, item);
    auto& m = (*resp.mutable_items())[item];
    m.set_item(item);
    m.set_count(total.count);
    m.set_meanrate(float(double(total.count) / uptime));
    m.set_rate1(float(total.rate1));
    m.set_rate5(float(total.rate5));
    m.set_rate15(float(total.rate15));
  }
  ctx.reply(resp);
}

void cmdLimit(TaskContext& ctx, std::string_view body) {
  netsvr::limitReq::LimitReq req;
  if (!parseBody(req, body)) return;
  auto& control = ctx.worker.control->block();
  // A limiter disabled at start-up stays disabled (§9.3); the burst keeps its start-up value.
  if (req.onopen() > 0 && control.limitOnOpen.load() > 0) control.limitOnOpen = req.onopen();
  if (req.onmessage() > 0 && control.limitOnMessage.load() > 0)
    control.limitOnMessage = req.onmessage();
  netsvr::limitResp::LimitResp resp;
  resp.set_onopen(control.limitOnOpen.load());
  resp.set_onmessage(control.limitOnMessage.load());
  ctx.reply(resp);
}

}  // namespace netsvr
