// Reload handover, old side (worker/handover.hpp): moves this worker's business links to the
// workers of the newest generation. A 5 ms tick drives the stages; each stage has a limit, and
// a link whose move fails stays here, served as before.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/log.hpp"
#include "common/unix_socket.hpp"
#include "shm/names.hpp"
#include "worker/biz_link.hpp"
#include "worker/handover.hpp"
#include "worker/peer_links.hpp"
#include "worker/router.hpp"
#include "worker/worker.hpp"

namespace netsvr {
namespace {

constexpr uint64_t kTickMs = 5;
constexpr uint64_t kQuiesceLimitMs = 5000;  // a command waiting for another worker's ack
constexpr uint64_t kAcceptLimitMs = 5000;   // the new worker answers an Offer
constexpr uint64_t kFenceLimitMs = 2000;    // every live worker answers the fence

const char* portName(const BizLink& link) {
  return link.port == BizLink::Port::Worker ? "worker" : "task";
}

// Workers of the newest generation that serve, in slot order.
std::vector<int> newestWorkers(const Worker& w) {
  const auto& control = w.control->block();
  uint32_t newest = control.generation.load();
  std::vector<std::pair<uint32_t, int>> found;  // (slot, serial)
  if (newest == w.generation) return {};
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    const auto& info = control.workers[serial];
    if (info.generation.load() == newest &&
        shm::WorkerState(info.state.load()) == shm::WorkerState::Running)
      found.push_back({info.slot.load(), serial});
  }
  std::sort(found.begin(), found.end());
  std::vector<int> serials;
  for (auto [slot, serial] : found) serials.push_back(serial);
  return serials;
}

}  // namespace

Handover::Handover(Worker& worker) : worker_(worker) {
  if (const char* pause = getenv("NETSVR_TEST_HANDOVER_PAUSE_MS"))
    testPauseMs_ = uint64_t(std::max(0, atoi(pause)));
}

Handover::~Handover() = default;

bool Handover::moveAll(bool reportToMaster, Done done, void* arg) {
  auto& info = worker_.info();
  if (moving()) {  // already under way (a retry at exit): its end is reported if asked now
    if (reportToMaster) info.handover = uint32_t(shm::HandoverState::Moving);
    report_ |= reportToMaster;
    return true;
  }
  std::vector<BizLink*> links = worker_.links->all();
  if (links.empty()) {
    if (reportToMaster) info.handover = uint32_t(shm::HandoverState::Done);
    return false;
  }
  report_ = reportToMaster;
  if (report_) info.handover = uint32_t(shm::HandoverState::Moving);
  done_ = done;
  doneArg_ = arg;
  failure_.clear();
  std::vector<int> targets = newestWorkers(worker_);
  if (targets.empty()) {  // nothing to move to: every link stays, and that is reported
    failure_ = "no worker of the new generation is running";
    for (BizLink* link : links) moves_.push_back(Move{link->id, -1, Stage::Stayed});
    done_ = nullptr;  // the caller goes on at once (false)
    finish();
    return false;
  }
  uint64_t now = uv_now(worker_.loop);
  size_t k = size_t(worker_.slot);
  for (BizLink* link : links) {
    link->freeze();
    moves_.push_back(
        Move{link->id, targets[k++ % targets.size()], Stage::Quiescing, 0, false, 0, now});
  }
  LOG_INFO("reload: moving %zu business links to %zu workers of generation %u", moves_.size(),
           targets.size(), worker_.control->block().generation.load());
  if (!tick_) {
    tick_ = new uv_timer_t;
    uv_timer_init(worker_.loop, tick_);
    tick_->data = this;
  }
  uv_timer_start(tick_, onTick, 0, kTickMs);
  return true;
}

void Handover::onTick(uv_timer_t* timer) {
  static_cast<Handover*>(timer->data)->tick();
}

Handover::Move* Handover::findMove(uint32_t linkId) {
  for (Move& m : moves_)
    if (m.linkId == linkId) return &m;
  return nullptr;
}

