// netsvr-bizsim: a business process for load tests (the counterpart of netsvr-loadgen).
//
// Registers on the worker port (events = 7) and logs every client in when its ConnOpen
// arrives: ConnInfoUpdate{uniqId, newCustomerId "c<n>", newSession (N bytes), newTopics (group
// chat: "g<k>")} whose data is the welcome the client waits for. Once the expected clients are
// in (or no new one came for --settle seconds), a request on the same task link acts as a
// barrier (every update before it is applied) and publishing starts, paced by a 1 ms timer:
//   groupchat  TopicPublish to each group g<k> at --rate messages/s per group
//   broadcast  Broadcast at --rate messages/s
//   singlecast SingleCast at --rate messages/s in total, round robin over the clients
//   mix        the first --groups x --group-size clients chat in groups (TopicPublish, --rate per
//              group, --size bytes) while everyone gets a Broadcast of --broadcast-size bytes
//              --broadcast-rate times a second (netsvr's 1,717-client comparison)
//   idle       nothing
// After --duration seconds every group gets an end marker carrying the number of messages it
// was sent (payload.hpp; mix: 'G' per group, then 'E' by Broadcast with the broadcast count).
// bizsim exits when every client it saw has closed (or --linger passed), after writing its report.
#include <signal.h>
#include <sys/resource.h>

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "biz_link.hpp"
#include "broadcast.pb.h"
#include "cmd.pb.h"
#include "connClose.pb.h"
#include "connInfoUpdate.pb.h"
#include "connOpen.pb.h"
#include "metricsResp.pb.h"
#include "payload.hpp"
#include "registerReq.pb.h"
#include "registerResp.pb.h"
#include "singleCast.pb.h"
#include "topicPublish.pb.h"
#include "topicUniqIdCountReq.pb.h"
#include "topicUniqIdCountResp.pb.h"
#include "uniqIdCountResp.pb.h"

using namespace stress;
namespace cmd = netsvr::cmd;

namespace {

struct Options {
  std::string worker = "127.0.0.1:6061", task = "127.0.0.1:6062";
  std::string scenario = "idle";
  uint32_t clients = 0;
  uint32_t groups = 50;
  uint32_t groupSize = 50;      // mix: members per group
  double broadcastRate = 10;    // mix: broadcasts/s
  size_t broadcastSize = 1024;  // mix: broadcast payload bytes
  double rate = 1;
  size_t size = 64;
  size_t sessionBytes = 2048;
  double durationS = 10;
  double settleS = 3;
  double maxWaitS = 600;
  double lingerS = 10;
  uint32_t taskLinks = 1;
  double heartbeatS = 30;
  std::string heartbeat = "~6YOt5rW35piO~";
  std::string reportPath;
  bool quiet = false;
};

enum class Phase { Connecting, Waiting, Barrier, Publishing, Draining, Done };

bool toAddr(const std::string& hostPort, sockaddr_in& out) {
  size_t colon = hostPort.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = hostPort.substr(0, colon);
  if (host.empty() || host == "localhost") host = "127.0.0.1";
  return uv_ip4_addr(host.c_str(), atoi(hostPort.c_str() + colon + 1), &out) == 0;
}

std::string serialize(const google::protobuf::MessageLite& m) {
  std::string s;
  m.SerializeToString(&s);
  return s;
}

class BizSim {
 public:
  explicit BizSim(const Options& o) : o_(o) {}

