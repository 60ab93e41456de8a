// Drives worker/pm_deflate's core the way lws 4.1.6's server side drives an extension (see the
// "How lws 4.1.6 calls" comment in worker/pm_deflate.cpp):
//  - data payload in chunks straight from the read buffer ("bulk"), then an empty "spill" call
//    whose user callback is suppressed; zero-length data frames as one empty call;
//  - PONG payloads through the connection's rx_ubuf; PING/CLOSE never reach the extension.
// Shared by the unit tests (tests/unit/test_pm_deflate.cpp, PMD_CHECK = doctest CHECK) and the
// inflate fuzz target (tests/fuzz/inflate_fuzz.cpp, PMD_CHECK aborts).
#pragma once

#include <zlib.h>

#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "worker/pm_deflate.hpp"

#ifndef PMD_CHECK
#include "tests/fuzz/check.hpp"
#define PMD_CHECK(c) FUZZ_CHECK(c)
#define PMD_REQUIRE(c) FUZZ_CHECK(c)
#endif

namespace pmd = netsvr::pmd;
namespace detail = netsvr::pmd::detail;

namespace pmd_sim {

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
  if (!bfinal && out.size() >= 4 &&
      out.compare(out.size() - 4, 4, std::string("\0\0\xff\xff", 4)) == 0)
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
  bool dropped = false;  // the extension failed the connection
  bool tooBig = false;   // the protocol callback saw a message over the limit (1009)
  std::string partial;
  std::vector<std::string> messages;
  std::vector<std::string> pongs;

  explicit Sim(const char* offer = "permessage-deflate; client_max_window_bits",
               uint64_t lim = 1 << 20)
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
        if (pong)
          pongs.emplace_back(reinterpret_cast<const char*>(b.out.token), size_t(b.out.len));
        else
          receive(b.out, 0, fin);
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
      case 0:
        sim.frame(1, ctl & 8, 0x40, payload, rng);
        break;
      case 1:
        sim.frame(0, ctl & 8, ctl & 16 ? 0x40 : 0, payload, rng);
        break;
      case 2:
        sim.frame(2, ctl & 8, 0, payload, rng);
        break;
      case 3:
        sim.frame(10, true, ctl & 16 ? 0x40 : 0, payload.substr(0, 125), rng);
        break;
      case 4:
        sim.message(payload, true, rng);
        break;
      case 5:
        sim.message(payload, false, rng);
        break;
      case 6:
        sim.frame(1, true, 0x40, deflateRaw(std::string(len * 1000, char(ctl)), false), rng);
        break;
      default:
        sim.frame(ctl & 1 ? 1 : 0, true, 0x40, payload, rng);
        break;
    }
    for (const auto& m : sim.messages) PMD_CHECK(m.size() <= sim.limit);
  }
  // whatever happened, no zlib state outlives the connection
  detail::destroy(sim.conn);
  sim.conn = detail::construct("permessage-deflate");
  PMD_CHECK(pmd::stats().inflatersLive == 0);
}

}  // namespace pmd_sim
