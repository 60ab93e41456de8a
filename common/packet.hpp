// netsvr business-link framing (PROTOCOL.md §2): [u32 BE length][payload], where a command
// payload is [u32 BE cmd][protobuf]. Pure code: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace netsvr {

inline constexpr size_t kLengthSize = 4;  // bytes of the length prefix
inline constexpr size_t kCmdSize = 4;     // bytes of the cmd inside the payload

inline uint32_t readBe32(const char* p) {
  auto* u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t(u[0]) << 24) | (uint32_t(u[1]) << 16) | (uint32_t(u[2]) << 8) | uint32_t(u[3]);
}
inline void writeBe32(char* p, uint32_t v) {
  p[0] = char(v >> 24);
  p[1] = char(v >> 16);
  p[2] = char(v >> 8);
  p[3] = char(v);
}

// Appends one command packet to `out`.
void appendPacket(std::string& out, uint32_t cmd, std::string_view body);
std::string encodePacket(uint32_t cmd, std::string_view body);

// Incremental decoder. Feed whatever the socket gave, then call next() until it says NeedMore.
// The payload view stays valid until the next feed() or next() call.
class PacketDecoder {
 public:
  enum class Status { NeedMore, Packet, TooLarge };

  explicit PacketDecoder(uint32_t maxLength) : maxLength_(maxLength) {}

  void feed(const char* data, size_t size);
  Status next(std::string_view& payload);
  // Bytes buffered but not yet returned (a partial packet).
  size_t buffered() const { return buffer_.size() - readPos_; }
  std::string_view pending() const { return std::string_view(buffer_).substr(readPos_); }
  // Frees the buffer when nothing is pending, so an idle link holds no memory.
  void shrinkIfIdle();

 private:
  uint32_t maxLength_;
  std::string buffer_;
  size_t readPos_ = 0;
};

// A decoded command payload: cmd plus protobuf body. Returns false when payload < 4 bytes.
inline bool splitCommand(std::string_view payload, uint32_t& cmd, std::string_view& body) {
  if (payload.size() < kCmdSize) return false;
  cmd = readBe32(payload.data());
  body = payload.substr(kCmdSize);
  return true;
}

}  // namespace netsvr
