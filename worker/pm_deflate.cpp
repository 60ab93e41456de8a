// permessage-deflate (RFC 7692) on zlib as an lws 4.1.6 extension. docs/COMPRESSION.md has the
// facts about lws 4.1.6 this relies on (how and when lws calls an extension) and why.
#include "worker/pm_deflate.hpp"

#include <libwebsockets.h>
#include <zlib.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "common/log.hpp"

namespace netsvr::pmd {

// lws hands the extension a pointer to its private `struct lws_ext_pm_deflate_rx_ebufs`: two
// public `struct lws_tokens` (checked against the 4.1.6 machine code: eb_in at +0/+8, eb_out at
// +16/+24). Our mirror must have the same layout.
static_assert(sizeof(detail::Token) == sizeof(lws_tokens));
static_assert(offsetof(detail::Token, token) == offsetof(lws_tokens, token));
static_assert(offsetof(detail::Token, len) == offsetof(lws_tokens, len));
static_assert(sizeof(detail::Ebufs) == 2 * sizeof(lws_tokens));
static_assert(offsetof(detail::Ebufs, out) == sizeof(lws_tokens));
#if LWS_LIBRARY_VERSION_MAJOR != 4 || LWS_LIBRARY_VERSION_MINOR != 1
#error \
    "pm_deflate relies on how lws 4.1 calls extensions (docs/COMPRESSION.md): re-check before use"
#endif

namespace detail {
namespace {

constexpr unsigned char kTrailer[4] = {0x00, 0x00, 0xff, 0xff};
constexpr size_t kRxBufKeep = 64 * 1024;  // per-thread inflate output kept between calls
constexpr size_t kRxBufFirst = 16 * 1024;
constexpr size_t kMaxCallOutput = 64u * 1024 * 1024;  // one call's output (lws reads <= 4 KiB)
constexpr size_t kInflaterPoolKeep = 4;
constexpr size_t kCacheSlots = 8;
constexpr size_t kCacheBudget = 8u * 1024 * 1024;    // payload + deflated bytes kept per thread
constexpr size_t kCacheEntryMax = 4u * 1024 * 1024;  // larger messages: deflated for each write
constexpr uint8_t kRsv1 = 0x40;

Settings gSettings;

enum class RxState : uint8_t { Idle, Plain, Inflating, Discarding };

struct CacheEntry {
  unsigned char* src = nullptr;  // copy of the payload (the key)
  unsigned char* out = nullptr;  // LWS_PRE headroom, then the deflated payload
  size_t len = 0;
  size_t clen = 0;
  uint64_t lastUse = 0;
  int wbits = 0;
  bool plain = false;  // deflating did not shrink it: send uncompressed
  bool used = false;

  void clear() {
    free(src);
    free(out);
    *this = CacheEntry{};
  }
  size_t bytes() const { return used ? len + clen + LWS_PRE : 0; }
};

struct Engine {
  unsigned char* rxBuf = nullptr;
  size_t rxCap = 0;  // usable bytes (one more is allocated for lws's NUL terminator)
  std::vector<z_stream*> inflaterPool;
  z_stream* deflaters[16] = {};
  CacheEntry cache[kCacheSlots];
  CacheEntry scratch;  // a message too big for the cache
  uint64_t tick = 0;
  Stats stats;
  bool warnedContextTakeover = false;

