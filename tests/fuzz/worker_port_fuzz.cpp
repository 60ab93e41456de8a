// Register and Unregister on the worker port (worker/worker_port.cpp) with the real registry of
// business links in the control block (worker/biz_registry.cpp). One link sends the records; a
// link is in the registry at most once however often it registers, and an Unregister with its
// connId takes it out. Any other cmd closes the link, so later records are not run.
#include <cstdint>
#include <cstring>

#include "tests/fuzz/check.hpp"
#include "tests/fuzz/fake_worker.hpp"
#include "tests/fuzz/records.hpp"

using namespace netsvr;

namespace {

int registryEntries(const Worker& w, uint32_t linkId) {
  int n = 0;
  for (const auto& e : w.control->block().registry.entries) {
    if (!e.used) continue;
    FUZZ_CHECK(e.linkId == linkId && e.ownerSerial == uint32_t(w.serial));
    ++n;
  }
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fake = fuzz::FakeWorker::get();
  BizLink& link = *fake.workerLink;
  fuzz::Records records(data, size);
  uint32_t cmd;
  std::string_view body;
  while (records.next(cmd, body)) {
    if (!handleWorkerPortPacket(*fake.links, link, cmd, body)) break;
    int entries = registryEntries(fake.worker, link.id);
    FUZZ_CHECK(entries <= 1);
    if (entries == 1) {
      FUZZ_CHECK(link.events != 0 && link.connId.size() == kConnIdLength);
      const auto& registry = fake.worker.control->block().registry;
      for (const auto& e : registry.entries)
        if (e.used) FUZZ_CHECK(memcmp(e.connId, link.connId.data(), kConnIdLength) == 0);
    }
  }
  fake.reset();
  return 0;
}
