#include "master/control_cli.hpp"

#include <ctime>

#include "master/status_json.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common/config.hpp"
#include "master/check.hpp"
#include "master/pid_file.hpp"
#include "shm/control.hpp"
#include "shm/names.hpp"

namespace netsvr {
namespace {

// The running master named by a config's pid file, and the control segment it publishes.
struct Instance {
  pid_t pid = 0;
  std::string key;
  std::unique_ptr<shm::ControlSegment> control;
};

// Finds the instance of `view`; prints why not and returns false when none runs.
bool findInstance(const ConfigFileView& view, Instance& out) {
  out.pid = readLivePid(view.pidFile);
  if (out.pid == 0) {
    fprintf(stderr, "netsvr: not running (no live master in pid file %s)\n", view.pidFile.c_str());
    return false;
  }
  out.key = shm::instanceKeyFor(view.pidFile);
  std::string error;
  out.control = shm::ControlSegment::open(shm::controlName(out.key), error);
  if (!out.control) {
    fprintf(stderr, "netsvr: master %d: %s\n", out.pid, error.c_str());
    return false;
  }
  return true;
}

// For status and stop: the file is read leniently, and an invalid one is reported, not fatal.
ConfigFileView inspectForControl(const std::string& configPath) {
  ConfigFileView view = inspectConfig(configPath);
  if (!view.error.empty())
    fprintf(stderr, "netsvr: warning: %s\nnetsvr: the running instance is looked up through %s\n",
            view.error.c_str(), view.pidFile.c_str());
  return view;
}

}  // namespace

int cmdCheck(const std::string& configPath) {
  try {
    std::vector<std::string> notes;
    Config config = checkConfig(configPath, &notes);
    for (const auto& note : notes) fprintf(stderr, "netsvr: note: %s\n", note.c_str());
    printf("config %s is valid\n", config.path.c_str());
    return 0;
  } catch (const ConfigError& e) {
    fprintf(stderr, "netsvr: %s\n", e.what());
    return 1;
  }
}

int cmdStatus(const std::string& configPath, bool json) {
  ConfigFileView view = inspectForControl(configPath);
  Instance instance;
  if (!findInstance(view, instance)) return 1;
  const shm::ControlBlock& control = instance.control->block();
  if (json) {  // the data of the master's /status.json (status page), from the same function
    std::string out = renderStatusJson(control, instance.key, view.path, int64_t(time(nullptr)));
    printf("%s\n", out.c_str());
    return 0;
  }
  printf("instance %s\n", instance.key.c_str());
  printf("master %d\n", control.masterPid.load());
  printf("generation %u\n", control.generation.load());
  if (!view.error.empty())
    printf("config %s is invalid; what runs is unchanged: %s\n", view.path.c_str(),
           view.error.c_str());
  else if (view.contentHash != control.configHash.load())
    printf("config %s differs from the one running (reload applies it)\n", view.path.c_str());
  else
    printf("config %s is the one running\n", view.path.c_str());
  if (control.reloadError[0]) printf("last reload refused: %s\n", control.reloadError);
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    const auto& w = control.workers[serial];
    auto state = shm::WorkerState(w.state.load());
    if (state == shm::WorkerState::Free) continue;
    printf("worker slot=%u gen=%u serial=%d pid=%d state=%s clients=%lld links=%lld tasks=%lld\n",
           w.slot.load(), w.generation.load(), serial, w.pid.load(), shm::workerStateName(state),
           static_cast<long long>(w.clients.load()), static_cast<long long>(w.bizLinks.load()),
           static_cast<long long>(w.taskLinks.load()));
  }
  return 0;
}

int cmdStop(const std::string& configPath) {
  ConfigFileView view = inspectForControl(configPath);
  pid_t pid = readLivePid(view.pidFile);
  if (pid == 0) {
    fprintf(stderr, "netsvr: not running (no live master in pid file %s)\n", view.pidFile.c_str());
    return 1;
  }
  if (kill(pid, SIGTERM) != 0) {
    fprintf(stderr, "netsvr: cannot signal master %d: %s\n", pid, strerror(errno));
    return 1;
  }
  // The master exits within ShutdownWaitTime when it is set; give it that plus a margin. A
  // broken file does not say, so then the general limit applies.
  int64_t wait = view.error.empty() ? view.config.shutdownWaitTime.count() : 0;
  auto limit = std::chrono::milliseconds(wait > 0 ? wait + 10000 : 120000);
  auto deadline = std::chrono::steady_clock::now() + limit;
  // The master holds the pid file's lock until it has cleaned up and exits; a zombie (a parent
  // that has not reaped it yet) no longer holds it.
  while (readLivePid(view.pidFile) == pid) {
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
  try {  // the same check as `netsvr check`: a file that fails it never reaches the master
    config = checkConfig(configPath);
  } catch (const ConfigError& e) {
    fprintf(stderr, "netsvr: reload refused, nothing changed: %s\n", e.what());
    return 1;
  }
  ConfigFileView view{config.path, config.pidFile, config.contentHash, "", config};
  Instance instance;
  if (!findInstance(view, instance)) return 1;
  auto& control = instance.control->block();
  uint32_t before = control.reloadsDone.load();
  // The new generation runs the binary that asked for it: an upgrade can come from elsewhere.
  char self[sizeof control.reloadBinary] = {};
  if (readlink("/proc/self/exe", self, sizeof self - 1) > 0)
    memcpy(control.reloadBinary, self, sizeof self);
  if (kill(instance.pid, SIGHUP) != 0) {
    fprintf(stderr, "netsvr: cannot signal master %d: %s\n", instance.pid, strerror(errno));
    return 1;
  }
  // The master reports once the new generation is ready, or why it refused.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (control.reloadsDone.load() == before) {
    if (std::chrono::steady_clock::now() > deadline || kill(instance.pid, 0) != 0) {
      fprintf(stderr, "netsvr: no answer from master %d to the reload\n", instance.pid);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (control.reloadError[0]) {
    fprintf(stderr, "netsvr: reload refused: %s\n", control.reloadError);
    return 1;
  }
  return 0;
}

}  // namespace netsvr
