#include "worker/worker.hpp"

#include <google/protobuf/stubs/logging.h>

#include <malloc.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <ctime>
#include <random>

#include "common/handover_msg.hpp"
#include "common/log.hpp"
#include "common/meter.hpp"
#include "shm/names.hpp"
#include "worker/biz_link.hpp"
#include "worker/handover.hpp"
#include "worker/http_client.hpp"
#include "worker/peer_links.hpp"
#include "worker/router.hpp"
#include "worker/ws_server.hpp"

namespace netsvr {

UniqIdParts Worker::nextUniqId() {
  return uniqIds->next(uint32_t(time(nullptr)));
}

namespace {
bool takeToken(shm::SharedBucket& shared, int32_t rate) {
  if (rate <= 0) return true;
  shm::RobustLock lock(shared.mutex);
  return shared.bucket.take(rate, monotonicNs());
}
}  // namespace

bool Worker::allowOpen() const {
  return takeToken((*control)->onOpenBucket,
                   (*control)->limitOnOpen.load(std::memory_order_relaxed));
}

bool Worker::allowMessage() const {
  return takeToken((*control)->onMessageBucket,
                   (*control)->limitOnMessage.load(std::memory_order_relaxed));
}

int64_t Worker::onlineSockets() const {
  int64_t total = 0;
  for (const auto& w : (*control)->workers) {
    if (shm::isLive(shm::WorkerState(w.state.load(std::memory_order_relaxed))))
      total += w.sockets.load(std::memory_order_relaxed);
  }
  return total;
}

namespace {

// Owns the loop and the modules; the stop sequence runs inside the loop.
class WorkerProcess {
 public:
  explicit WorkerProcess(Worker& w)
      : w_(w), ws_(w), links_(w), peers_(w), router_(w), handover_(w) {
    uv_loop_init(&loop_);
    w.loop = &loop_;
    http_ = std::make_unique<HttpClient>(&loop_);
    w.http = http_.get();
    w.ws = &ws_;
    w.links = &links_;
    w.peers = &peers_;
    w.router = &router_;
    w.handover = &handover_;
  }

  int run() {
    const int signums[kSignals] = {SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2};
    for (int i = 0; i < kSignals; ++i) {
      uv_signal_init(&loop_, &signals_[i]);
      signals_[i].data = this;
      uv_signal_start(&signals_[i], onSignal, signums[i]);
    }
    uv_timer_init(&loop_, &drainTimer_);
    drainTimer_.data = this;
    uv_timer_init(&loop_, &drainLimit_);
    drainLimit_.data = this;
    uv_timer_init(&loop_, &meterTimer_);
    meterTimer_.data = this;
    uint64_t tickMs = uint64_t(kMeterTickSeconds * 1000);
    uv_timer_start(
        &meterTimer_, [](uv_timer_t* t) { static_cast<WorkerProcess*>(t->data)->tickMeters(); },
        tickMs, tickMs);
    peers_.start();
    handover_.listen();  // before Running: the old generation moves its links here at once
    links_.start();
    ws_.start();
    w_.info().state = uint32_t(shm::WorkerState::Running);
    LOG_INFO("worker ready (slot %d, generation %u, serial %d)", w_.slot, w_.generation, w_.serial);
    uv_run(&loop_, UV_RUN_DEFAULT);
    // Second half of the lws shutdown on a foreign loop (LWS-NOTES.md), then drain the loop.
    ws_.destroyContext();
    uv_run(&loop_, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&loop_);
    if (rc != 0) LOG_DEBUG("loop closed with handles left: %s", uv_strerror(rc));
    LOG_INFO("worker stopped");
    return 0;
  }

 private:
  static void onSignal(uv_signal_t* handle, int signum) {
    auto* self = static_cast<WorkerProcess*>(handle->data);
    if (signum == SIGUSR1) {
      log::reopen();
      LOG_INFO("log file reopened");
      return;
    }
    if (signum == SIGUSR2) {
      self->moveLinksIfAsked();
      self->beginDrain();
      return;
    }
    self->beginStop();
  }

