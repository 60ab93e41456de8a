// The inflate path of permessage-deflate (worker/pm_deflate.cpp): the input picks frames,
// compressed or not, fragmented, with pongs between, against a small receive limit
// (tests/fuzz/pm_deflate_sim.hpp). No message outgrows the limit; no zlib state outlives its
// connection.
#include "tests/fuzz/pm_deflate_sim.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  pmd_sim::fuzzOne(data, size);
  return 0;
}
