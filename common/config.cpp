// netsvr.toml → Config (PROTOCOL.md §12, DECISIONS.md). Every rejection throws ConfigError
// naming the dotted key, the value found and what is accepted, so an operator can fix the file
// from the message alone. Go defaults ("if <= 0 then default") are kept so that a file written
// for the Go gateway starts ours unchanged.
#include "common/config.hpp"

#include "common/fnv1a.hpp"
#include "common/meter.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <toml++/toml.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string_view>
#include <thread>

namespace netsvr {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMiB = 1 << 20;
constexpr const char* kDurationHint =
    "must be a Go duration such as \"120s\", \"500ms\", \"1m30s\" or \"1.5h\" (units ns, us, ms, "
    "s, m, h) or an integer number of nanoseconds";

// TOML-style quoting for messages; control bytes escaped so the message stays on one line.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

// One-line rendering of any TOML value, capped at ~80 characters.
std::string render(const toml::node& n) {
  std::string out;
  if (const auto* s = n.as_string()) {
    out = quote(s->get());
  } else if (const auto* i = n.as_integer()) {
    out = std::to_string(i->get());
  } else if (const auto* b = n.as_boolean()) {
    out = b->get() ? "true" : "false";
  } else if (const auto* a = n.as_array()) {
    out = "[";
    for (size_t k = 0; k < a->size() && out.size() < 80; ++k)
      out += (k ? ", " : "") + render(*a->get(k));
    out += "]";
  } else if (n.is_table()) {
    out = "{ ... }";
  } else {  // float, date, time, date-time: toml++ prints them in TOML syntax
    std::ostringstream os;
    os << toml::node_view<const toml::node>(&n);
    out = os.str();
  }
  if (out.size() > 80) out = out.substr(0, 77) + "...";
  return out;
}

// Go-style ns → our millisecond fields. A positive duration below 1 ms becomes 1 ms rather than
// 0, because 0 would select the default or "disabled" and change the meaning.
Millis toMillis(int64_t ns) {
  if (ns <= 0) return Millis(ns / 1'000'000);
  return Millis(ns / 1'000'000 + (ns % 1'000'000 != 0 ? 1 : 0));
}

// host:port as Go net.SplitHostPort, but the port must be numeric 1..65535. IPv6 hosts come in
// brackets. Returns "" on success, else the reason.
std::string splitHostPort(std::string_view s, std::string& host, uint16_t& port) {
  std::string_view portText;
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos) return "missing ']' after the IPv6 address";
    if (close + 1 >= s.size() || s[close + 1] != ':') return "missing port";
    host = std::string(s.substr(1, close - 1));
    portText = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return "missing port";
    host = std::string(s.substr(0, colon));
    if (host.find(':') != std::string::npos) return "too many colons (IPv6 hosts need [brackets])";
    portText = s.substr(colon + 1);
  }
  if (portText.empty() || portText.size() > 5 ||
      portText.find_first_not_of("0123456789") != std::string_view::npos)
    return "the port must be a number between 1 and 65535";
  const long v = std::stol(std::string(portText));
  if (v < 1 || v > 65535) return "the port must be a number between 1 and 65535";
  port = static_cast<uint16_t>(v);
  return "";
}

std::string hostPortError(const std::string& key, const std::string& value,
                          const std::string& why) {
  return key + " = " + quote(value) + ": must be host:port with a port between 1 and 65535 (" +
         why + ")";
}

// A table of the document and its dotted name ("" for the root).
struct Tbl {
  const toml::table* tbl = nullptr;
  std::string name;
  std::string key(std::string_view k) const {
    return name.empty() ? std::string(k) : name + "." + std::string(k);
  }
  const toml::node* get(std::string_view k) const { return tbl ? tbl->get(k) : nullptr; }
};

class Parser {
 public:
  Parser(const toml::table& root, const std::string& path, const std::string& baseDir)
      : root_(root), path_(path), baseDir_(baseDir) {}

