// The routing table of one worker (DESIGN.md §3): uniqId → {customerId, session, topics},
// customerId → uniqIds and topic → uniqIds, in a Boost.Interprocess segment of its own.
//
// Single writer: only the owner worker changes it, and only under the segment's robust mutex.
// The owner reads without the lock; other processes read under it (read()). Every change that
// touches an index goes through one function here, so the two directions never disagree.
// A full segment is an error value (false) with a counter, never a crash.
#pragma once

#include <atomic>
#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/containers/string.hpp>
#include <boost/interprocess/containers/vector.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/unordered_map.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/fnv1a.hpp"
#include "shm/key_group.hpp"
#include "shm/robust_mutex.hpp"

namespace netsvr::shm {

using ShmString = bip::basic_string<char, std::char_traits<char>, Alloc<char>>;

// FNV-1a: deterministic across processes and binary versions, unlike std::hash.
struct StableHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return size_t(fnv1a64(s)); }
  size_t operator()(const ShmString& s) const {
    return (*this)(std::string_view(s.data(), s.size()));
  }
};
struct StringEqual {
  using is_transparent = void;
  static std::string_view view(const ShmString& s) { return {s.data(), s.size()}; }
  static std::string_view view(std::string_view s) { return s; }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return view(a) == view(b);
  }
};
// A connection's topic: the name as the byTopic index keeps it (the entry lives as long as a
// connection lists it), so a subscription costs 8 bytes here instead of another copy of the
// name (names of ~90 bytes were half of a table under the Go stress tool's heavy load).
class TopicRef {
 public:
  explicit TopicRef(const ShmString* name) : name_(name) {}
  const char* data() const { return name_->data(); }
  size_t size() const { return name_->size(); }

 private:
  bip::offset_ptr<const ShmString> name_;
};
using TopicVector = bip::vector<TopicRef, Alloc<TopicRef>>;

struct ConnRecord {
  explicit ConnRecord(const Alloc<char>& a) : customerId(a), session(a), topics(a) {}
  ShmString customerId;
  ShmString session;
  TopicVector topics;     // a set: no duplicates, no ""
  uint64_t localRef = 0;  // owner's private handle of the connection; meaningless elsewhere
};

using ConnMap = boost::unordered_map<uint64_t, ConnRecord, KeyHash, std::equal_to<uint64_t>,
                                     Alloc<std::pair<const uint64_t, ConnRecord>>>;
using IndexMap = boost::unordered_map<ShmString, KeyGroup, StableHash, StringEqual,
                                      Alloc<std::pair<const ShmString, KeyGroup>>>;

// Which names an index holds, as a count per slot of their hash (a counting Bloom filter with one
// hash function). Another worker deciding whether to forward a command here asks this instead of
// the index: one cache line instead of the index's buckets and entries, which lie among the
// sessions all over the segment, so a worker maps (and counts in its RSS) a little of each other
// table (64 KiB per index) rather than most of it (docs/PERFORMANCE.md, fourth round). A false
// "maybe" costs one needless forward; a count that reaches the top stays there (a false "maybe"
// forever).
struct NamePresence {
  static constexpr uint32_t kSlots = 1u << 15;
  static uint32_t slotOf(std::string_view name) { return uint32_t(fnv1a64(name) >> 49); }
  bool mayHold(std::string_view name) const { return counts[slotOf(name)] != 0; }
  void add(std::string_view name) {
    uint16_t& c = counts[slotOf(name)];
    if (c != UINT16_MAX) ++c;
  }
  void remove(std::string_view name) {
    uint16_t& c = counts[slotOf(name)];
    if (c != UINT16_MAX) --c;
  }
  // No initializer: a new segment is zero-filled, and writing the zeros would make every page
  // of it resident in the master at start (the tables are reserved, not touched, until used).
  uint16_t counts[kSlots];
};

// 2: an index entry keeps its keys in a KeyGroup (1: a KeySet each); NamePresence per index.
// 3: a connection's topics are TopicRefs into byTopic (2: copies of the names).
inline constexpr uint32_t kTableLayoutVersion = 3;

struct TableData {
  explicit TableData(SegmentManager* sm)
      : conns(0, KeyHash(), {}, Alloc<char>(sm)),
        byCustomer(0, StableHash(), StringEqual(), Alloc<char>(sm)),
        byTopic(0, StableHash(), StringEqual(), Alloc<char>(sm)) {
    mutex.init();
  }
  uint32_t layoutVersion = kTableLayoutVersion;
  RobustMutex mutex;
  ConnMap conns;
  IndexMap byCustomer;
  IndexMap byTopic;
  NamePresence customerNames;           // the names of byCustomer
  NamePresence topicNames;              // the names of byTopic
  std::atomic<uint64_t> fullErrors{0};  // writes refused because the segment was full
};