  int run() {
    uv_loop_init(&loop_);
    sockaddr_in workerAddr{}, taskAddr{};
    if (!toAddr(o_.worker, workerAddr) || !toAddr(o_.task, taskAddr)) {
      fprintf(stderr, "bizsim: bad --worker or --task address\n");
      return 2;
    }
    uv_timer_init(&loop_, &tick_);
    uv_timer_init(&loop_, &pace_);
    tick_.data = pace_.data = this;
    for (int i = 0; i < 2; ++i) {
      uv_signal_init(&loop_, &signals_[i]);
      signals_[i].data = this;
      uv_signal_start(
          &signals_[i], [](uv_signal_t* s, int) { static_cast<BizSim*>(s->data)->stopNow(); },
          i == 0 ? SIGINT : SIGTERM);
    }
    worker_ = std::make_unique<BizLink>(&loop_, "worker link");
    for (uint32_t i = 0; i < o_.taskLinks; ++i)
      tasks_.push_back(std::make_unique<BizLink>(&loop_, "task link"));
    startNs_ = monoNs();
    worker_->connect(
        workerAddr, [this](int st) { linkUp(st, "worker"); },
        [this](uint32_t c, std::string_view b) { onWorkerPacket(c, b); },
        [this](int st) { linkLost(st, "worker"); });
    for (auto& t : tasks_)
      t->connect(
          taskAddr, [this](int st) { linkUp(st, "task"); },
          [this](uint32_t c, std::string_view b) { onTaskPacket(c, b); },
          [this](int st) { linkLost(st, "task"); });
    uv_timer_start(
        &tick_, [](uv_timer_t* t) { static_cast<BizSim*>(t->data)->onTick(); }, 100, 100);
    uv_run(&loop_, UV_RUN_DEFAULT);
    writeReport();
    return exitCode_;
  }

 private:
  // ---- links --------------------------------------------------------------------------------
  void linkUp(int status, const char* which) {
    if (status != 0)
      return fail(std::string("cannot connect the ") + which + " link: " + uv_strerror(status));
    if (std::string(which) == "worker") {
      netsvr::registerReq::RegisterReq req;
      req.set_events(7);
      worker_->send(cmd::Register, serialize(req));
      worker_->flush();
    }
  }

  void linkLost(int status, const char* which) {
    if (phase_ == Phase::Done) return;
    fail(std::string("the gateway closed the ") + which + " link (" + uv_strerror(status) + ")");
  }

  void fail(const std::string& why) {
    fprintf(stderr, "bizsim: error: %s\n", why.c_str());
    error_ = why;
    exitCode_ = 1;
    shutdown();
  }

  void onWorkerPacket(uint32_t c, std::string_view body) {
    if (!registered_) {  // the first packet is the RegisterResp, whatever its cmd
      netsvr::registerResp::RegisterResp resp;
      if (!resp.ParseFromArray(body.data(), int(body.size())) || resp.code() != 0)
        return fail("Register refused: " + resp.message());
      registered_ = true;
      if (phase_ == Phase::Connecting) phase_ = Phase::Waiting;
      printf("bizsim: registered, connId %s\n", resp.connid().c_str());
      fflush(stdout);
      return;
    }
    if (c == cmd::ConnOpen) {
      netsvr::connOpen::ConnOpen ev;
      if (!ev.ParseFromArray(body.data(), int(body.size()))) return;
      login(ev.uniqid());
    } else if (c == cmd::ConnClose) {
      ++closes_;
      // idle: the linger time runs from the first close (the clients decide when to leave)
      if (phase_ == Phase::Draining && o_.scenario == "idle" && !closeSeenInDrain_) {
        closeSeenInDrain_ = true;
        endSentNs_ = monoNs();
      }
    } else if (c == cmd::Transfer) {
      ++transfers_;
    }
  }

  bool chatsInGroups() const { return o_.scenario == "groupchat" || o_.scenario == "mix"; }

  uint32_t groupOf(uint32_t n) const {
    if (o_.scenario == "groupchat") return n % o_.groups;
    if (o_.scenario == "mix") return n < o_.groups * o_.groupSize ? n % o_.groups : kAllClients;
    if (o_.scenario == "singlecast") return n;
    return 0;
  }