  Config run() {
    Config c;
    c.path = path_;
    const Tbl top{&root_, ""};
    parseTop(top, c);
    parseLimit(table("Limit"), c);
    parseCustomer(table("Customer"), c.customer);
    parseBusiness(table("Worker"), c.worker, true);
    parseBusiness(table("Task"), c.task, false);
    parseMetrics(table("Metrics"), c);
    parseShm(table("Shm"), c);
    collectIgnored(root_, "", c.ignoredKeys);
    return c;
  }

 private:
  const toml::table& root_;
  const std::string& path_;
  const std::string& baseDir_;

  // "file:line: " when both are known, so messages point at the offending line.
  std::string where(const toml::node* n) const {
    if (path_.empty()) return "";
    if (n && n->source().begin.line > 0)
      return path_ + ":" + std::to_string(n->source().begin.line) + ": ";
    return path_ + ": ";
  }
  [[noreturn]] void fail(const std::string& key, const toml::node* n,
                         const std::string& why) const {
    throw ConfigError(where(n) + key + " = " + render(*n) + ": " + why);
  }
  [[noreturn]] void failMissing(const std::string& key, const std::string& why) const {
    throw ConfigError(where(nullptr) + key + " is required: " + why);
  }

  Tbl table(std::string_view name) const {
    const toml::node* n = root_.get(name);
    if (n && !n->is_table())
      fail(std::string(name), n, "must be a table ([" + std::string(name) + "])");
    return Tbl{n ? n->as_table() : nullptr, std::string(name)};
  }

  std::optional<std::string> str(const Tbl& t, std::string_view k) const {
    const toml::node* n = t.get(k);
    if (!n) return std::nullopt;
    if (const auto* s = n->as_string()) return s->get();
    fail(t.key(k), n, "must be a string");
  }
  std::optional<bool> boolean(const Tbl& t, std::string_view k) const {
    const toml::node* n = t.get(k);
    if (!n) return std::nullopt;
    if (const auto* b = n->as_boolean()) return b->get();
    fail(t.key(k), n, "must be true or false");
  }
  // An integer; values outside [lo, hi] are errors (Go would fail to decode them too).
  std::optional<int64_t> integer(const Tbl& t, std::string_view k, int64_t lo = INT64_MIN,
                                 int64_t hi = INT64_MAX) const {
    const toml::node* n = t.get(k);
    if (!n) return std::nullopt;
    const auto* i = n->as_integer();
    if (!i) fail(t.key(k), n, "must be an integer");
    if (i->get() < lo || i->get() > hi)
      fail(t.key(k), n,
           "must be an integer between " + std::to_string(lo) + " and " + std::to_string(hi));
    return i->get();
  }
  std::optional<int64_t> int32(const Tbl& t, std::string_view k) const {
    return integer(t, k, INT32_MIN, INT32_MAX);
  }
  // A Go duration string, or an integer of nanoseconds; returns nanoseconds.
  std::optional<int64_t> duration(const Tbl& t, std::string_view k) const {
    const toml::node* n = t.get(k);
    if (!n) return std::nullopt;
    if (const auto* i = n->as_integer()) return i->get();
    if (const auto* s = n->as_string()) {
      std::chrono::nanoseconds d{};
      if (parseGoDuration(s->get(), d)) return d.count();
    }
    fail(t.key(k), n, kDurationHint);
  }
  // Duration where "<= 0 or absent" means the default (Go rule).
  void durationOrDefault(const Tbl& t, std::string_view k, Millis& field, Millis def) const {
    const auto ns = duration(t, k);
    field = ns && *ns > 0 ? toMillis(*ns) : def;
  }
  // Required non-empty byte string (HeartbeatMessage).
  std::string required(const Tbl& t, std::string_view k, const std::string& what) const {
    const auto v = str(t, k);
    if (!v) failMissing(t.key(k), what);
    if (v->empty()) fail(t.key(k), t.get(k), "must not be empty (" + what + ")");
    return *v;
  }
  void hostPort(const Tbl& t, std::string_view k, const std::string& v, bool hostRequired) const {
    std::string host;
    uint16_t port = 0;
    std::string why = splitHostPort(v, host, port);
    if (why.empty() && hostRequired && host.empty()) why = "the host is required";
    if (!why.empty()) throw ConfigError(where(t.get(k)) + hostPortError(t.key(k), v, why));
  }

