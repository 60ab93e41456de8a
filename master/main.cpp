// netsvr command line: start | stop | reload | status | check | version (and the internal
// `worker`).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "common/config.hpp"
#include "master/control_cli.hpp"
#include "master/master.hpp"
#include "worker/worker.hpp"

#ifndef NETSVR_VERSION
#define NETSVR_VERSION "0.1.0"
#endif

using namespace netsvr;

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
  auto* check = app.add_subcommand(
      "check", "Check a config file without starting anything (exit 0 when it is valid)");
  check->add_option("-c,--config", configPath, "Config file (TOML)")->capture_default_str();
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
  if (*start) {
    // The workers bind every symbol when they start: lazy binding would read the dynamic
    // linker's tables again at each first call, after the worker gave them back
    // (releaseStartupMemory, docs/PERFORMANCE.md "Idle memory").
    setenv("LD_BIND_NOW", "1", 0);
    return runMaster(StartOptions{absoluteConfigPath(configPath), daemon});
  }
  if (*stop) return cmdStop(configPath);
  if (*reload) return cmdReload(configPath);
  if (*status) return cmdStatus(configPath, statusJson);
  if (*check) return cmdCheck(configPath);
  if (*version) {
    printf("netsvr %s (protocol v6)\n", NETSVR_VERSION);
    return 0;
  }
  if (*workerCmd) return runWorker(worker);
  return 1;
}
