// Reload (DESIGN.md, Lifecycle): validate the config, start a new generation of workers on the
// same sockets, then have the old generation hand its business links over and drain. Anything
// wrong before the new generation runs leaves the running one untouched.
#include <signal.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <tuple>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "master/check.hpp"
#include "master/master_process.hpp"

namespace netsvr {

std::string fileIdentity(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

void Master::finishReload(const std::string& error) {
  auto& control = control_->block();
  snprintf(control.reloadError, sizeof control.reloadError, "%s", error.c_str());
  control.reloadsDone.fetch_add(1);
  if (error.empty()) {
    control.configHash = config_.contentHash;
    sd_notifyf(0, "STATUS=generation %u serves", generation_);
    LOG_INFO("reload done: generation %u serves", generation_);
  } else {  // the running generation is untouched: nothing is broken, the file is
    LOG_WARN("reload refused: %s", error.c_str());
  }
}

void Master::applyRuntimeSettings() {
  log::Level level;
  if (log::parseLevel(config_.logLevel, level)) log::setLevel(level);
  auto& control = control_->block();
  int64_t nowNs = monotonicNs();
  for (auto [bucket, rate, current] :
       {std::tuple{&control.onOpenBucket, config_.limitOnOpen, &control.limitOnOpen},
        std::tuple{&control.onMessageBucket, config_.limitOnMessage, &control.limitOnMessage}}) {
    shm::RobustLock lock(bucket->mutex);
    bucket->bucket.init(rate, nowNs);
    *current = rate;
  }
  if (status_) status_->setItems(config_.metricsItems);
}

// The file as it was read for the config in force, for the status page.
void Master::publishConfigText() {
  std::ifstream in(config_.path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  shm::publishConfigText(control_->block(), text);
}

// SIGHUP: validate the config, start a new generation on the same sockets, and once all of it
// is ready tell the old generation to drain. Anything wrong leaves the running one untouched.
void Master::reload() {
  if (stopping_ || reloading_) {
    LOG_WARN("reload ignored: %s", stopping_ ? "stopping" : "a reload is in progress");
    return;
  }
  Config next;
  try {
    next = checkConfig(config_.path);
  } catch (const ConfigError& e) {
    finishReload(std::string("invalid config, nothing changed: ") + e.what());
    return;
  }
  if (next.customer.listenAddress != config_.customer.listenAddress ||
      next.worker.address.text() != config_.worker.address.text() ||
      next.task.address.text() != config_.task.address.text() || next.pidFile != config_.pidFile ||
      next.metricsListenAddress != config_.metricsListenAddress) {
    finishReload("the listen addresses and PidFile cannot change on reload; restart the gateway");
    return;
  }
  // Which binary the new generation runs: one installed over ours (same path, another file)
  // wins; otherwise the one that ran `netsvr reload` (it wrote its path before it signalled
  // us), so that an upgrade can also come from another path.
  auto& control = control_->block();
  std::string binary(control.reloadBinary,
                     strnlen(control.reloadBinary, sizeof control.reloadBinary));
  control.reloadBinary[0] = '\0';
  previousExe_ = exe_;
  previousExeId_ = exeId_;
  bool replacedInPlace = fileIdentity(exe_) != exeId_;
  if (!binary.empty() && binary != exe_ && !replacedInPlace) {
    if (access(binary.c_str(), X_OK) != 0) {
      finishReload("cannot execute " + binary + ": " + strerror(errno));
      return;
    }
    LOG_INFO("reload: the new generation runs %s (was %s)", binary.c_str(), exe_.c_str());
    exe_ = binary;
  }
  exeId_ = fileIdentity(exe_);
  previous_ = config_;
  config_ = std::move(next);
  try {
    listeners_.ensureSlots(config_.resolvedWorkers());
  } catch (const ConfigError& e) {
    config_ = previous_;
    exe_ = previousExe_;
    exeId_ = previousExeId_;
    finishReload(e.what());
    return;
  }
  applyRuntimeSettings();
  previousConfigText_ = shm::readConfigText(control_->block());
  publishConfigText();
  ++generation_;
  (*control_)->generation = generation_;
  reloading_ = true;
  reloadStartedMs_ = uv_now(&loop_);
  LOG_INFO("reload: starting generation %u with %d workers", generation_,
           config_.resolvedWorkers());
  for (int slot = 0; slot < config_.resolvedWorkers(); ++slot) spawn(slot);
}

void Master::reloadProgress() {
  constexpr uint64_t kReadyLimitMs = 30000;
  if (handingOver_) {
    handoverProgress();
    return;
  }
  if (!allRunning(generation_)) {
    if (uv_now(&loop_) - reloadStartedMs_ > kReadyLimitMs)
      abortReload("the new generation was not ready in 30 s");
    return;
  }
  // The old generation drains (serves its clients, accepts nothing new) and moves its business
  // links to the new one; the reload's verdict waits for the links.
  handingOver_ = true;
  handoverStartedMs_ = uv_now(&loop_);
  asked_.clear();
  for (const auto& c : children_) {
    if (c.generation == generation_) continue;
    auto& info = (*control_)->workers[c.serial];
    info.handoverError[0] = '\0';
    info.handover = uint32_t(shm::HandoverState::Asked);
    asked_.push_back({c.serial, c.pid});
    kill(c.pid, SIGUSR2);
  }
  handoverProgress();
}

void Master::handoverProgress() {
  constexpr uint64_t kHandoverLimitMs = 30000;
  std::string errors;
  bool pending = false;
  for (auto [serial, pid] : asked_) {
    bool running = false;
    for (const auto& c : children_) running |= c.pid == pid;
    if (!running) continue;  // exited: nothing of it to move (a crash takes its links along)
    const auto& info = (*control_)->workers[serial];
    auto state = shm::HandoverState(info.handover.load());
    if (state == shm::HandoverState::Failed)
      errors += std::string(errors.empty() ? "" : "; ") + info.handoverError;
    else if (state != shm::HandoverState::Done)
      pending = true;
  }
  if (pending && uv_now(&loop_) - handoverStartedMs_ <= kHandoverLimitMs) return;
  if (pending)
    errors += std::string(errors.empty() ? "" : "; ") +
              "the old generation did not finish moving its business links in 30 s";
  handingOver_ = false;
  reloading_ = false;
  finishReload(errors.empty() ? ""
                              : "business links stayed on the old generation (generation " +
                                    std::to_string(generation_) + " serves): " + errors);
}

void Master::abortReload(const std::string& why) {
  reloading_ = false;
  handingOver_ = false;
  uint32_t failed = generation_;
  // New workers that run drain like an old generation would; the others never served anyone.
  for (auto& c : children_) {
    if (c.generation != failed) continue;
    bool running =
        (*control_)->workers[c.serial].state.load() == uint32_t(shm::WorkerState::Running);
    c.killed = !running;
    kill(c.pid, running ? SIGUSR2 : SIGKILL);
  }
  config_ = previous_;
  exe_ = previousExe_;
  exeId_ = previousExeId_;
  applyRuntimeSettings();
  shm::publishConfigText(control_->block(), previousConfigText_);
  generation_ = failed - 1;
  (*control_)->generation = generation_;
  finishReload(why + "; generation " + std::to_string(generation_) + " keeps serving");
}

}  // namespace netsvr
