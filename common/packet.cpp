#include "common/packet.hpp"

namespace netsvr {

void appendPacket(std::string& out, uint32_t cmd, std::string_view body) {
  size_t at = out.size();
  out.reserve(at + kLengthSize + kCmdSize + body.size());
  out.resize(at + kLengthSize + kCmdSize);  // zero-fills the 8-byte header only
  writeBe32(out.data() + at, uint32_t(kCmdSize + body.size()));
  writeBe32(out.data() + at + kLengthSize, cmd);
  out.append(body);
}

std::string encodePacket(uint32_t cmd, std::string_view body) {
  std::string out;
  appendPacket(out, cmd, body);
  return out;
}

void PacketDecoder::feed(const char* data, size_t size) {
  if (readPos_ > 0 && readPos_ == buffer_.size()) {
    buffer_.clear();
    readPos_ = 0;
  } else if (readPos_ > 65536 && readPos_ * 2 > buffer_.size()) {
    // Compact once the consumed prefix dominates, so a long-lived link does not grow forever.
    buffer_.erase(0, readPos_);
    readPos_ = 0;
  }
  buffer_.append(data, size);
}

PacketDecoder::Status PacketDecoder::next(std::string_view& payload) {
  size_t avail = buffer_.size() - readPos_;
  if (avail < kLengthSize) return Status::NeedMore;
  uint32_t length = readBe32(buffer_.data() + readPos_);
  if (length > maxLength_) return Status::TooLarge;
  if (avail - kLengthSize < length) return Status::NeedMore;
  payload = std::string_view(buffer_.data() + readPos_ + kLengthSize, length);
  readPos_ += kLengthSize + length;
  return Status::Packet;
}

void PacketDecoder::shrinkIfIdle() {
  if (readPos_ == buffer_.size()) {
    std::string().swap(buffer_);
    readPos_ = 0;
  }
}

}  // namespace netsvr
