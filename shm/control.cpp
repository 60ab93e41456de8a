#include "shm/control.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

namespace netsvr::shm {

const char* workerStateName(WorkerState state) {
  switch (state) {
    case WorkerState::Free:
      return "free";
    case WorkerState::Starting:
      return "starting";
    case WorkerState::Running:
      return "running";
    case WorkerState::Draining:
      return "draining";
    case WorkerState::Exited:
      return "exited";
  }
  return "?";
}

void holdEvents(ControlBlock& control, int32_t events, int64_t nowUnixMs) {
  int64_t target = nowUnixMs + kHoldEventsMs;
  for (int kind = 0; kind < 3; ++kind) {
    if (!(events & (1 << kind))) continue;
    auto& until = control.holdEventsUntilMs[kind];
    int64_t current = until.load();
    while (current < target && !until.compare_exchange_weak(current, target)) {
    }
  }
}

std::unique_ptr<ControlSegment> ControlSegment::create(const std::string& name) {
  std::string path = "/" + name;
  shm_unlink(path.c_str());
  int fd = shm_open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("shm_open " + path + ": " + strerror(errno));
  size_t size = sizeof(ControlBlock);
  if (ftruncate(fd, off_t(size)) != 0) {
    int err = errno;
    close(fd);
    throw std::runtime_error("ftruncate " + path + ": " + strerror(err));
  }
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) throw std::runtime_error("mmap " + path + ": " + strerror(errno));
  auto* block = new (base) ControlBlock();
  block->registry.mutex.init();
  block->onOpenBucket.mutex.init();
  block->onMessageBucket.mutex.init();
  block->magic = kControlMagic;
  block->layoutVersion = kLayoutVersion;
  return std::unique_ptr<ControlSegment>(new ControlSegment(base, size));
}

std::unique_ptr<ControlSegment> ControlSegment::open(const std::string& name, std::string& error) {
  std::string path = "/" + name;
  int fd = shm_open(path.c_str(), O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = "shm_open " + path + ": " + strerror(errno);
    return nullptr;
  }
  struct stat st {};
  fstat(fd, &st);
  if (size_t(st.st_size) < sizeof(uint32_t) * 2) {
    close(fd);
    error = path + ": too small to be a netsvr control segment";
    return nullptr;
  }
  // Map the header first: a segment of another layout must be refused, never misread.
  size_t size = size_t(st.st_size);
  void* base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    error = "mmap " + path + ": " + strerror(errno);
    return nullptr;
  }
  auto* header = static_cast<const uint32_t*>(base);
  // NETSVR_LAYOUT_VERSION makes a binary believe it was built for another layout: how the
  // tests show that an incompatible upgrade is refused by `reload`.
  uint32_t readable = kLayoutVersion;
  if (const char* pretend = getenv("NETSVR_LAYOUT_VERSION"))
    readable = uint32_t(strtoul(pretend, nullptr, 10));
  if (header[0] != kControlMagic || header[1] != readable || size != sizeof(ControlBlock)) {
    error = path + ": shared-memory layout " + std::to_string(header[1]) +
            " is not the layout this binary reads (" + std::to_string(readable) + ")";
    munmap(base, size);
    return nullptr;
  }
  return std::unique_ptr<ControlSegment>(new ControlSegment(base, size));
}

void ControlSegment::remove(const std::string& name) {
  shm_unlink(("/" + name).c_str());
}

ControlSegment::~ControlSegment() {
  munmap(block_, size_);
}

bool peerIsListed(int fd, const ControlBlock& control, ucred& cred) {
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == geteuid() && listsProcess(control, cred.pid);
}

bool listsProcess(const ControlBlock& control, int32_t pid) {
  if (pid <= 0) return false;
  for (const auto& w : control.workers) {
    if (w.announcerPid.load() == pid) return true;
    if (w.pid.load() == pid && WorkerState(w.state.load()) != WorkerState::Free) return true;
  }
  return false;
}

MeterTotal meterTotal(const ControlBlock& control, int item) {
  MeterTotal t;
  t.count = control.retiredMeters[item].load();
  for (const auto& w : control.workers) {
    if (WorkerState(w.state.load()) == WorkerState::Free) continue;
    t.count += w.meters[item].count.load();
    t.rate1 += w.meters[item].rate1.load();
    t.rate5 += w.meters[item].rate5.load();
    t.rate15 += w.meters[item].rate15.load();
  }
  return t;
}

void recordHistory(ControlBlock& control, int64_t unixSec) {
  auto& history = control.history;
  uint64_t index = history.written.load();
  auto& sample = history.samples[index % kHistorySamples];
  int64_t clients = 0;
  for (const auto& w : control.workers)
    if (isLive(WorkerState(w.state.load()))) clients += w.clients.load();
  sample.unixSec = unixSec;
  sample.clients = clients;
  for (int item = 1; item <= kMetricItems; ++item)
    sample.counts[item] = meterTotal(control, item).count;
  history.written = index + 1;  // published last: readers only look at complete samples
}

void publishConfigText(ControlBlock& control, const std::string& text) {
  auto& config = control.config;
  size_t n = std::min(text.size(), kConfigTextMax);
  config.sequence.fetch_add(1);  // odd: being written
  std::atomic_thread_fence(std::memory_order_seq_cst);
  memcpy(config.text, text.data(), n);
  config.length = uint32_t(n);
  config.sequence.fetch_add(1);
}

std::string readConfigText(const ControlBlock& control) {
  const auto& config = control.config;
  for (int attempt = 0; attempt < 100; ++attempt) {
    uint32_t before = config.sequence.load();
    if (before & 1) continue;
    std::string text(config.text, std::min<size_t>(config.length.load(), kConfigTextMax));
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (config.sequence.load() == before) return text;
  }
  return {};  // the master kept rewriting it: show nothing rather than a torn text
}

}  // namespace netsvr::shm
