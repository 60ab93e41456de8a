// What the status page reads from the control block: the history ring (recordHistory), the config
// text (publishConfigText / readConfigText), and the JSON string quoting of common/json.hpp.
#include <doctest/doctest.h>

#include <limits>
#include <memory>
#include <string>

#include "common/json.hpp"
#include "shm/control.hpp"

using namespace netsvr;

TEST_CASE("json::quote escapes quotes, backslashes and control characters") {
  CHECK(json::quote("plain") == "\"plain\"");
  CHECK(json::quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json::quote("line\nnext\ttab\r") == "\"line\\nnext\\ttab\\r\"");
  CHECK(json::quote(std::string("\x01\x1f", 2)) == "\"\\u0001\\u001f\"");
  CHECK(json::quote("héllo") == "\"héllo\"");  // UTF-8 passes through
  CHECK(json::number(1.5) == "1.500");
  CHECK(json::number(std::numeric_limits<double>::quiet_NaN()) == "0");  // JSON has no NaN
}

TEST_CASE("history: one sample per call, clients of live workers, counts of every item") {
  auto block = std::make_unique<shm::ControlBlock>();
  block->workers[3].state = uint32_t(shm::WorkerState::Running);
  block->workers[3].clients = 5;
  block->workers[3].meters[6].count = 40;
  block->workers[7].state =
      uint32_t(shm::WorkerState::Exited);  // gone: its clients are not counted
  block->workers[7].clients = 9;
  block->retiredMeters[6] = 2;
  shm::recordHistory(*block, 1000);
  const auto& h = block->history;
  REQUIRE(h.written.load() == 1);
  CHECK(h.samples[0].unixSec.load() == 1000);
  CHECK(h.samples[0].clients.load() == 5);
  CHECK(h.samples[0].counts[6].load() == 42);
  for (int i = 1; i < shm::kHistorySamples + 3; ++i) shm::recordHistory(*block, 1000 + i);
  CHECK(h.written.load() == uint64_t(shm::kHistorySamples + 3));
  // the ring wrapped: the newest sample sits just before the oldest
  CHECK(h.samples[2].unixSec.load() == 1000 + shm::kHistorySamples + 2);
  CHECK(h.samples[3].unixSec.load() == 1003);
}

TEST_CASE("config text: published and read back whole, truncated to the buffer") {
  auto block = std::make_unique<shm::ControlBlock>();
  CHECK(shm::readConfigText(*block).empty());
  shm::publishConfigText(*block, "Workers = 2\n");
  CHECK(shm::readConfigText(*block) == "Workers = 2\n");
  shm::publishConfigText(*block, std::string(shm::kConfigTextMax + 10, 'x'));
  CHECK(shm::readConfigText(*block).size() == shm::kConfigTextMax);
  CHECK(block->config.sequence.load() % 2 == 0);
}
