// Input format of the fuzz targets that drive command handlers: a sequence of records
//   [u8 selector][u16 BE length][body]
// where the selector picks one of the Cmd values of cmd.proto (so that random inputs mostly hit
// real commands), or, from 0xF0 up, takes the cmd from the 4 bytes that follow (unknown cmds).
// A record cut short by the end of the input gets what is left as its body.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cmd.pb.h"
#include "common/packet.hpp"

namespace netsvr::fuzz {

// Every value of the Cmd enum (the lite runtime has no descriptors to list them).
inline const std::vector<uint32_t>& knownCmds() {
  static const std::vector<uint32_t> values = [] {
    std::vector<uint32_t> v;
    for (int c = netsvr::cmd::Cmd_MIN; c <= netsvr::cmd::Cmd_MAX; ++c)
      if (netsvr::cmd::Cmd_IsValid(c)) v.push_back(uint32_t(c));
    return v;
  }();
  return values;
}

class Records {
 public:
  Records(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  // The next record as a payload (cmd + body, contiguous, as a link's decoder returns it).
  bool next(uint32_t& cmd, std::string_view& body) {
    if (at_ + 3 > size_) return false;
    uint8_t selector = data_[at_];
    size_t length = (size_t(data_[at_ + 1]) << 8) | data_[at_ + 2];
    at_ += 3;
    if (selector >= 0xF0) {
      if (at_ + 4 > size_) return false;
      cmd = readBe32(reinterpret_cast<const char*>(data_ + at_));
      at_ += 4;
    } else {
      const auto& values = knownCmds();
      cmd = values[selector % values.size()];
    }
    length = std::min(length, size_ - at_);
    payload_.resize(kCmdSize);
    writeBe32(payload_.data(), cmd);
    payload_.append(reinterpret_cast<const char*>(data_ + at_), length);
    at_ += length;
    body = std::string_view(payload_).substr(kCmdSize);
    return true;
  }
  std::string_view payload() const { return payload_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
  std::string payload_;
};

}  // namespace netsvr::fuzz
