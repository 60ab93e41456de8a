#include <doctest/doctest.h>

#include "common/handover_msg.hpp"
#include "common/packet.hpp"

using namespace netsvr;
using namespace netsvr::handover;

namespace {
// Strips the length prefix and checks that it matches.
std::string_view payloadOf(const std::string& packet) {
  REQUIRE(packet.size() >= 4);
  CHECK(readBe32(packet.data()) == packet.size() - 4);
  return std::string_view(packet).substr(4);
}
}  // namespace

TEST_CASE("an Offer survives encoding with every field, partial input included") {
  Offer in;
  in.taskPort = true;
  in.fromSerial = 7;
  in.fromLinkId = 42;
  in.events = 5;
  in.peerIp = 0x7f000001;
  in.peerPort = 54321;
  in.acceptedAt = 1700000000;
  in.connId = "7f00000117ae7f000001";
  in.input = std::string("\x00\x00\x00\x09\x35\xa4", 6);  // half a packet
  std::string packet = encodeOffer(in);
  Type type;
  std::string_view body;
  REQUIRE(decodeType(payloadOf(packet), type, body) == DecodeResult::Ok);
  CHECK(type == Type::Offer);
  Offer out;
  REQUIRE(decodeOffer(body, out) == DecodeResult::Ok);
  CHECK(out.version == kVersion);
  CHECK(out.taskPort);
  CHECK(out.fromSerial == 7);
  CHECK(out.fromLinkId == 42);
  CHECK(out.events == 5);
  CHECK(out.peerIp == 0x7f000001);
  CHECK(out.peerPort == 54321);
  CHECK(out.acceptedAt == 1700000000);
  CHECK(out.connId == in.connId);
  CHECK(out.input == in.input);
}

TEST_CASE("an Offer of a version this binary cannot read is told apart from a malformed one") {
  Offer in;
  in.version = kVersion + 1;
  in.fromLinkId = 77;
  std::string packet = encodeOffer(in);
  Type type;
  std::string_view body;
  REQUIRE(decodeType(payloadOf(packet), type, body) == DecodeResult::Ok);
  Offer out;
  CHECK(decodeOffer(body, out) == DecodeResult::UnknownVersion);
  CHECK(out.version == kVersion + 1);
  CHECK(out.fromLinkId == 77);  // so that the refusal names the link
  CHECK_FALSE(canRead(0));
  CHECK(canRead(kVersion));
}

TEST_CASE("truncated or padded Offers are malformed") {
  Offer in;
  in.connId = "abc";
  in.input = "xyz";
  std::string body(payloadOf(encodeOffer(in)).substr(4));
  Offer out;
  for (size_t n = 0; n < body.size(); ++n)
    CHECK(decodeOffer(std::string_view(body).substr(0, n), out) == DecodeResult::Malformed);
  CHECK(decodeOffer(body + "!", out) == DecodeResult::Malformed);
  std::string badPort = body;
  badPort[8] = 2;  // neither the worker nor the task port
  CHECK(decodeOffer(badPort, out) == DecodeResult::Malformed);
}

TEST_CASE("replies carry their ids, and a Refuse its reason") {
  for (Type t : {Type::Accept, Type::Refuse, Type::Drained, Type::Abort}) {
    Reply in{11, 22, "cannot take it"};
    std::string packet = encodeReply(t, in);
    Type type;
    std::string_view body;
    REQUIRE(decodeType(payloadOf(packet), type, body) == DecodeResult::Ok);
    CHECK(type == t);
    Reply out;
    REQUIRE(decodeReply(type, body, out) == DecodeResult::Ok);
    CHECK(out.linkId == 11);
    CHECK(out.newLinkId == (t == Type::Accept ? 22u : 0u));
    CHECK(out.reason == (t == Type::Refuse ? "cannot take it" : ""));
  }
}

TEST_CASE("unknown message types are malformed") {
  Type type;
  std::string_view body;
  std::string payload("\x00\x00\x00\x06", 4);
  CHECK(decodeType(payload, type, body) == DecodeResult::Malformed);
  CHECK(decodeType(std::string_view("\x00\x00", 2), type, body) == DecodeResult::Malformed);
}
