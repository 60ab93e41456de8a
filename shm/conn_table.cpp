#include "shm/conn_table.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace netsvr::shm {
namespace {
constexpr const char* kTableObject = "netsvr.table";
// Its own named object rather than a member of TableData, so segments of layout 3 made by an older
// master (a reload onto this binary) still open: the owner creates it.
constexpr const char* kDepartedObject = "netsvr.departed";
}  // namespace

std::unique_ptr<ConnTable> ConnTable::create(const std::string& name, uint64_t sizeBytes) {
  bip::shared_memory_object::remove(name.c_str());
  auto segment = std::make_unique<Segment>(bip::create_only, name.c_str(), sizeBytes, nullptr,
                                           bip::permissions(0600));
  auto* data = segment->construct<TableData>(kTableObject)(segment->get_segment_manager());
  return std::unique_ptr<ConnTable>(new ConnTable(std::move(segment), data, nullptr, false));
}

std::unique_ptr<ConnTable> ConnTable::open(const std::string& name, bool owner,
                                           std::string& error) {
  try {
    auto segment = std::make_unique<Segment>(bip::open_only, name.c_str());
    auto found = segment->find<TableData>(kTableObject);
    if (!found.first) {
      error = name + ": no routing table in the segment";
      return nullptr;
    }
    if (found.first->layoutVersion != kTableLayoutVersion) {
      error = name + ": routing-table layout " + std::to_string(found.first->layoutVersion) +
              " is not the layout this binary reads (" + std::to_string(kTableLayoutVersion) + ")";
      return nullptr;
    }
    DepartedMap* departed = owner ? segment->find_or_construct<DepartedMap>(kDepartedObject)(
                                        0, KeyHash(), std::equal_to<uint64_t>(),
                                        Alloc<char>(segment->get_segment_manager()))
                                  : segment->find<DepartedMap>(kDepartedObject).first;
    return std::unique_ptr<ConnTable>(
        new ConnTable(std::move(segment), found.first, departed, owner));
  } catch (const std::exception& e) {
    error = name + ": " + e.what();
    return nullptr;
  }
}

void ConnTable::remove(const std::string& name) {
  bip::shared_memory_object::remove(name.c_str());
}

void ConnTable::reportFull(const char* what) {
  data_->fullErrors.fetch_add(1, std::memory_order_relaxed);
  LOG_ERROR("routing table full (%s refused, %llu bytes free): raise Shm.SegmentSize", what,
            static_cast<unsigned long long>(segment_->get_free_memory()));
}

const ShmString* ConnTable::indexAdd(IndexMap& index, NamePresence& names, std::string_view name,
                                     uint64_t key) {
  auto it = index.find(name, StableHash(), StringEqual());
  bool added = it == index.end();
  if (added) it = index.emplace(ShmString(name.data(), name.size(), alloc()), KeyGroup()).first;
  try {
    it->second.insert(key, segment_->get_segment_manager());
  } catch (...) {
    if (it->second.empty()) index.erase(it);
    throw;
  }
  if (added) names.add(name);
  return &it->first;
}

// `name` may be the entry's own key (a TopicRef): it is not used once the entry is erased.
void ConnTable::indexRemove(IndexMap& index, NamePresence& names, std::string_view name,
                            uint64_t key) {
  auto it = index.find(name, StableHash(), StringEqual());
  if (it == index.end()) return;
  it->second.erase(key);
  if (!it->second.empty()) return;
  names.remove(name);
  index.erase(it);  // a topic exists only while it has subscribers
}

bool ConnTable::insert(uint64_t key, uint64_t localRef) {
  RobustLock lock(data_->mutex);
  try {
    auto [it, added] = data_->conns.emplace(key, ConnRecord(alloc()));
    if (added) it->second.localRef = localRef;  // an existing connection keeps its handle
    return added;
  } catch (const bip::bad_alloc&) {
    reportFull("connection");
    return false;
  }
}

namespace {
// A ConnRecord (topics: TopicRefs) or a DepartedRecord (topics: copies), as ConnClose carries it.
template <class Record>
void fillSnapshot(const Record& rec, ConnSnapshot* out) {
  if (!out) return;
  out->customerId.assign(rec.customerId.data(), rec.customerId.size());
  out->session.assign(rec.session.data(), rec.session.size());
  out->topics.clear();
  for (const auto& t : rec.topics) out->topics.emplace_back(t.data(), t.size());
}
}  // namespace

bool ConnTable::erase(uint64_t key, ConnSnapshot* out) {
  RobustLock lock(data_->mutex);
  auto it = data_->conns.find(key);
  if (it == data_->conns.end()) return false;
  ConnRecord& rec = it->second;
  fillSnapshot(rec, out);
  if (!rec.customerId.empty())
    indexRemove(data_->byCustomer, data_->customerNames, view(rec.customerId), key);
  for (const auto& t : rec.topics) indexRemove(data_->byTopic, data_->topicNames, view(t), key);
  data_->conns.erase(it);
  return true;
}

