// libFuzzer target: a client's request head through the §5.2 checks (common/request_head).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/request_head.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  static const std::vector<std::string> kOrigins = {"example.com"};
  netsvr::http::HandshakeRules rules;
  rules.handlePattern = "/netsvr";
  rules.allowOrigin = size && (data[0] & 1) ? &kOrigins : nullptr;
  size_t head = netsvr::http::headLength(bytes);
  netsvr::http::Verdict v = netsvr::http::checkHandshake(head ? bytes.substr(0, head) : bytes, rules);
  if (v.status != 101) {
    std::string response = netsvr::http::refusalResponse(v);
    if (response.compare(0, 9, "HTTP/1.1 ") != 0) __builtin_trap();
  } else if (v.rawQuery.size() > size || v.xForwardedFor.size() > size) {
    __builtin_trap();
  }
  return 0;
}
