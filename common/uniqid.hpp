// Identifiers of PROTOCOL.md §7.1 (uniqId) and §3.2 (connId). Pure code.
//
// uniqId = hex(taskIp:4 | taskPort:2 | acceptTime:4 | counter:4), 28 lowercase hex chars.
// The counter's high byte is the serial of the worker that owns the connection (DESIGN.md §3
// rule 4), so any worker finds the owner without searching; the low 24 bits count per worker.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace netsvr {

inline constexpr size_t kUniqIdLength = 28;
inline constexpr size_t kConnIdLength = 32;
inline constexpr int kMaxWorkerSerials = 256;  // one byte of the counter

struct UniqIdParts {
  uint32_t ip = 0;
  uint16_t port = 0;
  uint32_t timestamp = 0;  // unix seconds at accept
  uint32_t counter = 0;
};

std::string formatUniqId(const UniqIdParts& parts);
// False unless `text` is exactly 28 lowercase hex characters: uniqIds are compared as exact
// strings (PROTOCOL.md §7.1), so an upper-case spelling of a live id names no connection.
bool parseUniqId(std::string_view text, UniqIdParts& parts);

inline uint8_t ownerSerialOf(uint32_t counter) {
  return uint8_t(counter >> 24);
}
// The 64-bit key that identifies a connection inside one gateway (as Go's internal id).
inline uint64_t uniqKeyOf(uint32_t timestamp, uint32_t counter) {
  return (uint64_t(timestamp) << 32) | counter;
}

// Generates uniqIds for one worker. `seed` randomises the low 24 bits of the counter.
class UniqIdGenerator {
 public:
  UniqIdGenerator(uint32_t taskIp, uint16_t taskPort, uint8_t serial, uint32_t seed)
      : ip_(taskIp), port_(taskPort), serial_(serial), low_(seed & 0xFFFFFF) {}
  UniqIdParts next(uint32_t nowSeconds) {
    low_ = (low_ + 1) & 0xFFFFFF;  // incremented before each use, wrapping
    return UniqIdParts{ip_, port_, nowSeconds, (uint32_t(serial_) << 24) | low_};
  }

 private:
  uint32_t ip_;
  uint16_t port_;
  uint8_t serial_;
  uint32_t low_;
};

// The 12 hex characters every uniqId of a gateway starts with: its task address (IPv4, port).
std::string uniqIdPrefix(uint32_t taskIp, uint16_t taskPort);

// uniqId of a connection key, given the 12-hex-character task-address prefix.
std::string uniqIdFromKey(std::string_view prefix, uint64_t key);

// connId = hex(workerIp:4 | workerPort:2 | peerIp:4 | peerPort:2 | acceptTime:4).
std::string formatConnId(uint32_t workerIp, uint16_t workerPort, uint32_t peerIp, uint16_t peerPort,
                         uint32_t acceptTime);

// Lower-case hex of `bytes`.
std::string toHex(std::string_view bytes);

}  // namespace netsvr
