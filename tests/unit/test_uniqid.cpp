#include <doctest/doctest.h>

#include "common/uniqid.hpp"

using namespace netsvr;

TEST_CASE("uniqId is 28 hex chars: task ip, port, accept time, counter") {
  UniqIdParts parts{0x7F000001, 6062, 0x65000000, 0x01ABCDEF};
  std::string id = formatUniqId(parts);
  CHECK(id == "7f00000117ae6500000001abcdef");
  UniqIdParts back;
  REQUIRE(parseUniqId(id, back));
  CHECK(back.ip == parts.ip);
  CHECK(back.port == parts.port);
  CHECK(back.timestamp == parts.timestamp);
  CHECK(back.counter == parts.counter);
  CHECK(ownerSerialOf(back.counter) == 1);
  CHECK(uniqKeyOf(back.timestamp, back.counter) == 0x6500000001ABCDEFULL);
}

TEST_CASE("parseUniqId refuses anything but 28 hex characters") {
  UniqIdParts p;
  CHECK_FALSE(parseUniqId("", p));
  CHECK_FALSE(parseUniqId("7f00000117ae6500000001abcde", p));
  CHECK_FALSE(parseUniqId("7f00000117ae6500000001abcdefa", p));
  CHECK_FALSE(parseUniqId("7f00000117ae6500000001abcdeg", p));
  CHECK_FALSE(parseUniqId("7F00000117AE6500000001ABCDEF", p));  // exact strings only
  CHECK_FALSE(parseUniqId("7f00000117ae6500000001abcdeF", p));
}

TEST_CASE("the generator keeps the owner serial in the high byte and wraps the low 24 bits") {
  UniqIdGenerator gen(0x7F000001, 6062, 5, 0xFFFFFE);
  UniqIdParts a = gen.next(100);
  UniqIdParts b = gen.next(100);
  CHECK(a.counter == 0x05FFFFFF);
  CHECK(b.counter == 0x05000000);  // wrapped, serial kept
  CHECK(ownerSerialOf(b.counter) == 5);
  CHECK(formatUniqId(a).substr(0, 12) == "7f00000117ae");
}

TEST_CASE("connId is worker ip, port, peer ip, port, accept time") {
  CHECK(formatConnId(0x7F000001, 6061, 0x7F000001, 50000, 0x6A0B1C2D) ==
        "7f00000117ad7f000001c3506a0b1c2d");
}

TEST_CASE("a connection key and the task prefix give back the uniqId") {
  UniqIdParts parts{0x7F000001, 6062, 0x65000000, 0x01ABCDEF};
  std::string id = formatUniqId(parts);
  CHECK(uniqIdFromKey(id.substr(0, 12), uniqKeyOf(parts.timestamp, parts.counter)) == id);
}
