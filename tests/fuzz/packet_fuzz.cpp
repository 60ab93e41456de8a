// The business-link packet decoder (common/packet.*): the input is a byte stream from a business
// process, cut into reads at places the input chooses. Checks that every packet returned lies in
// what was fed, that TooLarge is final, that cutting the stream differently yields the same
// packets, and that re-encoding a command reproduces its bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "common/packet.hpp"
#include "tests/fuzz/check.hpp"

using namespace netsvr;

namespace {

// Decodes `stream` fed in pieces of `step` bytes (0: all at once); returns the packets and
// whether the decoder stopped at a TooLarge length.
std::vector<std::string> decode(std::string_view stream, size_t step, uint32_t limit,
                                bool& tooLarge) {
  PacketDecoder decoder(limit);
  std::vector<std::string> packets;
  tooLarge = false;
  size_t at = 0;
  while (at < stream.size() && !tooLarge) {
    size_t n = step ? std::min(step, stream.size() - at) : stream.size();
    decoder.feed(stream.data() + at, n);
    at += n;
    std::string_view payload;
    for (;;) {
      auto status = decoder.next(payload);
      if (status == PacketDecoder::Status::NeedMore) break;
      if (status == PacketDecoder::Status::TooLarge) {
        tooLarge = true;
        FUZZ_CHECK(decoder.next(payload) == PacketDecoder::Status::TooLarge);
        break;
      }
      FUZZ_CHECK(payload.size() <= limit);
      packets.emplace_back(payload);
      uint32_t cmd;
      std::string_view body;
      if (splitCommand(payload, cmd, body))
        FUZZ_CHECK(encodePacket(cmd, body).substr(4) == payload);
    }
    if (!tooLarge) decoder.shrinkIfIdle();
  }
  return packets;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // First byte: the read size; second: the ReceivePackLimit (small ones reach TooLarge).
  size_t step = data[0];
  uint32_t limit = data[1] < 128 ? uint32_t(data[1]) : uint32_t(data[1]) << 16;
  std::string_view stream(reinterpret_cast<const char*>(data + 2), size - 2);
  bool tooLargeA, tooLargeB;
  auto a = decode(stream, step, limit, tooLargeA);
  auto b = decode(stream, 0, limit, tooLargeB);
  FUZZ_CHECK(a == b);
  FUZZ_CHECK(tooLargeA == tooLargeB);
  return 0;
}
