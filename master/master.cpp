#include "master/master.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <uv.h>

#include <climits>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/log.hpp"
#include "common/startup_memory.hpp"
#include "master/announce.hpp"
#include "master/check.hpp"
#include "master/listeners.hpp"
#include "master/master_process.hpp"
#include "master/pid_file.hpp"
#include "master/status_endpoint.hpp"
#include "shm/conn_table.hpp"
#include "shm/control.hpp"
#include "shm/names.hpp"

namespace netsvr {
namespace {

constexpr uint64_t kSuperviseTickMs = 50;  // readiness and deadline checks

void removeStaleSegments(const std::string& key) {
  std::string prefix = shm::namePrefix(key);
  DIR* dir = opendir("/dev/shm");
  if (!dir) return;
  while (dirent* entry = readdir(dir)) {
    if (strncmp(entry->d_name, prefix.c_str(), prefix.size()) == 0) {
      LOG_INFO("removing stale shared memory /dev/shm/%s", entry->d_name);
      shm_unlink(("/" + std::string(entry->d_name)).c_str());
    }
  }
  closedir(dir);
}

std::string executablePath() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw std::runtime_error("cannot read /proc/self/exe");
  buf[n] = '\0';
  return buf;
}

}  // namespace

int Master::run() {
  exe_ = executablePath();
  exeId_ = fileIdentity(exe_);
  pidFile_ = std::make_unique<PidFile>(config_.pidFile);  // throws if another master holds it
  removeStaleSegments(key_);
  listeners_.checkPortsFree();
  listeners_.ensureSlots(config_.resolvedWorkers());
  control_ = shm::ControlSegment::create(shm::controlName(key_));
  (*control_)->masterPid = getpid();
  (*control_)->generation = generation_;
  (*control_)->configHash = config_.contentHash;
  (*control_)->startedAt = time(nullptr);
  (*control_)->limitOnOpen = config_.limitOnOpen;
  (*control_)->limitOnMessage = config_.limitOnMessage;
  (*control_)->onOpenBucket.bucket.init(config_.limitOnOpen, monotonicNs());
  (*control_)->onMessageBucket.bucket.init(config_.limitOnMessage, monotonicNs());

  uv_loop_init(&loop_);
  const int signums[6] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGCHLD, SIGUSR1};
  for (int i = 0; i < 6; ++i) {
    uv_signal_init(&loop_, &signals_[i]);
    signals_[i].data = this;
    uv_signal_start(&signals_[i], onSignal, signums[i]);
  }
  publishConfigText();
  if (!config_.metricsListenAddress.empty()) {
    status_ = std::make_unique<StatusEndpoint>(&loop_, control_->block(), key_, config_.path,
                                               config_.metricsItems);
    status_->listen(config_.metricsListenAddress);
  }
  // The status page's charts: one sample a second, also when nobody looks (history is shm).
  uv_timer_init(&loop_, &historyTick_);
  historyTick_.data = this;
  uv_timer_start(
      &historyTick_,
      [](uv_timer_t* t) {
        shm::recordHistory(static_cast<Master*>(t->data)->control_->block(), time(nullptr));
      },
      0, 1000);
  uv_timer_init(&loop_, &tick_);
  tick_.data = this;
  uv_timer_start(&tick_, onTick, kSuperviseTickMs, kSuperviseTickMs);

  LOG_INFO("netsvr master starting %d workers, instance %s, config %s", config_.resolvedWorkers(),
           key_.c_str(), config_.path.c_str());
  for (int slot = 0; slot < config_.resolvedWorkers(); ++slot) spawn(slot);

  uv_run(&loop_, UV_RUN_DEFAULT);

  for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&historyTick_), nullptr);
  if (status_) status_->close();
  uv_run(&loop_, UV_RUN_DEFAULT);
  status_.reset();  // lws's second context destroy, outside the loop
  uv_run(&loop_, UV_RUN_DEFAULT);
  uv_loop_close(&loop_);

  for (int serial = 0; serial < kMaxWorkerSerials; ++serial)
    shm::ConnTable::remove(shm::workerSegmentName(key_, serial));
  control_.reset();
  shm::ControlSegment::remove(shm::controlName(key_));
  pidFile_.reset();
  LOG_INFO("netsvr master stopped (exit %d)", exitCode_);
  return exitCode_;
}