  ~Engine() { reset(); }
  void reset() {
    free(rxBuf);
    rxBuf = nullptr;
    rxCap = 0;
    for (z_stream* z : inflaterPool) {
      inflateEnd(z);
      delete z;
    }
    inflaterPool.clear();
    for (z_stream*& z : deflaters) {
      if (z) {
        deflateEnd(z);
        delete z;
        z = nullptr;
      }
    }
    for (auto& e : cache) e.clear();
    scratch.clear();
    stats = Stats{};
  }
};

Engine& engine() {
  static thread_local Engine e;
  return e;
}

}  // namespace

struct Conn {
  z_stream* inflater = nullptr;           // only while a compressed message is being read
  const unsigned char* rxUbuf = nullptr;  // where lws keeps control-frame payloads (learned)
  uint64_t inflated = 0;                  // bytes of the current message handed to lws so far
  RxState state = RxState::Idle;
  bool spillPending = false;         // a bulk chunk ended its frame: lws calls once more, empty
  bool firstFrameDone = false;       // the current message's first frame is complete
  bool streamEnded = false;          // the client's deflate stream ended (BFINAL) in this message
  bool clientNoCtx = false;          // the response carries client_no_context_takeover
  bool serverNoCtxEchoed = false;    // lws echoed server_no_context_takeover
  bool txRsv1 = false;               // the frame being written now is compressed: set RSV1
  uint8_t serverWindowBits = 15;     // our deflate window (server_max_window_bits)
  bool serverWindowOffered = false;  // the client offered server_max_window_bits: echo it
};

namespace {

// ---- offer parsing (RFC 7692 section 7) -----------------------------------------------------

std::string trim(std::string s) {
  size_t a = s.find_first_not_of(" \t");
  size_t b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// "N" or "\"N\"" with N in 8..15; -1 otherwise.
int windowBitsValue(std::string v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() > 2) return -1;
  for (char ch : v)
    if (ch < '0' || ch > '9') return -1;
  int n = std::atoi(v.c_str());
  return n >= 8 && n <= 15 ? n : -1;
}

// ---- inflate side ---------------------------------------------------------------------------

z_stream* takeInflater() {
  Engine& e = engine();
  z_stream* z;
  if (!e.inflaterPool.empty()) {
    z = e.inflaterPool.back();
    e.inflaterPool.pop_back();
  } else {
    z = new (std::nothrow) z_stream{};
    if (!z) return nullptr;
    if (inflateInit2(z, -15) != Z_OK) {  // raw deflate; 15 decodes any client window size
      delete z;
      return nullptr;
    }
  }
  ++e.stats.inflatersLive;
  return z;
}

void giveInflater(z_stream*& z) {
  if (!z) return;
  Engine& e = engine();
  --e.stats.inflatersLive;
  if (e.inflaterPool.size() < kInflaterPoolKeep && inflateReset(z) == Z_OK) {
    e.inflaterPool.push_back(z);
  } else {
    inflateEnd(z);
    delete z;
  }
  z = nullptr;
}

// Makes room for at least `want` bytes (plus the NUL lws may write after the data).
bool growRxBuf(size_t want) {
  Engine& e = engine();
  if (want <= e.rxCap) return true;
  size_t cap = e.rxCap ? e.rxCap : kRxBufFirst;
  while (cap < want) cap *= 2;
  auto* p = static_cast<unsigned char*>(realloc(e.rxBuf, cap + 1));
  if (!p) return false;
  e.rxBuf = p;
  e.rxCap = cap;
  return true;
}

int fail(Conn* c, const char* why) {
  giveInflater(c->inflater);
  c->state = RxState::Idle;
  ++engine().stats.inflateErrors;
  LOG_DEBUG("permessage-deflate: closing a connection: %s", why);
  return kFailed;
}

}  // namespace
}  // namespace detail

InflateResult inflateMessage(std::string_view compressed, uint64_t limit, std::string& out) {
  using detail::engine;
  z_stream* z = detail::takeInflater();
  if (!z) return InflateResult::Invalid;
  InflateResult result = InflateResult::Ok;
  out.clear();
  size_t chunk = std::min<size_t>(std::max<size_t>(compressed.size() * 4, 1024), 64 * 1024);
  for (int pass = 0; pass < 2 && result == InflateResult::Ok; ++pass) {
    z->next_in = pass ? const_cast<unsigned char*>(detail::kTrailer)
                      : reinterpret_cast<unsigned char*>(const_cast<char*>(compressed.data()));
    z->avail_in = pass ? 4 : unsigned(compressed.size());
    while (z->avail_in) {
      size_t had = out.size();
      size_t room = std::min<uint64_t>(chunk, limit + 1 - std::min<uint64_t>(had, limit + 1));
      if (!room) {
        result = InflateResult::TooBig;
        break;
      }
      out.resize(had + room);
      z->next_out = reinterpret_cast<unsigned char*>(out.data() + had);
      z->avail_out = unsigned(room);
      int r = inflate(z, Z_SYNC_FLUSH);
      out.resize(had + room - z->avail_out);
      if (out.size() > limit) {
        result = InflateResult::TooBig;
        break;
      }
      if (r == Z_STREAM_END) {
        // A final block: only the appended tail may follow it.
        if (pass == 0 && z->avail_in) result = InflateResult::Invalid;
        break;
      }
      if (r != Z_OK && r != Z_BUF_ERROR) {
        result = InflateResult::Invalid;
        break;
      }
      if (r == Z_BUF_ERROR && z->avail_out) break;  // no progress possible: input used up
    }
  }
  detail::Engine& e = engine();
  if (result == InflateResult::Ok) ++e.stats.inflatedMessages;
  if (result == InflateResult::Invalid) ++e.stats.inflateErrors;
  if (result == InflateResult::TooBig) ++e.stats.oversized;
  detail::giveInflater(z);
  return result;
}

namespace detail {
namespace {

// Inflates one chunk of a compressed message into the per-thread buffer, all of it.
int inflateChunk(Conn* c, Ebufs& b, bool lastChunk) {
  Engine& e = engine();
  size_t inLen = size_t(b.in.len);
  if (c->streamEnded && inLen) return fail(c, "data after the end of the deflate stream");
  if (!c->inflater) {
    c->inflater = takeInflater();
    if (!c->inflater) return fail(c, "no memory for an inflater");
  }
  z_stream* z = c->inflater;
  uint64_t allowed =
      gSettings.receiveLimit > c->inflated ? gSettings.receiveLimit - c->inflated : 0;
  // One byte past the limit is produced on purpose: the protocol callback sees the message
  // grow beyond Customer.ReceivePackLimit and closes with 1009, as for an uncompressed one.
  size_t cap = allowed >= kMaxCallOutput ? kMaxCallOutput : size_t(allowed) + 1;
  if (!growRxBuf(kRxBufFirst)) return fail(c, "no memory for inflated data");

  z->next_in = b.in.token;
  z->avail_in = uInt(inLen);
  bool trailerFed = false;
  bool overflow = false;
  size_t produced = 0;
  for (;;) {
    if (z->avail_in == 0) {
      if (lastChunk && !trailerFed && !c->streamEnded) {
        z->next_in = const_cast<unsigned char*>(kTrailer);
        z->avail_in = sizeof kTrailer;
        trailerFed = true;
      } else {
        break;
      }
    }
    if (c->streamEnded) {
      if (trailerFed) break;  // only our own 00 00 ff ff is left: ignored after BFINAL
      return fail(c, "data after the end of the deflate stream");
    }
    if (produced >= cap) {
      if (cap < allowed + 1) return fail(c, "one read inflates to more than 64 MiB");
      overflow = true;
      break;
    }
    if (produced == e.rxCap && !growRxBuf(produced + 1))
      return fail(c, "no memory for inflated data");
    size_t room = (e.rxCap < cap ? e.rxCap : cap) - produced;
    z->next_out = e.rxBuf + produced;
    z->avail_out = uInt(room);
    int r = inflate(z, Z_SYNC_FLUSH);
    produced = size_t(z->next_out - e.rxBuf);
    if (r == Z_STREAM_END) {
      c->streamEnded = true;
      continue;
    }
    if (r == Z_OK) continue;
    if (r == Z_BUF_ERROR && (z->avail_out == 0 || z->avail_in == 0)) continue;
    return fail(c, z->msg ? z->msg : "inflate error");
  }
  if (produced > allowed) overflow = true;
  c->inflated += produced;
  b.out.token = e.rxBuf;
  b.out.len = int(produced);
  b.in.token += inLen;
  b.in.len = 0;

  if (overflow) {
    ++e.stats.oversized;
    giveInflater(c->inflater);
    c->state = lastChunk ? RxState::Idle : RxState::Discarding;
    return kEmptyNonFinal;  // never "final": the oversized message must not look complete
  }
  if (lastChunk) {
    ++e.stats.inflatedMessages;
    if (c->clientNoCtx || c->streamEnded) {
      giveInflater(c->inflater);
    } else if (!e.warnedContextTakeover) {
      e.warnedContextTakeover = true;
      LOG_WARN(
          "permessage-deflate: client_no_context_takeover was not agreed (is "
          "LWS_CALLBACK_ADD_HEADERS forwarded to pmd::onAddHeaders?): inflate state is kept "
          "per connection");
    }
    c->state = RxState::Idle;
    c->streamEnded = false;
    return kEmptyFinal;
  }
  return kEmptyNonFinal;
}

// ---- deflate side ---------------------------------------------------------------------------

z_stream* deflater(int wbits) {
  Engine& e = engine();
  z_stream*& z = e.deflaters[wbits];
  if (z) return deflateReset(z) == Z_OK ? z : nullptr;
  z = new (std::nothrow) z_stream{};
  if (!z) return nullptr;
  int level = gSettings.level < 0 ? Z_DEFAULT_COMPRESSION : gSettings.level;
  int strategy = gSettings.level == -2 ? Z_HUFFMAN_ONLY : Z_DEFAULT_STRATEGY;
  if (deflateInit2(z, level, Z_DEFLATED, -wbits, 8, strategy) != Z_OK) {
    delete z;
    z = nullptr;
  }
  return z;
}

bool deflateInto(CacheEntry& ent, const unsigned char* src, size_t len, int wbits) {
  z_stream* z = deflater(wbits);
  if (!z) return false;
  size_t cap = deflateBound(z, uLong(len)) + 16;
  auto* out = static_cast<unsigned char*>(malloc(LWS_PRE + cap));
  if (!out) return false;
  z->next_in = const_cast<unsigned char*>(src);
  z->avail_in = uInt(len);
  size_t used = 0;
  for (;;) {
    z->next_out = out + LWS_PRE + used;
    z->avail_out = uInt(cap - used);
    int r = deflate(z, Z_SYNC_FLUSH);
    used = size_t(z->next_out - (out + LWS_PRE));
    if (r != Z_OK && r != Z_BUF_ERROR) {
      free(out);
      return false;
    }
    if (z->avail_in == 0 && z->avail_out != 0) break;
    cap *= 2;
    auto* bigger = static_cast<unsigned char*>(realloc(out, LWS_PRE + cap));
    if (!bigger) {
      free(out);
      return false;
    }
    out = bigger;
  }
  // Z_SYNC_FLUSH ends with an empty stored block, 00 00 ff ff: RFC 7692 7.2.1 drops it.
  if (used < 4 || memcmp(out + LWS_PRE + used - 4, kTrailer, 4) != 0) {
    free(out);
    return false;
  }
  ent.out = out;
  ent.clen = used - 4;
  ent.len = len;
  ent.wbits = wbits;
  ent.plain = ent.clen >= len;
  ent.used = true;
  return true;
}

const CacheEntry* deflateMessage(const unsigned char* src, size_t len, int wbits) {
  Engine& e = engine();
  ++e.tick;
  for (auto& ent : e.cache) {
    if (ent.used && ent.len == len && ent.wbits == wbits && memcmp(ent.src, src, len) == 0) {
      ent.lastUse = e.tick;
      ++e.stats.cacheHits;
      return &ent;
    }
  }
  if (len > kCacheEntryMax) {
    e.scratch.clear();
    if (!deflateInto(e.scratch, src, len, wbits)) return nullptr;
    ++e.stats.deflatedMessages;
    return &e.scratch;
  }
  auto* copy = static_cast<unsigned char*>(malloc(len));
  if (!copy) return nullptr;
  memcpy(copy, src, len);
  CacheEntry fresh;
  if (!deflateInto(fresh, src, len, wbits)) {
    free(copy);
    return nullptr;
  }
  fresh.src = copy;
  fresh.lastUse = e.tick;
  ++e.stats.deflatedMessages;
  // Evict least recently used entries until the newcomer fits the budget and a slot is free.
  for (;;) {
    size_t total = fresh.bytes();
    CacheEntry* freeSlot = nullptr;
    CacheEntry* oldest = nullptr;
    for (auto& ent : e.cache) {
      total += ent.bytes();
      if (!ent.used)
        freeSlot = &ent;
      else if (!oldest || ent.lastUse < oldest->lastUse)
        oldest = &ent;
    }
    if (freeSlot && total <= kCacheBudget) {
      *freeSlot = fresh;
      return freeSlot;
    }
    if (!oldest) {  // cannot happen: fresh.bytes() <= budget
      fresh.clear();
      return nullptr;
    }
    oldest->clear();
  }
}

}  // namespace

// ---- the core entry points --------------------------------------------------------------------

Conn* construct(const char* offerHeader) {
  // The first element named permessage-deflate is the one lws accepts (lws_extension_server_
  // handshake stops there). Parameters: RFC 7692 section 7.1; anything else declines the offer.
  std::string all = offerHeader ? offerHeader : "";
  size_t pos = 0;
  std::string params;
  bool found = false;
  while (pos <= all.size()) {
    size_t comma = all.find(',', pos);
    std::string elem =
        all.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    size_t semi = elem.find(';');
    if (trim(elem.substr(0, semi)) == "permessage-deflate") {
      params = semi == std::string::npos ? std::string() : elem.substr(semi + 1);
      found = true;
      break;
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  if (!found) return nullptr;
  bool seen[4] = {};
  int serverBits = 0;
  size_t p = 0;
  while (p <= params.size() && !trim(params).empty()) {
    size_t semi = params.find(';', p);
    std::string one =
        trim(params.substr(p, semi == std::string::npos ? std::string::npos : semi - p));
    if (one.empty()) return nullptr;
    size_t eq = one.find('=');
    std::string name = trim(one.substr(0, eq));
    std::string value = eq == std::string::npos ? std::string() : trim(one.substr(eq + 1));
    bool hasValue = eq != std::string::npos;
    int idx;
    if (name == "server_no_context_takeover")
      idx = 0;
    else if (name == "client_no_context_takeover")
      idx = 1;
    else if (name == "server_max_window_bits")
      idx = 2;
    else if (name == "client_max_window_bits")
      idx = 3;
    else
      return nullptr;
    if (seen[idx]) return nullptr;
    seen[idx] = true;
    if (idx <= 1 && hasValue) return nullptr;
    if (idx == 2) {
      serverBits = hasValue ? windowBitsValue(value) : -1;
      // zlib cannot make a raw deflate stream with an 8-bit window: decline rather than lie.
      if (serverBits < 9) return nullptr;
    }
    if (idx == 3 && hasValue && windowBitsValue(value) < 0) return nullptr;
    if (semi == std::string::npos) break;
    p = semi + 1;
  }
  Conn* c = new (std::nothrow) Conn{};
  if (!c) return nullptr;
  if (seen[2]) {
    c->serverWindowBits = uint8_t(serverBits);
    c->serverWindowOffered = true;
  }
  return c;
}

void destroy(Conn* c) {
  if (!c) return;
  giveInflater(c->inflater);
  delete c;
}

void optionEchoed(Conn* c, int optionIndex) {
  if (!c) return;
  if (optionIndex == 0) c->serverNoCtxEchoed = true;
  if (optionIndex == 1) c->clientNoCtx = true;
}

size_t responseAdditions(Conn* c, char* p, size_t room) {
  if (!c) return 0;
  std::string add;
  if (!c->serverNoCtxEchoed) add += "; server_no_context_takeover";
  if (!c->clientNoCtx) add += "; client_no_context_takeover";
  if (c->serverWindowOffered)
    add += "; server_max_window_bits=" + std::to_string(c->serverWindowBits);
  if (add.empty() || add.size() > room) return 0;
  memcpy(p, add.data(), add.size());
  c->serverNoCtxEchoed = true;
  c->clientNoCtx = true;
  return add.size();
}

// How lws 4.1.6 (server side) calls LWS_EXT_CB_PAYLOAD_RX, in short (details in COMPRESSION.md):
//  - payload of TEXT/BINARY/CONTINUATION frames: lws_ws_frame_rest_is_payload() calls once per
//    chunk read from the socket, input in lws's read buffer, remaining already decremented; it
//    calls the user back once with eb_out (none when eb_out is empty, except a zero-length
//    callback for PMDR_EMPTY_FINAL at the end of a FIN frame) and then ignores eb_in;
//  - when such a frame's payload is exhausted, lws_ws_rx_sm() "spills": one more call with an
//    empty eb_in pointing at the connection's rx_ubuf, user callback suppressed;
//  - zero-length data frames: one call, empty eb_in at rx_ubuf, user callback allowed;
//  - PONG payloads (non-empty): one call, eb_in at rx_ubuf (PING and CLOSE never come here);
//  - PMDR_DID_NOTHING: no user callback; PMDR_NOTHING_WE_SHOULD_DO: pass eb_in through;
//    PMDR_HAS_PENDING: parks the connection until the event loop comes back (never used);
//    negative: the connection is dropped.
int rx(Conn* c, Ebufs& b, const FrameInfo& f) {
  if (!c || b.in.len < 0) return kFailed;
  Engine& e = engine();
  if (e.rxCap > kRxBufKeep) {  // the previous call's output has been consumed by now
    free(e.rxBuf);
    e.rxBuf = nullptr;
    e.rxCap = 0;
  }
  const int len = b.in.len;
  if (len == 0) c->rxUbuf = b.in.token;  // empty calls always point at the connection's rx_ubuf
  if (len == 0 && c->spillPending) {     // the spill after a frame consumed in bulk
    c->spillPending = false;
    b.out.len = 0;
    return kDidNothing;
  }
  c->spillPending = false;

  // Control frame payload (a PONG): lws buffers it in rx_ubuf; data payload never goes there.
  // Before any data frame (rx_ubuf still unknown) a call outside a message that does not start
  // one (no fresh TEXT/BINARY header) is also a control frame.
  bool control = (len > 0 && c->rxUbuf && b.in.token == c->rxUbuf) ||
                 (c->state == RxState::Idle && !f.firstFragment);
  if (control) {
    if (f.rsv) return fail(c, "RSV bits on a control frame");
    return kNothingWeShouldDo;
  }

  if (c->state == RxState::Idle) {
    if (f.rsv & ~kRsv1) return fail(c, "unexpected RSV bits");
    c->state = (f.rsv & kRsv1) ? RxState::Inflating : RxState::Plain;
    c->firstFrameDone = false;
    c->streamEnded = false;
    c->inflated = 0;
  } else if (c->firstFrameDone && f.rsv) {
    return fail(c, "RSV1 on a continuation frame");
  }
  if (len > 0 && f.remaining == 0) c->spillPending = true;
  if (f.remaining == 0) c->firstFrameDone = true;
  const bool last = f.finalFragment;

  switch (c->state) {
    case RxState::Plain:
      if (last) c->state = RxState::Idle;
      return kNothingWeShouldDo;
    case RxState::Discarding:
      b.in.token += len;
      b.in.len = 0;
      b.out.len = 0;
      if (last) c->state = RxState::Idle;
      return kDidNothing;
    case RxState::Inflating:
      return inflateChunk(c, b, last);
    case RxState::Idle:
      break;
  }
  return kFailed;
}

int tx(Conn* c, Ebufs& b, int wp) {
  if (!c) return 0;
  c->txRsv1 = false;
  Engine& e = engine();
  int type = wp & 0x0f;
  bool dataType =
      type == LWS_WRITE_TEXT || type == LWS_WRITE_BINARY || type == LWS_WRITE_CONTINUATION;
  if (!dataType) return 0;
  // Only whole messages are compressed; fragments and small payloads go out as they are.
  if ((type != LWS_WRITE_TEXT && type != LWS_WRITE_BINARY) || (wp & LWS_WRITE_NO_FIN) ||
      !b.in.token || b.in.len < 0 || size_t(b.in.len) < gSettings.minCompressSize) {
    ++e.stats.sentPlain;
    return 0;
  }
  const CacheEntry* ent = deflateMessage(b.in.token, size_t(b.in.len), c->serverWindowBits);
  if (!ent || ent->plain) {
    ++e.stats.sentPlain;
    return 0;
  }
  b.out.token = ent->out + LWS_PRE;
  b.out.len = int(ent->clen);
  c->txRsv1 = true;
  ++e.stats.sentCompressed;
  return 0;
}

int txPresend(Conn* c, Token* frame) {
  if (!c || !c->txRsv1) return 0;
  c->txRsv1 = false;
  if (!frame || !frame->token || frame->len < 2) return 0;
  int opcode = frame->token[0] & 0x0f;
  if (opcode == 1 || opcode == 2) frame->token[0] |= kRsv1;
  return 0;
}

void configure(const Settings& s) {
  gSettings = s;
  Engine& e = engine();  // deflaters and cached output depend on the level
  for (z_stream*& z : e.deflaters) {
    if (z) {
      deflateEnd(z);
      delete z;
      z = nullptr;
    }
  }
  for (auto& ent : e.cache) ent.clear();
  e.scratch.clear();
}
void countOffer(bool negotiated) {
  ++(negotiated ? engine().stats.negotiated : engine().stats.declined);
}
bool clientNoContextTakeover(const Conn* c) {
  return c && c->clientNoCtx;
}
bool holdsInflater(const Conn* c) {
  return c && c->inflater;
}
void resetForTests() {
  engine().reset();
}

}  // namespace detail

Stats stats() {
  return detail::engine().stats;
}

}  // namespace netsvr::pmd
