// netsvr-loadgen: websocket load generator for the netsvr gateway.
//
// The controlling process forks client processes (each below the open-files limit), watches
// their shared counters, prints one progress line per second, decides when the run ends and
// writes the summary (stdout, and JSON with --report). What the clients receive comes from
// bizsim (see payload.hpp): a welcome per client when it is logged in, data messages with a
// send timestamp and a sequence number, and one end marker per group saying how many data
// messages were sent to it, so losses = expected - received without other coordination.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "latency_hist.hpp"
#include "loadgen_client.hpp"
#include "loadgen_shared.hpp"
#include "payload.hpp"

using namespace stress;

namespace {

volatile sig_atomic_t g_interrupted = 0;

struct Options {
  ClientOptions client;
  uint32_t connections = 1000;
  double connectRate = 0;
  double durationS = 30;
  std::string scenario = "idle";
  std::string reportPath;
  int procs = 0;
  double loginWaitS = 10;
  size_t maxGroups = 0;
  size_t trackMsgs = 1 << 20;
  bool quiet = false;
};

// Sum of every process's counters, plus the per-group loss accounting.
struct Totals {
  ProcStats s;  // counters summed; *Ns fields: first = min, last = max
  std::vector<uint64_t> hist;
  uint64_t expected = 0, lost = 0, extra = 0, groupsSeen = 0;
  uint64_t endsMissingClients = 0;  // clients of groups whose end marker nobody received
};

uint64_t minNonZero(uint64_t a, uint64_t b) {
  return a == 0 ? b : b == 0 ? a : std::min(a, b);
}

// The ProcStats counters that the controller adds up over the client processes.
constexpr uint64_t ProcStats::*kSummed[] = {
    &ProcStats::opened,         &ProcStats::connectFailed,  &ProcStats::handshakeFailed,
    &ProcStats::openNow,        &ProcStats::closedByServer, &ProcStats::reset,
    &ProcStats::protocolErrors, &ProcStats::welcomed,       &ProcStats::received,
    &ProcStats::ends,           &ProcStats::settled,        &ProcStats::outOfOrder,
    &ProcStats::foreign,        &ProcStats::sendFailed,     &ProcStats::latSumUs,
    &ProcStats::allReceived};

Totals collect(SharedArea& sh, bool withGroups) {
  Totals t;
  t.hist.assign(kHistBuckets, 0);
  for (int p = 0; p < sh.procs(); ++p) {
    ProcStats& s = sh.stats(p);
    for (auto field : kSummed) t.s.*field += rd(s.*field);
    t.s.allTotal = std::max(t.s.allTotal, rd(s.allTotal));
    t.s.latMaxUs = std::max(t.s.latMaxUs, rd(s.latMaxUs));
    t.s.firstRxNs = minNonZero(t.s.firstRxNs, rd(s.firstRxNs));
    t.s.lastOpenNs = std::max(t.s.lastOpenNs, rd(s.lastOpenNs));
    t.s.lastWelcomeNs = std::max(t.s.lastWelcomeNs, rd(s.lastWelcomeNs));
    t.s.lastRxNs = std::max(t.s.lastRxNs, rd(s.lastRxNs));
    for (int i = 0; i < kCloseCodeSlots; ++i) t.s.closeCodes[i] += rd(s.closeCodes[i]);
    for (int b = 0; b < kHistBuckets; ++b) t.hist[size_t(b)] += rd(s.hist[b]);
  }
  if (!withGroups) return t;
  if (t.s.allTotal > 0 || t.s.allReceived > 0) {  // messages for every client (mix broadcasts)
    uint64_t exp = t.s.allTotal > 0 ? t.s.welcomed * (t.s.allTotal - 1) : 0;
    t.expected += exp;
    if (t.s.allReceived < exp)
      t.lost += exp - t.s.allReceived;
    else
      t.extra += t.s.allReceived - exp;
  }
  uint64_t* totals = sh.groupTotal();
  for (size_t g = 0; g < sh.groups(); ++g) {
    uint64_t conns = 0, recv = 0;
    for (int p = 0; p < sh.procs(); ++p) {
      conns += rd(sh.groupConns(p)[g]);
      recv += rd(sh.groupRecv(p)[g]);
    }
    if (conns == 0) continue;
    ++t.groupsSeen;
    uint64_t total = rd(totals[g]);
    if (total == 0) {
      t.endsMissingClients += conns;
      continue;
    }
    uint64_t exp = conns * (total - 1);
    t.expected += exp;
    if (recv < exp)
      t.lost += exp - recv;
    else
      t.extra += recv - exp;
  }
  return t;
}

double ms(double us) {
  return us / 1000.0;
}

struct Fanout {
  uint64_t messages = 0;
  LatencySummary lat;
  double meanReceivers = 0;
};

// Per data message: the latency of its last receiver = time to reach all its receivers.
Fanout fanout(SharedArea& sh) {
  Fanout f;
  std::vector<uint64_t> hist(kHistBuckets, 0);
  uint64_t sum = 0, max = 0, receivers = 0;
  for (size_t m = 0; m < sh.msgs(); ++m) {
    uint64_t count = 0, worst = 0;
    for (int p = 0; p < sh.procs(); ++p) {
      count += rd(sh.fanCount(p)[m]);
      worst = std::max(worst, rd(sh.fanMax(p)[m]));
    }
    if (count == 0) continue;
    ++f.messages;
    receivers += count;
    ++hist[size_t(histBucket(worst))];
    sum += worst;
    max = std::max(max, worst);
  }
  f.lat = summarize(hist, sum, max);
  if (f.messages) f.meanReceivers = double(receivers) / double(f.messages);
  return f;
}

void onSignal(int) {
  g_interrupted = 1;
}

int pickProcs(uint32_t connections, int requested) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
  if (requested > 0) return requested;
  uint64_t perProc = lim.rlim_cur > 256 ? lim.rlim_cur - 128 : 128;
  return int(std::max<uint64_t>(1, (connections + perProc - 1) / perProc));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"netsvr-loadgen: websocket load generator (pair it with netsvr-bizsim)"};
  app.add_option("--url", o.client.url, "gateway websocket URL")
      ->default_val("ws://127.0.0.1:6060/netsvr");
  app.add_option("-n,--connections", o.connections, "connections to open")->default_val(1000);
  app.add_option("--connect-rate", o.connectRate,
                 "connects per second (all processes); 0 = as fast as possible")
      ->default_val(0);
  app.add_option("--max-pending", o.client.maxPending,
                 "connects + handshakes in flight per process")
      ->default_val(256);
  app.add_option("--duration", o.durationS,
                 "idle: seconds to hold the connections once all are open (and logged in); "
                 "other scenarios: most seconds to wait for the end markers once all are open")
      ->default_val(30);
  app.add_option("--heartbeat", o.client.heartbeatS,
                 "heartbeat text every N seconds per connection; 0 = never")
      ->default_val(30);
  app.add_option("--heartbeat-message", o.client.heartbeat, "heartbeat text")
      ->default_val("~6YOt5rW35piO~");
  app.add_option("--scenario", o.scenario,
                 "what bizsim does: idle|groupchat|broadcast|singlecast|mix")
      ->check(CLI::IsMember({"idle", "groupchat", "broadcast", "singlecast", "mix"}))
      ->default_val("idle");
  app.add_option("--login-wait", o.loginWaitS,
                 "idle: seconds to wait for every client's welcome (bizsim's login) before the "
                 "hold; 0 = do not wait")
      ->default_val(10);
  app.add_option("--report", o.reportPath, "write a JSON summary here");
  app.add_option("--procs", o.procs, "client processes; 0 = as many as the open-files limit needs")
      ->default_val(0);
  app.add_option("--source-ips", o.client.sourceIps, "spread connections over 127.0.0.1..127.0.0.N")
      ->default_val(254)
      ->check(CLI::Range(1, 254));
  app.add_option("--close-timeout", o.client.closeTimeoutS,
                 "seconds for the close handshakes at the end")
      ->default_val(5);
  app.add_option("--max-groups", o.maxGroups,
                 "largest group number + 1 accepted; 0 = connections + 1024")
      ->default_val(0);
  app.add_option("--track-messages", o.trackMsgs,
                 "data messages tracked for the fan-out time (by seq)")
      ->default_val(1 << 20);
  app.add_flag(
      "--no-verify-accept", [&](int64_t) { o.client.verifyAccept = false; },
      "do not check Sec-WebSocket-Accept");
  app.add_flag("-q,--quiet", o.quiet, "no progress lines");
  CLI11_PARSE(app, argc, argv);
  if (o.connections == 0) {
    fprintf(stderr, "loadgen: --connections must be > 0\n");
    return 2;
  }
  const bool idle = o.scenario == "idle";
  if (o.maxGroups == 0) o.maxGroups = size_t(o.connections) + 1024;

  signal(SIGPIPE, SIG_IGN);
  int procs = pickProcs(o.connections, o.procs);
  procs = std::min<int>(procs, int(o.connections));
  SharedArea shared(procs, o.maxGroups, o.trackMsgs);
  Control& ctl = shared.control();
  o.client.keySeed = uint64_t(monoNs()) ^ (uint64_t(getpid()) << 32);

  const int64_t startNs = monoNs();
  std::vector<pid_t> children;
  for (int p = 0; p < procs; ++p) {
    ClientOptions co = o.client;
    co.firstId = uint32_t(uint64_t(o.connections) * uint64_t(p) / uint64_t(procs));
    co.count = uint32_t(uint64_t(o.connections) * uint64_t(p + 1) / uint64_t(procs)) - co.firstId;
    co.connectRate = o.connectRate / procs;
    pid_t pid = fork();
    if (pid < 0) {
      perror("loadgen: fork");
      st(ctl.stop, 1);
      break;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      signal(SIGINT, SIG_IGN);
      signal(SIGTERM, SIG_IGN);
      fflush(stdout);
      _exit(runClientProcess(co, shared, p));
    }
    children.push_back(pid);
  }
  signal(SIGINT, onSignal);
  signal(SIGTERM, onSignal);
  printf("loadgen: scenario %s, %u connections to %s, %d process(es), connect rate %s\n",
         o.scenario.c_str(), o.connections, o.client.url.c_str(), procs,
         o.connectRate > 0 ? std::to_string(int64_t(o.connectRate)).c_str() : "unlimited");
  fflush(stdout);

  // ---- controller -----------------------------------------------------------------------
  auto secs = [&](int64_t ns) { return double(ns - startNs) / 1e9; };
  int64_t connectDoneNs = 0, holdStartNs = 0, stopNs = 0, lastPrintNs = startNs;
  bool allEndsPrinted = false, childDied = false;
  uint64_t prevReceived = 0;
  std::vector<uint64_t> prevHist(kHistBuckets, 0);
  std::vector<int> alive(size_t(procs), 1);
  int aliveCount = int(children.size());
  const char* stopReason = "";
  while (aliveCount > 0) {
    usleep(100000);
    int64_t now = monoNs();
    for (size_t i = 0; i < children.size(); ++i) {
      if (!alive[i]) continue;
      int status = 0;
      if (waitpid(children[i], &status, WNOHANG) == children[i]) {
        alive[i] = 0;
        --aliveCount;
        if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) && !stopNs) {
          fprintf(stderr, "loadgen: client process %d ended unexpectedly (status %d)\n",
                  int(children[i]), status);
          childDied = true;
        }
      }
    }
    Totals t = collect(shared, false);
    uint64_t resolved = t.s.opened + t.s.connectFailed + t.s.handshakeFailed;
    if (!connectDoneNs && resolved >= o.connections) {
      connectDoneNs = now;
      printf("loadgen: connect phase done: %" PRIu64 " open, %" PRIu64
             " failed, last open at %.3f s\n",
             t.s.opened, t.s.connectFailed + t.s.handshakeFailed,
             t.s.lastOpenNs ? secs(int64_t(t.s.lastOpenNs)) : 0.0);
    }
    if (!stopNs) {
      if (g_interrupted)
        stopReason = "interrupted";
      else if (childDied)
        stopReason = "a client process died";
      else if (connectDoneNs && t.s.opened == 0)
        stopReason = "no connection opened";
      else if (connectDoneNs && idle) {
        bool loggedIn = t.s.welcomed >= t.s.opened;
        if (!holdStartNs && (loggedIn || secs(now) - secs(connectDoneNs) >= o.loginWaitS)) {
          holdStartNs = now;
          printf("loadgen: holding %" PRIu64 " connections (%" PRIu64 " logged in) for %.1f s\n",
                 t.s.openNow, t.s.welcomed, o.durationS);
        }
        if (holdStartNs && double(now - holdStartNs) / 1e9 >= o.durationS)
          stopReason = "hold time over";
      } else if (connectDoneNs && !idle) {
        if (t.s.settled >= t.s.opened && t.s.ends > 0) {
          stopReason = "every client got its end marker";
          if (!allEndsPrinted) printf("loadgen: all end markers received\n");
          allEndsPrinted = true;
        } else if (double(now - connectDoneNs) / 1e9 >= o.durationS) {
          stopReason = "duration over before every end marker arrived";
        }
      }
      if (*stopReason) {
        stopNs = now;
        st(ctl.stop, 1);
        printf("loadgen: stopping (%s)\n", stopReason);
      }
    } else if (double(now - stopNs) / 1e9 > o.client.closeTimeoutS + 10) {
      for (size_t i = 0; i < children.size(); ++i)
        if (alive[i]) kill(children[i], SIGKILL);
    }
    if (!o.quiet && now - lastPrintNs >= 1000000000) {
      double dt = double(now - lastPrintNs) / 1e9;
      lastPrintNs = now;
      std::vector<uint64_t> delta(kHistBuckets);
      for (int b = 0; b < kHistBuckets; ++b)
        delta[size_t(b)] = t.hist[size_t(b)] - prevHist[size_t(b)];
      LatencySummary win = summarize(delta, 0, UINT64_MAX);
      prevHist = t.hist;
      printf("[%6.1fs] open %" PRIu64 "/%u fail %" PRIu64 " lost-conn %" PRIu64 " login %" PRIu64
             " | rx %.0f/s total %" PRIu64 " | lat p50 %.2f p99 %.2f ms | ends %" PRIu64 "\n",
             secs(now), t.s.openNow, o.connections, t.s.connectFailed + t.s.handshakeFailed,
             t.s.closedByServer + t.s.reset + t.s.protocolErrors, t.s.welcomed,
             double(t.s.received - prevReceived) / dt, t.s.received, ms(win.p50Us), ms(win.p99Us),
             t.s.ends);
      prevReceived = t.s.received;
    }
    fflush(stdout);
  }
  const int64_t endNs = monoNs();
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  const double cpuUser = double(ru.ru_utime.tv_sec) + double(ru.ru_utime.tv_usec) / 1e6;
  const double cpuSys = double(ru.ru_stime.tv_sec) + double(ru.ru_stime.tv_usec) / 1e6;

  // ---- summary ----------------------------------------------------------------------------
  Totals t = collect(shared, true);
  LatencySummary lat = summarize(t.hist, t.s.latSumUs, t.s.latMaxUs);
  Fanout fan = fanout(shared);
  uint64_t failed = t.s.connectFailed + t.s.handshakeFailed;
  uint64_t lostConns = t.s.closedByServer + t.s.reset + t.s.protocolErrors;
  double openAllS =
      t.s.lastOpenNs && t.s.opened == o.connections ? secs(int64_t(t.s.lastOpenNs)) : -1;
  double loginAllS =
      t.s.lastWelcomeNs && t.s.welcomed >= t.s.opened ? secs(int64_t(t.s.lastWelcomeNs)) : -1;
  double windowS = t.s.lastRxNs > t.s.firstRxNs ? double(t.s.lastRxNs - t.s.firstRxNs) / 1e9 : 0;
  double rate = windowS > 0 ? double(t.s.received) / windowS : 0;
  uint64_t notLoggedIn = t.s.opened > t.s.welcomed ? t.s.opened - t.s.welcomed : 0;
  bool ok =
      failed == 0 && lostConns == 0 && !childDied && !g_interrupted && t.s.opened == o.connections;
  if (!idle)
    ok = ok && t.lost == 0 && t.extra == 0 && t.endsMissingClients == 0 && t.s.outOfOrder == 0 &&
         notLoggedIn == 0 && t.expected > 0 && t.s.foreign == 0;

  printf("\nloadgen summary: scenario %s, %u connections, %d process(es), %.1f s\n",
         o.scenario.c_str(), o.connections, procs, secs(endNs));
  printf("  connections: opened %" PRIu64 ", failed %" PRIu64 " (connect %" PRIu64
         ", handshake %" PRIu64 "), closed by the gateway during the run %" PRIu64
         " (close frame %" PRIu64 ", reset %" PRIu64 ", protocol %" PRIu64 ")\n",
         t.s.opened, failed, t.s.connectFailed, t.s.handshakeFailed, lostConns, t.s.closedByServer,
         t.s.reset, t.s.protocolErrors);
  for (int i = 0; i < kCloseCodeSlots; ++i)
    if (t.s.closeCodes[i])
      printf("    close code %s: %" PRIu64 "\n",
             i < 16 ? std::to_string(1000 + i).c_str() : "other", t.s.closeCodes[i]);
  printf("  time to open all: %.3f s; logged in %" PRIu64 " (all at %.3f s)\n", openAllS,
         t.s.welcomed, loginAllS);
  if (!idle) {
    printf("  messages: received %" PRIu64 ", expected %" PRIu64 ", lost %" PRIu64
           ", extra %" PRIu64 ", out of order %" PRIu64 ", clients without end marker %" PRIu64
           ", foreign %" PRIu64 "\n",
           t.s.received, t.expected, t.lost, t.extra, t.s.outOfOrder, t.endsMissingClients,
           t.s.foreign);
    printf("  delivered: %.0f msgs/s over %.3f s\n", rate, windowS);
    printf(
        "  latency: p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms, mean %.3f "
        "ms\n",
        ms(lat.p50Us), ms(lat.p90Us), ms(lat.p99Us), ms(lat.p999Us), ms(lat.maxUs), ms(lat.meanUs));
    printf("  fan-out (time for a message to reach all its receivers): %" PRIu64
           " messages, %.1f receivers each, p50 %.3f ms, p99 %.3f ms, max %.3f ms\n",
           fan.messages, fan.meanReceivers, ms(fan.lat.p50Us), ms(fan.lat.p99Us),
           ms(fan.lat.maxUs));
  }
  printf("  loadgen CPU: user %.2f s, system %.2f s\n", cpuUser, cpuSys);
  printf("  verdict: %s\n", ok ? "OK" : "FAILED");

  if (!o.reportPath.empty()) {
    FILE* f = fopen(o.reportPath.c_str(), "w");
    if (!f) {
      perror("loadgen: --report");
      return 1;
    }
    fprintf(f,
            "{\n  \"tool\": \"loadgen\", \"scenario\": \"%s\", \"connections_target\": %u, "
            "\"procs\": %d,\n",
            o.scenario.c_str(), o.connections, procs);
    fprintf(f, "  \"run_s\": %.3f, \"stop_reason\": \"%s\", \"ok\": %s,\n", secs(endNs), stopReason,
            ok ? "true" : "false");
    fprintf(f,
            "  \"opened\": %" PRIu64 ", \"failed\": %" PRIu64 ", \"connect_failed\": %" PRIu64
            ", \"handshake_failed\": %" PRIu64 ",\n",
            t.s.opened, failed, t.s.connectFailed, t.s.handshakeFailed);
    fprintf(f,
            "  \"closed_during_run\": %" PRIu64 ", \"closed_by_server\": %" PRIu64
            ", \"reset\": %" PRIu64 ", \"protocol_errors\": %" PRIu64 ",\n",
            lostConns, t.s.closedByServer, t.s.reset, t.s.protocolErrors);
    fprintf(f, "  \"close_codes\": {");
    bool first = true;
    for (int i = 0; i < kCloseCodeSlots; ++i) {
      if (!t.s.closeCodes[i]) continue;
      fprintf(f, "%s\"%s\": %" PRIu64, first ? "" : ", ",
              i < 16 ? std::to_string(1000 + i).c_str() : "other", t.s.closeCodes[i]);
      first = false;
    }
    fprintf(f, "},\n");
    fprintf(f,
            "  \"time_to_open_all_s\": %.6f, \"logged_in\": %" PRIu64
            ", \"time_to_login_all_s\": %.6f,\n",
            openAllS, t.s.welcomed, loginAllS);
    fprintf(f,
            "  \"received\": %" PRIu64 ", \"expected\": %" PRIu64 ", \"lost\": %" PRIu64
            ", \"extra\": %" PRIu64 ", \"out_of_order\": %" PRIu64
            ", \"clients_without_end\": %" PRIu64 ", \"foreign\": %" PRIu64
            ", \"groups_seen\": %" PRIu64 ", \"send_failed\": %" PRIu64
            ", \"end_markers\": %" PRIu64 ",\n",
            t.s.received, t.expected, t.lost, t.extra, t.s.outOfOrder, t.endsMissingClients,
            t.s.foreign, t.groupsSeen, t.s.sendFailed, t.s.ends);
    fprintf(f, "  \"cpu_user_s\": %.3f, \"cpu_sys_s\": %.3f,\n", cpuUser, cpuSys);
    fprintf(f, "  \"rx_window_s\": %.6f, \"msgs_per_s\": %.1f,\n", windowS, rate);
    fprintf(f,
            "  \"latency_ms\": {\"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, \"p999\": %.4f, "
            "\"max\": %.4f, "
            "\"mean\": %.4f},\n",
            ms(lat.p50Us), ms(lat.p90Us), ms(lat.p99Us), ms(lat.p999Us), ms(lat.maxUs),
            ms(lat.meanUs));
    fprintf(f,
            "  \"fanout_ms\": {\"messages\": %" PRIu64
            ", \"receivers_mean\": %.2f, \"p50\": %.4f, \"p99\": %.4f, "
            "\"max\": %.4f}\n}\n",
            fan.messages, fan.meanReceivers, ms(fan.lat.p50Us), ms(fan.lat.p99Us),
            ms(fan.lat.maxUs));
    fclose(f);
  }
  return ok ? 0 : 1;
}