  void parseTop(const Tbl& t, Config& c) const {
    if (const auto v = str(t, "LogLevel")) {
      if (*v != "debug" && *v != "info" && *v != "warn" && *v != "error")
        fail("LogLevel", t.get("LogLevel"),
             "must be one of \"debug\", \"info\", \"warn\", \"error\"");
      c.logLevel = *v;
    }
    // Go joins a relative LogFile to the working directory, not to the config's directory.
    if (const auto v = str(t, "LogFile"); v && !v->empty()) c.logFile = resolvePath("", *v);
    if (const auto ns = duration(t, "ShutdownWaitTime"))
      c.shutdownWaitTime = *ns > 0 ? toMillis(*ns) : Millis(0);
    if (const auto v = boolean(t, "Autobahn")) c.autobahn = *v;
    if (const auto v = integer(t, "Workers")) {
      if (*v < 0 || *v > 1024)
        fail("Workers", t.get("Workers"), "must be between 0 (one per CPU) and 1024");
      c.workers = static_cast<int>(*v);
    }
    const auto pid = str(t, "PidFile");
    c.pidFile = resolvePath(baseDir_, pid && !pid->empty() ? *pid : "netsvr.pid");
    if (const auto ns = duration(t, "ReloadDrainTime")) {
      if (*ns < 0)
        fail("ReloadDrainTime", t.get("ReloadDrainTime"),
             "must be >= 0 (0 = wait until the old connections close)");
      c.reloadDrainTime = toMillis(*ns);
    }
  }

  void parseLimit(const Tbl& t, Config& c) const {
    // Token-bucket rate per second; <= 0 disables, stored as 0.
    if (const auto v = int32(t, "OnOpen"))
      c.limitOnOpen = static_cast<int32_t>(std::max<int64_t>(*v, 0));
    if (const auto v = int32(t, "OnMessage"))
      c.limitOnMessage = static_cast<int32_t>(std::max<int64_t>(*v, 0));
  }

