// Inbound websocket frames (client -> gateway) checked against PROTOCOL.md §6.1. Pure code: the
// worker reads the bytes (worker/ws_read.cpp) and acts on what this says. Outbound frames are
// built by libwebsockets, but for the headers of the io_uring path (serverFrameHeader());
// docs/DESIGN.md ("Reading client frames", "Writing to clients") says why.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace netsvr::ws {

enum Opcode : uint8_t {
  kContinuation = 0,
  kText = 1,
  kBinary = 2,
  kClose = 8,
  kPing = 9,
  kPong = 10
};

inline constexpr uint8_t kRsv1 = 4;  // FrameHeader::rsv is the three RSV bits, RSV1 the highest

// A breach of §6.1: the Close frame's code and reason, then the TCP connection is closed.
struct Violation {
  uint16_t code = 0;  // 0: none
  std::string_view reason;
  explicit operator bool() const { return code != 0; }
};

struct FrameHeader {
  bool fin = false;
  uint8_t rsv = 0;  // RSV1..RSV3 as a 3-bit number (RSV1 = 4)
  uint8_t opcode = 0;
  bool masked = false;
  uint8_t size = 0;     // header bytes: 2 to 14
  uint64_t length = 0;  // payload bytes
  uint8_t mask[4] = {};
  bool isControl() const { return opcode & 8; }
};

// Reads the header at the start of `bytes`; false while it is incomplete. It judges nothing:
// MessageState::accept() checks every rule, in the Go gateway's order.
bool parseHeader(std::string_view bytes, FrameHeader& header);

// Where a data frame belongs: the message it is part of, and whether it ends it.
struct FramePlace {
  bool endsMessage = false;
  uint8_t messageOpcode = 0;  // kText or kBinary, from the message's first frame
  bool compressed = false;    // the message's first frame had RSV1: inflate the whole message
};

// The header rules of §6.1 (opcodes, RSV bits, masking, lengths, fragmentation) and the
// message being read. check() judges a header without changing anything (it may be called again
// while the frame's payload arrives); advance() then moves the state past the frame (a first
// fragment opens a message, a final data frame ends it) and says where a data frame goes.
class MessageState {
 public:
  Violation check(const FrameHeader& header, bool compressionNegotiated) const;
  FramePlace advance(const FrameHeader& header);
  bool open() const { return opcode_ != 0; }  // a fragmented message is being read

 private:
  uint8_t opcode_ = 0;  // of the open message
  bool compressed_ = false;
};

// The header of an unmasked, final frame from us (RFC 6455 §5.2): 2, 4 or 10 bytes written to
// `out`, their count returned. For the io_uring send path only (worker/ws_write.cpp), which must
// hold a frame's bytes in its own buffers; every other frame is built by libwebsockets.
inline constexpr size_t kMaxServerHeader = 10;
size_t serverFrameHeader(uint8_t opcode, uint64_t length, uint8_t* out);

// Our Close frame's payload (§6.3): the 2-byte status code, then the reason cropped to 123 bytes.
std::string closePayload(uint16_t code, std::string_view reason);

// A client's Close payload: empty, or a valid status code with an optional UTF-8 reason.
Violation checkClosePayload(std::string_view payload);
bool validCloseCode(uint16_t code);

bool validUtf8(std::string_view text);

// XORs `n` payload bytes with the mask; `offset` is the position of p[0] within the payload.
void unmask(char* p, size_t n, const uint8_t mask[4], uint64_t offset = 0);

}  // namespace netsvr::ws
