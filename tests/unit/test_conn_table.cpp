// Routing table (shm/conn_table.*): a model-based randomized test against plain std:: containers,
// edge cases, a full segment, and the robust lock after its holder died.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "shm/conn_table.hpp"

using netsvr::shm::ConnSnapshot;
using netsvr::shm::ConnTable;
using netsvr::shm::TableData;

namespace {

std::string segName(const char* tag) {
  return "/netsvr-unittest-" + std::to_string(getpid()) + "-" + tag;
}

// Removes the segment on the way in (a stale one) and on the way out, also when a check fails.
struct SegmentGuard {
  explicit SegmentGuard(std::string n) : name(std::move(n)) { ConnTable::remove(name); }
  ~SegmentGuard() { ConnTable::remove(name); }
  SegmentGuard(const SegmentGuard&) = delete;
  SegmentGuard& operator=(const SegmentGuard&) = delete;
  std::string name;
};

std::unique_ptr<ConnTable> openTable(const std::string& name, bool owner) {
  std::string error;
  auto t = ConnTable::open(name, owner, error);
  INFO("open " << name << ": " << error);
  REQUIRE(t != nullptr);
  return t;
}

// ---- the model -----------------------------------------------------------------------------

struct MConn {
  std::string customerId;
  std::string session;
  std::set<std::string> topics;
  uint64_t localRef = 0;
  bool operator==(const MConn&) const = default;
};
using MConns = std::map<uint64_t, MConn>;
using MIndex = std::map<std::string, std::set<uint64_t>>;

MIndex customersOf(const MConns& conns) {
  MIndex out;
  for (const auto& [k, c] : conns)
    if (!c.customerId.empty()) out[c.customerId].insert(k);
  return out;
}
MIndex topicsOf(const MConns& conns) {
  MIndex out;
  for (const auto& [k, c] : conns)
    for (const auto& t : c.topics) out[t].insert(k);
  return out;
}

std::string printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s.substr(0, 40)) {
    if (c >= 32 && c < 127) {
      out += char(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (s.size() > 40) out += "...(" + std::to_string(s.size()) + " bytes)";
  return out;
}
std::string str(const std::set<std::string>& s) {
  std::string out = "{";
  for (const auto& t : s) out += "\"" + printable(t) + "\",";
  return out + "}";
}
std::string str(const std::set<uint64_t>& s) {
  std::string out = "{";
  for (uint64_t k : s) out += std::to_string(k) + ",";
  return out + "}";
}

// A copy of the table in model form; structural problems the copy cannot show are listed.
struct Dump {
  MConns conns;
  MIndex byCustomer;
  MIndex byTopic;
  std::vector<std::string> problems;
};

std::string s(const netsvr::shm::ShmString& v) {
  return std::string(v.data(), v.size());
}
std::string s(const netsvr::shm::TopicRef& v) {
  return std::string(v.data(), v.size());
}

Dump dump(const TableData& d) {
  Dump out;
  for (const auto& [key, rec] : d.conns) {
    MConn c;
    c.customerId = s(rec.customerId);
    c.session = s(rec.session);
    c.localRef = rec.localRef;
    for (const auto& t : rec.topics) {
      std::string topic = s(t);
      if (topic.empty()) out.problems.push_back("conn " + std::to_string(key) + " has topic \"\"");
      if (!c.topics.insert(topic).second)
        out.problems.push_back("conn " + std::to_string(key) + " has topic \"" + topic +
                               "\" twice");
    }
    out.conns.emplace(key, std::move(c));
  }
  auto copyIndex = [&](const netsvr::shm::IndexMap& index, MIndex& to, const char* what) {
    for (const auto& [name, keys] : index) {
      std::string n = s(name);
      if (n.empty()) out.problems.push_back(std::string(what) + " indexes \"\"");
      if (keys.empty()) out.problems.push_back(std::string(what) + " \"" + n + "\" has no keys");
      if (to.count(n)) out.problems.push_back(std::string(what) + " \"" + n + "\" twice");
      to[n] = std::set<uint64_t>(keys.begin(), keys.end());
    }
  };
  copyIndex(d.byCustomer, out.byCustomer, "byCustomer");
  copyIndex(d.byTopic, out.byTopic, "byTopic");
  // Each presence filter counts exactly the names of its index, slot by slot.
  auto checkPresence = [&](const netsvr::shm::IndexMap& index,
                           const netsvr::shm::NamePresence& names, const char* what) {
    std::vector<uint32_t> want(netsvr::shm::NamePresence::kSlots, 0);
    for (const auto& [name, keys] : index) ++want[netsvr::shm::NamePresence::slotOf(s(name))];
    for (uint32_t slot = 0; slot < want.size(); ++slot)
      if (names.counts[slot] != want[slot])
        out.problems.push_back(std::string(what) + " presence slot " + std::to_string(slot) +
                               " counts " + std::to_string(names.counts[slot]) + ", the index " +
                               std::to_string(want[slot]));
  };
  checkPresence(d.byCustomer, d.customerNames, "byCustomer");
  checkPresence(d.byTopic, d.topicNames, "byTopic");
  return out;
}

std::string diffIndex(const MIndex& want, const MIndex& got, const char* what) {
  std::ostringstream o;
  for (const auto& [n, keys] : want) {
    auto it = got.find(n);
    if (it == got.end())
      o << what << " lacks \"" << n << "\" " << str(keys) << "; ";
    else if (it->second != keys)
      o << what << " \"" << n << "\": want " << str(keys) << " got " << str(it->second) << "; ";
  }
  for (const auto& [n, keys] : got)
    if (!want.count(n)) o << what << " has extra \"" << n << "\" " << str(keys) << "; ";
  return o.str();
}

// Empty when the table equals the model and its indexes are the inverse of the model's conns.
std::string diff(const MConns& model, const Dump& got, bool checkLocalRef = true) {
  std::ostringstream o;
  for (const auto& p : got.problems) o << p << "; ";
  for (const auto& [k, c] : model) {
    auto it = got.conns.find(k);
    if (it == got.conns.end()) {
      o << "conn " << k << " missing; ";
      continue;
    }
    const MConn& g = it->second;
    if (g.customerId != c.customerId)
      o << "conn " << k << " customerId want \"" << c.customerId << "\" got \"" << g.customerId
        << "\"; ";
    if (g.session != c.session)
      o << "conn " << k << " session want \"" << printable(c.session) << "\" got \""
        << printable(g.session) << "\"; ";
    if (g.topics != c.topics)
      o << "conn " << k << " topics want " << str(c.topics) << " got " << str(g.topics) << "; ";
    if (checkLocalRef && g.localRef != c.localRef)
      o << "conn " << k << " localRef want " << c.localRef << " got " << g.localRef << "; ";
  }
  for (const auto& [k, c] : got.conns)
    if (!model.count(k)) o << "conn " << k << " should not exist; ";
  o << diffIndex(customersOf(model), got.byCustomer, "byCustomer");
  o << diffIndex(topicsOf(model), got.byTopic, "byTopic");
  return o.str();
}

// Reads the table through `t` (locking when t is not the owner) and compares it with the model.
std::string diffThrough(const ConnTable& t, const MConns& model, bool checkLocalRef = true) {
  std::string out;
  bool ran = t.read([&](const TableData& d) { out = diff(model, dump(d), checkLocalRef); });
  if (!ran) return "read() refused";
  return out;
}

// The table's own consistency, without a model: indexes are the inverse of its conns.
std::string selfConsistency(const ConnTable& t) {
  std::string out;
  bool ran = t.read([&](const TableData& d) {
    Dump got = dump(d);
    out = diff(got.conns, got);
  });
  if (!ran) return "read() refused";
  return out;
}

MConn modelOf(const ConnTable& t, uint64_t key) {
  MConn c;
  t.read([&](const TableData& d) {
    Dump got = dump(d);
    auto it = got.conns.find(key);
    if (it != got.conns.end()) c = it->second;
  });
  return c;
}

std::string joinViews(const std::vector<std::string_view>& v) {
  std::string out = "[";
  for (auto x : v) out += "\"" + std::string(x) + "\",";
  return out + "]";
}

}  // namespace

// ---- 1. model-based randomized test -----------------------------------------------------------

namespace {

struct RandomRun {
  const char* tag;
  uint64_t segmentBytes;
  int ops;
  uint64_t seed;
  size_t bigSessionPercent;  // share of setSession calls with a value of up to bigSessionBytes
  size_t bigSessionBytes;
  bool mayBeFull;  // a small segment: writes may be refused; a refused one must leave no trace
};

struct RunStats {
  size_t inserted = 0, erased = 0, deletedTopics = 0, maxConns = 0, refused = 0,
         partialSubscribes = 0;
};

RunStats runRandom(const RandomRun& cfg) {
  RunStats st;
  SegmentGuard guard(segName(cfg.tag));
  auto creator = ConnTable::create(guard.name, cfg.segmentBytes);
  REQUIRE(creator);
  auto table = openTable(guard.name, true);    // the single writer
  auto reader = openTable(guard.name, false);  // another process's view: reads under the lock

  std::mt19937_64 rng(cfg.seed);
  auto pick = [&](size_t n) { return size_t(rng() % n); };

  std::vector<uint64_t> keys;
  for (uint64_t i = 0; i < 100; ++i) keys.push_back(i);  // small, dense keys (0 included)
  while (keys.size() < 200) keys.push_back(rng());       // and arbitrary 64-bit ones
  std::vector<std::string> customers{""};
  for (int i = 0; i < 18; ++i) customers.push_back("cust" + std::to_string(i));
  customers.push_back(std::string(40, 'C') + "-long-customer-id");  // beyond any SSO buffer
  std::vector<std::string> topics{""};
  for (int i = 0; i < 28; ++i) topics.push_back("topic" + std::to_string(i));
  topics.push_back(std::string(48, 'T') + "-long-topic");

  auto randomSession = [&]() {
    size_t len = pick(100) < cfg.bigSessionPercent ? pick(cfg.bigSessionBytes) : pick(48);
    std::string v(len, '\0');
    for (auto& c : v) c = char(rng() & 0xff);  // binary, NULs included
    return v;
  };
  auto randomTopicList = [&]() {
    std::vector<std::string_view> list;
    size_t n = pick(6);
    for (size_t i = 0; i < n; ++i)
      list.emplace_back(topics[pick(topics.size())]);  // may repeat, may hold ""
    return list;
  };
  auto localRefOf = [](uint64_t key) { return key * 31 + 7; };

  MConns model;
  std::deque<std::string> history;  // the last operations, printed on a failure
  auto log = [&](std::string line) {
    history.push_back(std::move(line));
    if (history.size() > 40) history.pop_front();
  };
  auto historyText = [&]() {
    std::string out;
    for (const auto& h : history) out += "  " + h + "\n";
    return out;
  };

  auto checkAll = [&](int step) {
    std::string d1 = diffThrough(*table, model);
    std::string d2 = diffThrough(*reader, model);
    std::string d3 = diffThrough(*creator, model);
    INFO("after op " << step << "; last operations:\n" << historyText());
    REQUIRE_MESSAGE(d1.empty(), "owner view: " << d1);
    REQUIRE_MESSAGE(d2.empty(), "reader view: " << d2);
    REQUIRE_MESSAGE(d3.empty(), "creator view: " << d3);
  };

  for (int step = 1; step <= cfg.ops; ++step) {
    uint64_t key = keys[pick(keys.size())];
    bool known = model.count(key) != 0;
    size_t op = pick(100);
    std::string what;
    std::string mismatch;
    bool refused = false;  // a write that reported failure for a known key / fresh insert
    uint64_t errorsBefore = table->fullErrors();
    if (op < 20) {
      bool r = table->insert(key, localRefOf(key));
      what = "insert(" + std::to_string(key) + ") -> " + std::to_string(r);
      if (!known && !r && cfg.mayBeFull) {
        refused = true;
      } else {
        if (r != !known) mismatch = "insert returned " + std::to_string(r);
        if (!known) {
          model[key].localRef = localRefOf(key);
          ++st.inserted;
        }
      }
    } else if (op < 30) {
      bool withSnapshot = pick(5) != 0;
      ConnSnapshot snap;
      snap.customerId = "stale";
      bool r = table->erase(key, withSnapshot ? &snap : nullptr);
      what = "erase(" + std::to_string(key) + (withSnapshot ? ", &snap" : ", nullptr") + ") -> " +
             std::to_string(r);
      if (r != known) mismatch = "erase returned " + std::to_string(r);
      if (known) {
        const MConn& c = model[key];
        if (withSnapshot) {
          std::set<std::string> snapTopics(snap.topics.begin(), snap.topics.end());
          if (snap.customerId != c.customerId || snap.session != c.session ||
              snapTopics != c.topics || snapTopics.size() != snap.topics.size())
            mismatch = "snapshot {\"" + snap.customerId + "\", \"" + printable(snap.session) +
                       "\", " + str(snapTopics) + "} != model {\"" + c.customerId + "\", \"" +
                       printable(c.session) + "\", " + str(c.topics) + "}";
        }
        model.erase(key);
        ++st.erased;
      } else if (withSnapshot && snap.customerId != "stale") {
        mismatch = "erase of an unknown key wrote the snapshot";
      }
    } else if (op < 45) {
      std::string v = randomSession();
      bool r = table->setSession(key, v);
      what = "setSession(" + std::to_string(key) + ", " + std::to_string(v.size()) + " bytes) -> " +
             std::to_string(r);
      if (known && !r && cfg.mayBeFull) {
        refused = true;
      } else {
        if (r != known) mismatch = "setSession returned " + std::to_string(r);
        if (known) model[key].session = v;
      }
    } else if (op < 60) {
      const std::string& v = customers[pick(customers.size())];
      bool r = table->setCustomerId(key, v);
      what = "setCustomerId(" + std::to_string(key) + ", \"" + v + "\") -> " + std::to_string(r);
      if (known && !r && cfg.mayBeFull) {
        refused = true;
      } else {
        if (r != known) mismatch = "setCustomerId returned " + std::to_string(r);
        if (known) model[key].customerId = v;
      }
    } else if (op < 80) {
      auto list = randomTopicList();
      bool r = table->subscribe(key, list);
      what =
          "subscribe(" + std::to_string(key) + ", " + joinViews(list) + ") -> " + std::to_string(r);
      if (known && !r && cfg.mayBeFull) {
        refused = true;
        // A refused subscribe may have added some of the listed topics before the space ran out;
        // whatever it did must lie between the old set and the old set plus the list.
        MConn now = modelOf(*table, key);
        std::set<std::string> upper = model[key].topics;
        for (auto t : list)
          if (!t.empty()) upper.emplace(t);
        bool within =
            std::includes(now.topics.begin(), now.topics.end(), model[key].topics.begin(),
                          model[key].topics.end()) &&
            std::includes(upper.begin(), upper.end(), now.topics.begin(), now.topics.end());
        if (!within) mismatch = "refused subscribe left topics " + str(now.topics);
        if (now.topics != model[key].topics) ++st.partialSubscribes;
        model[key].topics = now.topics;
      } else {
        if (r != known) mismatch = "subscribe returned " + std::to_string(r);
        if (known)
          for (auto t : list)
            if (!t.empty()) model[key].topics.emplace(t);
      }
    } else if (op < 96) {
      bool all = pick(5) == 0;
      auto list = randomTopicList();
      size_t r = table->unsubscribe(key, list, all);
      what = "unsubscribe(" + std::to_string(key) + ", " + joinViews(list) +
             ", all=" + std::to_string(all) + ") -> " + std::to_string(r);
      size_t want = 0;
      if (known) {
        auto& mine = model[key].topics;
        if (all) {
          want = mine.size();
          mine.clear();
        } else {
          for (auto t : list) want += mine.erase(std::string(t));
        }
      }
      if (r != want)
        mismatch = "unsubscribe returned " + std::to_string(r) + ", model " + std::to_string(want);
    } else {
      const std::string& topic = topics[pick(topics.size())];
      std::vector<uint64_t> lost{0xDEADBEEFull};  // appended to, never cleared
      table->deleteTopic(topic, lost);
      what = "deleteTopic(\"" + topic + "\") lost " + std::to_string(lost.size() - 1);
      std::set<uint64_t> want;
      for (auto& [k, c] : model)
        if (c.topics.erase(topic)) want.insert(k);
      std::set<uint64_t> got(lost.begin() + 1, lost.end());
      if (lost.front() != 0xDEADBEEFull)
        mismatch = "deleteTopic cleared lostKeys";
      else if (got != want || got.size() != lost.size() - 1)
        mismatch = "deleteTopic lost " + str(got) + " (" + std::to_string(lost.size() - 1) +
                   " entries), model " + str(want);
      ++st.deletedTopics;
    }
    if (refused) {
      ++st.refused;
      if (table->fullErrors() != errorsBefore + 1)
        mismatch = "a refused write counted " + std::to_string(table->fullErrors() - errorsBefore) +
                   " fullErrors";
    } else if (table->fullErrors() != errorsBefore) {
      mismatch = "fullErrors grew on a write that succeeded";
    }
    log(std::to_string(step) + ": " + what);
    st.maxConns = std::max(st.maxConns, model.size());
    if (!mismatch.empty()) {
      INFO("last operations:\n" << historyText());
      FAIL("op " << step << " " << what << ": " << mismatch);
    }
    if (step % 100 == 0 || step == cfg.ops || refused) checkAll(step);
  }
  return st;
}

}  // namespace

TEST_CASE("conn table: randomized operations match a std:: model") {
  RunStats st = runRandom({"a", 64 << 20, 20000, 20240611, 10, 3000, false});
  MESSAGE("inserted " << st.inserted << ", erased " << st.erased << ", deleteTopic "
                      << st.deletedTopics << ", max conns " << st.maxConns);
  CHECK(st.refused == 0);
}

TEST_CASE("conn table: randomized operations on a small segment: refused writes leave no trace") {
  RunStats st = runRandom({"f", 384 << 10, 10000, 99, 40, 12000, true});
  MESSAGE("inserted " << st.inserted << ", erased " << st.erased << ", refused " << st.refused
                      << ", partly applied subscribes " << st.partialSubscribes << ", max conns "
                      << st.maxConns);
  CHECK(st.refused > 0);
  WARN_MESSAGE(st.partialSubscribes == 0,
               st.partialSubscribes << " refused subscribe() calls had added some topics");
}

// ---- 2. edge cases ----------------------------------------------------------------------------

TEST_CASE("conn table: edge cases") {
  SegmentGuard guard(segName("b"));
  auto creator = ConnTable::create(guard.name, 8 << 20);
  REQUIRE(creator);
  auto t = openTable(guard.name, true);
  MConns model;

  SUBCASE("unknown keys") {
    ConnSnapshot snap;
    snap.customerId = "untouched";
    CHECK_FALSE(t->erase(42, &snap));
    CHECK(snap.customerId == "untouched");
    CHECK_FALSE(t->erase(42, nullptr));
    CHECK_FALSE(t->setSession(42, "x"));
    CHECK_FALSE(t->setCustomerId(42, "c"));
    CHECK_FALSE(t->subscribe(42, {"a"}));
    CHECK(t->unsubscribe(42, {"a"}, false) == 0);
    CHECK(t->unsubscribe(42, {}, true) == 0);
    CHECK(diffThrough(*t, model) == "");
  }

  SUBCASE("customerId: same value, rebinding, unbinding") {
    REQUIRE(t->insert(1, 11));
    REQUIRE(t->insert(2, 22));
    model[1].localRef = 11;
    model[2].localRef = 22;
    CHECK(t->setCustomerId(1, ""));  // unbinding an unbound connection
    CHECK(t->setCustomerId(1, "alice"));
    CHECK(t->setCustomerId(1, "alice"));  // same value
    CHECK(t->setCustomerId(2, "alice"));
    model[1].customerId = model[2].customerId = "alice";
    CHECK(diffThrough(*t, model) == "");
    CHECK(t->setCustomerId(1, "bob"));
    model[1].customerId = "bob";
    CHECK(diffThrough(*t, model) == "");
    CHECK(t->setCustomerId(2, ""));  // "alice" loses its last connection: gone from the index
    model[2].customerId = "";
    CHECK(diffThrough(*t, model) == "");
    t->read([](const TableData& d) {
      CHECK(d.byCustomer.size() == 1);
      CHECK(d.byCustomer.find(std::string_view("alice"), netsvr::shm::StableHash(),
                              netsvr::shm::StringEqual()) == d.byCustomer.end());
    });
  }

  SUBCASE("topics: resubscribe, duplicates in one call, \"\", unsubscribe of others") {
    REQUIRE(t->insert(1, 11));
    model[1].localRef = 11;
    CHECK(t->subscribe(1, {"a", "b"}));
    CHECK(t->subscribe(1, {"a", "a", "", "c", "b"}));
    CHECK(t->subscribe(1, {}));
    CHECK(t->subscribe(1, {""}));
    model[1].topics = {"a", "b", "c"};
    CHECK(diffThrough(*t, model) == "");
    CHECK(t->unsubscribe(1, {"zzz", ""}, false) == 0);
    CHECK(t->unsubscribe(1, {}, false) == 0);
    CHECK(t->unsubscribe(1, {"b", "b"}, false) == 1);
    model[1].topics = {"a", "c"};
    CHECK(diffThrough(*t, model) == "");
    CHECK(t->unsubscribe(1, {"zzz"}, true) == 2);  // all: the list is ignored
    model[1].topics.clear();
    CHECK(diffThrough(*t, model) == "");
    t->read([](const TableData& d) { CHECK(d.byTopic.empty()); });
  }

  SUBCASE("deleteTopic: unknown, \"\", and one with subscribers") {
    REQUIRE(t->insert(1, 11));
    REQUIRE(t->insert(2, 22));
    REQUIRE(t->insert(3, 33));
    model[1].localRef = 11;
    model[2].localRef = 22;
    model[3].localRef = 33;
    CHECK(t->subscribe(1, {"x", "y"}));
    CHECK(t->subscribe(2, {"x"}));
    CHECK(t->subscribe(3, {"y"}));
    model[1].topics = {"x", "y"};
    model[2].topics = {"x"};
    model[3].topics = {"y"};
    std::vector<uint64_t> lost{7};
    t->deleteTopic("unknown", lost);
    t->deleteTopic("", lost);
    CHECK(lost == std::vector<uint64_t>{7});
    t->deleteTopic("x", lost);
    REQUIRE(lost.size() == 3);
    CHECK(lost[0] == 7);
    CHECK(std::set<uint64_t>(lost.begin() + 1, lost.end()) == std::set<uint64_t>{1, 2});
    model[1].topics = {"y"};
    model[2].topics = {};
    CHECK(diffThrough(*t, model) == "");
    lost.clear();
    t->deleteTopic("x", lost);  // again: already gone
    CHECK(lost.empty());
  }

  SUBCASE("a session of several KiB and 50 topics on one connection") {
    std::string session(6000, '\0');
    for (size_t i = 0; i < session.size(); ++i) session[i] = char(i * 7);
    std::vector<std::string> names;
    for (int i = 0; i < 50; ++i)
      names.push_back("big-topic-number-" + std::to_string(i) + std::string(20, 'x'));
    std::vector<std::string_view> views(names.begin(), names.end());
    for (uint64_t k : {5ull, 6ull}) {
      REQUIRE(t->insert(k, k));
      model[k].localRef = k;
      CHECK(t->setSession(k, session));
      CHECK(t->setCustomerId(k, "big"));
      CHECK(t->subscribe(k, views));
      model[k].session = session;
      model[k].customerId = "big";
      model[k].topics = std::set<std::string>(names.begin(), names.end());
    }
    CHECK(diffThrough(*t, model) == "");
    auto reader = openTable(guard.name, false);
    CHECK(diffThrough(*reader, model) == "");

    ConnSnapshot snap;
    REQUIRE(t->erase(5, &snap));
    CHECK(snap.customerId == "big");
    CHECK(snap.session == session);
    CHECK(snap.topics.size() == 50);
    CHECK(std::set<std::string>(snap.topics.begin(), snap.topics.end()) == model[5].topics);
    model.erase(5);
    CHECK(diffThrough(*t, model) == "");
    CHECK(t->unsubscribe(6, {views.begin(), views.begin() + 25}, false) == 25);
    for (int i = 0; i < 25; ++i) model[6].topics.erase(names[i]);
    CHECK(diffThrough(*reader, model) == "");
    CHECK(t->setSession(6, ""));  // shrinking back
    model[6].session.clear();
    CHECK(diffThrough(*t, model) == "");
  }
}

// insert() of a key already in the table reports false; the live connection must stay as it is
// (its localRef is the owner's pointer to the connection object).
TEST_CASE("conn table: an index entry grows past its inline keys and back without a leak") {
  SegmentGuard guard(segName("g"));
  auto creator = ConnTable::create(guard.name, 8 << 20);
  REQUIRE(creator);
  auto t = openTable(guard.name, true);
  constexpr uint64_t kConns = 3 * netsvr::shm::KeyGroup::kInline + 2;
  for (uint64_t k = 1; k <= kConns; ++k) REQUIRE(t->insert(k, k));
  // The index's own bucket array stays once allocated: take the baseline after one round.
  REQUIRE(t->setCustomerId(1, "c"));
  REQUIRE(t->setCustomerId(1, ""));
  uint64_t freeBefore = t->freeBytes();
  for (int round = 0; round < 3; ++round) {
    for (uint64_t k = 1; k <= kConns; ++k) {
      REQUIRE(t->setCustomerId(k, "c"));
      t->read([&](const TableData& d) {
        auto it = d.byCustomer.find(std::string_view("c"), netsvr::shm::StableHash(),
                                    netsvr::shm::StringEqual());
        REQUIRE(it != d.byCustomer.end());
        std::set<uint64_t> got(it->second.begin(), it->second.end());
        CHECK(got.size() == k);
        CHECK(it->second.size() == k);
        CHECK(*got.rbegin() == k);
        CHECK(it->second.contains(k));
      });
    }
    for (uint64_t k = kConns; k >= 1; --k) {
      REQUIRE(t->setCustomerId(k, ""));
      t->read([&](const TableData& d) {
        auto it = d.byCustomer.find(std::string_view("c"), netsvr::shm::StableHash(),
                                    netsvr::shm::StringEqual());
        if (k == 1) {
          CHECK(it == d.byCustomer.end());
          return;
        }
        REQUIRE(it != d.byCustomer.end());
        CHECK(it->second.size() == k - 1);
        CHECK_FALSE(it->second.contains(k));
      });
    }
    CHECK(t->freeBytes() == freeBefore);
  }
}

// A connection whose ConnClose waits for a busy peer link (worker/peer_links.cpp): gone from the
// map, the indexes and the presence counts at once, its ConnClose data kept until taken, and
// nothing left in the segment after.
TEST_CASE("conn table: a departed connection leaves every index at once and keeps its data") {
  SegmentGuard guard(segName("d"));
  auto creator = ConnTable::create(guard.name, 8 << 20);
  REQUIRE(creator);
  auto t = openTable(guard.name, true);
  auto reader = openTable(guard.name, false);
  REQUIRE(reader->departed() != nullptr);  // the owner created it
  auto fill = [&](MConns& model) {
    REQUIRE(t->insert(1, 11));
    REQUIRE(t->insert(2, 22));
    REQUIRE(t->setCustomerId(1, "c"));
    REQUIRE(t->setCustomerId(2, "c"));
    REQUIRE(t->setSession(1, std::string(3000, 's')));  // not an inline string
    REQUIRE(t->subscribe(1, {"t1", "only-one"}));
    REQUIRE(t->subscribe(2, {"t1"}));
    model[1] = MConn{"c", std::string(3000, 's'), {"t1", "only-one"}, 11};
    model[2] = MConn{"c", "", {"t1"}, 22};
  };
  MConns model;
  fill(model);
  uint64_t freeBefore = 0;
  for (int round = 0; round < 2; ++round) {  // the second round: nothing left behind
    CHECK(t->depart(1));
    model.erase(1);
    CHECK(diffThrough(*t, model) == "");
    CHECK(diffThrough(*reader, model) == "");
    CHECK(t->departedCount() == 1);
    reader->read([](const TableData&) {});
    CHECK(reader->departed()->count(1) == 1);
    CHECK_FALSE(t->depart(1));  // no longer a connection
    ConnSnapshot snap;
    REQUIRE(t->takeDeparted(1, &snap));
    CHECK(snap.customerId == "c");
    CHECK(snap.session == std::string(3000, 's'));
    std::sort(snap.topics.begin(), snap.topics.end());
    CHECK(snap.topics == std::vector<std::string>{"only-one", "t1"});  // its index entry is gone
    CHECK_FALSE(t->takeDeparted(1, &snap));
    CHECK(t->departedCount() == 0);
    CHECK(t->depart(2));
    CHECK(t->takeDeparted(2, nullptr));  // dropped unread
    model.erase(2);
    CHECK(diffThrough(*t, model) == "");
    if (round == 0) {
      freeBefore = t->freeBytes();
      fill(model);
    } else {
      CHECK(t->freeBytes() == freeBefore);
    }
  }
}

TEST_CASE("conn table: insert of an existing key leaves that connection untouched") {
  SegmentGuard guard(segName("c"));
  auto creator = ConnTable::create(guard.name, 4 << 20);
  REQUIRE(creator);
  auto t = openTable(guard.name, true);
  MConns model;
  REQUIRE(t->insert(9, 111));
  CHECK(t->setSession(9, "s"));
  CHECK(t->setCustomerId(9, "c"));
  CHECK(t->subscribe(9, {"t"}));
  model[9] = MConn{"c", "s", {"t"}, 111};
  CHECK_FALSE(t->insert(9, 222));
  CHECK(diffThrough(*t, model) == "");
}

// ---- 3. full segment --------------------------------------------------------------------------

TEST_CASE("conn table: a full segment refuses writes, stays consistent and recovers") {
  SegmentGuard guard(segName("d"));
  auto creator = ConnTable::create(guard.name, 384 << 10);  // 128 KiB of it: NamePresence
  REQUIRE(creator);
  auto t = openTable(guard.name, true);
  auto reader = openTable(guard.name, false);
  const std::string session(4096, 's');
  MConns model;

  // One step of filling: each write that reports success is applied to the model, one that
  // reports failure must have left the table as it was.
  uint64_t next = 1;
  auto fillOne = [&]() -> bool {
    uint64_t k = next++;
    if (!t->insert(k, k)) return false;
    model[k].localRef = k;
    if (!t->setCustomerId(k, "cust" + std::to_string(k % 5))) return false;
    model[k].customerId = "cust" + std::to_string(k % 5);
    std::string topic = "topic-" + std::to_string(k % 7) + "-with-a-long-enough-name";
    if (!t->subscribe(k, {topic})) return false;
    model[k].topics.insert(topic);
    if (!t->setSession(k, session)) return false;
    model[k].session = session;
    return true;
  };

  int filled = 0;
  while (fillOne()) {
    ++filled;
    REQUIRE(filled < 1000);  // 256 KiB cannot hold 1000 sessions of 4 KiB
  }
  MESSAGE("first full after " << filled << " complete connections, free " << t->freeBytes()
                              << " bytes");
  CHECK(filled > 5);
  CHECK(t->fullErrors() > 0);
  CHECK(diffThrough(*t, model) == "");
  CHECK(diffThrough(*reader, model) == "");
  CHECK(selfConsistency(*reader) == "");

  // Hammer the full table with every kind of write; each failure must leave no trace.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 300; ++i) {
    std::vector<uint64_t> ks;
    for (auto& [k, c] : model) ks.push_back(k);
    uint64_t k = ks[rng() % ks.size()];
    switch (rng() % 4) {
      case 0: {
        std::string v(1000 + rng() % 8000, 'v');
        if (t->setSession(k, v)) model[k].session = v;
        break;
      }
      case 1: {
        std::string v = "customer-" + std::to_string(rng() % 50) + std::string(rng() % 64, 'c');
        if (t->setCustomerId(k, v)) model[k].customerId = v;
        break;
      }
      case 2: {
        std::string v = "hammer-topic-" + std::to_string(rng() % 50) + std::string(rng() % 64, 't');
        if (t->subscribe(k, {v})) model[k].topics.insert(v);
        break;
      }
      default: {
        uint64_t nk = 100000 + rng() % 1000;
        if (!model.count(nk) && t->insert(nk, nk)) model[nk].localRef = nk;
        break;
      }
    }
    std::string d = diffThrough(*t, model);
    REQUIRE_MESSAGE(d.empty(), "hammer step " << i << ": " << d);
  }

  // Erasing connections frees space: writes succeed again.
  uint64_t errorsBefore = t->fullErrors();
  size_t half = model.size() / 2;
  while (model.size() > half) {
    uint64_t k = model.begin()->first;
    ConnSnapshot snap;
    REQUIRE(t->erase(k, &snap));
    CHECK(snap.session == model[k].session);
    model.erase(k);
  }
  CHECK(diffThrough(*t, model) == "");
  CHECK(diffThrough(*reader, model) == "");
  uint64_t k = model.begin()->first;
  CHECK(t->setSession(k, session));
  model[k].session = session;
  int refilled = 0;
  while (fillOne()) ++refilled;
  MESSAGE("after erasing half, " << refilled << " more complete connections fit");
  CHECK(refilled > 0);
  CHECK(t->fullErrors() > errorsBefore);
  CHECK(diffThrough(*t, model) == "");
  CHECK(selfConsistency(*reader) == "");

  // A multi-topic subscribe that runs out of space part way through its list: it reports false;
  // the table stays consistent, and the connection's old topics are all still there.
  {
    for (int i = 0; i < 6 && model.size() > 1; ++i) {  // make some room first
      REQUIRE(t->erase(model.begin()->first, nullptr));
      model.erase(model.begin());
    }
    uint64_t mk = model.begin()->first;
    MConn before = modelOf(*t, mk);
    std::vector<std::string> names;
    for (int i = 0; i < 3000; ++i)
      names.push_back("multi-" + std::to_string(i) + std::string(60, 'm'));
    std::vector<std::string_view> views(names.begin(), names.end());
    uint64_t errors = t->fullErrors();
    bool r = t->subscribe(mk, views);
    CHECK_FALSE(r);
    CHECK(t->fullErrors() == errors + 1);
    MConn after = modelOf(*t, mk);
    CHECK(selfConsistency(*t) == "");
    CHECK(selfConsistency(*reader) == "");
    for (const auto& topic : before.topics) CHECK(after.topics.count(topic) == 1);
    size_t added = after.topics.size() - before.topics.size();
    WARN_MESSAGE(added == 0, "subscribe() of " << names.size()
                                               << " topics returned false after adding " << added
                                               << " of them (partly applied)");
    model[mk] = after;
    CHECK(diffThrough(*t, model) == "");
    REQUIRE(t->erase(mk, nullptr));  // gives all of it back
    model.erase(mk);
    CHECK(t->insert(mk, mk));
    CHECK(t->setSession(mk, session));
    model[mk].localRef = mk;
    model[mk].session = session;
    CHECK(diffThrough(*t, model) == "");
  }

  // Empty it completely: nothing may be left behind in the indexes.
  while (!model.empty()) {
    REQUIRE(t->erase(model.begin()->first, nullptr));
    model.erase(model.begin());
  }
  t->read([](const TableData& d) {
    CHECK(d.conns.empty());
    CHECK(d.byCustomer.empty());
    CHECK(d.byTopic.empty());
  });
}

