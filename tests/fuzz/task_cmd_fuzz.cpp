// Every task command body through the real dispatch table (worker/task_port.cpp) and handlers
// (cmd_cast.cpp, cmd_conn.cpp, cmd_query.cpp), against a worker with a fixed client set and a
// second live worker to route to (fake_worker.hpp). Each record runs twice: as received from a
// task link (routing role), then as forwarded by a peer (acting on this worker's clients only).
// A cmd the table does not know closes the link, so later records are not run.
#include <cstdint>

#include "tests/fuzz/check.hpp"
#include "tests/fuzz/fake_worker.hpp"
#include "tests/fuzz/records.hpp"
#include "worker/router.hpp"

using namespace netsvr;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto& fake = fuzz::FakeWorker::get();
  fuzz::Records records(data, size);
  uint32_t cmd;
  std::string_view body;
  while (records.next(cmd, body)) {
    bool known = handleTaskPacket(fake.worker, *fake.taskLink, cmd, body);
    runForwardedTask(fake.worker, records.payload());
    fake.settle();  // the acknowledgements arrive; a paused link resumes
    if (!known) break;
  }
  FUZZ_CHECK(fuzz::fakeStats().pendingAcks.empty());
  fake.reset();
  return 0;
}