  void parseCustomer(const Tbl& t, CustomerConfig& cu) const {
    if (const auto v = str(t, "ListenAddress")) {
      hostPort(t, "ListenAddress", *v, false);  // empty host = all interfaces
      cu.listenAddress = *v;
    }
    if (const auto v = str(t, "HandlePattern")) cu.handlePattern = v->empty() ? "/" : *v;
    if (const toml::node* n = t.get("AllowOrigin")) {
      const auto* a = n->as_array();
      const char* why = "must be a list of strings (empty = any origin)";
      if (!a) fail(t.key("AllowOrigin"), n, why);
      cu.allowOrigin.clear();
      for (const toml::node& e : *a) {
        if (!e.is_string()) fail(t.key("AllowOrigin"), n, why);
        cu.allowOrigin.push_back(e.as_string()->get());
      }
    }
    durationOrDefault(t, "HeartbeatInterval", cu.heartbeatInterval, Millis(120'000));
    if (const auto v = integer(t, "MaxOnlineNum")) {
      if (*v < 0) fail(t.key("MaxOnlineNum"), t.get("MaxOnlineNum"), "must be >= 0 (0 = no limit)");
      cu.maxOnlineNum = *v;
    }
    if (const auto v = integer(t, "ReceivePackLimit")) cu.receivePackLimit = *v > 0 ? *v : 2097152;
    if (const auto v = integer(t, "SendMessageType")) {
      if (*v != 0 && *v != 1 && *v != 2)
        fail(t.key("SendMessageType"), t.get("SendMessageType"), "must be 1 (text) or 2 (binary)");
      cu.sendMessageType = *v == 0 ? 1 : static_cast<int>(*v);
    }
    if (const auto v = str(t, "OnOpenCallbackApi")) cu.onOpenCallbackApi = *v;
    if (const auto v = str(t, "OnCloseCallbackApi")) cu.onCloseCallbackApi = *v;
    // DECISIONS O7: never unbounded, so 0 or negative also means 3 s.
    durationOrDefault(t, "CallbackApiDeadline", cu.callbackApiDeadline, Millis(3000));
    cu.heartbeatMessage = required(t, "HeartbeatMessage", "the client heartbeat string");
    if (const auto v = integer(t, "CompressionLevel")) {
      if (*v < -2 || *v > 9)
        fail(t.key("CompressionLevel"), t.get("CompressionLevel"),
             "must be between -2 and 9 (-2 Huffman only, -1 default, 0 no compression, 1-9)");
      cu.compressionLevel = static_cast<int>(*v);
    }
    durationOrDefault(t, "LimitWindowSize", cu.limitWindowSize, Millis(1000));
    if (const auto v = int32(t, "LimitWindowMaxRequests"))
      cu.limitWindowMaxRequests = *v > 0 ? static_cast<int32_t>(*v) : 100;
    if (const auto v = int32(t, "LimitZeroWindowMaxRequests"))
      cu.limitZeroWindowMaxRequests = *v > 0 ? static_cast<int32_t>(*v) : 1000;
    if (const auto v = integer(t, "Multicore"))
      cu.multicore = *v >= 0 && *v <= 100 ? static_cast<int>(*v) : 100;
    if (const auto ns = duration(t, "HandshakeTimeout")) {
      if (*ns <= 0)
        fail(t.key("HandshakeTimeout"), t.get("HandshakeTimeout"), "must be > 0 (e.g. \"10s\")");
      cu.handshakeTimeout = toMillis(*ns);
    }
    if (const auto v = integer(t, "SendQueueLimit")) {
      if (*v < 1024)
        fail(t.key("SendQueueLimit"), t.get("SendQueueLimit"),
             "must be at least 1024 (bytes of queued data per client)");
      cu.sendQueueLimit = *v;
    }
    const auto cert = str(t, "TLSCertFile");
    const auto key = str(t, "TLSKeyFile");
    const bool hasCert = cert && !cert->empty();
    const bool hasKey = key && !key->empty();
    if (hasCert && !hasKey)
      fail(t.key("TLSCertFile"), t.get("TLSCertFile"),
           "needs Customer.TLSKeyFile too (set both or neither)");
    if (hasKey && !hasCert)
      fail(t.key("TLSKeyFile"), t.get("TLSKeyFile"),
           "needs Customer.TLSCertFile too (set both or neither)");
    if (hasCert) {  // like PidFile, relative to the config file's directory
      cu.tlsCertFile = resolvePath(baseDir_, *cert);
      cu.tlsKeyFile = resolvePath(baseDir_, *key);
    }
  }

  void parseBusiness(const Tbl& t, BusinessPortConfig& b, bool isWorker) const {
    const auto addr = str(t, "ListenAddress");
    if (!addr)
      failMissing(t.key("ListenAddress"), isWorker ? "host:port, e.g. \"127.0.0.1:6061\""
                                                   : "host:port, e.g. \"127.0.0.1:6062\"");
    hostPort(t, "ListenAddress", *addr, true);
    b.listenAddress = *addr;
    durationOrDefault(t, "ReadDeadline", b.readDeadline, Millis(120'000));
    durationOrDefault(t, "SendDeadline", b.sendDeadline, Millis(10'000));
    // Go uint32: negative or > 4294967295 cannot be decoded; 0 means the default.
    if (const auto v = integer(t, "ReceivePackLimit", 0, UINT32_MAX))
      b.receivePackLimit = *v > 0 ? static_cast<uint32_t>(*v) : 2097152;
    const int defaultBuffer = isWorker ? 4096 : 65536;  // bytes
    b.readBufferSize = defaultBuffer;
    if (const auto v = integer(t, "ReadBufferSize", INT32_MIN, INT32_MAX))
      b.readBufferSize = *v > 0 ? static_cast<int>(*v) : defaultBuffer;
    if (isWorker) {
      if (const auto v = integer(t, "SendChanCap", INT32_MIN, INT32_MAX))
        b.sendChanCap = *v > 0 ? static_cast<int>(*v) : 1024;
    }
    b.heartbeatMessage = required(t, "HeartbeatMessage", "the business heartbeat string");
  }

  void parseMetrics(const Tbl& t, Config& c) const {
    if (const toml::node* n = t.get("Item")) {
      const auto* a = n->as_array();
      const char* why = "must be a list of integers (metric items 1..13)";
      if (!a) fail(t.key("Item"), n, why);
      std::set<int> items;  // sorted, unique
      for (const toml::node& e : *a) {
        if (!e.is_integer()) fail(t.key("Item"), n, why);
        const int64_t v = e.as_integer()->get();
        if (v >= 1 && v <= kMetricItems)
          items.insert(static_cast<int>(v));  // Go drops unknown items
      }
      c.metricsItems.assign(items.begin(), items.end());
    }
    if (const auto v = str(t, "ListenAddress")) {
      if (!v->empty()) hostPort(t, "ListenAddress", *v, false);
      c.metricsListenAddress = *v;
    }
  }

  void parseShm(const Tbl& t, Config& c) const {
    if (const auto v = integer(t, "SegmentSize")) {
      if (*v != 0 && *v < kMiB)
        fail(t.key("SegmentSize"), t.get("SegmentSize"),
             "must be 0 (derived from Customer.MaxOnlineNum) or at least 1048576 bytes (1 MiB)");
      c.shmSegmentSize = static_cast<uint64_t>(*v);
    }
  }

  // Keys this gateway reads, per table ("" = root), space-separated. Everything else is
  // reported as ignored (PprofListenAddress among them: we have no pprof/gops agent).
  static bool isKnown(const std::string& table, std::string_view key) {
    // clang-format off
    static const std::pair<const char*, const char*> kKnown[] = {
        {"", "LogLevel LogFile ShutdownWaitTime Autobahn Workers PidFile ReloadDrainTime "
             "Limit Customer Worker Task Metrics Shm"},
        {"Limit", "OnOpen OnMessage"},
        {"Customer", "ListenAddress HandlePattern AllowOrigin HeartbeatInterval MaxOnlineNum "
                     "ReceivePackLimit SendMessageType OnOpenCallbackApi OnCloseCallbackApi "
                     "CallbackApiDeadline HeartbeatMessage CompressionLevel LimitWindowSize "
                     "LimitWindowMaxRequests LimitZeroWindowMaxRequests Multicore "
                     "HandshakeTimeout SendQueueLimit TLSCertFile TLSKeyFile"},
        {"Worker", "ListenAddress ReadDeadline SendDeadline ReceivePackLimit ReadBufferSize "
                   "SendChanCap HeartbeatMessage"},
        {"Task", "ListenAddress ReadDeadline SendDeadline ReceivePackLimit ReadBufferSize "
                 "HeartbeatMessage"},
        {"Metrics", "Item ListenAddress"},
        {"Shm", "SegmentSize"},
    };
    // clang-format on
    for (const auto& [name, keys] : kKnown) {
      if (table != name) continue;
      std::string_view list = keys;
      while (!list.empty()) {
        const size_t sp = list.find(' ');
        if (list.substr(0, sp) == key) return true;
        if (sp == std::string_view::npos) break;
        list.remove_prefix(sp + 1);
      }
    }
    return false;
  }

  // Dotted names of every key not in isKnown(); unknown tables are listed leaf by leaf.
  static void collectIgnored(const toml::table& t, const std::string& prefix,
                             std::vector<std::string>& out) {
    for (auto&& [k, v] : t) {
      const std::string name =
          prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
      const bool known = isKnown(prefix, k.str());
      if (known && prefix.empty() && v.is_table()) {
        collectIgnored(*v.as_table(), name, out);  // a known table: check its keys
      } else if (!known) {
        if (v.is_table() && !v.as_table()->empty()) {
          collectUnknownLeaves(*v.as_table(), name, out);
        } else {
          out.push_back(name);
        }
      }
    }
  }
  static void collectUnknownLeaves(const toml::table& t, const std::string& prefix,
                                   std::vector<std::string>& out) {
    for (auto&& [k, v] : t) {
      const std::string name = prefix + "." + std::string(k.str());
      if (v.is_table() && !v.as_table()->empty())
        collectUnknownLeaves(*v.as_table(), name, out);
      else
        out.push_back(name);
    }
  }
};

// ---- address normalisation (§12.3) --------------------------------------------------------

// 127/8 and 169.254/16.
bool isLoopback(uint32_t ip) {
  return (ip >> 24) == 127;
}
bool isLinkLocal(uint32_t ip) {
  return (ip >> 16) == 0xA9FE;
}
// Go net.IP.IsGlobalUnicast for IPv4 (private ranges count as global).
bool isGlobalUnicast(uint32_t ip) {
  return ip != 0 && ip != 0xFFFFFFFF && !isLoopback(ip) && !isLinkLocal(ip) && (ip >> 28) != 0xE;
}

std::string ipText(uint32_t ip) {
  return std::to_string(ip >> 24) + "." + std::to_string((ip >> 16) & 0xFF) + "." +
         std::to_string((ip >> 8) & 0xFF) + "." + std::to_string(ip & 0xFF);
}

// First IPv4 of a local interface that is neither loopback nor link-local; 0 if none.
uint32_t firstInterfaceIpv4() {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return 0;
  uint32_t found = 0;
  for (const ifaddrs* a = list; a && !found; a = a->ifa_next) {
    if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET) continue;
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr);
    if (ip != 0 && !isLoopback(ip) && !isLinkLocal(ip)) found = ip;
  }
  freeifaddrs(list);
  return found;
}

Ipv4Address resolveBusiness(const std::string& prefix, const std::string& key,
                            const std::string& value) {
  std::string host;
  uint16_t port = 0;
  std::string why = splitHostPort(value, host, port);
  if (why.empty() && host.empty()) why = "the host is required";
  if (!why.empty()) throw ConfigError(prefix + hostPortError(key, value, why));
  const std::string head = prefix + key + " = " + quote(value) + ": ";
  in_addr literal{};
  if (inet_pton(AF_INET, host.c_str(), &literal) == 1) {
    uint32_t ip = ntohl(literal.s_addr);
    if (ip == 0) {  // bind a concrete address: it becomes part of every connId / uniqId
      ip = firstInterfaceIpv4();
      if (ip == 0)
        throw ConfigError(head +
                          "no local interface has an IPv4 address that is neither loopback nor "
                          "link-local to replace 0.0.0.0");
    }
    return Ipv4Address{ip, port};
  }
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0)
    throw ConfigError(head + "cannot resolve host " + quote(host) + " to an IPv4 address (" +
                      gai_strerror(rc) + ")");
  uint32_t global = 0;
  uint32_t loopback = 0;
  for (const addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family != AF_INET || !a->ai_addr) continue;
    const uint32_t ip = ntohl(reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr.s_addr);
    if (!global && isGlobalUnicast(ip)) global = ip;
    if (!loopback && isLoopback(ip)) loopback = ip;
  }
  freeaddrinfo(res);
  const uint32_t ip = global ? global : loopback;
  if (ip == 0)
    throw ConfigError(head + "host " + quote(host) +
                      " has no global unicast or loopback IPv4 address");
  return Ipv4Address{ip, port};
}

}  // namespace

std::string Ipv4Address::text() const {
  return ipText(ip) + ":" + std::to_string(port);
}

int Config::resolvedWorkers() const {
  if (workers > 0) return workers;
  const unsigned cpus = std::thread::hardware_concurrency();  // 0 when unknown
  return static_cast<int>(std::clamp(cpus, 1u, 64u));
}

uint64_t Config::resolvedSegmentSize() const {
  if (shmSegmentSize > 0) return shmSegmentSize;
  // 8 KiB per possible connection; the segment is a sparse tmpfs file, so only pages in use
  // cost memory. The count is capped at 2^27 (1 TiB) so the product cannot overflow.
  const int64_t n = customer.maxOnlineNum;
  const uint64_t online =
      n > 0 ? std::min<uint64_t>(static_cast<uint64_t>(n), uint64_t{1} << 27) : 100000;
  return std::max<uint64_t>(64 * kMiB, online * 8 * 1024);
}

Config parseConfig(const std::string& tomlText, const std::string& path,
                   const std::string& baseDir) {
  toml::table root;
  try {
    root = toml::parse(std::string_view(tomlText), std::string_view(path));
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError((path.empty() ? std::string("config") : path) + ":" + std::to_string(b.line) +
                      ":" + std::to_string(b.column) +
                      ": TOML syntax error: " + std::string(e.description()));
  }
  return Parser(root, path, baseDir).run();
}

std::string resolvePath(const std::string& base, const std::string& p) {
  fs::path path(p);
  if (path.is_absolute()) return path.lexically_normal().string();
  fs::path dir(base);
  if (dir.empty() || dir.is_relative()) {
    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);  // fails only when the cwd was removed
    if (!ec) dir = cwd / dir;
  }
  return (dir / path).lexically_normal().string();
}

