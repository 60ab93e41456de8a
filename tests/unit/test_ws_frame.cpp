#include <doctest/doctest.h>

#include <string>

#include "common/ws_frame.hpp"

using namespace netsvr::ws;

namespace {

// A client frame: FIN/RSV/opcode byte, masked with 01 02 03 04 unless told otherwise.
std::string frame(uint8_t first, std::string payload, bool masked = true) {
  std::string out(1, char(first));
  uint8_t m = masked ? 0x80 : 0;
  if (payload.size() < 126) {
    out += char(m | payload.size());
  } else if (payload.size() < 65536) {
    out += char(m | 126);
    out += char(payload.size() >> 8);
    out += char(payload.size() & 0xFF);
  } else {
    out += char(m | 127);
    for (int i = 7; i >= 0; --i) out += char((uint64_t(payload.size()) >> (8 * i)) & 0xFF);
  }
  if (masked) {
    const uint8_t key[4] = {1, 2, 3, 4};
    out.append(reinterpret_cast<const char*>(key), 4);
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = char(payload[i] ^ key[i % 4]);
  }
  return out + payload;
}

Violation check(MessageState& state, const std::string& bytes, bool compression = false) {
  FrameHeader h;
  REQUIRE(parseHeader(bytes, h));
  Violation v = state.check(h, compression);
  if (!v) state.advance(h);
  return v;
}

uint16_t codeOf(const std::string& bytes, bool compression = false) {
  MessageState state;
  return check(state, bytes, compression).code;
}

}  // namespace

TEST_CASE("parseHeader waits for every header byte, then reads lengths and the mask") {
  std::string f = frame(0x81, std::string(300, 'a'));
  FrameHeader h;
  for (size_t n = 0; n < 8; ++n) CHECK_FALSE(parseHeader(std::string_view(f).substr(0, n), h));
  REQUIRE(parseHeader(f, h));
  CHECK(h.fin);
  CHECK(h.opcode == kText);
  CHECK(h.size == 8);
  CHECK(h.length == 300);
  CHECK(h.masked);
  std::string big = frame(0x82, std::string(70000, 'b'));
  REQUIRE(parseHeader(big, h));
  CHECK(h.size == 14);
  CHECK(h.length == 70000);
  std::string payload = big.substr(14);
  unmask(payload.data(), payload.size(), h.mask);
  CHECK(payload == std::string(70000, 'b'));
}

TEST_CASE("unmask works from any offset of the payload") {
  const uint8_t key[4] = {9, 8, 7, 6};
  std::string text = "the quick brown fox jumps over the lazy dog";
  std::string masked = text;
  unmask(masked.data(), masked.size(), key);
  std::string back = masked;
  unmask(back.data(), 5, key, 0);
  unmask(back.data() + 5, back.size() - 5, key, 5);
  CHECK(back == text);
}

TEST_CASE("every row of the PROTOCOL.md 6.1 table gives its close code") {
  CHECK(codeOf(frame(0x83, "x")) == 1002);                     // reserved opcode
  CHECK(codeOf(frame(0x8B, "x")) == 1002);                     // reserved control opcode
  CHECK(codeOf(frame(0xC1, "x")) == 1002);                     // RSV1 without compression
  CHECK(codeOf(frame(0xA1, "x"), true) == 1002);               // RSV2 with compression
  CHECK(codeOf(frame(0xC9, "x"), true) == 1002);               // RSV1 on a control frame
  CHECK(codeOf(frame(0x81, "x", false)) == 1002);              // not masked
  CHECK(codeOf(frame(0x80, "x")) == 1002);                     // continuation, no message
  CHECK(codeOf(frame(0x09, "x")) == 1002);                     // fragmented control frame
  CHECK(codeOf(frame(0x89, std::string(126, 'p'))) == 1002);   // control frame > 125
  CHECK(codeOf(frame(0x88, std::string(1, '\x03'))) == 1002);  // close payload of 1 byte
  std::string msb = std::string("\x81\xFF\x80\0\0\0\0\0\0\0\1\2\3\4", 14);
  CHECK(codeOf(msb) == 1002);
  MessageState open;
  CHECK_FALSE(check(open, frame(0x01, "a")));
  CHECK(check(open, frame(0x81, "b")).code == 1002);  // data frame inside a message
  MessageState rsvCont;
  CHECK_FALSE(check(rsvCont, frame(0x41, "a"), true));
  CHECK(check(rsvCont, frame(0xC0, "b"), true).code == 1002);  // RSV1 on a continuation
}