// ---- 4. robust lock ---------------------------------------------------------------------------

namespace {
char gAlarmSegment[128];
extern "C" void onAlarm(int) {
  static const char msg[] = "conn table test: read() hung on a lock whose owner died\n";
  ssize_t w = write(2, msg, sizeof msg - 1);
  (void)w;
  shm_unlink(gAlarmSegment);
  _exit(3);
}
}  // namespace

TEST_CASE("conn table: read() fails instead of hanging when the owner died holding the lock") {
  SegmentGuard guard(segName("e"));
  auto creator = ConnTable::create(guard.name, 1 << 20);
  REQUIRE(creator);
  auto owner = openTable(guard.name, true);
  auto reader = openTable(guard.name, false);
  REQUIRE(owner->insert(1, 1));
  REQUIRE(owner->setCustomerId(1, "c"));
  bool ran = false;
  CHECK(reader->read([&](const TableData& d) { ran = d.conns.size() == 1; }));
  CHECK(ran);
  CHECK_FALSE(reader->unlockedData().mutex.ownerDied());

  std::snprintf(gAlarmSegment, sizeof gAlarmSegment, "%s", guard.name.c_str());
  struct sigaction sa {};
  sa.sa_handler = onAlarm;
  struct sigaction old {};
  sigaction(SIGALRM, &sa, &old);
  alarm(10);

  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::string error;
    auto t = ConnTable::open(guard.name, true, error);
    if (!t) _exit(2);
    bool locked = const_cast<TableData&>(t->unlockedData()).mutex.lock();
    _exit(locked ? 0 : 1);  // dies holding the lock
  }
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);

  ran = false;
  bool ok = reader->read([&](const TableData&) { ran = true; });
  alarm(0);
  sigaction(SIGALRM, &old, nullptr);
  CHECK_FALSE(ok);
  CHECK_FALSE(ran);
  CHECK(reader->unlockedData().mutex.ownerDied());
  CHECK(creator->unlockedData().mutex.ownerDied());  // the flag lives in the segment
}
