#include "master/announce.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "common/log.hpp"
#include "common/packet.hpp"
#include "common/uniqid.hpp"
#include "common/unix_socket.hpp"
#include "connClose.pb.h"
#include "shm/conn_table.hpp"
#include "shm/control.hpp"
#include "shm/names.hpp"
#include "worker/peer_links.hpp"

namespace netsvr {
namespace {

constexpr auto kWaitForLiveWorker = std::chrono::seconds(5);

int connectToLiveWorker(const std::string& key, shm::ControlBlock& control, int deadSerial) {
  auto deadline = std::chrono::steady_clock::now() + kWaitForLiveWorker;
  while (std::chrono::steady_clock::now() < deadline) {
    for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
      if (serial == deadSerial) continue;
      auto& info = control.workers[serial];
      if (info.state.load() != uint32_t(shm::WorkerState::Running)) continue;
      int fd = connectAbstract(shm::peerSocketName(key, serial, info.incarnation.load()), false);
      if (fd >= 0) return fd;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the slot is being respawned
  }
  return -1;
}

constexpr time_t kWorkerReadsSeconds = 5;  // bound on waiting for the worker to read the events

bool writeAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

}  // namespace

int announceClosedConnections(const std::string& key, int deadSerial, const std::string& prefix) {
  std::string error;
  auto control = shm::ControlSegment::open(shm::controlName(key), error);
  auto table = control ? shm::ConnTable::open(shm::workerSegmentName(key, deadSerial), false, error)
                       : nullptr;
  if (!table) {
    LOG_ERROR("cannot read the table of dead worker serial %d: %s", deadSerial, error.c_str());
    return 1;
  }
  std::string out;
  size_t count = 0;
  auto announce = [&](uint64_t key, const auto& rec) {
    netsvr::connClose::ConnClose close;
    close.set_uniqid(uniqIdFromKey(prefix, key));
    close.set_customerid(rec.customerId.data(), rec.customerId.size());
    close.set_session(rec.session.data(), rec.session.size());
    for (const auto& t : rec.topics) close.add_topics(t.data(), t.size());
    appendPacket(out, kPeerClosed, close.SerializeAsString());
    ++count;
  };
  auto collect = [&](const shm::TableData& data) {
    for (const auto& [k, rec] : data.conns) announce(k, rec);
    // Clients that had left, whose ConnClose the worker had not built yet (a busy peer link).
    if (const shm::DepartedMap* departed = table->departed())
      for (const auto& [k, rec] : *departed) announce(k, rec);
  };
  // The owner may have died holding its lock: the table is then read as it was left.
  if (!table->read(collect)) collect(table->unlockedData());
  if (count == 0) return 0;
  // Peer links accept only processes the control block lists (SO_PEERCRED): list ourselves
  // before connecting (the master cannot do it in time: we connect right after the fork).
  control->block().workers[deadSerial].announcerPid = getpid();
  int fd = connectToLiveWorker(key, control->block(), deadSerial);
  if (fd < 0 || !writeAll(fd, out)) {
    LOG_ERROR("could not hand %zu ConnClose events of dead worker serial %d to a live worker",
              count, deadSerial);
    return 1;
  }
  // Stay alive, and so listed, until the worker has accepted the link and read it to its end: it
  // checks SO_PEERCRED against the control block when it accepts, which may be after we would
  // have exited and the master unlisted us (the events were then refused and lost).
  shutdown(fd, SHUT_WR);
  timeval wait{kWorkerReadsSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  char sink[256];
  while (read(fd, sink, sizeof sink) > 0) {
  }
  close(fd);
  LOG_INFO("announced %zu connections of dead worker serial %d as closed", count, deadSerial);
  return 0;
}

}  // namespace netsvr
