// The master process (DESIGN.md §2, Lifecycle): binds the listeners, creates the shared memory,
// starts and supervises the workers (master.cpp) and reloads them (reload.cpp). Signals only set
// flags; the loop acts on them.
#pragma once

#include <sys/types.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "master/listeners.hpp"
#include "master/pid_file.hpp"
#include "master/status_endpoint.hpp"
#include "shm/control.hpp"
#include "shm/names.hpp"

namespace netsvr {

// Device, inode and modification time of a file: tells a binary replaced at the same path.
std::string fileIdentity(const std::string& path);

class Master {
 public:
  Master(Config config, int readyFd)
      : config_(std::move(config)),
        key_(shm::instanceKeyFor(config_.pidFile)),
        listeners_(config_),
        readyFd_(readyFd) {}

  int run();

 private:
  struct Child {
    pid_t pid;
    int slot;
    uint32_t generation;
    int serial;
    bool killed = false;  // by us (an aborted reload, ShutdownWaitTime): logged as expected
  };

  static void onSignal(uv_signal_t* handle, int signum);
  static void onTick(uv_timer_t* handle);
  void start();
  void spawn(int slot);
  int allocateSerial();
  void reap();
  void retireSerial(int serial, bool announce);
  void releaseSerial(int serial);
  void beginStop();
  void reload();
  void reloadProgress();
  void handoverProgress();
  void abortReload(const std::string& why);
  void finishReload(const std::string& error);
  void applyRuntimeSettings();
  void publishConfigText();
  void tick();
  bool allRunning(uint32_t generation = 0) const;

  Config config_;
  std::string key_;
  std::string exe_;
  Listeners listeners_;
  std::unique_ptr<PidFile> pidFile_;
  std::unique_ptr<shm::ControlSegment> control_;
  std::unique_ptr<StatusEndpoint> status_;  // Metrics.ListenAddress
  uv_timer_t historyTick_{};
  uv_loop_t loop_{};
  uv_signal_t signals_[6]{};
  uv_timer_t tick_{};
  std::vector<Child> children_;
  std::unordered_map<pid_t, int> announcers_;        // pid -> serial of the dead worker it reads
  std::vector<std::pair<int, uint64_t>> respawnAt_;  // slot, loop time (ms) of a delayed respawn
  uint32_t generation_ = 1;
  int nextSerial_ = 0;
  bool stopping_ = false;
  bool reloading_ = false;
  uint64_t reloadStartedMs_ = 0;
  std::string previousExe_;            // the binary before a reload in progress
  std::string exeId_, previousExeId_;  // fileIdentity() of exe_ when a generation started
  // A reload's last phase: the old generation moves its business links to the new one.
  bool handingOver_ = false;
  uint64_t handoverStartedMs_ = 0;
  std::vector<std::pair<int, pid_t>> asked_;  // (serial, pid) of the workers moving links
  Config previous_;                           // the config before a reload in progress
  std::string previousConfigText_;            // and its file's text
  uint64_t stopDeadlineMs_ = 0;               // 0 = none
  int exitCode_ = 0;
  bool ready_ = false;  // every worker of the first generation accepted once
  int readyFd_;
};

}  // namespace netsvr