void Handover::tick() {
  uint64_t now = uv_now(worker_.loop);
  for (Move& m : moves_) {
    BizLink* link = worker_.links->find(m.linkId);
    if (!link && m.stage != Stage::Moved && m.stage != Stage::Stayed) m.stage = Stage::Gone;
    switch (m.stage) {
      case Stage::Quiescing:
        // A command that waits for another worker's acknowledgement must be applied before
        // the next one runs on the new worker (a business reads its own writes).
        // A link still arriving here from an older worker (overlapping reloads) moves on once
        // it has arrived.
        if (!taskLinkAwaitingAck(m.linkId) && !link->arriving()) {
          sendOffer(m);
        } else if (now - m.sinceMs > kQuiesceLimitMs) {
          takeBack(m, "a command of the link waited for another worker for 5 s");
        }
        break;
      case Stage::Offered:
        if (now - m.sinceMs > kAcceptLimitMs)
          takeBack(m, "worker serial " + std::to_string(m.target) + " did not accept in 5 s");
        break;
      default:
        break;
    }
  }
  // One fence round at a time covers every registry move made before it started.
  checkFence();
  if (fenceCompleted_ == fenceId_) startFence();
  for (Move& m : moves_) {
    if (m.stage != Stage::Committed) continue;
    BizLink* link = worker_.links->find(m.linkId);
    if (!link) {
      m.stage = Stage::Gone;
      continue;
    }
    bool fenced = m.fence != 0 && m.fence <= fenceCompleted_;
    if (!fenced || !link->writesDone()) continue;
    auto it = channels_.find(m.target);
    if (it == channels_.end()) continue;  // gone: taken back in onChannelGone
    if (!sendOn(*it->second, handover::encodeReply(handover::Type::Drained,
                                                   handover::Reply{m.newLinkId, 0, {}})))
      continue;  // the channel is failing: onChannelGone takes the link back
    m.stage = Stage::Moved;
    link->closeMoved();  // our descriptor only: the socket lives on in the new worker
  }
  for (const Move& m : moves_)
    if (m.stage != Stage::Moved && m.stage != Stage::Stayed && m.stage != Stage::Gone) return;
  finish();
}

Handover::Channel* Handover::channelTo(int serial, std::string& error) {
  if (auto it = channels_.find(serial); it != channels_.end()) return it->second;
  const auto& info = worker_.control->block().workers[serial];
  int fd = connectAbstract(
      shm::handoverSocketName(worker_.instanceKey, serial, info.incarnation.load()), true);
  if (fd < 0) {
    error = "cannot reach worker serial " + std::to_string(serial) + ": " + strerror(errno);
    return nullptr;
  }
  auto* channel = new Channel;
  channel->owner = this;
  channel->serial = serial;
  uv_pipe_init(worker_.loop, &channel->pipe, 1);
  channel->pipe.data = channel;
  uv_pipe_open(&channel->pipe, fd);
  uv_read_start(
      reinterpret_cast<uv_stream_t*>(&channel->pipe),
      [](uv_handle_t*, size_t suggested, uv_buf_t* buf) {
        static char scratch[64 * 1024];
        (void)suggested;
        *buf = uv_buf_init(scratch, sizeof scratch);
      },
      onChannelRead);
  channels_[serial] = channel;
  return channel;
}

void Handover::sendOffer(Move& m) {
  BizLink* link = worker_.links->find(m.linkId);
  std::string error;
  Channel* channel = channelTo(m.target, error);
  if (!channel) {
    takeBack(m, error);
    return;
  }
  struct Write {
    uv_write_t req;
    std::string data;
    BizLink* link;  // kept alive until libuv has read its handle (offerWritten)
  };
  auto* write = new Write{{}, handover::encodeOffer(link->offer(uint32_t(worker_.serial))), link};
  write->req.data = write;
  uv_buf_t buf = uv_buf_init(write->data.data(), unsigned(write->data.size()));
  int rc = uv_write2(&write->req, reinterpret_cast<uv_stream_t*>(&channel->pipe), &buf, 1,
                     link->stream(), [](uv_write_t* req, int) {
                       auto* w = static_cast<Write*>(req->data);
                       w->link->offerWritten();
                       delete w;
                     });
  if (rc != 0) {
    delete write;
    takeBack(m, std::string("cannot pass the socket: ") + uv_strerror(rc));
    return;
  }
  link->offerSent();
  m.stage = Stage::Offered;
  m.sinceMs = uv_now(worker_.loop);
}

void Handover::onReply(Channel& channel, handover::Type type, const handover::Reply& reply) {
  using handover::Type;
  Move* m = findMove(reply.linkId);
  if (type == Type::Accept && (!m || m->stage != Stage::Offered)) {
    // Accepted after we gave up (or after the link closed here): the new worker lets go.
    sendOn(channel, handover::encodeReply(Type::Abort, handover::Reply{reply.newLinkId, 0, {}}));
    return;
  }
  if (!m || m->stage != Stage::Offered) return;
  if (type == Type::Refuse) {
    takeBack(*m, "worker serial " + std::to_string(m->target) + " refused: " + reply.reason);
    return;
  }
  if (type != Type::Accept) return;
  m->newLinkId = reply.newLinkId;
  m->registered = worker_.links->moveRegistryEntry(m->linkId, m->target, m->newLinkId);
  m->stage = Stage::Committed;
  m->sinceMs = uv_now(worker_.loop);
}

