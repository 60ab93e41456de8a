// The reload handover messages (common/handover_msg.*): they come from another worker of the
// instance, but a binary upgrade may pair two versions. Checks that decoding any payload never
// reads out of bounds, and that whatever decodes re-encodes to the same bytes.
#include <cstdint>
#include <string>

#include "common/handover_msg.hpp"
#include "common/packet.hpp"
#include "tests/fuzz/check.hpp"

using namespace netsvr;
using namespace netsvr::handover;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view payload(reinterpret_cast<const char*>(data), size);
  Type type;
  std::string_view body;
  if (decodeType(payload, type, body) != DecodeResult::Ok) return 0;
  if (type == Type::Offer) {
    Offer offer;
    auto result = decodeOffer(body, offer);
    if (result == DecodeResult::Ok) {
      FUZZ_CHECK(canRead(offer.version));
      FUZZ_CHECK(encodeOffer(offer).substr(kLengthSize) == payload);
    }
    return 0;
  }
  Reply reply;
  if (decodeReply(type, body, reply) == DecodeResult::Ok)
    FUZZ_CHECK(encodeReply(type, reply).substr(kLengthSize) == payload);
  return 0;
}