  void login(const std::string& uniqId) {
    uint32_t n = uint32_t(uniqIds_.size());
    uniqIds_.push_back(uniqId);
    lastOpenNs_ = monoNs();
    if (phase_ != Phase::Waiting) ++lateOpens_;
    netsvr::connInfoUpdate::ConnInfoUpdate up;
    up.set_uniqid(uniqId);
    std::string customer = "c" + std::to_string(n);
    up.set_newcustomerid(customer);
    if (o_.sessionBytes > 0) {
      std::string session = customer + ":";
      session.resize(std::max(o_.sessionBytes, session.size()), 'x');
      session.resize(o_.sessionBytes);
      up.set_newsession(session);
    }
    if (chatsInGroups() && groupOf(n) != kAllClients)
      up.add_newtopics("g" + std::to_string(groupOf(n)));
    Header h{kKindWelcome, monoNs(), 0, groupOf(n)};
    encodePayload(payload_, h, 0, uniqId);
    up.set_data(payload_);
    tasks_[0]->send(cmd::ConnInfoUpdate, serialize(up));
    tasks_[0]->flush();
  }

  // Responses arrive in request order on task link 0.
  void request(uint32_t c, std::string body, std::function<void(std::string_view)> onResponse) {
    pending_.push_back({c, std::move(onResponse)});
    tasks_[0]->send(c, body);
    tasks_[0]->flush();
  }

  void onTaskPacket(uint32_t c, std::string_view body) {
    if (pending_.empty() || pending_.front().first != c) {
      fprintf(stderr, "bizsim: unexpected packet cmd %u on a task link\n", c);
      return;
    }
    auto fn = std::move(pending_.front().second);
    pending_.pop_front();
    fn(body);
  }

  std::map<int, int64_t> parseMetrics(std::string_view body) {
    std::map<int, int64_t> out;
    netsvr::metricsResp::MetricsResp resp;
    if (resp.ParseFromArray(body.data(), int(body.size())))
      for (const auto& [item, v] : resp.items()) out[item] = v.count();
    return out;
  }

  // ---- phases -------------------------------------------------------------------------------
  void onTick() {
    int64_t now = monoNs();
    double sinceStart = double(now - startNs_) / 1e9;
    if (++ticks_ % uint64_t(std::max(1.0, o_.heartbeatS * 10)) == 0) {
      worker_->sendHeartbeat(o_.heartbeat);
      worker_->flush();
      for (auto& t : tasks_) {
        t->sendHeartbeat(o_.heartbeat);
        t->flush();
      }
    }
    if (phase_ == Phase::Waiting) {
      uint32_t n = uint32_t(uniqIds_.size());
      bool settled = n > 0 && double(now - lastOpenNs_) / 1e9 >= o_.settleS;
      if ((o_.clients > 0 && n >= o_.clients) || settled)
        startBarrier();
      else if (sinceStart > o_.maxWaitS)
        fail("the clients did not all log in within --max-wait");
    } else if (phase_ == Phase::Publishing && !o_.quiet && ticks_ % 10 == 0) {
      double t = double(now - publishStartNs_) / 1e9;
      printf("bizsim: [%5.1fs] published %" PRIu64 " (%.0f/s), task backlog %zu KiB\n", t,
             published_, double(published_) / std::max(t, 1e-9), backlog() / 1024);
    } else if (phase_ == Phase::Draining) {
      bool allClosed = closes_ >= uniqIds_.size();
      if (allClosed || double(now - endSentNs_) / 1e9 >= o_.lingerS) {
        printf("bizsim: %s\n", allClosed ? "every client closed" : "linger time over");
        finishRun();
      }
    } else if (phase_ == Phase::Done && double(now - doneNs_) / 1e9 > 3) {
      shutdown();  // the Metrics answer did not come
    }
    fflush(stdout);
  }

  // Last Metrics query (for the report), then exit; shutdown() follows in any case.
  void finishRun() {
    phase_ = Phase::Done;
    doneNs_ = monoNs();
    request(cmd::Metrics, "", [this](std::string_view body) {
      metricsEnd_ = parseMetrics(body);
      shutdown();
    });
  }

