// Wire-level checks of our copies of the netsvr protocol v6 .proto files: the generated C++
// classes must produce exactly the bytes that the Go implementation produces (hand-computed).
#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "cmd.pb.h"
#include "connInfoUpdate.pb.h"
#include "connOpen.pb.h"
#include "event.pb.h"
#include "limitResp.pb.h"
#include "metricsResp.pb.h"
#include "registerReq.pb.h"
#include "registerResp.pb.h"
#include "topicUniqIdListResp.pb.h"
#include "unRegisterResp.pb.h"
#include "uniqIdCountResp.pb.h"

namespace {

// "0a 01 75" -> "\x0a\x01\x75"; whitespace between byte pairs is ignored.
std::string H(std::string_view hex) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("bad hex digit");
  };
  std::string out;
  int hi = -1;
  for (char c : hex) {
    if (c == ' ') continue;
    int v = nibble(c);
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<char>((hi << 4) | v));
      hi = -1;
    }
  }
  if (hi >= 0) throw std::invalid_argument("odd number of hex digits");
  return out;
}

}  // namespace

TEST_CASE("proto: ConnInfoUpdate numbering skips field 2") {
  netsvr::connInfoUpdate::ConnInfoUpdate m;
  m.set_uniqid("u");
  m.set_newsession("s");
  CHECK(m.SerializeAsString() == H("0a 01 75 1a 01 73"));

  m.set_newcustomerid("c");
  m.add_newtopics("t1");
  m.add_newtopics("t2");
  m.set_data("d");
  CHECK(m.SerializeAsString() == H("0a 01 75"        // 1 uniqId
                                   "1a 01 73"        // 3 newSession
                                   "22 01 63"        // 4 newCustomerId
                                   "2a 02 74 31"     // 5 newTopics[0]
                                   "2a 02 74 32"     // 5 newTopics[1]
                                   "32 01 64"));     // 6 data
}

TEST_CASE("proto: TopicUniqIdListResp.items is field 2") {
  netsvr::topicUniqIdListResp::TopicUniqIdListResp m;
  (*m.mutable_items())["t"].add_uniqids("a");
  // outer tag 0x12 (field 2, LEN), entry: key 0a 01 't', value 12 03 {0a 01 'a'}
  CHECK(m.SerializeAsString() == H("12 08 0a 01 74 12 03 0a 01 61"));
}

TEST_CASE("proto: ConnOpen v6 numbering") {
  netsvr::connOpen::ConnOpen m;
  m.set_uniqid("u");
  m.set_rawquery("q=1");
  m.set_xforwardedfor("1.1.1.1");
  m.set_xrealip("2.2.2.2");
  m.set_remoteaddr("3.3.3.3:4");
  CHECK(m.SerializeAsString() == H("0a 01") + "u" + H("12 03") + "q=1" + H("1a 07") + "1.1.1.1" +
                                     H("22 07") + "2.2.2.2" + H("2a 09") + "3.3.3.3:4");
}

TEST_CASE("proto: RegisterResp / RegisterReq") {
  const std::string connId = "0123456789abcdef0123456789abcdef";
  REQUIRE(connId.size() == 32);

  netsvr::registerResp::RegisterResp resp;
  resp.set_code(netsvr::registerResp::Success);
  resp.set_message("Success");
  resp.set_connid(connId);
  // code == 0 is not encoded (proto3 implicit presence)
  CHECK(resp.SerializeAsString() == H("12 07") + "Success" + H("1a 20") + connId);

  netsvr::registerResp::RegisterResp dup;
  dup.set_code(netsvr::registerResp::DuplicateRegister);
  CHECK(dup.SerializeAsString() == H("08 03"));

  CHECK(netsvr::registerResp::Success == 0);
  CHECK(netsvr::registerResp::UnmarshalError == 1);
  CHECK(netsvr::registerResp::InvalidEvent == 2);
  CHECK(netsvr::registerResp::DuplicateRegister == 3);

  netsvr::registerReq::RegisterReq req;
  req.set_events(netsvr::event::OnOpen | netsvr::event::OnClose | netsvr::event::OnMessage);
  CHECK(req.SerializeAsString() == H("08 07"));
}

TEST_CASE("proto: MetricsRespItem field numbers and wire types") {
  netsvr::metricsResp::MetricsRespItem m;
  m.set_item(3);
  m.set_count(300);
  m.set_meanrate(1.0f);
  m.set_rate1(0.5f);
  m.set_rate5(2.0f);
  m.set_rate15(1.5f);
  CHECK(m.SerializeAsString() == H("08 03"             // 1 item int32
                                   "10 ac 02"          // 2 count int64 = 300
                                   "1d 00 00 80 3f"    // 3 meanRate float 1.0
                                   "2d 00 00 00 3f"    // 5 rate1 float 0.5
                                   "3d 00 00 00 40"    // 7 rate5 float 2.0
                                   "4d 00 00 c0 3f")); // 9 rate15 float 1.5

  netsvr::metricsResp::MetricsResp resp;
  (*resp.mutable_items())[3].set_item(3);
  // entry: key 08 03, value 12 02 {08 03}
  CHECK(resp.SerializeAsString() == H("0a 06 08 03 12 02 08 03"));
}

TEST_CASE("proto: default values encode to nothing") {
  netsvr::uniqIdCountResp::UniqIdCountResp m;
  m.set_count(0);
  CHECK(m.SerializeAsString().empty());
  m.set_count(5);
  CHECK(m.SerializeAsString() == H("08 05"));

  netsvr::unRegisterResp::UnRegisterResp u;
  CHECK(u.SerializeAsString().empty());
}

