#include "common/uniqid.hpp"

#include <cstdio>

namespace netsvr {
namespace {

void putBe(std::string& out, uint64_t value, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(char((value >> (8 * i)) & 0xFF));
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // a uniqId is an exact string: another spelling names no connection
}

bool readHex(std::string_view text, size_t at, int chars, uint64_t& out) {
  out = 0;
  for (int i = 0; i < chars; ++i) {
    int v = hexValue(text[at + i]);
    if (v < 0) return false;
    out = (out << 4) | uint64_t(v);
  }
  return true;
}

}  // namespace

std::string toHex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::string formatUniqId(const UniqIdParts& parts) {
  std::string raw;
  raw.reserve(14);
  putBe(raw, parts.ip, 4);
  putBe(raw, parts.port, 2);
  putBe(raw, parts.timestamp, 4);
  putBe(raw, parts.counter, 4);
  return toHex(raw);
}

bool parseUniqId(std::string_view text, UniqIdParts& parts) {
  if (text.size() != kUniqIdLength) return false;
  uint64_t ip, port, ts, counter;
  if (!readHex(text, 0, 8, ip) || !readHex(text, 8, 4, port) || !readHex(text, 12, 8, ts) ||
      !readHex(text, 20, 8, counter))
    return false;
  parts = UniqIdParts{uint32_t(ip), uint16_t(port), uint32_t(ts), uint32_t(counter)};
  return true;
}

std::string uniqIdPrefix(uint32_t taskIp, uint16_t taskPort) {
  char out[16];
  snprintf(out, sizeof out, "%08x%04x", taskIp, unsigned(taskPort));
  return out;
}

std::string uniqIdFromKey(std::string_view prefix, uint64_t key) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(prefix);
  for (int shift = 60; shift >= 0; shift -= 4) out.push_back(kDigits[(key >> shift) & 15]);
  return out;
}

std::string formatConnId(uint32_t workerIp, uint16_t workerPort, uint32_t peerIp, uint16_t peerPort,
                         uint32_t acceptTime) {
  std::string raw;
  raw.reserve(16);
  putBe(raw, workerIp, 4);
  putBe(raw, workerPort, 2);
  putBe(raw, peerIp, 4);
  putBe(raw, peerPort, 2);
  putBe(raw, acceptTime, 4);
  return toHex(raw);
}

}  // namespace netsvr