  // SIGINT/SIGTERM: stop publishing (no end markers), report, exit.
  void stopNow() {
    if (phase_ == Phase::Done) return shutdown();
    uv_timer_stop(&pace_);
    if (phase_ == Phase::Publishing) publishEndNs_ = monoNs();
    printf("bizsim: stopped by a signal\n");
    if (tasks_.empty() || !tasks_[0]->connected()) return shutdown();
    finishRun();
  }

  void startBarrier() {
    phase_ = Phase::Barrier;
    loggedIn_ = uint32_t(uniqIds_.size());
    printf("bizsim: %u clients logged in; barrier\n", loggedIn_);
    request(cmd::Metrics, "",
            [this](std::string_view body) { metricsStart_ = parseMetrics(body); });
    if (chatsInGroups()) {
      netsvr::topicUniqIdCountReq::TopicUniqIdCountReq req;
      req.set_countall(true);
      request(cmd::TopicUniqIdCount, serialize(req), [this](std::string_view body) {
        netsvr::topicUniqIdCountResp::TopicUniqIdCountResp resp;
        resp.ParseFromArray(body.data(), int(body.size()));
        for (const auto& [topic, count] : resp.items()) {
          ++barrierTopics_;
          barrierCount_ += uint64_t(count);
        }
        startPublishing();
      });
    } else {
      request(cmd::UniqIdCount, "", [this](std::string_view body) {
        netsvr::uniqIdCountResp::UniqIdCountResp resp;
        resp.ParseFromArray(body.data(), int(body.size()));
        barrierCount_ = uint64_t(resp.count());
        startPublishing();
      });
    }
  }

  void startPublishing() {
    printf("bizsim: barrier passed: gateway reports %" PRIu64 " %s%s\n", barrierCount_,
           chatsInGroups() ? "subscriptions in " : "clients",
           chatsInGroups() ? (std::to_string(barrierTopics_) + " topics").c_str() : "");
    if (o_.scenario == "idle") return endPublishing();
    counts_.assign(chatsInGroups() ? o_.groups : o_.scenario == "singlecast" ? loggedIn_ : 1, 0);
    if (loggedIn_ == 0) return endPublishing();
    totalRate_ = chatsInGroups() ? o_.rate * o_.groups : o_.rate;
    if (o_.scenario == "mix") totalRate_ += o_.broadcastRate;
    phase_ = Phase::Publishing;
    publishStartNs_ = monoNs();
    printf("bizsim: publishing start: %s, %.1f messages/s in total, %zu bytes, %.1f s\n",
           o_.scenario.c_str(), totalRate_, std::max(o_.size, kHeaderSize), o_.durationS);
    fflush(stdout);
    uv_timer_start(
        &pace_, [](uv_timer_t* t) { static_cast<BizSim*>(t->data)->publishDue(); }, 0, 1);
  }

  void publishDue() {
    int64_t now = monoNs();
    double elapsed = double(now - publishStartNs_) / 1e9;
    bool last = elapsed >= o_.durationS;
    double t = std::min(elapsed, o_.durationS);
    if (o_.scenario == "mix") {
      // Two streams, each paced on its own; whichever is due first goes first.
      double groupRate = o_.rate * o_.groups;
      uint64_t dueGroup = uint64_t(std::floor(t * groupRate));
      uint64_t dueBroadcast = uint64_t(std::floor(t * o_.broadcastRate));
      while (groupPublished_ < dueGroup || broadcasts_ < dueBroadcast) {
        double nextGroup =
            groupPublished_ < dueGroup ? double(groupPublished_ + 1) / groupRate : 1e300;
        double nextBroadcast =
            broadcasts_ < dueBroadcast ? double(broadcasts_ + 1) / o_.broadcastRate : 1e300;
        if (nextGroup <= nextBroadcast)
          publishOne(groupPublished_++);
        else
          publishBroadcast();
      }
    } else {
      uint64_t due = uint64_t(std::floor(t * totalRate_));
      while (published_ < due) publishOne(published_);
    }
    for (auto& t : tasks_) t->flush();
    maxBacklog_ = std::max(maxBacklog_, backlog());
    if (backlog() > (512u << 20))
      return fail("the gateway does not read the task link (512 MiB queued)");
    if (last) endPublishing();
  }