TEST_CASE("fragments with control frames between them make one message") {
  MessageState state;
  FrameHeader h;
  std::string f1 = frame(0x41, "a");  // text, RSV1, not final
  REQUIRE(parseHeader(f1, h));
  CHECK_FALSE(state.check(h, true));
  CHECK_FALSE(state.check(h, true));  // judging again changes nothing
  CHECK_FALSE(state.advance(h).endsMessage);
  CHECK(state.open());
  std::string ping = frame(0x89, "p");
  REQUIRE(parseHeader(ping, h));
  CHECK_FALSE(state.check(h, true));
  state.advance(h);
  std::string f2 = frame(0x80, "b");
  REQUIRE(parseHeader(f2, h));
  CHECK_FALSE(state.check(h, true));
  FramePlace place = state.advance(h);
  CHECK(place.endsMessage);
  CHECK(place.messageOpcode == kText);
  CHECK(place.compressed);
  CHECK_FALSE(state.open());
}

TEST_CASE("close payloads: codes and reasons") {
  CHECK_FALSE(checkClosePayload(""));
  CHECK_FALSE(checkClosePayload(std::string("\x03\xE8", 2)));
  CHECK_FALSE(checkClosePayload(std::string("\x03\xE8", 2) + "bye"));
  for (int code : {0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999})
    CHECK(checkClosePayload(std::string{char(code >> 8), char(code & 0xFF)}).code == 1002);
  for (int code : {1000, 1001, 1002, 1003, 1007, 1011, 1015, 3000, 4999})
    CHECK_FALSE(checkClosePayload(std::string{char(code >> 8), char(code & 0xFF)}));
  CHECK(checkClosePayload(std::string("\x03\xE8\xFF", 3)).code == 1007);
}

TEST_CASE("our close payload: code, then the reason cropped to 123 bytes (§6.3)") {
  CHECK(closePayload(1001, "heartbeat timeout") == std::string("\x03\xE9heartbeat timeout", 19));
  std::string longReason(200, 'r');
  CHECK(closePayload(1011, longReason) == std::string("\x03\xF3", 2) + std::string(123, 'r'));
  CHECK_FALSE(checkClosePayload(closePayload(1011, longReason)));
}

TEST_CASE("UTF-8: well-formed text only") {
  CHECK(validUtf8(""));
  CHECK(validUtf8("plain ascii text, long enough for the word loop"));
  CHECK(validUtf8("\xCE\xBA\xE1\xBD\xB9\xF0\x9F\x98\x80"));  // κό😀
  CHECK(validUtf8("\xF4\x8F\xBF\xBF"));                      // U+10FFFF
  CHECK_FALSE(validUtf8("\xFF"));
  CHECK_FALSE(validUtf8("\xC0\xAF"));              // overlong '/'
  CHECK_FALSE(validUtf8("\xE0\x80\xAF"));          // overlong
  CHECK_FALSE(validUtf8("\xED\xA0\x80"));          // surrogate
  CHECK_FALSE(validUtf8("\xF4\x90\x80\x80"));      // past U+10FFFF
  CHECK_FALSE(validUtf8("abc\xCE"));               // truncated
  CHECK_FALSE(validUtf8("abcdefgh\xCE\xBA\xCE"));  // truncated after the word loop
}

TEST_CASE("serverFrameHeader: FIN, the opcode, no mask, and the shortest length form") {
  struct Case {
    uint8_t opcode;
    uint64_t length;
    std::string header;
  };
  const Case cases[] = {
      {kText, 0, std::string("\x81\x00", 2)},
      {kText, 125, "\x81\x7d"},
      {kBinary, 126, std::string("\x82\x7e\x00\x7e", 4)},
      {kText, 65535, "\x81\x7e\xff\xff"},
      {kText, 65536, std::string("\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10)},
      {kBinary, 0x0102030405060708ull, "\x82\x7f\x01\x02\x03\x04\x05\x06\x07\x08"},
  };
  for (const Case& c : cases) {
    uint8_t out[kMaxServerHeader] = {};
    size_t n = serverFrameHeader(c.opcode, c.length, out);
    CAPTURE(c.length);
    CHECK(std::string(reinterpret_cast<char*>(out), n) == c.header);
    // and our own parser reads back what it says
    FrameHeader h;
    std::string bytes(reinterpret_cast<char*>(out), n);
    REQUIRE(parseHeader(bytes, h));
    CHECK(h.fin);
    CHECK(h.rsv == 0);
    CHECK(h.opcode == c.opcode);
    CHECK_FALSE(h.masked);
    CHECK(h.length == c.length);
    CHECK(h.size == n);
  }
}
