// Config parsing and validation (PROTOCOL.md §12, DECISIONS.md).
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/config.hpp"

using namespace std::chrono_literals;
using netsvr::Config;
using netsvr::ConfigError;
using netsvr::Millis;

namespace {

// A minimal valid document; each section body can be replaced to test one key.
struct Doc {
  std::string top;
  std::string customer = "HeartbeatMessage = \"hb\"\n";
  std::string worker = "ListenAddress = \"127.0.0.1:6061\"\nHeartbeatMessage = \"hb\"\n";
  std::string task = "ListenAddress = \"127.0.0.1:6062\"\nHeartbeatMessage = \"hb\"\n";
  std::string rest;  // more tables at the end
  std::string text() const {
    return top + "\n[Customer]\n" + customer + "\n[Worker]\n" + worker + "\n[Task]\n" + task +
           "\n" + rest;
  }
};

Config parse(const Doc& d) {
  return netsvr::parseConfig(d.text(), "", "/etc/netsvr");
}

// The ConfigError message for a document that must be rejected ("" if it was accepted).
std::string errorOf(const Doc& d) {
  try {
    parse(d);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

Doc withCustomer(const std::string& line) {
  Doc d;
  d.customer += line + "\n";
  return d;
}
Doc withWorker(const std::string& line) {
  Doc d;
  d.worker += line + "\n";
  return d;
}
Doc withTop(const std::string& line) {
  Doc d;
  d.top = line + "\n";
  return d;
}

Config addresses(const std::string& worker, const std::string& task) {
  Config c;
  c.worker.listenAddress = worker;
  c.task.listenAddress = task;
  return c;
}

}  // namespace

TEST_CASE("config: defaults when keys are absent") {
  const Config c = parse(Doc{});
  CHECK(c.logLevel == "error");
  CHECK(c.logFile.empty());
  CHECK(c.shutdownWaitTime == 0ms);
  CHECK_FALSE(c.autobahn);
  CHECK(c.limitOnOpen == 0);
  CHECK(c.limitOnMessage == 0);
  CHECK(c.metricsItems.empty());
  CHECK(c.metricsListenAddress.empty());
  CHECK(c.workers == 0);
  CHECK(c.pidFile == "/etc/netsvr/netsvr.pid");
  CHECK(c.reloadDrainTime == 0ms);
  CHECK(c.shmSegmentSize == 0);
  CHECK(c.ignoredKeys.empty());

  const auto& cu = c.customer;
  CHECK(cu.listenAddress == "127.0.0.1:6060");
  CHECK(cu.handlePattern == "/");
  CHECK(cu.allowOrigin.empty());
  CHECK(cu.heartbeatInterval == 120s);
  CHECK(cu.maxOnlineNum == 100000);  // DECISIONS 9
  CHECK(cu.receivePackLimit == 2097152);
  CHECK(cu.sendMessageType == 1);
  CHECK(cu.onOpenCallbackApi.empty());
  CHECK(cu.onCloseCallbackApi.empty());
  CHECK(cu.callbackApiDeadline == 3s);  // DECISIONS O7
  CHECK(cu.heartbeatMessage == "hb");
  CHECK(cu.compressionLevel == 0);
  CHECK(cu.limitWindowSize == 1s);
  CHECK(cu.limitWindowMaxRequests == 100);
  CHECK(cu.limitZeroWindowMaxRequests == 1000);
  CHECK(cu.multicore == 100);
  CHECK(cu.handshakeTimeout == 10s);
  CHECK(cu.sendQueueLimit == 1048576);
  CHECK(cu.tlsCertFile.empty());
  CHECK(cu.tlsKeyFile.empty());

  CHECK(c.worker.listenAddress == "127.0.0.1:6061");
  CHECK(c.worker.readDeadline == 120s);
  CHECK(c.worker.sendDeadline == 10s);
  CHECK(c.worker.receivePackLimit == 2097152);
  CHECK(c.worker.readBufferSize == 4096);
  CHECK(c.worker.sendChanCap == 1024);
  CHECK(c.task.readBufferSize == 65536);
  CHECK(c.task.readDeadline == 120s);
  CHECK(c.task.sendDeadline == 10s);
  CHECK(c.task.receivePackLimit == 2097152);
}

TEST_CASE("config: Go 'if <= 0 then default' rules") {
  Doc d;
  d.customer +=
      "HeartbeatInterval = \"0s\"\nReceivePackLimit = -1\nSendMessageType = 0\nCallbackApiDeadline "
      "= \"0s\"\n"
      "LimitWindowSize = \"-1s\"\nLimitWindowMaxRequests = 0\nLimitZeroWindowMaxRequests = "
      "-5\nMulticore = 101\n"
      "HandlePattern = \"\"\nMaxOnlineNum = 0\n";
  d.worker +=
      "ReadDeadline = 0\nSendDeadline = \"-1s\"\nReceivePackLimit = 0\nReadBufferSize = "
      "0\nSendChanCap = -1\n";
  d.task += "ReadBufferSize = -1\n";
  d.top = "ShutdownWaitTime = \"-5s\"\n";
  d.rest = "[Limit]\nOnOpen = -3\nOnMessage = 0\n";
  const Config c = parse(d);
  CHECK(c.customer.heartbeatInterval == 120s);
  CHECK(c.customer.receivePackLimit == 2097152);
  CHECK(c.customer.sendMessageType == 1);
  CHECK(c.customer.callbackApiDeadline == 3s);
  CHECK(c.customer.limitWindowSize == 1s);
  CHECK(c.customer.limitWindowMaxRequests == 100);
  CHECK(c.customer.limitZeroWindowMaxRequests == 1000);
  CHECK(c.customer.multicore == 100);
  CHECK(c.customer.handlePattern == "/");
  CHECK(c.customer.maxOnlineNum == 0);  // 0 = no limit
  CHECK(c.worker.readDeadline == 120s);
  CHECK(c.worker.sendDeadline == 10s);
  CHECK(c.worker.receivePackLimit == 2097152);
  CHECK(c.worker.readBufferSize == 4096);
  CHECK(c.worker.sendChanCap == 1024);
  CHECK(c.task.readBufferSize == 65536);
  CHECK(c.shutdownWaitTime == 0ms);
  CHECK(c.limitOnOpen == 0);
  CHECK(c.limitOnMessage == 0);
}

TEST_CASE("config: explicit values") {
  Doc d;
  d.top =
      "LogLevel = \"warn\"\nLogFile = \"/var/log/netsvr.log\"\nShutdownWaitTime = "
      "\"1m30s\"\nAutobahn = true\n"
      "Workers = 4\nPidFile = \"run/n.pid\"\nReloadDrainTime = \"2h\"\n";
  d.customer +=
      "ListenAddress = \":443\"\nHandlePattern = \"/ws\"\nAllowOrigin = [\"example.com\", "
      "\"b.org\"]\n"
      "HeartbeatInterval = 30000000000\nMaxOnlineNum = 5\nSendMessageType = 2\nCompressionLevel = "
      "-2\n"
      "CallbackApiDeadline = \"500us\"\nMulticore = 0\nHandshakeTimeout = \"1.5s\"\nSendQueueLimit "
      "= 1024\n"
      "TLSCertFile = \"cert.pem\"\nTLSKeyFile = \"/abs/key.pem\"\nOnOpenCallbackApi = "
      "\"http://x/open\"\n";
  d.worker += "ReceivePackLimit = 4294967295\n";
  d.rest =
      "[Metrics]\nItem = [13, 2, 2, 0, 14, -1, 1]\nListenAddress = "
      "\"127.0.0.1:9100\"\n[Shm]\nSegmentSize = 1048576\n";
  const Config c = parse(d);
  CHECK(c.logLevel == "warn");
  CHECK(c.logFile == "/var/log/netsvr.log");
  CHECK(c.shutdownWaitTime == 90s);
  CHECK(c.autobahn);
  CHECK(c.workers == 4);
  CHECK(c.resolvedWorkers() == 4);
  CHECK(c.pidFile == "/etc/netsvr/run/n.pid");
  CHECK(c.reloadDrainTime == 2h);
  CHECK(c.customer.listenAddress == ":443");
  CHECK(c.customer.handlePattern == "/ws");
  CHECK(c.customer.allowOrigin == std::vector<std::string>{"example.com", "b.org"});
  CHECK(c.customer.heartbeatInterval == 30s);  // integer = nanoseconds
  CHECK(c.customer.maxOnlineNum == 5);
  CHECK(c.customer.sendMessageType == 2);
  CHECK(c.customer.compressionLevel == -2);
  CHECK(c.customer.callbackApiDeadline == 1ms);  // sub-millisecond rounds up, never to 0
  CHECK(c.customer.multicore == 0);
  CHECK(c.customer.handshakeTimeout == 1500ms);
  CHECK(c.customer.sendQueueLimit == 1024);
  CHECK(c.customer.tlsCertFile == "/etc/netsvr/cert.pem");
  CHECK(c.customer.tlsKeyFile == "/abs/key.pem");
  CHECK(c.customer.onOpenCallbackApi == "http://x/open");
  CHECK(c.worker.receivePackLimit == 4294967295u);
  CHECK(c.metricsItems == std::vector<int>{1, 2, 13});
  CHECK(c.metricsListenAddress == "127.0.0.1:9100");
  CHECK(c.shmSegmentSize == 1048576);
  CHECK(c.resolvedSegmentSize() == 1048576);
}

TEST_CASE("config: LogFile is relative to the working directory, PidFile to the config directory") {
  const Config c = parse(withTop("LogFile = \"log/netSvr.log\""));
  CHECK(c.logFile ==
        (std::filesystem::current_path() / "log/netSvr.log").lexically_normal().string());
  CHECK(c.pidFile == "/etc/netsvr/netsvr.pid");
}

TEST_CASE("config: resolved workers and segment size") {
  Config c;
  c.workers = 0;
  CHECK(c.resolvedWorkers() >= 1);
  CHECK(c.resolvedWorkers() <= 64);
  c.customer.maxOnlineNum = 100000;
  CHECK(c.resolvedSegmentSize() == 100000ull * 8192);
  c.customer.maxOnlineNum = 10;
  CHECK(c.resolvedSegmentSize() == 64ull << 20);
  c.customer.maxOnlineNum = 0;  // no limit: sized as for 100000
  CHECK(c.resolvedSegmentSize() == 100000ull * 8192);
  c.customer.maxOnlineNum = INT64_MAX;  // capped, no overflow
  CHECK(c.resolvedSegmentSize() == 1ull << 40);
  c.shmSegmentSize = 2 << 20;
  CHECK(c.resolvedSegmentSize() == 2u << 20);
}

TEST_CASE("config: error messages name the key, the value and what is accepted") {
  CHECK_THROWS_WITH_AS(parse(withCustomer("SendMessageType = 3")),
                       "Customer.SendMessageType = 3: must be 1 (text) or 2 (binary)", ConfigError);
  CHECK_THROWS_WITH_AS(
      parse(withTop("LogLevel = \"verbose\"")),
      "LogLevel = \"verbose\": must be one of \"debug\", \"info\", \"warn\", \"error\"",
      ConfigError);
  CHECK_THROWS_WITH_AS(parse(withCustomer("MaxOnlineNum = \"100\"")),
                       "Customer.MaxOnlineNum = \"100\": must be an integer", ConfigError);
  CHECK_THROWS_WITH_AS(parse(withCustomer("HandlePattern = 5")),
                       "Customer.HandlePattern = 5: must be a string", ConfigError);
  CHECK_THROWS_WITH_AS(
      parse(withCustomer("CompressionLevel = 10")),
      "Customer.CompressionLevel = 10: must be between -2 and 9 (-2 Huffman only, -1 default, "
      "0 no compression, 1-9)",
      ConfigError);
}

TEST_CASE("config: every validation error names its key") {
  struct Case {
    Doc doc;
    const char* key;
    const char* value;  // expected rendering of the bad value in the message ("" = none)
  };
  Doc noCustomerHeartbeat;
  noCustomerHeartbeat.customer = "";
  Doc emptyWorkerHeartbeat;
  emptyWorkerHeartbeat.worker = "ListenAddress = \"127.0.0.1:6061\"\nHeartbeatMessage = \"\"\n";
  Doc noTaskHeartbeat;
  noTaskHeartbeat.task = "ListenAddress = \"127.0.0.1:6062\"\n";
  Doc noTaskAddress;
  noTaskAddress.task = "HeartbeatMessage = \"hb\"\n";
  Doc badTaskPort;
  badTaskPort.task = "ListenAddress = \"127.0.0.1:0\"\nHeartbeatMessage = \"hb\"\n";
  Doc badItem;
  badItem.rest = "[Metrics]\nItem = [1, \"2\"]\n";
  Doc itemNotList;
  itemNotList.rest = "[Metrics]\nItem = 3\n";
  Doc badMetricsAddress;
  badMetricsAddress.rest = "[Metrics]\nListenAddress = \"9100\"\n";
  Doc smallSegment;
  smallSegment.rest = "[Shm]\nSegmentSize = 1000\n";
  Doc negativeSegment;
  negativeSegment.rest = "[Shm]\nSegmentSize = -1\n";
  Doc bigLimit;
  bigLimit.rest = "[Limit]\nOnOpen = 3000000000\n";
  Doc badLimitType;
  badLimitType.rest = "[Limit]\nOnMessage = 1.5\n";

  const Case cases[] = {
      {withTop("LogLevel = \"INFO\""), "LogLevel", "\"INFO\""},
      {withTop("LogLevel = 1"), "LogLevel", "1"},
      {withTop("LogFile = false"), "LogFile", "false"},
      {withTop("ShutdownWaitTime = \"5 s\""), "ShutdownWaitTime", "\"5 s\""},
      {withTop("ShutdownWaitTime = 5.0"), "ShutdownWaitTime", "5.0"},
      {withTop("Autobahn = \"no\""), "Autobahn", "\"no\""},
      {withTop("Workers = -1"), "Workers", "-1"},
      {withTop("Workers = 5000"), "Workers", "5000"},
      {withTop("PidFile = 1"), "PidFile", "1"},
      {withTop("ReloadDrainTime = \"-1s\""), "ReloadDrainTime", "\"-1s\""},
      {withTop("ReloadDrainTime = \"1x\""), "ReloadDrainTime", "\"1x\""},
      {withCustomer("ListenAddress = \"127.0.0.1\""), "Customer.ListenAddress", "\"127.0.0.1\""},
      {withCustomer("ListenAddress = \"127.0.0.1:65536\""), "Customer.ListenAddress",
       "\"127.0.0.1:65536\""},
      {withCustomer("ListenAddress = \"::1:80\""), "Customer.ListenAddress", "\"::1:80\""},
      {withCustomer("AllowOrigin = \"x\""), "Customer.AllowOrigin", "\"x\""},
      {withCustomer("AllowOrigin = [1]"), "Customer.AllowOrigin", "[1]"},
      {withCustomer("HeartbeatInterval = \"10\u00a0s\""), "Customer.HeartbeatInterval", ""},
      {withCustomer("HeartbeatInterval = true"), "Customer.HeartbeatInterval", "true"},
      {withCustomer("MaxOnlineNum = -1"), "Customer.MaxOnlineNum", "-1"},
      {withCustomer("ReceivePackLimit = \"2M\""), "Customer.ReceivePackLimit", "\"2M\""},
      {withCustomer("SendMessageType = -1"), "Customer.SendMessageType", "-1"},
      {withCustomer("OnOpenCallbackApi = 1"), "Customer.OnOpenCallbackApi", "1"},
      {withCustomer("OnCloseCallbackApi = []"), "Customer.OnCloseCallbackApi", "[]"},
      {withCustomer("CallbackApiDeadline = \"3\""), "", ""},  // "3" is valid: 3 ns, rounded to 1 ms
      {withCustomer("CallbackApiDeadline = \"3sec\""), "Customer.CallbackApiDeadline", "\"3sec\""},
      {noCustomerHeartbeat, "Customer.HeartbeatMessage", ""},
      {withCustomer("CompressionLevel = -3"), "Customer.CompressionLevel", "-3"},
      {withCustomer("LimitWindowSize = \"\""), "Customer.LimitWindowSize", "\"\""},
      {withCustomer("LimitWindowMaxRequests = 2147483648"), "Customer.LimitWindowMaxRequests",
       "2147483648"},
      {withCustomer("LimitZeroWindowMaxRequests = \"1\""), "Customer.LimitZeroWindowMaxRequests",
       "\"1\""},
      {withCustomer("Multicore = \"100\""), "Customer.Multicore", "\"100\""},
      {withCustomer("HandshakeTimeout = \"0s\""), "Customer.HandshakeTimeout", "\"0s\""},
      {withCustomer("HandshakeTimeout = -1"), "Customer.HandshakeTimeout", "-1"},
      {withCustomer("SendQueueLimit = 1023"), "Customer.SendQueueLimit", "1023"},
      {withCustomer("TLSCertFile = \"c.pem\""), "Customer.TLSCertFile", "\"c.pem\""},
      {withCustomer("TLSKeyFile = \"k.pem\"\nTLSCertFile = \"\""), "Customer.TLSKeyFile",
       "\"k.pem\""},
      {emptyWorkerHeartbeat, "Worker.HeartbeatMessage", "\"\""},
      {noTaskHeartbeat, "Task.HeartbeatMessage", ""},
      {noTaskAddress, "Task.ListenAddress", ""},
      {badTaskPort, "Task.ListenAddress", "\"127.0.0.1:0\""},
      {withWorker("ReadDeadline = \"2 m\""), "Worker.ReadDeadline", "\"2 m\""},
      {withWorker("SendDeadline = []"), "Worker.SendDeadline", "[]"},
      {withWorker("ReceivePackLimit = -1"), "Worker.ReceivePackLimit", "-1"},
      {withWorker("ReceivePackLimit = 4294967296"), "Worker.ReceivePackLimit", "4294967296"},
      {withWorker("ReadBufferSize = \"4k\""), "Worker.ReadBufferSize", "\"4k\""},
      {withWorker("SendChanCap = 1e3"), "Worker.SendChanCap", "1000.0"},
      {badItem, "Metrics.Item", "[1, \"2\"]"},
      {itemNotList, "Metrics.Item", "3"},
      {badMetricsAddress, "Metrics.ListenAddress", "\"9100\""},
      {smallSegment, "Shm.SegmentSize", "1000"},
      {negativeSegment, "Shm.SegmentSize", "-1"},
      {bigLimit, "Limit.OnOpen", "3000000000"},
      {badLimitType, "Limit.OnMessage", "1.5"},
  };
  CHECK_THROWS_WITH_AS(netsvr::parseConfig("Customer = 1\n", "", ""),
                       "Customer = 1: must be a table ([Customer])", ConfigError);
  for (const Case& c : cases) {
    const std::string text = c.doc.text();
    INFO("document:\n", text);
    const std::string msg = errorOf(c.doc);
    INFO("message: ", msg);
    if (std::string(c.key).empty()) {
      CHECK(msg.empty());
      continue;
    }
    CHECK(contains(msg, std::string(c.key) +
                            (std::string(c.value).empty() ? "" : " = " + std::string(c.value))));
    CHECK(contains(msg, ": "));  // "<key> = <value>: <what is accepted>"
  }
}

TEST_CASE("config: messages carry the file and line when parsed from a file") {
  Doc d = withCustomer("SendMessageType = 7");
  try {
    netsvr::parseConfig(d.text(), "/x/netsvr.toml", "/x");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    CHECK(contains(msg, "/x/netsvr.toml:"));
    CHECK(contains(msg, "Customer.SendMessageType = 7: must be 1 (text) or 2 (binary)"));
  }
}

TEST_CASE("config: TOML syntax errors carry file, line and column") {
  try {
    netsvr::parseConfig("LogLevel = \"info\"\nWorkers = = 3\n", "/x/netsvr.toml", "/x");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    const std::string msg = e.what();
    CHECK(contains(msg, "/x/netsvr.toml:2:"));
    CHECK(contains(msg, "TOML syntax error"));
  }
  CHECK_THROWS_AS(netsvr::parseConfig("[Customer\n", "", ""), ConfigError);
  CHECK_THROWS_AS(netsvr::parseConfig("a = 1\na = 2\n", "", ""), ConfigError);  // duplicate key
  CHECK_THROWS_AS(netsvr::parseConfig(std::string("a = \"\xff\"\n"), "", ""),
                  ConfigError);  // bad UTF-8
}

TEST_CASE("config: unknown keys are ignored and listed") {
  Doc d;
  d.top = "PprofListenAddress = \"127.0.0.1:6063\"\nSomething = 1\n";
  d.task += "SendChanCap = 10\n";
  d.rest = "[Extra]\nA = 1\n[Extra.Inner]\nB = \"x\"\n[Empty]\n";
  const Config c = parse(d);
  const std::vector<std::string> expected = {
      "Empty", "Extra.A", "Extra.Inner.B", "PprofListenAddress", "Something", "Task.SendChanCap"};
  std::vector<std::string> got = c.ignoredKeys;
  std::sort(got.begin(), got.end());
  CHECK(got == expected);
}

TEST_CASE("config: the Go netsvr example file loads unchanged") {
  const Config c = netsvr::loadConfig(NETSVR_TEST_DATA_DIR "/go-netsvr.toml");
  CHECK(
      c.path ==
      (std::filesystem::path(NETSVR_TEST_DATA_DIR) / "go-netsvr.toml").lexically_normal().string());
  CHECK(c.logLevel == "debug");
  CHECK(c.shutdownWaitTime == 5s);
  CHECK_FALSE(c.autobahn);
  CHECK(c.limitOnOpen == 10000);
  CHECK(c.limitOnMessage == 50000);
  CHECK(c.customer.handlePattern == "/netsvr");
  CHECK(c.customer.compressionLevel == 1);
  CHECK(c.customer.multicore == 100);
  CHECK(c.customer.onOpenCallbackApi == "http://127.0.0.1:6064/onopen");
  CHECK(c.customer.onCloseCallbackApi == "http://127.0.0.1:6064/onclose");
  CHECK(c.customer.heartbeatMessage == "~6YOt5rW35piO~");
  CHECK(c.worker.heartbeatMessage == "~6YOt5rW35piO~");
  CHECK(c.task.heartbeatMessage == "~6YOt5rW35piO~");
  CHECK(c.metricsItems.size() == 13);
  CHECK(c.ignoredKeys == std::vector<std::string>{"PprofListenAddress"});
  CHECK(c.pidFile ==
        (std::filesystem::path(NETSVR_TEST_DATA_DIR) / "netsvr.pid").lexically_normal().string());
  Config n = c;
  netsvr::normaliseAddresses(n);
  CHECK(n.worker.address.text() == "127.0.0.1:6061");
  CHECK(n.task.address.text() == "127.0.0.1:6062");
}

TEST_CASE("config: etc/netsvr.toml loads with the documented defaults") {
  const Config c = netsvr::loadConfig(NETSVR_TEST_DATA_DIR "/../../../etc/netsvr.toml");
  CHECK(c.ignoredKeys.empty());
  CHECK(c.logLevel == "info");
  CHECK(c.customer.listenAddress == "127.0.0.1:6060");
  CHECK(c.customer.handlePattern == "/netsvr");
  CHECK(c.customer.maxOnlineNum == 100000);
  CHECK(c.customer.onOpenCallbackApi.empty());
  CHECK(c.customer.tlsCertFile.empty());
  CHECK(c.workers == 0);
  CHECK(c.metricsItems == std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13});
  CHECK(c.worker.listenAddress == "127.0.0.1:6061");
  CHECK(c.task.listenAddress == "127.0.0.1:6062");
  CHECK(c.task.readBufferSize == 65536);
  CHECK(c.pidFile == (std::filesystem::path(c.path).parent_path() / "netsvr.pid").string());
}

TEST_CASE("config: loadConfig reports an unreadable file") {
  CHECK_THROWS_AS(netsvr::loadConfig("/nonexistent/netsvr.toml"), ConfigError);
}

TEST_CASE("config: address normalisation") {
  SUBCASE("IPv4 literals are kept") {
    Config c = addresses("127.0.0.1:6061", "127.0.0.1:6062");
    netsvr::normaliseAddresses(c);
    CHECK(c.worker.address.ip == 0x7F000001u);
    CHECK(c.worker.address.port == 6061);
    CHECK(c.task.address.port == 6062);
    CHECK(c.worker.listenAddress == "127.0.0.1:6061");
  }
  SUBCASE("localhost resolves to loopback") {
    Config c = addresses("localhost:6061", "localhost:6062");
    netsvr::normaliseAddresses(c);
    CHECK((c.worker.address.ip >> 24) == 127u);
    CHECK(c.worker.address.ip == c.task.address.ip);
    CHECK(c.worker.listenAddress == c.worker.address.text());  // resolved value replaces it
  }
  SUBCASE("0.0.0.0 becomes a concrete interface address, or is an error") {
    Config c = addresses("0.0.0.0:6061", "0.0.0.0:6062");
    try {
      netsvr::normaliseAddresses(c);
      const uint32_t ip = c.worker.address.ip;
      CHECK(ip != 0);
      CHECK((ip >> 24) != 127u);
      CHECK((ip >> 16) != 0xA9FEu);
    } catch (const ConfigError& e) {
      CHECK(contains(e.what(), "Worker.ListenAddress"));
    }
  }
  SUBCASE("same port") {
    Config c = addresses("127.0.0.1:6061", "127.0.0.1:6061");
    try {
      netsvr::normaliseAddresses(c);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      CHECK(contains(e.what(), "Task.ListenAddress"));
      CHECK(contains(e.what(), "different port"));
    }
  }
  SUBCASE("different hosts") {
    Config c = addresses("127.0.0.1:6061", "127.0.0.2:6062");
    try {
      netsvr::normaliseAddresses(c);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      CHECK(contains(e.what(), "Task.ListenAddress = \"127.0.0.2:6062\""));
      CHECK(contains(e.what(), "same host"));
    }
  }
  SUBCASE("bad ports and shapes") {
    for (const char* bad :
         {"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1", "127.0.0.1:http", ":6061"}) {
      Config c = addresses(bad, "127.0.0.1:6062");
      INFO("address: ", bad);
      try {
        netsvr::normaliseAddresses(c);
        FAIL("accepted");
      } catch (const ConfigError& e) {
        CHECK(contains(e.what(), "Worker.ListenAddress = \"" + std::string(bad) + "\""));
      }
    }
  }
  SUBCASE("unresolvable host") {
    Config c = addresses("127.0.0.1:6061", "no-such-host.invalid:6062");
    CHECK_THROWS_AS(netsvr::normaliseAddresses(c), ConfigError);
  }
  SUBCASE("Customer.ListenAddress syntax only; empty host allowed") {
    Config c = addresses("127.0.0.1:6061", "127.0.0.1:6062");
    c.customer.listenAddress = ":6060";
    CHECK_NOTHROW(netsvr::normaliseAddresses(c));
    c.customer.listenAddress = "[::]:6060";
    CHECK_NOTHROW(netsvr::normaliseAddresses(c));
    c.customer.listenAddress = "6060";
    CHECK_THROWS_WITH_AS(
        netsvr::normaliseAddresses(c),
        "Customer.ListenAddress = \"6060\": must be host:port with a port between 1 and 65535 "
        "(missing port)",
        ConfigError);
  }
  SUBCASE("Ipv4Address::text") {
    CHECK(netsvr::Ipv4Address{0xC0A80102u, 80}.text() == "192.168.1.2:80");
  }
}
