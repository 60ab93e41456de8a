// Unit tests of worker/pm_deflate's core, driven like lws 4.1.6 drives it
// (tests/fuzz/pm_deflate_sim.hpp).
#include <doctest/doctest.h>

#define PMD_CHECK(c) CHECK(c)
#define PMD_REQUIRE(c) REQUIRE(c)
#include "tests/fuzz/pm_deflate_sim.hpp"

using namespace pmd_sim;

TEST_CASE("pm_deflate: offers we accept and decline") {
  setup();
  struct Case {
    const char* offer;
    bool accepted;
  } cases[] = {
      {"permessage-deflate", true},
      {"permessage-deflate; client_max_window_bits", true},
      {"permessage-deflate; client_max_window_bits=10; client_no_context_takeover", true},
      {"permessage-deflate;server_no_context_takeover;client_no_context_takeover", true},
      {"permessage-deflate; server_max_window_bits=12", true},
      {"permessage-deflate; server_max_window_bits=\"9\"", true},
      {"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits", true},
      {"permessage-deflate; server_max_window_bits=8", false},
      {"permessage-deflate; server_max_window_bits", false},
      {"permessage-deflate; server_max_window_bits=16", false},
      {"permessage-deflate; client_max_window_bits=7", false},
      {"permessage-deflate; client_no_context_takeover=1", false},
      {"permessage-deflate; client_no_context_takeover; client_no_context_takeover", false},
      {"permessage-deflate; foo", false},
      {"permessage-deflate; ;", false},
      {"x-webkit-deflate-frame", false},
      {"", false},
  };
  for (const auto& c : cases) {
    detail::Conn* conn = detail::construct(c.offer);
    CHECK_MESSAGE((conn != nullptr) == c.accepted, c.offer);
    detail::destroy(conn);
  }
}