// A connection that left the table and whose ConnClose is not built yet (the peer link it goes to
// was busy): out of the connection map, the indexes and the counts, so no command or query sees
// it, but its customerId, session and topics stay here rather than in a heap copy queued for the
// link (10,000 clients leaving at once queued 10 MiB of ConnClose events on a peer link; these
// bytes are already resident in the segment). A crash announcer announces these too.
struct DepartedRecord {
  explicit DepartedRecord(const Alloc<char>& a) : customerId(a), session(a), topics(a) {}
  ShmString customerId;
  ShmString session;
  bip::vector<ShmString, Alloc<ShmString>> topics;  // copies: the index entries may be gone
};
using DepartedMap = boost::unordered_map<uint64_t, DepartedRecord, KeyHash, std::equal_to<uint64_t>,
                                         Alloc<std::pair<const uint64_t, DepartedRecord>>>;

// What a connection looked like when it left the table (for ConnClose).
struct ConnSnapshot {
  std::string customerId;
  std::string session;
  std::vector<std::string> topics;
};

inline std::string_view view(const ShmString& s) {
  return {s.data(), s.size()};
}
inline std::string_view view(const TopicRef& t) {
  return {t.data(), t.size()};
}

class ConnTable {
 public:
  // Master: creates the segment (replacing a stale one) with the table in it. Throws.
  static std::unique_ptr<ConnTable> create(const std::string& name, uint64_t sizeBytes);
  // Worker or reader: opens it. nullptr and `error` when absent or of another layout.
  static std::unique_ptr<ConnTable> open(const std::string& name, bool owner, std::string& error);
  static void remove(const std::string& name);

  // --- writes (owner only) -----------------------------------------------------------------
  bool insert(uint64_t key, uint64_t localRef);
  // Removes the connection and its index entries; fills `out` when given. False if unknown.
  bool erase(uint64_t key, ConnSnapshot* out);
  // Removes the connection from the map, the indexes and the counts like erase(), but keeps what
  // its ConnClose carries as a departed record until takeDeparted(). False if unknown or if the
  // segment is full (the connection is then untouched: erase it instead).
  bool depart(uint64_t key);
  // Fills `out` (when given) from the departed record and frees it. False if there is none.
  bool takeDeparted(uint64_t key, ConnSnapshot* out);
  size_t departedCount() const { return departed_ ? departed_->size() : 0; }
  bool setSession(uint64_t key, std::string_view session);
  // "" unbinds.
  bool setCustomerId(uint64_t key, std::string_view customerId);
  // Adds topics ("" skipped, duplicates ignored).
  bool subscribe(uint64_t key, const std::vector<std::string_view>& topics);
  // Removes the listed topics (all of them when `all`). Returns the number removed.
  size_t unsubscribe(uint64_t key, const std::vector<std::string_view>& topics, bool all);
  // Removes the topic from the index and every subscriber; appends the keys that lost it.
  void deleteTopic(std::string_view topic, std::vector<uint64_t>& lostKeys);

  // --- reads ---------------------------------------------------------------------------------
  // Runs f(const TableData&) with the lock when not the owner. False (f not run) when the owner
  // died holding the lock, i.e. the table is gone.
  template <class F>
  bool read(F&& f) const {
    if (owner_) {
      f(static_cast<const TableData&>(*data_));
      return true;
    }
    RobustLock lock(data_->mutex);
    if (!lock.held()) return false;
    f(static_cast<const TableData&>(*data_));
    return true;
  }
  const TableData& unlockedData() const { return *data_; }  // owner only
  // The departed records (a separate object in the segment, created by the owner; null if it
  // never was). Read inside read(), like the table.
  const DepartedMap* departed() const { return departed_; }
  uint64_t fullErrors() const { return data_->fullErrors.load(); }
  uint64_t freeBytes() const { return segment_->get_free_memory(); }  // for tests and logs

 private:
  ConnTable(std::unique_ptr<Segment> segment, TableData* data, DepartedMap* departed, bool owner)
      : segment_(std::move(segment)), data_(data), departed_(departed), owner_(owner) {}
  Alloc<char> alloc() const { return Alloc<char>(segment_->get_segment_manager()); }
  // Returns the index's own copy of the name.
  const ShmString* indexAdd(IndexMap& index, NamePresence& names, std::string_view name,
                            uint64_t key);
  void indexRemove(IndexMap& index, NamePresence& names, std::string_view name, uint64_t key);
  void reportFull(const char* what);

  std::unique_ptr<Segment> segment_;
  TableData* data_;
  DepartedMap* departed_;
  bool owner_;
};

}  // namespace netsvr::shm
