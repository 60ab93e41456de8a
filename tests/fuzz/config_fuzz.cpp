// The config loader (common/config.*): any TOML text either parses into a Config or throws a
// ConfigError; nothing else may escape (libFuzzer reports an uncaught exception as a crash).
// normaliseAddresses is left out: it resolves host names (I/O).
#include <cstdint>
#include <string>

#include "common/config.hpp"
#include "tests/fuzz/check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  try {
    netsvr::Config c = netsvr::parseConfig(text, "/fuzz/netsvr.toml", "/fuzz");
    FUZZ_CHECK(c.resolvedWorkers() >= 1 && c.resolvedWorkers() <= 64);
    FUZZ_CHECK(c.resolvedSegmentSize() > 0);
  } catch (const netsvr::ConfigError& e) {
    FUZZ_CHECK(e.what()[0] != '\0');  // every refusal names the key
  }
  return 0;
}
