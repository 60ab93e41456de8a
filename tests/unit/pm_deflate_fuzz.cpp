// Unit and fuzz tests of worker/pm_deflate's core, driven the way lws 4.1.6's server side drives
// an extension (see the "How lws 4.1.6 calls" comment in worker/pm_deflate.cpp):
//  - data payload in chunks straight from the read buffer ("bulk"), then an empty "spill" call
//    whose user callback is suppressed; zero-length data frames as one empty call;
//  - PONG payloads through the connection's rx_ubuf; PING/CLOSE never reach the extension.
// Built as a doctest suite (default), or as a libFuzzer target with -DPMD_LIBFUZZER.
#include <zlib.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "worker/pm_deflate.hpp"

#ifndef PMD_LIBFUZZER
#include <doctest/doctest.h>
#define PMD_CHECK(c) CHECK(c)
#define PMD_REQUIRE(c) REQUIRE(c)
#else
#include <cstdio>
#include <cstdlib>
#define PMD_CHECK(c) \
  do {               \
    if (!(c)) {      \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
      abort();       \
    }                \
  } while (0)
#define PMD_REQUIRE(c) PMD_CHECK(c)
#endif

namespace pmd = netsvr::pmd;
namespace detail = netsvr::pmd::detail;

namespace {

constexpr size_t kPre = 16;  // LWS_PRE on x86-64

std::string deflateRaw(const std::string& in, bool bfinal, int level = 6, int wbits = 15) {
  z_stream z{};
  deflateInit2(&z, level, Z_DEFLATED, -wbits, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, uLong(in.size())) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = uInt(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  deflate(&z, bfinal ? Z_FINISH : Z_SYNC_FLUSH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (!bfinal && out.size() >= 4 && out.compare(out.size() - 4, 4, std::string("\0\0\xff\xff", 4)) == 0)
    out.resize(out.size() - 4);
  return out;
}

std::string inflateRaw(const std::string& in, int wbits = 15) {
  z_stream z{};
  inflateInit2(&z, -wbits);
  std::string src = in + std::string("\0\0\xff\xff", 4);
  std::string out;
  char buf[16384];
  z.next_in = reinterpret_cast<Bytef*>(src.data());
  z.avail_in = uInt(src.size());
  int r;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof buf;
    r = inflate(&z, Z_SYNC_FLUSH);
    out.append(buf, sizeof buf - z.avail_out);
  } while ((r == Z_OK && z.avail_out == 0) || (r == Z_OK && z.avail_in));
  inflateEnd(&z);
  return out;
}

// One simulated server connection: lws's calls into the extension and a protocol callback that
// reassembles messages and enforces the limit like worker/ws_server.cpp.
struct Sim {
  detail::Conn* conn;
  uint64_t limit;
  std::vector<unsigned char> rxUbuf = std::vector<unsigned char>(kPre + 1024 + 4);
  bool firstFragment = false;
  bool dropped = false;    // the extension failed the connection
  bool tooBig = false;     // the protocol callback saw a message over the limit (1009)
  std::string partial;
  std::vector<std::string> messages;
  std::vector<std::string> pongs;

  explicit Sim(const char* offer = "permessage-deflate; client_max_window_bits", uint64_t lim = 1 << 20)
      : conn(detail::construct(offer)), limit(lim) {
    char line[256];
    detail::responseAdditions(conn, line, sizeof line);  // as the ADD_HEADERS hook does
  }
  ~Sim() { detail::destroy(conn); }

  void receive(const detail::Token& out, size_t remaining, bool finalFrag) {
    if (tooBig) return;
    if (partial.size() + size_t(out.len) + remaining > limit) {
      tooBig = true;
      partial.clear();
      return;
    }
    if (out.len) partial.append(reinterpret_cast<const char*>(out.token), size_t(out.len));
    if (finalFrag) {
      messages.push_back(partial);
      partial.clear();
    }
  }

  // lws_ws_rx_sm()'s extension loop for a spill of rx_ubuf (len bytes there).
  void spill(int len, bool fin, uint8_t rsv, bool noCallback, bool pong) {
    detail::Ebufs b;
    b.in = {rxUbuf.data() + kPre, len};
    b.out = b.in;
    int loops = 0;
    do {
      PMD_REQUIRE(++loops < 100);
      int lin = b.in.len;
      detail::FrameInfo f{0, fin, firstFragment, rsv};
      int n = detail::rx(conn, b, f);
      PMD_CHECK(n != detail::kHasPending);
      if (n < 0) {
        dropped = true;
        return;
      }
      if (n == detail::kDidNothing) break;
      if (n == detail::kUnknown || n == detail::kNothingWeShouldDo) b.in.len -= b.out.len;
      if (b.out.len) b.out.token[b.out.len] = 0;  // lws NUL-terminates what it hands over
      if (!noCallback) {
        if (pong) pongs.emplace_back(reinterpret_cast<const char*>(b.out.token), size_t(b.out.len));
        else receive(b.out, 0, fin);
      }
      firstFragment = false;
      if (!lin) break;
    } while (b.in.len);
  }

  // One frame from the client, payload already what the extension sees (unmasked).
  void frame(int opcode, bool fin, uint8_t rsv, const std::string& payload, std::mt19937& rng) {
    if (dropped) return;
    if (opcode == 10) {  // PONG: into rx_ubuf; an empty one never reaches the extension
      PMD_REQUIRE(payload.size() <= 125);
      memcpy(rxUbuf.data() + kPre, payload.data(), payload.size());
      if (!payload.empty()) spill(int(payload.size()), true, rsv, false, true);
      return;
    }
    if (opcode == 1 || opcode == 2) firstFragment = true;
    if (payload.empty()) {
      spill(0, fin, rsv, false, false);
      return;
    }
    size_t remaining = payload.size();
    size_t pos = 0;
    while (remaining) {
      size_t chunk = std::uniform_int_distribution<size_t>(1, 1100)(rng);
      if (chunk > remaining) chunk = remaining;
      // the read buffer holds exactly this chunk, so ASan sees any read past it
      std::unique_ptr<unsigned char[]> readBuf(new unsigned char[chunk]);
      memcpy(readBuf.get(), payload.data() + pos, chunk);
      pos += chunk;
      remaining -= chunk;
      detail::Ebufs b;
      b.in = {readBuf.get(), int(chunk)};
      b.out = b.in;
      detail::FrameInfo f{remaining, fin && remaining == 0, firstFragment, rsv};
      int n = detail::rx(conn, b, f);
      PMD_CHECK(n != detail::kHasPending);
      if (n < 0) {
        dropped = true;
        return;
      }
      if (!b.out.len && n == detail::kEmptyFinal && remaining == 0 && fin) {
        receive(detail::Token{nullptr, 0}, 0, true);
        continue;
      }
      if (!b.out.len) continue;
      receive(b.out, remaining, fin && remaining == 0);
      firstFragment = false;
    }
    spill(0, fin, rsv, true, false);  // the spill after the bulk path: no user callback
  }

  // A whole message, compressed or not, cut into frames, maybe with pongs and empty frames.
  void message(const std::string& data, bool compress, std::mt19937& rng, bool binary = false) {
    std::string wire = compress ? deflateRaw(data, rng() % 5 == 0) : data;
    int frames = int(rng() % 4) + 1;
    std::vector<std::string> parts;
    size_t pos = 0;
    for (int i = 0; i < frames; ++i) {
      size_t left = wire.size() - pos;
      size_t take = i == frames - 1 ? left : (left ? rng() % (left + 1) : 0);
      parts.push_back(wire.substr(pos, take));
      pos += take;
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      bool first = i == 0, last = i + 1 == parts.size();
      frame(first ? (binary ? 2 : 1) : 0, last, first && compress ? 0x40 : 0, parts[i], rng);
      if (!last && rng() % 3 == 0) frame(10, true, 0, "pong " + std::to_string(i), rng);
    }
  }
};

std::string sample(std::mt19937& rng, size_t maxLen) {
  size_t len = std::uniform_int_distribution<size_t>(0, maxLen)(rng);
  std::string s(len, '\0');
  int kind = int(rng() % 3);
  for (auto& ch : s) ch = kind == 0 ? char(rng()) : kind == 1 ? "ab c\n"[rng() % 5] : 'x';
  return s;
}

void setup(int level = 6, uint64_t limit = 1 << 20) {
  detail::resetForTests();
  pmd::Settings s;
  s.level = level;
  s.receiveLimit = limit;
  detail::configure(s);
}

// libFuzzer body, also run from the doctest suite on random inputs: the input picks frames.
void fuzzOne(const uint8_t* data, size_t size) {
  setup(6, 4096 + (size % 5000));
  std::mt19937 rng{uint32_t(size)};
  Sim sim("permessage-deflate", 4096 + (size % 5000));
  size_t i = 0;
  while (i + 2 <= size && !sim.dropped) {
    uint8_t ctl = data[i++];
    size_t len = data[i++] % 200;
    if (i + len > size) len = size - i;
    std::string payload(reinterpret_cast<const char*>(data + i), len);
    i += len;
    switch (ctl & 7) {
      case 0: sim.frame(1, ctl & 8, 0x40, payload, rng); break;
      case 1: sim.frame(0, ctl & 8, ctl & 16 ? 0x40 : 0, payload, rng); break;
      case 2: sim.frame(2, ctl & 8, 0, payload, rng); break;
      case 3: sim.frame(10, true, ctl & 16 ? 0x40 : 0, payload.substr(0, 125), rng); break;
      case 4: sim.message(payload, true, rng); break;
      case 5: sim.message(payload, false, rng); break;
      case 6: sim.frame(1, true, 0x40, deflateRaw(std::string(len * 1000, char(ctl)), false), rng); break;
      default: sim.frame(ctl & 1 ? 1 : 0, true, 0x40, payload, rng); break;
    }
    for (const auto& m : sim.messages) PMD_CHECK(m.size() <= sim.limit);
  }
  // whatever happened, no zlib state outlives the connection
  detail::destroy(sim.conn);
  sim.conn = detail::construct("permessage-deflate");
  PMD_CHECK(pmd::stats().inflatersLive == 0);
}

}  // namespace

#ifdef PMD_LIBFUZZER
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzzOne(data, size);
  return 0;
}
#else

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
  detail::Conn* c = detail::construct("permessage-deflate; client_no_context_takeover; server_max_window_bits=10");
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
  sim.frame(1, true, 0x40, "", rng);                   // empty compressed message
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
  CHECK(inflateRaw(std::string(reinterpret_cast<char*>(e3.out.token), size_t(e3.out.len))) == changed);
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
      CHECK(inflateRaw(std::string(reinterpret_cast<char*>(e.out.token), size_t(e.out.len)), wbits) == text);
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

#endif