TEST_CASE("proto: negative int32 is a 10-byte varint") {
  netsvr::limitResp::LimitResp m;
  m.set_onopen(-1);
  CHECK(m.SerializeAsString() == H("08 ff ff ff ff ff ff ff ff ff 01"));
  m.set_onmessage(300);
  CHECK(m.SerializeAsString() == H("08 ff ff ff ff ff ff ff ff ff 01 10 ac 02"));

  netsvr::limitResp::LimitResp back;
  REQUIRE(back.ParseFromString(H("08 ff ff ff ff ff ff ff ff ff 01")));
  CHECK(back.onopen() == -1);
  CHECK(back.onmessage() == 0);
}

TEST_CASE("proto: Cmd and Event enum values") {
  CHECK(netsvr::cmd::Placeholder == 0);
  CHECK(netsvr::cmd::ConnOpen == 900001001);
  CHECK(netsvr::cmd::ConnClose == 900001002);
  CHECK(netsvr::cmd::Transfer == 900001003);
  CHECK(netsvr::cmd::ConnInfoUpdate == 900002001);
  CHECK(netsvr::cmd::ForceOfflineGuest == 900002017);
  CHECK(netsvr::cmd::Register == 900003001);
  CHECK(netsvr::cmd::Unregister == 900003002);
  CHECK(netsvr::cmd::TopicCustomerIdToUniqIdsList == 900003013);
  CHECK(netsvr::cmd::Metrics == 900003017);
  CHECK(netsvr::cmd::Limit == 900003018);
  CHECK(netsvr::cmd::Cmd_IsValid(900003018));
  CHECK_FALSE(netsvr::cmd::Cmd_IsValid(900003019));
  CHECK(netsvr::cmd::Cmd_Name(netsvr::cmd::TopicPublishBulk) == "TopicPublishBulk");

  CHECK(netsvr::event::Placeholder == 0);
  CHECK(netsvr::event::OnOpen == 1);
  CHECK(netsvr::event::OnClose == 2);
  CHECK(netsvr::event::OnMessage == 4);
}

TEST_CASE("proto: parse hand-made bytes") {
  SUBCASE("ConnInfoUpdate, legacy field 2 is skipped as unknown") {
    netsvr::connInfoUpdate::ConnInfoUpdate m;
    REQUIRE(m.ParseFromString(H("0a 01 75 12 01 78 1a 01 73 22 01 63 2a 01 61 2a 01 62 32 02 00 ff")));
    CHECK(m.uniqid() == "u");
    CHECK(m.newsession() == "s");
    CHECK(m.newcustomerid() == "c");
    REQUIRE(m.newtopics_size() == 2);
    CHECK(m.newtopics(0) == "a");
    CHECK(m.newtopics(1) == "b");
    CHECK(m.data() == H("00 ff"));
  }
  SUBCASE("RegisterReq from an old sender with field 2") {
    netsvr::registerReq::RegisterReq m;
    REQUIRE(m.ParseFromString(H("08 07 10 04")));
    CHECK(m.events() == 7);
  }
  SUBCASE("TopicUniqIdListResp") {
    netsvr::topicUniqIdListResp::TopicUniqIdListResp m;
    REQUIRE(m.ParseFromString(H("12 0b 0a 01 74 12 06 0a 01 61 0a 01 62")));
    REQUIRE(m.items_size() == 1);
    const auto& item = m.items().at("t");
    REQUIRE(item.uniqids_size() == 2);
    CHECK(item.uniqids(0) == "a");
    CHECK(item.uniqids(1) == "b");
  }
  SUBCASE("ConnOpen") {
    netsvr::connOpen::ConnOpen m;
    REQUIRE(m.ParseFromString(H("0a 01") + "u" + H("12 00 1a 03") + "1.2" + H("22 01") + "x" +
                              H("2a 03") + "a:1"));
    CHECK(m.uniqid() == "u");
    CHECK(m.rawquery().empty());
    CHECK(m.xforwardedfor() == "1.2");
    CHECK(m.xrealip() == "x");
    CHECK(m.remoteaddr() == "a:1");
  }
  SUBCASE("RegisterResp") {
    netsvr::registerResp::RegisterResp m;
    REQUIRE(m.ParseFromString(H("08 02 12 02") + "no"));
    CHECK(m.code() == netsvr::registerResp::InvalidEvent);
    CHECK(m.message() == "no");
    CHECK(m.connid().empty());
  }
  SUBCASE("MetricsResp") {
    netsvr::metricsResp::MetricsResp m;
    REQUIRE(m.ParseFromString(H("0a 0d 08 07 12 09 08 07 10 05 2d 00 00 00 3f")));
    REQUIRE(m.items().count(7) == 1);
    const auto& it = m.items().at(7);
    CHECK(it.item() == 7);
    CHECK(it.count() == 5);
    CHECK(it.rate1() == 0.5f);
    CHECK(it.meanrate() == 0.0f);
  }
  SUBCASE("round trip keeps the bytes") {
    const std::string wire = H("0a 01 75 1a 01 73 2a 01 61 32 01 64");
    netsvr::connInfoUpdate::ConnInfoUpdate m;
    REQUIRE(m.ParseFromString(wire));
    CHECK(m.SerializeAsString() == wire);
  }
}