std::string absoluteConfigPath(const std::string& path) {
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  if (ec) abs = path;
  return abs.lexically_normal().string();
}

std::string readConfigFile(const std::string& absPath) {
  std::ifstream in(absPath, std::ios::binary);
  if (!in)
    throw ConfigError("cannot read config file " + quote(absPath) + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad())
    throw ConfigError("cannot read config file " + quote(absPath) + ": " + std::strerror(errno));
  return text.str();
}

Config loadConfig(const std::string& path) {
  const std::string abs = absoluteConfigPath(path);
  const std::string text = readConfigFile(abs);
  Config config = parseConfig(text, abs, fs::path(abs).parent_path().string());
  config.contentHash = fnv1a64(text);
  return config;
}

void normaliseAddresses(Config& config) {
  const std::string prefix = config.path.empty() ? "" : config.path + ": ";
  {
    std::string host;
    uint16_t port = 0;
    const std::string why = splitHostPort(config.customer.listenAddress, host, port);
    if (!why.empty())
      throw ConfigError(
          prefix + hostPortError("Customer.ListenAddress", config.customer.listenAddress, why));
  }
  const Ipv4Address w =
      resolveBusiness(prefix, "Worker.ListenAddress", config.worker.listenAddress);
  const Ipv4Address t = resolveBusiness(prefix, "Task.ListenAddress", config.task.listenAddress);
  const std::string taskHead =
      prefix + "Task.ListenAddress = " + quote(config.task.listenAddress) + " (" + t.text() + "): ";
  if (w.ip != t.ip)
    throw ConfigError(taskHead + "must have the same host as Worker.ListenAddress = " +
                      quote(config.worker.listenAddress) + " (" + w.text() + ")");
  if (w.port == t.port)
    throw ConfigError(taskHead + "must use a different port from Worker.ListenAddress = " +
                      quote(config.worker.listenAddress));
  // §12.3: the resolved ip:port replaces the configured value.
  config.worker.address = w;
  config.task.address = t;
  config.worker.listenAddress = w.text();
  config.task.listenAddress = t.text();
}

}  // namespace netsvr
