// permessage-deflate: the lws 4.1.6 extension callback and handshake glue around the core in
// worker/pm_deflate.cpp (docs/COMPRESSION.md).
#include <libwebsockets.h>

#include <cstring>

#include "common/log.hpp"
#include "worker/pm_deflate.hpp"

namespace netsvr::pmd {

// ---- lws glue -------------------------------------------------------------------------------

namespace {

// Options lws may echo in the response (only argument-less ones are echoed by lws 4.1.6, and
// only when the client offered them). The index is what LWS_EXT_CB_OPTION_SET reports.
const lws_ext_options kOptions[] = {
    {"server_no_context_takeover", EXTARG_NONE},
    {"client_no_context_takeover", EXTARG_NONE},
    {nullptr, EXTARG_NONE},
};

// Between LWS_EXT_CB_CONSTRUCT and LWS_CALLBACK_ADD_HEADERS, both inside one lws call
// (handshake_0405), the connection whose response line we may complete.
struct PendingHandshake {
  lws* wsi = nullptr;
  detail::Conn* conn = nullptr;
};
thread_local PendingHandshake gPending;

int callback(lws_context*, const lws_extension*, lws* wsi, lws_extension_callback_reasons reason,
             void* user, void* in, size_t len) {
  auto* c = static_cast<detail::Conn*>(user);
  switch (int(reason)) {
    case LWS_EXT_CB_CONSTRUCT: {
      char offer[512];
      int n = lws_hdr_copy(wsi, offer, sizeof offer, WSI_TOKEN_EXTENSIONS);
      detail::Conn* conn = n >= 0 ? detail::construct(offer) : nullptr;
      if (!conn) {
        detail::countOffer(false);
        LOG_DEBUG("permessage-deflate: offer declined: %s", n >= 0 ? offer : "(too long)");
        return -1;  // lws then leaves the extension out of the response
      }
      *static_cast<void**>(user) = conn;
      if (in) *static_cast<const lws_ext_options**>(in) = kOptions;
      gPending = {wsi, conn};
      detail::countOffer(true);
      return 0;
    }
    case LWS_EXT_CB_CLIENT_CONSTRUCT:
      return -1;  // server side only
    case LWS_EXT_CB_DESTROY:
      if (gPending.conn == c) gPending = {};
      detail::destroy(c);
      return 0;
    case LWS_EXT_CB_OPTION_SET: {
      auto* oa = static_cast<lws_ext_option_arg*>(in);
      if (!oa || oa->option_index < 0 || oa->option_index > 1) return -1;
      detail::optionEchoed(c, oa->option_index);
      return 0;  // 0: lws appends "; <name>" to the response
    }
    case LWS_EXT_CB_PAYLOAD_RX: {
      if (!c || !in) return 0;
      detail::FrameInfo f;
      f.remaining = lws_remaining_packet_payload(wsi);
      f.finalFragment = lws_is_final_fragment(wsi) != 0;
      f.firstFragment = lws_is_first_fragment(wsi) != 0;
      f.rsv = lws_get_reserved_bits(wsi);
      return detail::rx(c, *static_cast<detail::Ebufs*>(in), f);
    }
    case LWS_EXT_CB_PAYLOAD_TX:
      if (!c || !in) return 0;
      return detail::tx(c, *static_cast<detail::Ebufs*>(in), int(len));
    case LWS_EXT_CB_PACKET_TX_PRESEND:
      return detail::txPresend(c, static_cast<detail::Token*>(in));
    default:
      return 0;
  }
}

const lws_extension kExtensions[] = {
    {"permessage-deflate", callback, "permessage-deflate; client_no_context_takeover"},
    {nullptr, nullptr, nullptr},
};

}  // namespace

const lws_extension* extensions(const Settings& settings) {
  detail::configure(settings);
  return settings.level == 0 ? nullptr : kExtensions;
}

bool negotiating(const lws* wsi) {
  return wsi && gPending.wsi == wsi && gPending.conn;
}

void onAddHeaders(lws* wsi, void* in) {
  if (!wsi || !in || gPending.wsi != wsi || !gPending.conn) return;
  detail::Conn* conn = gPending.conn;
  gPending = {};
  auto* args = static_cast<lws_process_html_args*>(in);
  char* p = args->p;
  if (!p || args->max_len < 64 || p[-2] != '\r' || p[-1] != '\n') return;
  // lws has just ended the response's last header line with CRLF. Find that line (it cannot
  // start before the status line, which ends with CRLF as well) and check it is our extension's.
  char* lineStart = nullptr;
  for (char* q = p - 3; q > p - 300; --q) {
    if (q[-1] == '\r' && q[0] == '\n') {
      lineStart = q + 1;
      break;
    }
  }
  static const char kLine[] = "Sec-WebSocket-Extensions: permessage-deflate";
  if (!lineStart || size_t(p - 2 - lineStart) < sizeof kLine - 1 ||
      memcmp(lineStart, kLine, sizeof kLine - 1) != 0)
    return;
  char* lineEnd = p - 2;
  char after = lineStart[sizeof kLine - 1];
  if ((after != '\r' && after != ';') || memchr(lineStart, ',', size_t(lineEnd - lineStart)))
    return;
  size_t added = detail::responseAdditions(conn, lineEnd, size_t(args->max_len) - 8);
  if (!added) return;
  lineEnd[added] = '\r';
  lineEnd[added + 1] = '\n';
  lineEnd[added + 2] = '\0';
  args->p = lineEnd + added + 2;
  args->max_len -= int(added);
}

}  // namespace netsvr::pmd
