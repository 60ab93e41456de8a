#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <string>

#include "common/startup_memory.hpp"

using namespace netsvr;

namespace {

long rssFileKib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("RssFile:", 0) == 0) return std::stol(line.substr(8));
  return -1;
}

[[gnu::noinline]] int throwAndCatch(int v) {
  try {
    throw std::runtime_error(std::to_string(v));
  } catch (const std::exception& e) {
    return std::stoi(e.what());
  }
}

}  // namespace

TEST_CASE("start-up memory: linker tables, then every file page, are given back; code still runs") {
  CHECK(throwAndCatch(1) == 1);
  long before = rssFileKib();
  REQUIRE(before > 0);
  size_t tables = releaseStartupMemory(StartupRelease::LinkerTables);
  CHECK(tables > 0);
  CHECK(throwAndCatch(2) == 2);  // unwinding reads the program headers again
  size_t all = releaseStartupMemory(StartupRelease::AllFilePages);
  CHECK(all > 0);
  CHECK(rssFileKib() < before);
  char buf[32];
  snprintf(buf, sizeof buf, "%d", throwAndCatch(3));
  CHECK(std::string(buf) == "3");
}