  // The i-th message of the group/broadcast/singlecast stream; seq numbers every message of the
  // run (all streams) from 1.
  void publishOne(uint64_t i) {
    uint32_t slot = uint32_t(i % counts_.size());
    ++counts_[slot];
    uint64_t seq = ++published_;
    Header h{kKindData, monoNs(), seq, o_.scenario == "singlecast" ? slot : groupOf(slot)};
    encodePayload(payload_, h, o_.size);
    sendTo(slot, payload_);
  }

  void publishBroadcast() {
    ++broadcasts_;
    Header h{kKindData, monoNs(), ++published_, kAllClients};
    encodePayload(payload_, h, o_.broadcastSize);
    broadcast(payload_);
  }

  void broadcast(const std::string& data) {
    netsvr::broadcast::Broadcast m;
    m.set_data(data);
    tasks_[0]->send(cmd::Broadcast, serialize(m));
  }

  // Sends `data` to a group (groupchat, mix), everyone (broadcast) or one client (singlecast).
  void sendTo(uint32_t slot, const std::string& data) {
    BizLink& link = *tasks_[slot % tasks_.size()];
    if (chatsInGroups()) {
      netsvr::topicPublish::TopicPublish m;
      m.add_topics("g" + std::to_string(slot));
      m.set_data(data);
      link.send(cmd::TopicPublish, serialize(m));
    } else if (o_.scenario == "broadcast") {
      netsvr::broadcast::Broadcast m;
      m.set_data(data);
      link.send(cmd::Broadcast, serialize(m));
    } else {
      netsvr::singleCast::SingleCast m;
      m.set_uniqid(uniqIds_[slot]);
      m.set_data(data);
      link.send(cmd::SingleCast, serialize(m));
    }
  }

  void endPublishing() {
    uv_timer_stop(&pace_);
    publishEndNs_ = monoNs();
    if (publishStartNs_ == 0) publishStartNs_ = publishEndNs_;  // nothing was published (idle)
    for (uint32_t slot = 0; slot < counts_.size(); ++slot) {
      Header h{o_.scenario == "mix" ? kKindGroupEnd : kKindEnd, monoNs(), counts_[slot],
               o_.scenario == "singlecast" ? slot : groupOf(slot)};
      encodePayload(payload_, h, 0);
      sendTo(slot, payload_);
    }
    if (o_.scenario == "mix") {  // after the groups' markers: the client's last message
      Header h{kKindEnd, monoNs(), broadcasts_, kAllClients};
      encodePayload(payload_, h, 0);
      broadcast(payload_);
    }
    for (auto& t : tasks_) t->flush();
    endSentNs_ = monoNs();
    phase_ = Phase::Draining;
    double window = double(publishEndNs_ - publishStartNs_) / 1e9;
    printf("bizsim: publishing end: published %" PRIu64 " in %.3f s (%.1f/s), end markers sent\n",
           published_, window, window > 0 ? double(published_) / window : 0.0);
    fflush(stdout);
  }

  size_t backlog() const {
    size_t b = 0;
    for (auto& t : tasks_) b += t->backlog();
    return b;
  }

  void shutdown() {
    if (shut_) return;
    shut_ = true;
    phase_ = Phase::Done;
    uv_timer_stop(&tick_);
    uv_timer_stop(&pace_);
    uv_close(reinterpret_cast<uv_handle_t*>(&tick_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&pace_), nullptr);
    for (auto& sig : signals_) uv_close(reinterpret_cast<uv_handle_t*>(&sig), nullptr);
    worker_->close();
    for (auto& t : tasks_) t->close();
  }

