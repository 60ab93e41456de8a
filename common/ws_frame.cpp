#include "common/ws_frame.hpp"

#include <cstring>

namespace netsvr::ws {
namespace {

constexpr uint16_t kProtocolError = 1002;
constexpr uint16_t kInvalidPayload = 1007;
constexpr size_t kMaxControlPayload = 125;

constexpr Violation violation(uint16_t code, std::string_view reason) {
  return Violation{code, reason};
}

}  // namespace

bool parseHeader(std::string_view bytes, FrameHeader& h) {
  auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  size_t n = bytes.size();
  if (n < 2) return false;
  h.fin = p[0] & 0x80;
  h.rsv = uint8_t((p[0] >> 4) & 7);
  h.opcode = p[0] & 0x0F;
  h.masked = p[1] & 0x80;
  uint64_t len = p[1] & 0x7F;
  size_t at = 2;
  if (len == 126) {
    if (n < 4) return false;
    len = uint64_t(p[2]) << 8 | p[3];
    at = 4;
  } else if (len == 127) {
    if (n < 10) return false;
    len = 0;
    for (int i = 2; i < 10; ++i) len = len << 8 | p[i];
    at = 10;
  }
  if (h.masked) {
    if (n < at + 4) return false;
    memcpy(h.mask, p + at, 4);
    at += 4;
  }
  h.size = uint8_t(at);
  h.length = len;
  return true;
}

Violation MessageState::check(const FrameHeader& h, bool compression) const {
  switch (h.opcode) {
    case kContinuation:
    case kText:
    case kBinary:
    case kClose:
    case kPing:
    case kPong:
      break;
    default:
      return violation(kProtocolError, "unsupported opcode");
  }
  if (h.rsv) {
    if (!compression) return violation(kProtocolError, "RSV1 bits must be 0 without extensions");
    if (h.isControl() || h.opcode == kContinuation)
      return violation(kProtocolError, "RSV1 must be 0");
    if (h.rsv != kRsv1) return violation(kProtocolError, "RSV1 must be 0 or 4");
  }
  if (!h.masked) return violation(kProtocolError, "client must mask data");
  if (h.length >> 63) return violation(kProtocolError, "the most significant bit must be 0");
  if (h.isControl()) {
    if (!h.fin) return violation(kProtocolError, "control message MUST NOT be fragmented");
    if (h.length > kMaxControlPayload) return violation(kProtocolError, "control frame too long");
    if (h.opcode == kClose && h.length == 1)
      return violation(kProtocolError, "close frame payload length invalid");
    return {};
  }
  if (h.opcode == kContinuation && !opcode_)
    return violation(kProtocolError, "unexpected continuation frame: no message to continue");
  if (h.opcode != kContinuation && opcode_)
    return violation(kProtocolError, "non-first fragment must be continuation");
  return {};
}

FramePlace MessageState::advance(const FrameHeader& h) {
  if (h.isControl()) return {};
  if (h.opcode != kContinuation) {
    opcode_ = h.opcode;
    compressed_ = h.rsv == kRsv1;
  }
  FramePlace place{h.fin, opcode_, compressed_};
  if (h.fin) {
    opcode_ = 0;
    compressed_ = false;
  }
  return place;
}

// As the Go gateway: RFC 6455 §7.4 reserves 0-999, forbids sending 1004-1006 and leaves
// 1016-2999 to future standards; 1015 and codes of 5000 and more are let through as Go does.
bool validCloseCode(uint16_t code) {
  if (code < 1000) return false;
  if (code >= 1004 && code <= 1006) return false;
  if (code >= 1016 && code < 3000) return false;
  return true;
}

size_t serverFrameHeader(uint8_t opcode, uint64_t length, uint8_t* out) {
  out[0] = uint8_t(0x80 | (opcode & 0x0F));  // FIN, no RSV bits
  if (length < 126) {
    out[1] = uint8_t(length);
    return 2;
  }
  if (length <= 0xFFFF) {
    out[1] = 126;
    out[2] = uint8_t(length >> 8);
    out[3] = uint8_t(length);
    return 4;
  }
  out[1] = 127;
  for (int i = 0; i < 8; ++i) out[2 + i] = uint8_t(length >> (8 * (7 - i)));
  return 10;
}

std::string closePayload(uint16_t code, std::string_view reason) {
  std::string payload;
  payload.push_back(char(code >> 8));
  payload.push_back(char(code & 0xFF));
  payload.append(reason.substr(0, kMaxControlPayload - 2));
  return payload;
}

Violation checkClosePayload(std::string_view payload) {
  if (payload.empty()) return {};
  if (payload.size() == 1 || payload.size() > kMaxControlPayload)
    return violation(kProtocolError, "close frame payload length invalid");
  uint16_t code = uint16_t(uint8_t(payload[0]) << 8 | uint8_t(payload[1]));
  if (!validCloseCode(code)) return violation(kProtocolError, "invalid close status code");
  if (!validUtf8(payload.substr(2)))
    return violation(kInvalidPayload, "invalid utf8 in text message");
  return {};
}

// Well-formed UTF-8 as in Unicode's table 3-7: no overlong forms, no surrogates, nothing past
// U+10FFFF.
bool validUtf8(std::string_view text) {
  auto* p = reinterpret_cast<const uint8_t*>(text.data());
  size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    // Eight ASCII bytes at a time: the common case of chat text and JSON.
    if (i + 8 <= n) {
      uint64_t word;
      memcpy(&word, p + i, 8);
      if (!(word & 0x8080808080808080ULL)) {
        i += 8;
        continue;
      }
    }
    uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (i + need >= n) return false;  // truncated sequence
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k <= need; ++k)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += need + 1;
  }
  return true;
}

void unmask(char* p, size_t n, const uint8_t mask[4], uint64_t offset) {
  size_t i = 0;
  // Word at a time once the payload position is a multiple of 4 (the mask lines up).
  while (i < n && (offset + i) % 4) {
    p[i] = char(uint8_t(p[i]) ^ mask[(offset + i) % 4]);
    ++i;
  }
  uint32_t m32;
  memcpy(&m32, mask, 4);
  uint64_t m64 = uint64_t(m32) << 32 | m32;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    w ^= m64;
    memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] = char(uint8_t(p[i]) ^ mask[(offset + i) % 4]);
}

}  // namespace netsvr::ws
