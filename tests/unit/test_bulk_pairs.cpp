#include <doctest/doctest.h>

#include <string>
#include <utility>
#include <vector>

#include "common/bulk_pairs.hpp"

using netsvr::forEachBulkPair;
using Pairs = std::vector<std::pair<std::string, std::string>>;

static Pairs run(const std::vector<std::string>& targets, const std::vector<std::string>& items,
                 int failAfter = -1) {
  Pairs sent;
  forEachBulkPair(targets, items, [&](const std::string& t, const std::string& d) {
    sent.emplace_back(t, d);
    return failAfter < 0 || int(sent.size()) < failAfter;
  });
  return sent;
}

TEST_CASE("bulk rule 1: one target, several items, in order, empty items skipped") {
  CHECK(run({"u"}, {"a", "", "b"}) == Pairs{{"u", "a"}, {"u", "b"}});
}

TEST_CASE("bulk rule 1 stops at the first failed send") {
  CHECK(run({"u"}, {"a", "b", "c"}, 2) == Pairs{{"u", "a"}, {"u", "b"}});
}

TEST_CASE("bulk rule 2: pairs by index, empty items skipped; 1:1 falls here") {
  CHECK(run({"u1", "u2", "u3"}, {"a", "", "c"}) == Pairs{{"u1", "a"}, {"u3", "c"}});
  CHECK(run({"u"}, {"a"}) == Pairs{{"u", "a"}});
}

TEST_CASE("bulk rule 3: anything else sends nothing (no one-to-many)") {
  CHECK(run({"u1", "u2"}, {"a"}).empty());
  CHECK(run({"u1", "u2"}, {"a", "b", "c"}).empty());
  CHECK(run({}, {"a", "b"}).empty());
  CHECK(run({}, {}).empty());
  CHECK(run({"u"}, {}).empty());
}