  // A newer generation has taken over the listening sockets (reload): accept nothing new, serve
  // the clients we have until they leave (or until ReloadDrainTime), then exit.
  void beginDrain() {
    if (w_.draining || w_.stopping) return;
    w_.draining = true;
    w_.info().state = uint32_t(shm::WorkerState::Draining);
    LOG_INFO("draining: %lld clients left", static_cast<long long>(w_.info().clients.load()));
    links_.stopAccepting();
    ws_.stopAccepting();
    auto drain = w_.config.reloadDrainTime.count();
    if (drain > 0) {
      uv_timer_start(
          &drainLimit_,
          [](uv_timer_t* t) {
            auto* self = static_cast<WorkerProcess*>(t->data);
            LOG_INFO("ReloadDrainTime over: closing the remaining clients with 1012");
            self->ws_.closeAll(1012, "service restart");
          },
          uint64_t(drain), 0);
    }
    ws_.whenEmpty([](void* arg) { static_cast<WorkerProcess*>(arg)->clientsGone(); }, this);
  }

  // The master asks (HandoverState::Asked, then SIGUSR2) when a reload's new generation runs:
  // our business links move to it, and the reload waits for the outcome. A worker still
  // draining from an earlier reload is asked again, for the links that stayed then.
  void moveLinksIfAsked() {
    if (w_.stopping || w_.info().handover.load() != uint32_t(shm::HandoverState::Asked)) return;
    handover_.moveAll(
        true, [](void* arg) { static_cast<WorkerProcess*>(arg)->linksMoved(); }, this);
  }

  void linksMoved() {
    if (clientsGonePending_) {
      clientsGonePending_ = false;
      clientsGone();
    }
  }

  void beginStop() {
    if (w_.stopping) return;
    w_.stopping = true;
    handover_.cancel();
    uv_timer_stop(&drainLimit_);
    LOG_INFO("stopping: closing clients with 1001");
    links_.stopAccepting();
    links_.dropHeld();
    ws_.stop([](void* arg) { static_cast<WorkerProcess*>(arg)->clientsGone(); }, this);
  }

  // Every client is gone and its ConnClose is queued. Before the business links close, every
  // event already on its way to them must be delivered:
  //  1. quiesce: our own writes (business links, peers, callbacks) are done; a draining worker
  //     first leaves the registry, so nobody routes new events to its links;
  //  2. on stop, wait until every other worker is quiet too (their ConnClose events to our
  //     links are then in our socket buffers);
  //  3. a short grace for the loop to read and deliver those, then flush and close.
  void clientsGone() {
    if (drainStartedMs_) return;
    if (handover_.moving()) {  // our links are on their way: close nothing under them
      clientsGonePending_ = true;
      return;
    }
    // Links that stayed at the reload (a failed move) get one more try before we exit; only
    // what stays again is closed, with events held for the business to reconnect.
    if (w_.draining && !w_.stopping && !movedAtExit_) {
      movedAtExit_ = true;
      if (handover_.moveAll(
              false, [](void* arg) { static_cast<WorkerProcess*>(arg)->linksMoved(); }, this)) {
        clientsGonePending_ = true;
        return;
      }
    }
    drainStartedMs_ = uv_now(&loop_);
    if (w_.draining && !w_.stopping && w_.info().bizLinks.load() > 0) {
      // Hold first: another worker must never see "no receiver" without also seeing the hold.
      links_.holdEventsWhileBusinessReconnects(
          links_.registeredEvents());  // it reconnects to the new generation
      links_.withdrawFromRegistry();
    }
    uv_timer_start(
        &drainTimer_, [](uv_timer_t* t) { static_cast<WorkerProcess*>(t->data)->drainTick(); }, 0,
        10);
  }

  bool othersQuiet() const {
    for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
      if (serial == w_.serial) continue;
      const auto& info = (*w_.control)->workers[serial];
      auto state = shm::WorkerState(info.state.load());
      if (state != shm::WorkerState::Free && state != shm::WorkerState::Exited &&
          !info.quiet.load())
        return false;
    }
    return true;
  }