bool ConnTable::depart(uint64_t key) {
  RobustLock lock(data_->mutex);
  auto it = data_->conns.find(key);
  if (it == data_->conns.end() || !departed_) return false;
  ConnRecord& rec = it->second;
  DepartedRecord* gone;
  try {
    DepartedRecord record(alloc());
    record.topics.reserve(rec.topics.size());
    for (const auto& t : rec.topics) record.topics.emplace_back(t.data(), t.size(), alloc());
    auto [slot, added] = departed_->emplace(key, std::move(record));
    if (!added) return false;  // cannot happen: a key is in one of the two maps
    gone = &slot->second;
  } catch (const bip::bad_alloc&) {
    return false;  // nothing changed; the caller erases with a snapshot instead
  }
  gone->customerId.swap(rec.customerId);  // same allocator: the bytes stay in place
  gone->session.swap(rec.session);
  if (!gone->customerId.empty())
    indexRemove(data_->byCustomer, data_->customerNames, view(gone->customerId), key);
  for (const auto& t : rec.topics) indexRemove(data_->byTopic, data_->topicNames, view(t), key);
  data_->conns.erase(it);
  return true;
}

bool ConnTable::takeDeparted(uint64_t key, ConnSnapshot* out) {
  if (!departed_) return false;
  RobustLock lock(data_->mutex);
  auto it = departed_->find(key);
  if (it == departed_->end()) return false;
  fillSnapshot(it->second, out);
  departed_->erase(it);
  return true;
}

bool ConnTable::setSession(uint64_t key, std::string_view session) {
  RobustLock lock(data_->mutex);
  auto it = data_->conns.find(key);
  if (it == data_->conns.end()) return false;
  try {
    ShmString value(session.data(), session.size(), alloc());
    it->second.session.swap(value);
    return true;
  } catch (const bip::bad_alloc&) {
    reportFull("session");
    return false;
  }
}

bool ConnTable::setCustomerId(uint64_t key, std::string_view customerId) {
  RobustLock lock(data_->mutex);
  auto it = data_->conns.find(key);
  if (it == data_->conns.end()) return false;
  ConnRecord& rec = it->second;
  if (view(rec.customerId) == customerId) return true;
  try {
    // Allocate the new state first, so a full segment leaves the old one intact.
    ShmString value(customerId.data(), customerId.size(), alloc());
    if (!customerId.empty()) indexAdd(data_->byCustomer, data_->customerNames, customerId, key);
    if (!rec.customerId.empty())
      indexRemove(data_->byCustomer, data_->customerNames, view(rec.customerId), key);
    rec.customerId.swap(value);
    return true;
  } catch (const bip::bad_alloc&) {
    reportFull("customerId");
    return false;
  }
}

bool ConnTable::subscribe(uint64_t key, const std::vector<std::string_view>& topics) {
  RobustLock lock(data_->mutex);
  auto it = data_->conns.find(key);
  if (it == data_->conns.end()) return false;
  ConnRecord& rec = it->second;
  size_t before = rec.topics.size();
  try {
    for (std::string_view topic : topics) {
      if (topic.empty()) continue;
      bool has = std::any_of(rec.topics.begin(), rec.topics.end(),
                             [&](const TopicRef& t) { return view(t) == topic; });
      if (has) continue;
      const ShmString* name = indexAdd(data_->byTopic, data_->topicNames, topic, key);
      try {
        rec.topics.emplace_back(name);
      } catch (...) {
        indexRemove(data_->byTopic, data_->topicNames, topic, key);
        throw;
      }
    }
    return true;
  } catch (const bip::bad_alloc&) {
    // All or nothing: take back what this call added (removal allocates nothing).
    while (rec.topics.size() > before) {
      indexRemove(data_->byTopic, data_->topicNames, view(rec.topics.back()), key);
      rec.topics.pop_back();
    }
    reportFull("topic");
    return false;
  }
}

size_t ConnTable::unsubscribe(uint64_t key, const std::vector<std::string_view>& topics, bool all) {
  RobustLock lock(data_->mutex);
  auto it = data_->conns.find(key);
  if (it == data_->conns.end()) return 0;
  ConnRecord& rec = it->second;
  size_t removed = 0;
  for (size_t i = 0; i < rec.topics.size();) {
    std::string_view t = view(rec.topics[i]);
    bool drop = all || std::find(topics.begin(), topics.end(), t) != topics.end();
    if (!drop) {
      ++i;
      continue;
    }
    indexRemove(data_->byTopic, data_->topicNames, t, key);
    std::swap(rec.topics[i], rec.topics.back());
    rec.topics.pop_back();
    ++removed;
  }
  return removed;
}

void ConnTable::deleteTopic(std::string_view topic, std::vector<uint64_t>& lostKeys) {
  RobustLock lock(data_->mutex);
  auto it = data_->byTopic.find(topic, StableHash(), StringEqual());
  if (it == data_->byTopic.end()) return;
  for (uint64_t key : it->second) {
    auto conn = data_->conns.find(key);
    if (conn == data_->conns.end()) continue;
    auto& list = conn->second.topics;
    for (size_t i = 0; i < list.size(); ++i) {
      if (view(list[i]) == topic) {
        std::swap(list[i], list.back());
        list.pop_back();
        break;
      }
    }
    lostKeys.push_back(key);
  }
  data_->byTopic.erase(it);
  data_->topicNames.remove(topic);
}

}  // namespace netsvr::shm
