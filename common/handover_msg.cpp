#include "common/handover_msg.hpp"

#include "common/packet.hpp"

namespace netsvr::handover {
namespace {

constexpr size_t kMaxConnId = 64;  // bytes; a connId is 20

class Writer {
 public:
  void u32(uint32_t v) {
    char b[4];
    writeBe32(b, v);
    out.append(b, 4);
  }
  void u16(uint16_t v) {
    out.push_back(char(v >> 8));
    out.push_back(char(v));
  }
  void u8(uint8_t v) { out.push_back(char(v)); }
  void bytes(std::string_view s) {
    u32(uint32_t(s.size()));
    out.append(s);
  }
  std::string out;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u32(uint32_t& v) {
    if (in_.size() < 4) return false;
    v = readBe32(in_.data());
    in_.remove_prefix(4);
    return true;
  }
  bool u16(uint16_t& v) {
    if (in_.size() < 2) return false;
    v = uint16_t((uint8_t(in_[0]) << 8) | uint8_t(in_[1]));
    in_.remove_prefix(2);
    return true;
  }
  bool u8(uint8_t& v) {
    if (in_.empty()) return false;
    v = uint8_t(in_[0]);
    in_.remove_prefix(1);
    return true;
  }
  bool bytes(std::string& s, size_t max) {
    uint32_t n;
    if (!u32(n) || n > in_.size() || n > max) return false;
    s.assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  std::string_view in_;
};

std::string framed(Type type, const std::string& body) {
  return encodePacket(uint32_t(type), body);
}

}  // namespace

std::string encodeOffer(const Offer& offer) {
  Writer w;
  w.u32(offer.version);  // version and link id first, in every version: a refusal names the link
  w.u32(offer.fromLinkId);
  w.u8(offer.taskPort ? 1 : 0);
  w.u32(offer.fromSerial);
  w.u32(uint32_t(offer.events));
  w.u32(offer.peerIp);
  w.u16(offer.peerPort);
  w.u32(offer.acceptedAt);
  w.bytes(offer.connId);
  w.bytes(offer.input);
  return framed(Type::Offer, w.out);
}

std::string encodeReply(Type type, const Reply& reply) {
  Writer w;
  w.u32(reply.linkId);
  if (type == Type::Accept) w.u32(reply.newLinkId);
  if (type == Type::Refuse) w.bytes(reply.reason);
  return framed(type, w.out);
}

DecodeResult decodeType(std::string_view payload, Type& type, std::string_view& body) {
  uint32_t cmd;
  if (!splitCommand(payload, cmd, body)) return DecodeResult::Malformed;
  if (cmd < uint32_t(Type::Offer) || cmd > uint32_t(Type::Abort)) return DecodeResult::Malformed;
  type = Type(cmd);
  return DecodeResult::Ok;
}

DecodeResult decodeOffer(std::string_view body, Offer& offer) {
  Reader r(body);
  if (!r.u32(offer.version) || !r.u32(offer.fromLinkId)) return DecodeResult::Malformed;
  // A later version may lay out the rest differently: nothing after the link id is read.
  if (!canRead(offer.version)) return DecodeResult::UnknownVersion;
  uint8_t port;
  uint32_t events;
  if (!r.u8(port) || port > 1 || !r.u32(offer.fromSerial) || !r.u32(events) ||
      !r.u32(offer.peerIp) || !r.u16(offer.peerPort) || !r.u32(offer.acceptedAt) ||
      !r.bytes(offer.connId, kMaxConnId) || !r.bytes(offer.input, body.size()) || !r.done())
    return DecodeResult::Malformed;
  offer.taskPort = port == 1;
  offer.events = int32_t(events);
  return DecodeResult::Ok;
}

DecodeResult decodeReply(Type type, std::string_view body, Reply& reply) {
  Reader r(body);
  if (type == Type::Offer || !r.u32(reply.linkId)) return DecodeResult::Malformed;
  if (type == Type::Accept && !r.u32(reply.newLinkId)) return DecodeResult::Malformed;
  if (type == Type::Refuse && !r.bytes(reply.reason, 1024)) return DecodeResult::Malformed;
  return r.done() ? DecodeResult::Ok : DecodeResult::Malformed;
}

}  // namespace netsvr::handover
