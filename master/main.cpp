// netsvr command line: start | stop | reload | status | version (and the internal `worker`).
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <thread>

#include "common/config.hpp"
#include "master/master.hpp"
#include "master/pid_file.hpp"
#include "master/status_json.hpp"
#include "shm/control.hpp"
#include "shm/names.hpp"
#include "worker/worker.hpp"

#ifndef NETSVR_VERSION
#define NETSVR_VERSION "0.1.0"
#endif

namespace {

using namespace netsvr;

std::string absolutePath(const std::string& path) {
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.lexically_normal().string();
}

// Loads the config for a control command; prints the error and returns false on failure.
bool loadForControl(const std::string& path, Config& config) {
  try {
    config = loadConfig(absolutePath(path));
    return true;
  } catch (const ConfigError& e) {
    fprintf(stderr, "netsvr: %s\n", e.what());
    return false;
  }
}

int cmdStop(const std::string& configPath) {
  Config config;
  if (!loadForControl(configPath, config)) return 1;
  pid_t pid = readLivePid(config.pidFile);
  if (pid == 0) {
    fprintf(stderr, "netsvr: not running (no live master in pid file %s)\n",
            config.pidFile.c_str());
    return 1;
  }
  if (kill(pid, SIGTERM) != 0) {
    fprintf(stderr, "netsvr: cannot signal master %d: %s\n", pid, strerror(errno));
    return 1;
  }
  // The master exits within ShutdownWaitTime when it is set; give it that plus a margin.
  auto limit = std::chrono::milliseconds(
      config.shutdownWaitTime.count() > 0 ? config.shutdownWaitTime.count() + 10000 : 120000);
  auto deadline = std::chrono::steady_clock::now() + limit;
  // The master holds the pid file's lock until it has cleaned up and exits; a zombie (a parent
  // that has not reaped it yet) no longer holds it.
  while (readLivePid(config.pidFile) == pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      fprintf(stderr, "netsvr: master %d still running after %lld ms\n", pid,
              static_cast<long long>(limit.count()));
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return 0;
}

int cmdReload(const std::string& configPath) {
  Config config;
  if (!loadForControl(configPath, config)) return 1;
  try {
    normaliseAddresses(config);
  } catch (const ConfigError& e) {
    fprintf(stderr, "netsvr: %s\n", e.what());
    return 1;
  }
  pid_t pid = readLivePid(config.pidFile);
  std::string error;
  auto control =
      pid ? shm::ControlSegment::open(shm::controlName(shm::instanceKeyFor(config.pidFile)), error)
          : nullptr;
  if (!control) {
    fprintf(stderr, "netsvr: not running (pid file %s)\n", config.pidFile.c_str());
    return 1;
  }
  uint32_t before = (*control)->reloadsDone.load();
  if (kill(pid, SIGHUP) != 0) {
    fprintf(stderr, "netsvr: cannot signal master %d: %s\n", pid, strerror(errno));
    return 1;
  }
  // The master reports once the new generation is ready, or why it refused.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((*control)->reloadsDone.load() == before) {
    if (std::chrono::steady_clock::now() > deadline || kill(pid, 0) != 0) {
      fprintf(stderr, "netsvr: no answer from master %d to the reload\n", pid);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if ((*control)->reloadError[0]) {
    fprintf(stderr, "netsvr: reload refused: %s\n", (*control)->reloadError);
    return 1;
  }
  return 0;
}

int cmdStatus(const std::string& configPath, bool json) {
  Config config;
  if (!loadForControl(configPath, config)) return 1;
  pid_t pid = readLivePid(config.pidFile);
  if (pid == 0) {
    fprintf(stderr, "netsvr: not running (pid file %s)\n", config.pidFile.c_str());
    return 1;
  }
  std::string key = shm::instanceKeyFor(config.pidFile);
  std::string error;
  auto control = shm::ControlSegment::open(shm::controlName(key), error);
  if (!control) {
    fprintf(stderr, "netsvr: %s\n", error.c_str());
    return 1;
  }
  if (json) {  // the data of the master's /status.json (status page), from the same function
    std::string out =
        renderStatusJson(control->block(), key, absolutePath(configPath), int64_t(time(nullptr)));
    printf("%s\n", out.c_str());
    return 0;
  }
  printf("instance %s\n", key.c_str());
  printf("master %d\n", (*control)->masterPid.load());
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    const auto& w = (*control)->workers[serial];
    auto state = shm::WorkerState(w.state.load());
    if (state == shm::WorkerState::Free) continue;
    printf("worker slot=%u gen=%u serial=%d pid=%d state=%s clients=%lld links=%lld tasks=%lld\n",
           w.slot.load(), w.generation.load(), serial, w.pid.load(), shm::workerStateName(state),
           static_cast<long long>(w.clients.load()), static_cast<long long>(w.bizLinks.load()),
           static_cast<long long>(w.taskLinks.load()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"netsvr: a websocket gateway between clients and business processes"};
  app.require_subcommand(1);
  std::string configPath = "etc/netsvr.toml";

  auto* start = app.add_subcommand("start", "Start the gateway (master and workers)");
  bool daemon = false;
  start->add_option("-c,--config", configPath, "Config file (TOML)")->capture_default_str();
  start->add_flag("-d,--daemon", daemon, "Detach and return once the gateway accepts");
  auto* stop = app.add_subcommand("stop", "Stop the running gateway and wait until it is gone");
  stop->add_option("-c,--config", configPath, "Config file (TOML)")->capture_default_str();
  auto* reload = app.add_subcommand("reload", "Reload the config and replace the workers");
  reload->add_option("-c,--config", configPath, "Config file (TOML)")->capture_default_str();
  auto* status = app.add_subcommand("status", "Show the master, its workers and their clients");
  status->add_option("-c,--config", configPath, "Config file (TOML)")->capture_default_str();
  bool statusJson = false;
  status->add_flag("--json", statusJson, "Print the status page's data (/status.json) as JSON");
  auto* version = app.add_subcommand("version", "Print the version");

  WorkerOptions worker;
  auto* workerCmd = app.add_subcommand("worker", "");  // internal: started by the master
  workerCmd->group("");
  workerCmd->add_option("-c,--config", worker.configPath)->required();
  workerCmd->add_option("--slot", worker.slot)->required();
  workerCmd->add_option("--generation", worker.generation)->required();
  workerCmd->add_option("--serial", worker.serial)->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }
  if (*start) return runMaster(StartOptions{absolutePath(configPath), daemon});
  if (*stop) return cmdStop(configPath);
  if (*reload) return cmdReload(configPath);
  if (*status) return cmdStatus(configPath, statusJson);
  if (*version) {
    printf("netsvr %s (protocol v6)\n", NETSVR_VERSION);
    return 0;
  }
  if (*workerCmd) return runWorker(worker);
  return 1;
}