void Handover::takeBack(Move& m, const std::string& why) {
  BizLink* link = worker_.links->find(m.linkId);
  if (!link) {
    m.stage = Stage::Gone;
    return;
  }
  if (m.stage == Stage::Committed && m.registered)
    worker_.links->moveRegistryEntryBack(m.target, m.newLinkId, *link);
  LOG_WARN("reload: %s link %u stays on this worker: %s", portName(*link), m.linkId, why.c_str());
  if (failure_.empty()) failure_ = why;
  m.stage = Stage::Stayed;
  link->thaw();
}

// Every live worker answers on the peer link that carries its events to us, after it has run
// every command we forwarded to it before: once all have, every event routed to the registry
// entries we moved before the round began is here (and written before Drained), and every
// command of a moving task link that we forwarded is applied (commands the new worker reads
// after Drained cannot overtake them).
void Handover::startFence() {
  std::vector<Move*> uncovered;
  for (Move& m : moves_)
    if (m.stage == Stage::Committed && m.fence == 0) uncovered.push_back(&m);
  if (uncovered.empty()) return;
  ++fenceId_;
  for (Move* m : uncovered) m->fence = fenceId_;
  fenceSinceMs_ = uv_now(worker_.loop);
  fencePending_.clear();
  const auto& control = worker_.control->block();
  for (int serial = 0; serial < kMaxWorkerSerials; ++serial) {
    if (serial == worker_.serial) continue;
    if (!shm::isLive(shm::WorkerState(control.workers[serial].state.load()))) continue;
    if (worker_.peers->sendFence(serial, fenceId_)) fencePending_.insert(serial);
  }
  checkFence();
}

void Handover::checkFence() {
  if (fenceCompleted_ == fenceId_) return;
  const auto& control = worker_.control->block();
  for (auto it = fencePending_.begin(); it != fencePending_.end();) {
    if (!shm::isLive(shm::WorkerState(control.workers[*it].state.load())))
      it = fencePending_.erase(it);  // gone: it sends us nothing more
    else
      ++it;
  }
  if (!fencePending_.empty() && uv_now(worker_.loop) - fenceSinceMs_ > kFenceLimitMs) {
    LOG_WARN("reload: %zu workers did not answer the handover fence in 2 s", fencePending_.size());
    fencePending_.clear();
  }
  if (fencePending_.empty()) fenceCompleted_ = fenceId_;
}

void Handover::onFenceAck(int fromSerial, uint32_t fenceId) {
  if (fenceId == fenceId_) fencePending_.erase(fromSerial);
}

void Handover::onLinkClosed(BizLink& link) {
  Move* m = findMove(link.id);
  if (!m || m->stage == Stage::Moved || m->stage == Stage::Stayed) return;
  if (m->stage == Stage::Committed) {  // the business or a deadline closed it: N closes its copy
    auto it = channels_.find(m->target);
    if (it != channels_.end())
      sendOn(*it->second,
             handover::encodeReply(handover::Type::Abort, handover::Reply{m->newLinkId, 0, {}}));
  }
  m->stage = Stage::Gone;
}

// The new worker went away (or broke the channel): what it did not finish taking comes back.
void Handover::onChannelGone(Channel& channel) {
  for (Move& m : moves_)
    if (m.target == channel.serial && (m.stage == Stage::Offered || m.stage == Stage::Committed))
      takeBack(m, "worker serial " + std::to_string(m.target) + " went away during the handover");
}

void Handover::cancel() {
  for (Move& m : moves_) {
    if (m.stage == Stage::Quiescing || m.stage == Stage::Offered) {
      if (BizLink* link = worker_.links->find(m.linkId)) link->thaw();
      m.stage = Stage::Stayed;
    }
  }
  if (failure_.empty()) failure_ = "the worker is stopping";
  if (moving()) tick();
}

void Handover::finish() {
  size_t moved = 0, stayed = 0;
  for (const Move& m : moves_) {
    moved += m.stage == Stage::Moved;
    stayed += m.stage == Stage::Stayed;
  }
  moves_.clear();
  if (tick_) uv_timer_stop(tick_);
  for (auto& [serial, channel] : channels_) closeChannel(channel);
  channels_.clear();
  if (stayed)
    LOG_WARN("reload: %zu business links moved, %zu stayed: %s", moved, stayed, failure_.c_str());
  else
    LOG_INFO("reload: %zu business links moved to the new generation", moved);
  if (report_) {
    auto& info = worker_.info();
    if (stayed) {
      std::string text = std::to_string(stayed) + " business link(s) stayed on worker serial " +
                         std::to_string(worker_.serial) + ": " + failure_;
      snprintf(info.handoverError, sizeof info.handoverError, "%s", text.c_str());
      info.handover = uint32_t(shm::HandoverState::Failed);
    } else {
      info.handoverError[0] = 0;
      info.handover = uint32_t(shm::HandoverState::Done);
    }
  }
  report_ = false;
  if (Done done = done_) {
    done_ = nullptr;
    done(doneArg_);
  }
}

}  // namespace netsvr