  void drainTick() {
    constexpr uint64_t kGraceMs = 50;          // a few loop turns to read what peers already sent
    constexpr uint64_t kFlushLimitMs = 1000;   // for a business that does not read
    constexpr uint64_t kOthersLimitMs = 1000;  // for the other workers to become quiet
    uint64_t now = uv_now(&loop_);
    // ConnClose events may wait for OnClose callbacks, which have their own deadline, and events
    // held for a reconnecting business wait for it.
    uint64_t limitMs = kFlushLimitMs;
    if (!w_.config.customer.onCloseCallbackApi.empty())
      limitMs += uint64_t(w_.config.customer.callbackApiDeadline.count());
    if (links_.heldEvents()) limitMs += BizLinks::kHoldWindowMs;
    bool quiet = flushed() && http_->inFlight() == 0 && peers_.queuedBytes() == 0 &&
                 peers_.waitingCloses() == 0 && links_.heldEvents() == 0;
    if (now - lastReportMs_ >= 1000) {
      lastReportMs_ = now;
      LOG_DEBUG(
          "closing: business writes pending %zu B, callbacks %zu, peer writes %zu B, held events "
          "%zu, others quiet %d",
          links_.pendingWriteBytes(), http_->inFlight(), peers_.queuedBytes(), links_.heldEvents(),
          int(othersQuiet()));
    }
    bool done = false;
    if (!quiet) {
      if (now - drainStartedMs_ > limitMs) {
        LOG_WARN("closing business links with events still unsent");
        done = true;
      }
    } else if (!graceStartedMs_) {
      w_.info().quiet = 1;
      if (!quietSinceMs_) quietSinceMs_ = now;
      if (!w_.stopping || othersQuiet() || now - quietSinceMs_ > kOthersLimitMs)
        graceStartedMs_ = now;
    } else {
      done = now - graceStartedMs_ >= kGraceMs;
    }
    if (!done) return;
    http_->shutdown();
    uv_timer_stop(&drainTimer_);
    w_.info().quiet = 1;
    w_.info().state = uint32_t(shm::WorkerState::Exited);
    links_.closeAll();
    handover_.stop();
    peers_.stop();
    ws_.destroyContext();
    for (auto& s : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&s), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&drainTimer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&drainLimit_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&meterTimer_), nullptr);
  }

  // Each worker keeps the moving averages of its own meters; Metrics sums them (§10).
  void tickMeters() {
    for (int item = 1; item <= shm::kMetricItems; ++item) {
      if (!w_.metricEnabled[item]) continue;
      auto& slot = w_.info().meters[item];
      rates_[item].tick(slot.count.load(std::memory_order_relaxed));
      slot.rate1.store(rates_[item].m1.rate, std::memory_order_relaxed);
      slot.rate5.store(rates_[item].m5.rate, std::memory_order_relaxed);
      slot.rate15.store(rates_[item].m15.rate, std::memory_order_relaxed);
    }
  }

  bool flushed() const;

  Worker& w_;
  uv_loop_t loop_{};
  static constexpr int kSignals = 5;
  uv_signal_t signals_[kSignals]{};
  uv_timer_t drainTimer_{};
  uv_timer_t drainLimit_{};
  uv_timer_t meterTimer_{};
  MeterRates rates_[shm::kMetricItems + 1];
  uint64_t drainStartedMs_ = 0;
  bool clientsGonePending_ = false;  // clientsGone() waits for the links' handover to end
  bool movedAtExit_ = false;
  uint64_t graceStartedMs_ = 0;
  uint64_t quietSinceMs_ = 0;
  uint64_t lastReportMs_ = 0;
  WsServer ws_;
  BizLinks links_;
  PeerLinks peers_;
  Router router_;
  Handover handover_;
  std::unique_ptr<HttpClient> http_;
};

bool WorkerProcess::flushed() const {
  // Unsent bytes sit in each link's libuv write queue; uv_stream_get_write_queue_size tells.
  return links_.pendingWriteBytes() == 0;
}