  void writeReport() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    double cpuUser = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) / 1e6;
    double cpuSys = double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) / 1e6;
    double window =
        publishEndNs_ > publishStartNs_ ? double(publishEndNs_ - publishStartNs_) / 1e9 : 0;
    uint64_t minC = UINT64_MAX, maxC = 0;
    for (uint64_t c : counts_) {
      minC = std::min(minC, c);
      maxC = std::max(maxC, c);
    }
    if (counts_.empty()) minC = 0;
    auto metric = [&](int item) {
      auto a = metricsStart_.find(item), b = metricsEnd_.find(item);
      return b == metricsEnd_.end() ? int64_t(-1)
                                    : b->second - (a == metricsStart_.end() ? 0 : a->second);
    };
    printf("bizsim summary: clients %zu (logged in before publishing %u, later %u), closes %" PRIu64
           ", transfers %" PRIu64 "\n  published %" PRIu64
           " in %.3f s (%.1f/s; per group/client %" PRIu64 "..%" PRIu64
           "), max task backlog %zu KiB\n  gateway metrics during the run: frames sent %" PRId64
           ", send failures %" PRId64 ", events dropped %" PRId64 "%s%s\n",
           uniqIds_.size(), loggedIn_, lateOpens_, closes_, transfers_, published_, window,
           window > 0 ? double(published_) / window : 0.0, minC, maxC, maxBacklog_ / 1024,
           metric(6), metric(11), metric(10), error_.empty() ? "" : "\n  error: ", error_.c_str());
    printf("  bizsim CPU: user %.2f s, system %.2f s\n", cpuUser, cpuSys);
    if (o_.reportPath.empty()) return;
    FILE* f = fopen(o_.reportPath.c_str(), "w");
    if (!f) return perror("bizsim: --report");
    fprintf(f, "{\n  \"tool\": \"bizsim\", \"scenario\": \"%s\", \"ok\": %s, \"error\": \"%s\",\n",
            o_.scenario.c_str(), exitCode_ == 0 ? "true" : "false", error_.c_str());
    fprintf(f,
            "  \"clients\": %zu, \"logged_in_before_publish\": %u, \"late_opens\": %u, \"closes\": "
            "%" PRIu64 ", \"transfers\": %" PRIu64 ",\n",
            uniqIds_.size(), loggedIn_, lateOpens_, closes_, transfers_);
    fprintf(f, "  \"barrier_count\": %" PRIu64 ", \"barrier_topics\": %" PRIu64 ",\n",
            barrierCount_, barrierTopics_);
    fprintf(f,
            "  \"published\": %" PRIu64
            ", \"publish_window_s\": %.6f, \"publish_rate\": %.2f, "
            "\"target_rate\": %.2f, \"per_target_min\": %" PRIu64 ", \"per_target_max\": %" PRIu64
            ", \"max_task_backlog_bytes\": %zu,\n",
            published_, window, window > 0 ? double(published_) / window : 0.0, totalRate_, minC,
            maxC, maxBacklog_);
    fprintf(f, "  \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f,\n", cpuUser, cpuSys);
    fprintf(f, "  \"publish_start_mono_ns\": %" PRId64 ", \"publish_end_mono_ns\": %" PRId64 ",\n",
            publishStartNs_, publishEndNs_);
    fprintf(f,
            "  \"gateway_metrics_delta\": {\"frames_sent\": %" PRId64
            ", \"frame_bytes_sent\": %" PRId64 ", \"send_failures\": %" PRId64
            ", \"events_dropped\": %" PRId64 ", \"opens\": %" PRId64 ", \"closes\": %" PRId64
            "}\n}\n",
            metric(6), metric(7), metric(11), metric(10), metric(1), metric(2));
    fclose(f);
  }

  const Options& o_;
  uv_loop_t loop_{};
  uv_timer_t tick_{}, pace_{};
  uv_signal_t signals_[2]{};
  std::unique_ptr<BizLink> worker_;
  std::vector<std::unique_ptr<BizLink>> tasks_;
  std::deque<std::pair<uint32_t, std::function<void(std::string_view)>>> pending_;
  Phase phase_ = Phase::Connecting;
  bool registered_ = false;
  bool shut_ = false;
  bool closeSeenInDrain_ = false;
  std::vector<std::string> uniqIds_;
  std::vector<uint64_t> counts_;
  std::map<int, int64_t> metricsStart_, metricsEnd_;
  std::string payload_;
  std::string error_;
  int exitCode_ = 0;
  int64_t startNs_ = 0, lastOpenNs_ = 0, publishStartNs_ = 0, publishEndNs_ = 0, endSentNs_ = 0,
          doneNs_ = 0;
  uint64_t groupPublished_ = 0, broadcasts_ = 0;  // mix: messages of each stream so far
  uint64_t ticks_ = 0, closes_ = 0, transfers_ = 0, published_ = 0, barrierCount_ = 0,
           barrierTopics_ = 0;
  uint32_t loggedIn_ = 0, lateOpens_ = 0;
  double totalRate_ = 0;
  size_t maxBacklog_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"netsvr-bizsim: business simulator for load tests (pair it with netsvr-loadgen)"};
  app.add_option("--worker", o.worker, "gateway worker port host:port")
      ->default_val("127.0.0.1:6061");
  app.add_option("--task", o.task, "gateway task port host:port")->default_val("127.0.0.1:6062");
  app.add_option("--scenario", o.scenario, "idle|groupchat|broadcast|singlecast|mix")
      ->check(CLI::IsMember({"idle", "groupchat", "broadcast", "singlecast", "mix"}))
      ->default_val("idle");
  app.add_option("--clients", o.clients,
                 "start publishing once this many clients are logged in; 0 = when --settle passes")
      ->default_val(0);
  app.add_option("--groups", o.groups, "groupchat, mix: number of groups (topics g0..g<N-1>)")
      ->default_val(50)
      ->check(CLI::PositiveNumber);
  app.add_option("--group-size", o.groupSize, "mix: members per group (the first clients)")
      ->default_val(50);
  app.add_option("--broadcast-rate", o.broadcastRate, "mix: broadcasts/s")->default_val(10);
  app.add_option("--broadcast-size", o.broadcastSize, "mix: broadcast payload bytes")
      ->default_val(1024);
  app.add_option(
         "--rate", o.rate,
         "groupchat, mix: messages/s per group; broadcast: broadcasts/s; singlecast: messages/s")
      ->default_val(1);
  app.add_option("--size", o.size, "payload bytes (at least 41)")->default_val(64);
  app.add_option("--session-bytes", o.sessionBytes, "session string stored per client at login")
      ->default_val(2048);
  app.add_option("--duration", o.durationS, "seconds of publishing")->default_val(10);
  app.add_option("--settle", o.settleS, "start anyway when no new client came for this long")
      ->default_val(3);
  app.add_option(
         "--max-wait", o.maxWaitS,
         "give up when the clients have not all logged in this many seconds after the start")
      ->default_val(600);
  app.add_option("--linger", o.lingerS,
                 "after the end markers, wait at most this long for the clients to close")
      ->default_val(10);
  app.add_option("--task-links", o.taskLinks,
                 "task connections (groups/clients are spread over them)")
      ->default_val(1)
      ->check(CLI::Range(1, 64));
  app.add_option("--heartbeat", o.heartbeatS, "business heartbeat period on every link, seconds")
      ->default_val(30);
  app.add_option("--heartbeat-message", o.heartbeat, "business heartbeat bytes")
      ->default_val("~6YOt5rW35piO~");
  app.add_option("--report", o.reportPath, "write a JSON summary here");
  app.add_flag("-q,--quiet", o.quiet, "no progress lines");
  CLI11_PARSE(app, argc, argv);
  signal(SIGPIPE, SIG_IGN);
  BizSim sim(o);
  return sim.run();
}
