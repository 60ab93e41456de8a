// What `status` and `stop` read from a config file that may be broken (issue 10, item 6).
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "common/config.hpp"
#include "common/fnv1a.hpp"

using netsvr::lenientPidFile;

namespace {

constexpr const char* kValid =
    "PidFile = \"run/x.pid\"\n[Customer]\nHeartbeatMessage = \"hb\"\n"
    "[Worker]\nListenAddress = \"127.0.0.1:6061\"\nHeartbeatMessage = \"hb\"\n"
    "[Task]\nListenAddress = \"127.0.0.1:6062\"\nHeartbeatMessage = \"hb\"\n";

// A file in a fresh directory, removed with it.
struct TempFile {
  std::filesystem::path dir;
  std::filesystem::path path;
  explicit TempFile(const std::string& text) {
    char tmpl[] = "/tmp/netsvr-inspect-XXXXXX";
    dir = mkdtemp(tmpl);
    path = dir / "netsvr.toml";
    std::ofstream(path) << text;
  }
  ~TempFile() { std::filesystem::remove_all(dir); }
};

}  // namespace

TEST_CASE("lenientPidFile: the key, whatever else is wrong") {
  SUBCASE("a valid document") {
    CHECK(lenientPidFile(kValid, "/etc/n") == "/etc/n/run/x.pid");
  }
  SUBCASE("valid TOML, invalid keys") {
    CHECK(lenientPidFile("PidFile = \"/run/n.pid\"\nWorkers = -1\n", "/etc/n") == "/run/n.pid");
  }
  SUBCASE("a TOML syntax error after it") {
    CHECK(lenientPidFile("LogLevel = \"info\"\nPidFile = \"a.pid\" # here\n[Worker\nx = = 1\n",
                         "/etc/n") == "/etc/n/a.pid");
  }
  SUBCASE("a PidFile inside a table is not the root key") {
    CHECK(lenientPidFile("x = = 1\n[Task]\nPidFile = \"t.pid\"\n", "/etc/n") ==
          "/etc/n/netsvr.pid");
  }
  SUBCASE("absent or unreadable: the default beside the config") {
    CHECK(lenientPidFile("", "/etc/n") == "/etc/n/netsvr.pid");
    CHECK(lenientPidFile("PidFile = 3\n", "/etc/n") == "/etc/n/netsvr.pid");
    CHECK(lenientPidFile("PidFile = \"x\n", "/etc/n") == "/etc/n/netsvr.pid");
  }
}

TEST_CASE("inspectConfig: valid, invalid and unreadable files") {
  SUBCASE("valid") {
    TempFile f(kValid);
    const auto view = netsvr::inspectConfig(f.path.string());
    CHECK(view.error.empty());
    CHECK(view.pidFile == (f.dir / "run/x.pid").string());
    CHECK(view.contentHash == netsvr::fnv1a64(kValid));
    CHECK(view.config.contentHash == view.contentHash);
  }
  SUBCASE("an invalid key is named and the pid file still found") {
    TempFile f(std::string(kValid) + "[Shm]\nSegmentSize = 5\n");
    const auto view = netsvr::inspectConfig(f.path.string());
    CHECK(view.error.find("Shm.SegmentSize") != std::string::npos);
    CHECK(view.pidFile == (f.dir / "run/x.pid").string());
    CHECK(view.contentHash != 0);
  }
  SUBCASE("missing file") {
    const auto view = netsvr::inspectConfig("/nonexistent/dir/netsvr.toml");
    CHECK(view.error.find("cannot read config file") != std::string::npos);
    CHECK(view.pidFile == "/nonexistent/dir/netsvr.pid");
    CHECK(view.contentHash == 0);
  }
}
