// Payload of the messages that bizsim sends to the clients of loadgen, through the gateway.
//
// ASCII (valid UTF-8, so it travels in text frames, Customer.SendMessageType = 1):
//
//   offset size  field
//   0      1     kind: 'M' data message, 'E' end marker of a group, 'W' welcome (login done),
//                'G' end marker of a group that is not the client's last (mix: its 'E' comes
//                by Broadcast with group kAllClients and the broadcast count)
//   1      16    timestamp: hex of the 8-byte CLOCK_MONOTONIC time in ns when bizsim sent it
//   17     16    seq: hex; 'M': message number (1, 2, ... over all groups, unique per run);
//                'E': number of 'M' messages bizsim sent to this group; 'W': 0
//   33     8     group: hex; the group the receiving client belongs to (groupchat: its topic
//                g<k>; broadcast: 0; singlecast: the client's own number); kAllClients: a
//                message for every client (mix: broadcasts; a welcome: the client is in no group)
//   41     ...   padding up to the configured size (a welcome carries the client's uniqId)
//
// CLOCK_MONOTONIC is shared by every process of the machine, and all the tools of a run are on
// one machine, so receive time minus send time is the end-to-end latency.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>

namespace stress {

inline constexpr size_t kHeaderSize = 41;
inline constexpr char kKindData = 'M';
inline constexpr char kKindEnd = 'E';
inline constexpr char kKindWelcome = 'W';
inline constexpr char kKindGroupEnd = 'G';
inline constexpr uint32_t kAllClients = 0xffffffff;

inline int64_t monoNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct Header {
  char kind = 0;
  int64_t sentNs = 0;
  uint64_t seq = 0;
  uint32_t group = 0;
};

namespace detail {
inline void putHex(char* out, uint64_t v, int digits) {
  static const char kDigits[] = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) {
    out[i] = kDigits[v & 0xf];
    v >>= 4;
  }
}
inline bool getHex(const char* in, int digits, uint64_t& v) {
  v = 0;
  for (int i = 0; i < digits; ++i) {
    char c = in[i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = unsigned(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = unsigned(c - 'a' + 10);
    else
      return false;
    v = (v << 4) | d;
  }
  return true;
}
}  // namespace detail

// Writes a payload of max(size, kHeaderSize + extra.size()) bytes into `out` (replacing it).
inline void encodePayload(std::string& out, const Header& h, size_t size,
                          std::string_view extra = {}) {
  size_t total = kHeaderSize + extra.size();
  if (size > total) total = size;
  out.assign(total, '.');
  out[0] = h.kind;
  detail::putHex(&out[1], uint64_t(h.sentNs), 16);
  detail::putHex(&out[17], h.seq, 16);
  detail::putHex(&out[33], h.group, 8);
  out.replace(kHeaderSize, extra.size(), extra);
}

// False when `data` is not one of our payloads.
inline bool decodePayload(std::string_view data, Header& h) {
  if (data.size() < kHeaderSize) return false;
  h.kind = data[0];
  if (h.kind != kKindData && h.kind != kKindEnd && h.kind != kKindWelcome &&
      h.kind != kKindGroupEnd)
    return false;
  uint64_t ts, seq, group;
  if (!detail::getHex(&data[1], 16, ts) || !detail::getHex(&data[17], 16, seq) ||
      !detail::getHex(&data[33], 8, group))
    return false;
  h.sentNs = int64_t(ts);
  h.seq = seq;
  h.group = uint32_t(group);
  return true;
}

}  // namespace stress