TEST_CASE("pm_deflate: response additions") {
  setup();
  detail::Conn* c = detail::construct(
      "permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
  detail::optionEchoed(c, 1);  // lws echoed client_no_context_takeover
  char buf[128] = {};
  size_t n = detail::responseAdditions(c, buf, sizeof buf);
  CHECK(std::string(buf, n) == "; server_no_context_takeover; server_max_window_bits=10");
  CHECK(detail::clientNoContextTakeover(c));
  CHECK(detail::responseAdditions(c, buf, 4) == 0);  // does not fit: nothing written
  detail::destroy(c);
}

TEST_CASE("pm_deflate: compressed messages survive any framing, chunking and interleaved pongs") {
  setup();
  std::mt19937 rng(12345);
  Sim sim;
  std::vector<std::string> sent;
  for (int i = 0; i < 400; ++i) {
    std::string data = sample(rng, i % 50 == 0 ? 300000 : 5000);
    bool compress = rng() % 4 != 0;
    sim.message(data, compress, rng, rng() % 2);
    sent.push_back(data);
    REQUIRE_FALSE(sim.dropped);
    CHECK_FALSE(detail::holdsInflater(sim.conn));  // inflate state only while reading a message
  }
  REQUIRE(sim.messages.size() == sent.size());
  for (size_t i = 0; i < sent.size(); ++i) CHECK(sim.messages[i] == sent[i]);
  for (const auto& p : sim.pongs) CHECK(p.rfind("pong ", 0) == 0);
  CHECK(pmd::stats().inflatersLive == 0);
}

TEST_CASE("pm_deflate: 3077 x, empty messages and an empty final continuation") {
  setup();
  std::mt19937 rng(1);
  Sim sim;
  sim.frame(1, true, 0x40, deflateRaw(std::string(3077, 'x'), false), rng);
  sim.frame(1, true, 0x40, "", rng);                    // empty compressed message
  sim.frame(2, true, 0x40, deflateRaw("", true), rng);  // empty, with BFINAL
  std::string c = deflateRaw(std::string(5000, 'y'), false);
  sim.frame(1, false, 0x40, c, rng);
  sim.frame(0, true, 0, "", rng);  // the message ends with an empty continuation frame
  REQUIRE_FALSE(sim.dropped);
  REQUIRE(sim.messages.size() == 4);
  CHECK(sim.messages[0] == std::string(3077, 'x'));
  CHECK(sim.messages[1].empty());
  CHECK(sim.messages[2].empty());
  CHECK(sim.messages[3] == std::string(5000, 'y'));
}

TEST_CASE("pm_deflate: protocol errors fail the connection") {
  std::mt19937 rng(2);
  auto run = [&](auto&& act) {
    setup();
    Sim sim;
    act(sim);
    return sim.dropped;
  };
  CHECK(run([&](Sim& s) { s.frame(1, true, 0x40, std::string(40, '\xff'), rng); }));
  CHECK(run([&](Sim& s) {  // RSV1 on a continuation
    std::string c = deflateRaw(std::string(900, 'a'), false);
    s.frame(1, false, 0x40, c.substr(0, 3), rng);
    s.frame(0, true, 0x40, c.substr(3), rng);
  }));
  CHECK(run([&](Sim& s) { s.frame(10, true, 0x40, "pong", rng); }));  // RSV1 on a control frame
  CHECK(run([&](Sim& s) { s.frame(1, true, 0x40, deflateRaw("abc", true) + "zz", rng); }));
  CHECK_FALSE(run([&](Sim& s) { s.frame(1, true, 0, std::string(40, '\xff'), rng); }));  // plain
}

TEST_CASE("pm_deflate: the inflated size is bounded by the receive limit") {
  std::mt19937 rng(3);
  for (uint64_t limit : {1000ull, 65536ull, 1048576ull}) {
    setup(6, limit);
    Sim sim("permessage-deflate", limit);
    std::string bomb = deflateRaw(std::string(20 * 1048576, '\0'), false);  // 20 MiB of zeros
    sim.frame(1, true, 0x40, bomb, rng);
    CHECK(sim.tooBig);  // the protocol callback saw it grow past the limit (1009)
    CHECK_FALSE(sim.dropped);
    CHECK(sim.messages.empty());
    CHECK(pmd::stats().oversized == 1);
    CHECK_FALSE(detail::holdsInflater(sim.conn));
    // exactly at the limit is fine
    Sim ok("permessage-deflate", limit);
    ok.frame(1, true, 0x40, deflateRaw(std::string(limit, 'q'), false), rng);
    REQUIRE(ok.messages.size() == 1);
    CHECK(ok.messages[0].size() == limit);
    CHECK_FALSE(ok.tooBig);
  }
}

TEST_CASE("pm_deflate: outgoing messages are deflated once, small ones are left alone") {
  setup(6);
  detail::Conn* a = detail::construct("permessage-deflate");
  detail::Conn* b = detail::construct("permessage-deflate");
  std::string text(10000, '\0');
  for (size_t i = 0; i < text.size(); ++i) text[i] = "hello world "[i % 12];
  std::vector<unsigned char> buf1(kPre + text.size()), buf2(kPre + text.size());
  memcpy(buf1.data() + kPre, text.data(), text.size());
  memcpy(buf2.data() + kPre, text.data(), text.size());

  detail::Ebufs e1{{buf1.data() + kPre, int(text.size())}, {buf1.data() + kPre, int(text.size())}};
  CHECK(detail::tx(a, e1, 0 /* LWS_WRITE_TEXT */) == 0);
  REQUIRE(e1.out.token != e1.in.token);
  std::string wire(reinterpret_cast<char*>(e1.out.token), size_t(e1.out.len));
  CHECK(inflateRaw(wire) == text);
  unsigned char hdr[4] = {0x81, 0x7e, 0, 0};
  detail::Token frame{hdr, 4};
  detail::txPresend(a, &frame);
  CHECK(hdr[0] == 0xC1);  // FIN | RSV1 | TEXT

  // the same bytes from another buffer, for another connection: no second deflate
  detail::Ebufs e2{{buf2.data() + kPre, int(text.size())}, {buf2.data() + kPre, int(text.size())}};
  detail::tx(b, e2, 1 /* LWS_WRITE_BINARY */);
  CHECK(std::string(reinterpret_cast<char*>(e2.out.token), size_t(e2.out.len)) == wire);
  CHECK(pmd::stats().deflatedMessages == 1);
  CHECK(pmd::stats().cacheHits == 1);

  // changed content at the same address is not served from the cache
  buf1[kPre + 5] = 'X';
  detail::Ebufs e3{{buf1.data() + kPre, int(text.size())}, {buf1.data() + kPre, int(text.size())}};
  detail::tx(a, e3, 0);
  std::string changed = text;
  changed[5] = 'X';
  CHECK(inflateRaw(std::string(reinterpret_cast<char*>(e3.out.token), size_t(e3.out.len))) ==
        changed);
  CHECK(pmd::stats().deflatedMessages == 2);

  // under 256 bytes, fragments, control frames and incompressible data: untouched, RSV1 = 0
  auto untouched = [&](size_t len, int wp, bool random) {
    std::vector<unsigned char> p(kPre + len);
    for (size_t i = 0; i < len; ++i) p[kPre + i] = random ? (unsigned char)(rand()) : 'a';
    detail::Ebufs e{{p.data() + kPre, int(len)}, {p.data() + kPre, int(len)}};
    detail::tx(a, e, wp);
    unsigned char h[2] = {0x81, 0};
    detail::Token fr{h, 2};
    detail::txPresend(a, &fr);
    return e.out.token == p.data() + kPre && h[0] == 0x81;
  };
  CHECK(untouched(255, 0, false));
  CHECK_FALSE(untouched(256, 0, false));
  CHECK(untouched(5000, 0 | 0x40 /* NO_FIN */, false));
  CHECK(untouched(5000, 2 /* CONTINUATION */, false));
  CHECK(untouched(5000, 0, true));
  detail::destroy(a);
  detail::destroy(b);
}

TEST_CASE("pm_deflate: server_max_window_bits and every level") {
  std::string text;
  for (int i = 0; i < 3000; ++i) text += std::to_string(i * 7919 % 1000) + " ";
  for (int level : {-2, -1, 1, 5, 9}) {
    for (int wbits : {9, 12, 15}) {
      setup(level);
      std::string offer = "permessage-deflate; server_max_window_bits=" + std::to_string(wbits);
      detail::Conn* c = detail::construct(offer.c_str());
      std::vector<unsigned char> p(kPre + text.size());
      memcpy(p.data() + kPre, text.data(), text.size());
      detail::Ebufs e{{p.data() + kPre, int(text.size())}, {p.data() + kPre, int(text.size())}};
      detail::tx(c, e, 0);
      REQUIRE(e.out.token != e.in.token);
      CHECK(inflateRaw(std::string(reinterpret_cast<char*>(e.out.token), size_t(e.out.len)),
                       wbits) == text);
      detail::destroy(c);
    }
  }
}

TEST_CASE("pm_deflate: random input never crashes, spins or outgrows the limit") {
  std::mt19937 rng(99);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> input(rng() % 2000);
    for (auto& b : input) b = uint8_t(rng());
    fuzzOne(input.data(), input.size());
  }
}
