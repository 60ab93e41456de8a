// One buffer for every stream read of a worker (business links, peer links). libuv fills it and
// the read callback copies what it keeps (PacketDecoder) before it returns; the loop is
// single-threaded and no read starts inside another's callback, so one buffer serves them all
// instead of a malloc/free per read.
#pragma once

#include <uv.h>

#include <vector>

namespace netsvr {

inline void sharedReadBuffer(size_t size, uv_buf_t* buf) {
  static std::vector<char> buffer;
  if (buffer.size() < size) buffer.resize(size);
  *buf = uv_buf_init(buffer.data(), unsigned(size));
}

}  // namespace netsvr
