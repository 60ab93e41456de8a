#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/request_head.hpp"

using namespace netsvr::http;

namespace {

std::string upgrade(std::string line = "GET /netsvr HTTP/1.1", std::string extra = "") {
  return line +
         "\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
         extra + "\r\n";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  s.replace(s.find(from), from.size(), to);
  return s;
}

Verdict check(const std::string& head, const std::vector<std::string>& origins = {}) {
  HandshakeRules rules;
  rules.handlePattern = "/netsvr";
  rules.allowOrigin = &origins;
  return checkHandshake(head, rules);
}

}  // namespace

TEST_CASE("headLength finds the blank line") {
  CHECK(headLength("GET / HTTP/1.1\r\nHost: x\r\n") == 0);
  CHECK(headLength("GET / HTTP/1.1\r\n\r\nrest") == 18);
}

TEST_CASE("each row of the PROTOCOL.md 5.2 table, in order") {
  CHECK(check("HELLO\r\n\r\n").status == 400);
  CHECK(check("GET /netsvr HTTP/1.1\r\nHost x\r\n\r\n").body == "Bad Request");
  CHECK(check(upgrade("POST /netsvr HTTP/1.1")).status == 405);
  Verdict probe = check("GET /netsvr HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(probe.status == 200);
  CHECK(probe.body == "Hello netsvr");
  CHECK(check(upgrade("GET /other HTTP/1.1")).status == 404);
  CHECK(check(upgrade(), {"example.com"}).status == 403);
  CHECK(check(upgrade("GET /netsvr HTTP/1.1", "Origin: https://example.com\r\n"), {"example.com"})
            .status == 101);
  Verdict badUpgrade = check(replace(upgrade(), "Upgrade: websocket", "Upgrade: h2c"));
  CHECK(badUpgrade.status == 400);
  CHECK(badUpgrade.body == "invalid Upgrade header");
  CHECK(check(replace(upgrade(), "Connection: Upgrade", "Connection: keep-alive")).body ==
        "invalid Connection header");
  CHECK(
      check(replace(upgrade(), "Connection: Upgrade", "Connection: keep-alive, Upgrade")).status ==
      101);  // DECISIONS.md 2
  Verdict version = check(replace(upgrade(), "Version: 13", "Version: 8"));
  CHECK(version.status == 426);
  CHECK(refusalResponse(version) ==
        "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nSec-WebSocket-Version: "
        "13\r\n\r\nUpgrade Required");
  CHECK(check(upgrade("GET /netsvr HTTP/1.1", "Sec-WebSocket-Extensions: ;;,\r\n")).body ==
        "invalid Sec-WebSocket-Extensions header");
  CHECK(check(upgrade("GET /netsvr HTTP/1.1",
                      "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
            .status == 101);
  CHECK(check(replace(upgrade(), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")).body ==
        "missing Sec-WebSocket-Key");
}

TEST_CASE("an accepted head yields the raw query and the first forwarding headers") {
  std::string head = upgrade("GET /netsvr?a=%26&b+c&d HTTP/1.1",
                             "X-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n"
                             "x-real-ip: 4.4.4.4\r\nX-Real-IP: 5.5.5.5\r\n");
  Verdict v = check(head);  // views into `head`
  REQUIRE(v.status == 101);
  CHECK(v.rawQuery == "a=%26&b+c&d");
  CHECK(v.xForwardedFor == "1.1.1.1, 2.2.2.2");
  CHECK(v.xRealIp == "4.4.4.4");
  CHECK(refusalResponse(check(upgrade("GET /x HTTP/1.1"))) ==
        "HTTP/1.1 404 Not Found\r\nConnection: close\r\n\r\nNot Found");
}

TEST_CASE("an accepted head yields the key and whether extensions were offered; the 101") {
  Verdict v = check(upgrade());
  REQUIRE(v.status == 101);
  CHECK(v.wsKey == "dGhlIHNhbXBsZSBub25jZQ==");
  CHECK_FALSE(v.offersExtensions);
  CHECK(check(upgrade("GET /netsvr HTTP/1.1", "Sec-WebSocket-Extensions: permessage-deflate\r\n"))
            .offersExtensions);
  // RFC 6455 §1.3's example accept value for that key (computed by the worker with lws_SHA1).
  CHECK(upgradeResponse("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") ==
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
}
