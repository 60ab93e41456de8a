// libFuzzer target: a client's byte stream through the frame parser and the §6.1 rules, as
// worker/ws_read.cpp drives them (header, check, advance, payload, close payload, UTF-8).
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/ws_frame.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  netsvr::ws::MessageState state;
  bool compression = size && (data[0] & 1);
  std::string message;
  size_t at = 0;
  while (at < bytes.size()) {
    netsvr::ws::FrameHeader h;
    if (!netsvr::ws::parseHeader(std::string_view(bytes).substr(at), h)) break;
    if (state.check(h, compression)) break;  // a violation ends the connection
    if (bytes.size() - at - h.size < h.length) break;
    netsvr::ws::FramePlace place = state.advance(h);
    char* payload = bytes.data() + at + h.size;
    netsvr::ws::unmask(payload, size_t(h.length), h.mask, at % 7);
    std::string_view p(payload, size_t(h.length));
    at += h.size + size_t(h.length);
    if (h.opcode == netsvr::ws::kClose) {
      netsvr::ws::checkClosePayload(p);
      break;
    }
    if (h.isControl()) continue;
    if (message.size() + p.size() > (1u << 20)) break;
    message.append(p);
    if (place.endsMessage) {
      if (place.messageOpcode == netsvr::ws::kText) netsvr::ws::validUtf8(message);
      message.clear();
    }
  }
  return 0;
}