// libprotobuf writes a line to stderr for every string field that is not UTF-8, so a business
// could fill the disk with bad packets: its messages go to our log, at debug level.
void protobufLog(google::protobuf::LogLevel level, const char* file, int line,
                 const std::string& message) {
  if (level >= google::protobuf::LOGLEVEL_FATAL)
    LOG_ERROR("libprotobuf %s:%d: %s", file, line, message.c_str());
  else
    LOG_DEBUG("libprotobuf %s:%d: %s", file, line, message.c_str());
}

void raiseFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace

int runWorker(const WorkerOptions& options) {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  // No fastbins (glibc's per-thread tcache still serves small blocks): with them every block of
  // 1 KiB or more (a fanned-out message, a session copy) first consolidated the fastbins, ~1 %
  // of a worker's CPU under the heavy load (docs/PERFORMANCE.md, "Sends through io_uring").
  mallopt(M_MXFAST, 0);
  Worker w;
  try {
    w.config = loadConfig(options.configPath);
    normaliseAddresses(w.config);
  } catch (const ConfigError& e) {
    fprintf(stderr, "netsvr worker: %s\n", e.what());
    return 1;
  }
  log::Level level;
  log::parseLevel(w.config.logLevel, level);
  log::setLevel(level);
  log::setProcessTag("worker " + std::to_string(options.slot) + "/" +
                     std::to_string(options.serial));
  if (w.config.logFile.empty())
    if (const char* daemonLog = getenv("NETSVR_LOG_FILE")) w.config.logFile = daemonLog;
  if (!w.config.logFile.empty()) log::openFile(w.config.logFile);
  google::protobuf::SetLogHandler(protobufLog);
  // lws sizes its fd table from this limit when the context is created (LWS-NOTES.md).
  raiseFileLimit();

  w.instanceKey = shm::instanceKeyFor(w.config.pidFile);
  w.slot = options.slot;
  w.generation = options.generation;
  w.serial = options.serial;
  if (const char* sets = getenv(kListenSetsEnv)) w.listenSets = std::max(1, atoi(sets));
  std::string error;
  w.control = shm::ControlSegment::open(shm::controlName(w.instanceKey), error);
  if (!w.control) {
    LOG_ERROR("%s", error.c_str());
    return 1;
  }
  w.table = shm::ConnTable::open(shm::workerSegmentName(w.instanceKey, w.serial), true, error);
  if (!w.table) {
    LOG_ERROR("%s", error.c_str());
    return 1;
  }
  w.incarnation = w.info().incarnation.load();
  // A reload onto this binary must be able to take the running generation's business links.
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    const auto& other = (*w.control)->workers[serial];
    if (other.generation.load() >= w.generation ||
        !shm::isLive(shm::WorkerState(other.state.load())))
      continue;
    uint32_t version = other.handoverVersion.load();
    if (!handover::canRead(version)) {
      LOG_ERROR(
          "worker serial %d (generation %u) hands business links over in format %u; this binary "
          "reads formats %u..%u: refusing to start (the running generation keeps serving)",
          serial, other.generation.load(), version, handover::kOldestReadableVersion,
          handover::kVersion);
      return 1;
    }
  }
  uint32_t version = handover::kVersion;
  if (const char* claimed = getenv("NETSVR_TEST_HANDOVER_VERSION"))  // tests: a future format
    version = uint32_t(atoi(claimed));
  w.info().handoverVersion = version;
  w.info().handover = uint32_t(shm::HandoverState::Idle);
  // The master publishes it after the fork; written here too so that it is in place before any
  // peer link we open is checked against it (peer_links.cpp).
  w.info().pid = int32_t(getpid());
  for (int item : w.config.metricsItems)
    w.metricEnabled[item] = true;  // 1..kMetricItems (the config keeps only those)
  w.uniqIdPrefix = uniqIdPrefix(w.config.task.address.ip, w.config.task.address.port);
  w.uniqIds =
      std::make_unique<UniqIdGenerator>(w.config.task.address.ip, w.config.task.address.port,
                                        uint8_t(w.serial), std::random_device{}());
  try {
    WorkerProcess process(w);
    return process.run();
  } catch (const std::exception& e) {
    LOG_ERROR("worker failed: %s", e.what());
    return 1;
  }
}

}  // namespace netsvr