int Master::allocateSerial() {
  // Rotate through serials so a freed one is not reused at once: a uniqId handed out by a dead
  // worker then keeps pointing at nobody for as long as possible.
  for (int i = 0; i < kMaxWorkerSerials; ++i) {
    int serial = (nextSerial_ + i) % kMaxWorkerSerials;
    auto& info = (*control_)->workers[serial];
    if (info.state.load() == uint32_t(shm::WorkerState::Free)) {
      nextSerial_ = serial + 1;
      return serial;
    }
  }
  return -1;
}

void Master::spawn(int slot) {
  int serial = allocateSerial();
  if (serial < 0) {
    LOG_ERROR("no free worker serial for slot %d", slot);
    return;
  }
  try {
    shm::ConnTable::create(shm::workerSegmentName(key_, serial), config_.resolvedSegmentSize());
  } catch (const std::exception& e) {
    LOG_ERROR("cannot create the routing table of worker serial %d: %s", serial, e.what());
    return;
  }
  auto& info = (*control_)->workers[serial];
  info.incarnation.fetch_add(1);
  info.slot = uint32_t(slot);
  info.generation = generation_;
  info.clients = 0;
  info.bizLinks = 0;
  info.taskLinks = 0;
  info.quiet = 0;
  info.handover = uint32_t(shm::HandoverState::Idle);
  info.handoverError[0] = '\0';
  for (auto& m : info.meters) m.count = 0, m.rate1 = 0, m.rate5 = 0, m.rate15 = 0;
  info.pid = 0;

  // This slot accepts on every socket set j with j % workers == slot, so that sets left over
  // from a generation with more workers keep an acceptor.
  std::vector<int> fds;
  int workers = config_.resolvedWorkers();
  for (int set = slot; set < listeners_.slotCount(); set += workers) {
    const SlotSockets& s = listeners_.slot(set);
    fds.insert(fds.end(), {s.client, s.worker, s.task});
  }
  std::string setsArg = std::to_string(fds.size() / 3);
  std::string slotArg = std::to_string(slot), genArg = std::to_string(generation_),
              serialArg = std::to_string(serial);
  pid_t pid = fork();
  if (pid < 0) {
    LOG_ERROR("fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    // Child: listeners at fds 3, 4, 5, ... (dup2 clears close-on-exec), signals unblocked.
    std::vector<int> tmp;
    for (int fd : fds) tmp.push_back(fcntl(fd, F_DUPFD_CLOEXEC, 3 + int(fds.size()) + 16));
    for (size_t i = 0; i < tmp.size(); ++i) dup2(tmp[i], 3 + int(i));
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    setenv("NETSVR_LISTEN_SETS", setsArg.c_str(), 1);
    execl(exe_.c_str(), exe_.c_str(), "worker", "-c", config_.path.c_str(), "--slot",
          slotArg.c_str(), "--generation", genArg.c_str(), "--serial", serialArg.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Published only now, with its pid: `status` never shows a worker without one. The child may
  // already have reported Running; that wins.
  info.pid = pid;
  uint32_t expected = uint32_t(shm::WorkerState::Free);
  info.state.compare_exchange_strong(expected, uint32_t(shm::WorkerState::Starting));
  children_.push_back(Child{pid, slot, generation_, serial});
  LOG_INFO("started worker slot %d generation %u serial %d pid %d", slot, generation_, serial, pid);
}

void Master::retireSerial(int serial, bool announce) {
  auto& info = (*control_)->workers[serial];
  info.state = uint32_t(shm::WorkerState::Exited);  // no longer read, routed to or counted
  auto& registry = (*control_)->registry;
  int32_t lostEvents = 0;
  {
    shm::RobustLock lock(registry.mutex);
    for (auto& e : registry.entries)
      if (e.used && e.ownerSerial == uint32_t(serial)) {
        lostEvents |= e.events;
        e.used = 0;
      }
    registry.version.fetch_add(1);
  }
  if (lostEvents && !stopping_)
    holdEvents(control_->block(), lostEvents, unixMs());  // the SDK reconnects
  info.bizLinks = 0;
  if (!announce) {
    releaseSerial(serial);
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    log::setProcessTag("announcer");
    _exit(announceClosedConnections(
        key_, serial, uniqIdPrefix(config_.task.address.ip, config_.task.address.port)));
  }
  if (pid < 0)
    releaseSerial(serial);
  else
    announcers_[pid] = serial;  // the segment stays until the announcer has read it
}

void Master::releaseSerial(int serial) {
  shm::ConnTable::remove(shm::workerSegmentName(key_, serial));
  auto& info = (*control_)->workers[serial];
  for (int item = 1; item <= shm::kMetricItems; ++item)  // keep the gateway's totals monotonic
    (*control_)->retiredMeters[item].fetch_add(info.meters[item].count.load());
  info.pid = 0;
  info.announcerPid = 0;
  info.clients = 0;
  info.sockets = 0;
  info.state = uint32_t(shm::WorkerState::Free);
}

void Master::reap() {
  int status = 0;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (auto it = announcers_.find(pid); it != announcers_.end()) {
      releaseSerial(it->second);
      announcers_.erase(it);
      continue;
    }
    for (size_t i = 0; i < children_.size(); ++i) {
      if (children_[i].pid != pid) continue;
      Child child = children_[i];
      children_.erase(children_.begin() + long(i));
      bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      // Asked to go: a stop, or the drain of a generation that a reload replaced. Only an exit
      // nobody asked for is an error; a drained worker leaving is the normal end of a reload.
      bool retiring = stopping_ || child.generation != generation_;
      if (retiring && clean) {
        LOG_INFO("worker slot %d generation %u pid %d exited%s", child.slot, child.generation, pid,
                 stopping_ ? "" : " after draining");
      } else if (child.killed) {
        LOG_WARN("worker slot %d generation %u pid %d killed as asked", child.slot,
                 child.generation, pid);
      } else if (WIFSIGNALED(status)) {
        LOG_ERROR("worker slot %d pid %d killed by signal %d", child.slot, pid, WTERMSIG(status));
      } else {
        LOG_ERROR("worker slot %d pid %d exited with status %d", child.slot, pid,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
      }
      bool wasReady =
          (*control_)->workers[child.serial].state.load() != uint32_t(shm::WorkerState::Starting);
      retireSerial(child.serial, !clean || !stopping_);
      // Once the old generation hands its links over, the new one serves: a failure to start
      // is then a respawn like any other, not a reason to abort.
      if (reloading_ && !handingOver_ && child.generation == generation_ && !wasReady) {
        abortReload("a worker of the new generation exited before it was ready (see the log)");
      } else if (!stopping_ && child.generation == generation_) {
        if (wasReady) {
          spawn(child.slot);  // a crash: the slot's socket must not stay without an acceptor
        } else {
          // It could not even start (bad environment, a binary that refuses the config): retry
          // once a second instead of in a tight loop.
          LOG_ERROR("worker slot %d failed before it was ready; retrying in 1 s", child.slot);
          respawnAt_.push_back({child.slot, uv_now(&loop_) + 1000});
        }
      }
      break;
    }
  }
  if (stopping_ && children_.empty() && announcers_.empty()) uv_stop(&loop_);
}

void Master::beginStop() {
  if (stopping_) return;
  stopping_ = true;
  sd_notify(0, "STOPPING=1");
  LOG_INFO("stopping: %zu workers", children_.size());
  if (config_.shutdownWaitTime.count() > 0)
    stopDeadlineMs_ = uv_now(&loop_) + uint64_t(config_.shutdownWaitTime.count());
  for (const auto& c : children_) kill(c.pid, SIGTERM);
  if (children_.empty()) uv_stop(&loop_);
}

// Every worker (of generation `generation` only, when it is not 0) has reported Running.
bool Master::allRunning(uint32_t generation) const {
  if (children_.empty()) return false;
  for (const auto& c : children_)
    if ((generation == 0 || c.generation == generation) &&
        (*control_)->workers[c.serial].state.load() != uint32_t(shm::WorkerState::Running))
      return false;
  return true;
}

void Master::tick() {
  for (size_t i = 0; i < respawnAt_.size();) {
    if (stopping_ || uv_now(&loop_) < respawnAt_[i].second) {
      ++i;
      continue;
    }
    int slot = respawnAt_[i].first;
    respawnAt_.erase(respawnAt_.begin() + long(i));
    spawn(slot);
  }
  if (!ready_ && allRunning()) {
    ready_ = true;
    // Under systemd (Type=notify) `systemctl start` returns now, as `start --daemon` does.
    sd_notifyf(0, "READY=1\nSTATUS=generation %u serves", generation_);
    if (readyFd_ >= 0) {
      char ok = 1;
      ssize_t ignored = write(readyFd_, &ok, 1);
      (void)ignored;
      close(readyFd_);
      readyFd_ = -1;
    }
    releaseStartupMemory(StartupRelease::AllFilePages);  // from now on the master mostly waits
  }
  if (reloading_) reloadProgress();
  if (stopping_ && stopDeadlineMs_ && uv_now(&loop_) >= stopDeadlineMs_) {
    LOG_ERROR("ShutdownWaitTime passed with %zu workers left: killing them", children_.size());
    for (auto& c : children_) {
      c.killed = true;
      kill(c.pid, SIGKILL);
    }
    stopDeadlineMs_ = 0;
    exitCode_ = 1;
  }
}

void Master::onTick(uv_timer_t* handle) {
  static_cast<Master*>(handle->data)->tick();
}

void Master::onSignal(uv_signal_t* handle, int signum) {
  auto* self = static_cast<Master*>(handle->data);
  switch (signum) {
    case SIGCHLD:
      self->reap();
      break;
    case SIGUSR1:
      log::reopen();
      LOG_INFO("log file reopened");
      for (const auto& c : self->children_) kill(c.pid, SIGUSR1);
      break;
    case SIGHUP:
      self->reload();
      break;
    default:
      self->beginStop();
      break;
  }
}

int runMaster(const StartOptions& options) {
  Config config;
  try {
    config = checkConfig(options.configPath);
  } catch (const ConfigError& e) {
    fprintf(stderr, "netsvr: %s\n", e.what());
    return 1;
  }
  log::Level level;
  log::parseLevel(config.logLevel, level);
  log::setLevel(level);
  log::setProcessTag("master");
  if (options.daemon && config.logFile.empty()) {  // a daemon has no terminal to log to
    config.logFile = (std::filesystem::path(config.path).parent_path() / "netsvr.log").string();
    setenv("NETSVR_LOG_FILE", config.logFile.c_str(), 1);  // the workers log there too
    fprintf(stderr, "netsvr: logging to %s\n", config.logFile.c_str());
  }
  if (!config.logFile.empty() && !log::openFile(config.logFile)) {
    fprintf(stderr, "netsvr: LogFile = \"%s\": %s\n", config.logFile.c_str(), strerror(errno));
    return 1;
  }
  for (const auto& key : config.ignoredKeys)
    LOG_INFO("config key %s is not used; ignored", key.c_str());
  if (config.customer.maxOnlineNum == 0)
    LOG_WARN("Customer.MaxOnlineNum = 0: the number of online clients is not limited");

  int readyFd = -1;
  if (options.daemon) {
    int pipeFds[2];
    if (pipe2(pipeFds, O_CLOEXEC) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) return 1;
    if (pid > 0) {  // the caller's process: wait until the gateway accepts, or fails
      close(pipeFds[1]);
      char ok = 0;
      ssize_t n = read(pipeFds[0], &ok, 1);
      return n == 1 && ok == 1 ? 0 : 1;
    }
    close(pipeFds[0]);
    readyFd = pipeFds[1];
    setsid();
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, STDIN_FILENO);
    dup2(devnull, STDOUT_FILENO);
    dup2(devnull, STDERR_FILENO);
    close(devnull);
    log::setProcessTag("master");
  }
  signal(SIGPIPE, SIG_IGN);
  try {
    Master master(std::move(config), readyFd);
    return master.run();
  } catch (const std::exception& e) {
    LOG_ERROR("%s", e.what());
    fprintf(stderr, "netsvr: %s\n", e.what());
    return 1;
  }
}

}  // namespace netsvr
