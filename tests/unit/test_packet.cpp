#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/packet.hpp"

using namespace netsvr;

TEST_CASE("encodePacket frames cmd and body with a length that excludes itself") {
  std::string p = encodePacket(900003007, "");
  CHECK(p == std::string("\x00\x00\x00\x04\x35\xA4\xF4\xBF", 8));
  p = encodePacket(900003007, std::string("\x08\x03", 2));
  CHECK(p == std::string("\x00\x00\x00\x06\x35\xA4\xF4\xBF\x08\x03", 10));
}

TEST_CASE("PacketDecoder returns whole packets from arbitrary pieces") {
  std::string stream = encodePacket(1, "abc") + encodePacket(2, "") + encodePacket(3, std::string(1000, 'x'));
  for (size_t step : {size_t(1), size_t(3), size_t(7), stream.size()}) {
    PacketDecoder decoder(1 << 20);
    std::vector<std::pair<uint32_t, std::string>> got;
    for (size_t at = 0; at < stream.size(); at += step) {
      decoder.feed(stream.data() + at, std::min(step, stream.size() - at));
      std::string_view payload;
      while (decoder.next(payload) == PacketDecoder::Status::Packet) {
        uint32_t cmd = 0;
        std::string_view body;
        REQUIRE(splitCommand(payload, cmd, body));
        got.emplace_back(cmd, std::string(body));
      }
    }
    REQUIRE(got.size() == 3);
    CHECK(got[0] == std::make_pair(1u, std::string("abc")));
    CHECK(got[1] == std::make_pair(2u, std::string()));
    CHECK(got[2].second.size() == 1000);
    CHECK(decoder.buffered() == 0);
  }
}

TEST_CASE("PacketDecoder refuses a length above the limit before reading the payload") {
  PacketDecoder decoder(10);
  std::string header("\x00\x00\x00\x0B", 4);  // 11 > 10
  decoder.feed(header.data(), header.size());
  std::string_view payload;
  CHECK(decoder.next(payload) == PacketDecoder::Status::TooLarge);
  PacketDecoder exact(10);
  std::string ok = std::string("\x00\x00\x00\x0A", 4) + std::string(10, 'y');
  exact.feed(ok.data(), ok.size());
  CHECK(exact.next(payload) == PacketDecoder::Status::Packet);
  CHECK(payload.size() == 10);
}

TEST_CASE("heartbeat and short payloads are visible to the caller as raw payloads") {
  PacketDecoder decoder(100);
  std::string hb = std::string("\x00\x00\x00\x0E", 4) + "~6YOt5rW35piO~";
  std::string zero("\x00\x00\x00\x00", 4);
  std::string both = hb + zero;
  decoder.feed(both.data(), both.size());
  std::string_view payload;
  REQUIRE(decoder.next(payload) == PacketDecoder::Status::Packet);
  CHECK(payload == "~6YOt5rW35piO~");
  REQUIRE(decoder.next(payload) == PacketDecoder::Status::Packet);
  CHECK(payload.empty());
  uint32_t cmd;
  std::string_view body;
  CHECK_FALSE(splitCommand(payload, cmd, body));
}

TEST_CASE("an idle decoder gives its buffer back") {
  PacketDecoder decoder(1 << 20);
  std::string p = encodePacket(7, std::string(5000, 'z'));
  decoder.feed(p.data(), p.size());
  std::string_view payload;
  REQUIRE(decoder.next(payload) == PacketDecoder::Status::Packet);
  decoder.shrinkIfIdle();
  CHECK(decoder.buffered() == 0);
}
