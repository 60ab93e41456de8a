// The messages that move a business link from a worker of the old generation to one of the new
// generation on reload (DESIGN.md, Lifecycle). They travel on a unix socket between the two
// workers, framed like business packets ([u32 length][u32 type][body]); an Offer carries the
// link's socket with SCM_RIGHTS. Pure code: no I/O, unit-tested and fuzzed.
//
// The exchange, per link (old worker O, new worker N):
//   O -> N  Offer    state + unprocessed input bytes, with the socket
//   N -> O  Accept   N's id for the link (or Refuse, with the reason: O keeps the link)
//   O -> N  Drained  every event and command O had for the link is written or applied: N
//                    writes what it held, then reads
//   O -> N  Abort    the link closed at O before Drained; N closes its copy
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace netsvr::handover {

// Bump when the Offer's body changes. A binary reads the versions in
// [kOldestReadableVersion, kVersion]; a reload onto one that cannot read ours is refused.
inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kOldestReadableVersion = 1;
inline bool canRead(uint32_t version) {
  return version >= kOldestReadableVersion && version <= kVersion;
}

enum class Type : uint32_t { Offer = 1, Accept = 2, Refuse = 3, Drained = 4, Abort = 5 };

// Every version starts with the version and the link id (so that a refusal names the link).
struct Offer {
  uint32_t version = kVersion;
  bool taskPort = false;  // else the worker port
  uint32_t fromSerial = 0;
  uint32_t fromLinkId = 0;
  int32_t events = 0;  // registered Event bits (worker port), 0 if never registered
  uint32_t peerIp = 0;
  uint16_t peerPort = 0;
  uint32_t acceptedAt = 0;  // unix seconds (part of the connId)
  std::string connId;
  std::string input;  // bytes read from the business but not processed (a partial packet or more)
};

// Accept, Refuse, Drained and Abort: a link id and, for Refuse, a reason.
struct Reply {
  uint32_t linkId = 0;     // the sender's id for Offer/Accept/Refuse, the receiver's otherwise
  uint32_t newLinkId = 0;  // Accept only: the new worker's id
  std::string reason;      // Refuse only
};

std::string encodeOffer(const Offer& offer);
std::string encodeReply(Type type, const Reply& reply);

enum class DecodeResult { Ok, Malformed, UnknownVersion };
// `payload` is one packet without its length prefix: [u32 type][body].
DecodeResult decodeType(std::string_view payload, Type& type, std::string_view& body);
DecodeResult decodeOffer(std::string_view body, Offer& offer);
DecodeResult decodeReply(Type type, std::string_view body, Reply& reply);

}  // namespace netsvr::handover
