// permessage-deflate (RFC 7692) as our own lws extension on zlib, for the lws 4.1.6 server side.
// lws's built-in lws_extension_callback_pm_deflate is not used (docs/COMPRESSION.md says why).
//
//  - negotiated as "permessage-deflate; server_no_context_takeover; client_no_context_takeover":
//    every message is a deflate stream of its own in both directions;
//  - outgoing: a message is deflated once per worker, whatever the number of connections it is
//    written to (a small per-worker cache keyed by the payload bytes); messages shorter than
//    Settings::minCompressSize, and those that would not shrink, go out uncompressed (RSV1 = 0);
//  - incoming: a zlib inflater is held only while a compressed message is being read, and the
//    inflated size of one message is bounded by Settings::receiveLimit;
//  - lws is never asked to "drain" the extension later (PMDR_HAS_PENDING): every call consumes
//    all of its input and hands back all of its output, so nothing waits for a socket event.
//
// Wiring (worker/ws_server.cpp): info.extensions = pmd::extensions(settings) before
// lws_create_context(), and forward LWS_CALLBACK_ADD_HEADERS to pmd::onAddHeaders() (that is
// how the response gets "client_no_context_takeover" when the client did not offer it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

struct lws;
struct lws_extension;

namespace netsvr::pmd {

struct Settings {
  int level = 0;                    // Customer.CompressionLevel: -2 Huffman only, -1 zlib default,
                                    // 1..9; 0 = do not negotiate permessage-deflate at all
  uint64_t receiveLimit = 2097152;  // Customer.ReceivePackLimit: bound on one inflated message
  size_t minCompressSize = 256;     // payloads shorter than this are sent uncompressed
};

// Stores the settings for this process and returns the table for
// lws_context_creation_info::extensions, or nullptr when settings.level == 0 (not negotiated).
const lws_extension* extensions(const Settings& settings);

// Call from the protocol callback on LWS_CALLBACK_ADD_HEADERS (in = lws_process_html_args*).
// Completes our Sec-WebSocket-Extensions response line; does nothing for other responses.
void onAddHeaders(lws* wsi, void* in);

// True between the acceptance of `wsi`'s offer and its response headers: call it from
// LWS_CALLBACK_ADD_HEADERS (before onAddHeaders) to learn that the connection is compressed.
bool negotiating(const lws* wsi);

// A whole compressed client message (RSV1 on its first frame, RFC 7692 §7.2.2: the trailing
// 00 00 FF FF is appended here), inflated into `out` with at most `limit` bytes.
enum class InflateResult { Ok, TooBig, Invalid };
InflateResult inflateMessage(std::string_view compressed, uint64_t limit, std::string& out);

struct Stats {
  uint64_t negotiated = 0;        // connections that accepted the extension
  uint64_t declined = 0;          // offers we declined (unsupported parameters)
  uint64_t deflatedMessages = 0;  // messages deflated (once each, however many connections)
  uint64_t cacheHits = 0;         // writes served from an already deflated message
  uint64_t sentCompressed = 0;    // frames written with RSV1
  uint64_t sentPlain = 0;         // data frames written without RSV1 (small, fragmented, no gain)
  uint64_t inflatedMessages = 0;  // compressed client messages completely read
  uint64_t inflateErrors = 0;     // connections failed on a bad compressed message
  uint64_t oversized = 0;         // compressed client messages cut at receiveLimit
  uint64_t inflatersLive = 0;     // inflaters now held by connections (mid-message)
};
Stats stats();  // of the calling thread (a worker's loop thread)

// ---- below: the lws-independent core, exposed for the unit and fuzz tests -----------------
namespace detail {

// Mirror of lws 4.1's private `struct lws_ext_pm_deflate_rx_ebufs` (two public lws_tokens).
struct Token {
  unsigned char* token;
  int len;
};
struct Ebufs {
  Token in;
  Token out;
};

// Values of lws 4.1's private `enum pmd_return`.
enum Ret : int {
  kUnknown = 0,
  kDidNothing = 1,
  kHasPending = 2,  // never returned: lws would park the connection until another socket event
  kEmptyNonFinal = 3,
  kEmptyFinal = 4,
  kNothingWeShouldDo = 5,
  kFailed = -1,
};

// What lws 4.1.6 lets the extension know about the frame, through public calls only.
struct FrameInfo {
  size_t remaining = 0;  // lws_remaining_packet_payload(): payload of this frame still to come
  bool finalFragment = false;  // lws_is_final_fragment(): FIN set and remaining == 0
  bool firstFragment = false;  // lws_is_first_fragment(): a TEXT/BINARY frame header was just read
  uint8_t rsv = 0;  // lws_get_reserved_bits(): RSV bits of the current frame (0x40 = RSV1)
};

struct Conn;  // per-connection state (40 bytes; an inflater only while a message is read)

// Returns nullptr (decline) when the offer in `offerHeader` (the client's whole
// Sec-WebSocket-Extensions value) carries parameters we cannot honour.
Conn* construct(const char* offerHeader);
void destroy(Conn* c);
void optionEchoed(Conn* c, int optionIndex);  // lws echoed one of our EXTARG_NONE options
// Appends what the response line still lacks; returns the number of bytes written to `p`
// (0 when nothing fits or nothing is needed). `room` is the space at p.
size_t responseAdditions(Conn* c, char* p, size_t room);

int rx(Conn* c, Ebufs& b, const FrameInfo& f);
int tx(Conn* c, Ebufs& b, int writeProtocol);
int txPresend(Conn* c, Token* frame);

void configure(const Settings& s);  // also drops this thread's deflaters and cache
void countOffer(bool negotiated);   // Stats.negotiated / Stats.declined
bool clientNoContextTakeover(const Conn* c);
bool holdsInflater(const Conn* c);
void resetForTests();  // drops the per-thread caches, pools and statistics

}  // namespace detail
}  // namespace netsvr::pmd
