// uniqId and connId parsing (common/uniqid.*), as a task command's uniqIds reach it: a parsed
// uniqId formats back to the same text (a uniqId is an exact lowercase string), the key round-trips through
// uniqIdFromKey, and formatConnId / toHex give fixed-length lowercase hex for any input.
#include <cstdint>
#include <cstring>
#include <string>

#include "common/uniqid.hpp"
#include "tests/fuzz/check.hpp"

using namespace netsvr;

namespace {

bool isLowerHex(const std::string& s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  UniqIdParts parts;
  if (parseUniqId(text, parts)) {
    FUZZ_CHECK(size == kUniqIdLength);
    std::string again = formatUniqId(parts);
    FUZZ_CHECK(again == text);
    std::string prefix = uniqIdPrefix(parts.ip, parts.port);
    FUZZ_CHECK(prefix.size() == 12 && isLowerHex(prefix));
    FUZZ_CHECK(uniqIdFromKey(prefix, uniqKeyOf(parts.timestamp, parts.counter)) == again);
    FUZZ_CHECK(ownerSerialOf(parts.counter) == uint8_t(parts.counter >> 24));
  } else {
    FUZZ_CHECK(size != kUniqIdLength ||
               text.find_first_not_of("0123456789abcdef") != std::string::npos);
  }
  if (size >= 16) {
    uint32_t v[4];
    memcpy(v, data, 16);
    std::string connId = formatConnId(v[0], uint16_t(v[1]), v[2], uint16_t(v[1] >> 16), v[3]);
    FUZZ_CHECK(connId.size() == kConnIdLength && isLowerHex(connId));
  }
  std::string hex = toHex(text);
  FUZZ_CHECK(hex.size() == 2 * size && isLowerHex(hex));
  return 0;
}
