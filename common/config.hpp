// Gateway configuration: every key of netsvr's netsvr.toml (PROTOCOL.md §12) plus our own
// additions (DECISIONS.md). Pure: parsing does no I/O beyond reading the file and resolving
// host names during address normalisation.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace netsvr {

using Millis = std::chrono::milliseconds;

// Thrown only at start-up (and on reload validation). what() names the key and what it accepts.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An IPv4 listen address after §12.3 normalisation.
struct Ipv4Address {
  uint32_t ip = 0;           // host byte order
  uint16_t port = 0;         // host byte order
  std::string text() const;  // "a.b.c.d:port"
};

struct CustomerConfig {
  std::string listenAddress = "127.0.0.1:6060";  // host:port, host may be a name or empty
  std::string handlePattern = "/";
  std::vector<std::string> allowOrigin;  // empty: any origin
  Millis heartbeatInterval{120'000};
  int64_t maxOnlineNum = 100000;       // 0: no limit (DECISIONS 9)
  int64_t receivePackLimit = 2097152;  // bytes, per client message
  int sendMessageType = 1;             // 1 text, 2 binary
  std::string onOpenCallbackApi;
  std::string onCloseCallbackApi;
  Millis callbackApiDeadline{3000};  // DECISIONS O7: absent means 3 s
  std::string heartbeatMessage;      // required, raw bytes
  int compressionLevel = 0;          // [-2, 9]; 0: not negotiated (DECISIONS 10)
  Millis limitWindowSize{1000};
  int32_t limitWindowMaxRequests = 100;
  int32_t limitZeroWindowMaxRequests = 1000;
  int multicore = 100;  // accepted for compatibility, unused
  // Our own keys.
  Millis handshakeTimeout{10'000};   // DECISIONS 8
  int64_t sendQueueLimit = 1 << 20;  // bytes of queued outbound data per client (O8)
  std::string tlsCertFile;
  std::string tlsKeyFile;
};

struct BusinessPortConfig {  // [Worker] and [Task]
  std::string listenAddress;
  Ipv4Address address;  // normalised listenAddress (§12.3)
  Millis readDeadline{120'000};
  Millis sendDeadline{10'000};
  uint32_t receivePackLimit = 2097152;  // bytes, compared with the packet's length field
  int readBufferSize = 4096;
  int sendChanCap = 1024;        // [Worker] only: packets queued per business link
  std::string heartbeatMessage;  // required, raw bytes
};

struct Config {
  std::string path;          // absolute path of the file this came from ("" if from a string)
  uint64_t contentHash = 0;  // fnv1a64 of the file's bytes (loadConfig), to tell a changed file
  std::string logLevel = "error";  // debug, info, warn, error
  std::string logFile;         // "" = stderr; relative paths are joined to the working directory
  Millis shutdownWaitTime{0};  // 0 = wait until done
  bool autobahn = false;
  int32_t limitOnOpen = 0;  // token bucket rate/s and burst; <= 0 disables
  int32_t limitOnMessage = 0;
  std::vector<int> metricsItems;     // enabled items of §10 (unknown numbers dropped)
  std::string metricsListenAddress;  // Prometheus endpoint, "" = off
  CustomerConfig customer;
  BusinessPortConfig worker;
  BusinessPortConfig task;
  // Our own top-level keys.
  int workers = 0;              // 0 = one per CPU (resolvedWorkers() gives the number)
  std::string pidFile;          // default: netsvr.pid beside the config file
  Millis reloadDrainTime{0};    // 0 = until the old connections close
  uint64_t shmSegmentSize = 0;  // bytes per worker data segment; 0 = derived (see below)
  // Dotted names of keys present in the file that this gateway does not use (e.g.
  // "PprofListenAddress"); accepted for Go compatibility, the caller logs them.
  std::vector<std::string> ignoredKeys;

  int resolvedWorkers() const;           // workers, or the number of CPUs when 0 (at most 64)
  uint64_t resolvedSegmentSize() const;  // shmSegmentSize or a default from MaxOnlineNum
};

// Parses TOML text. `path` is used for messages and to place the default pid file; relative
// paths resolve against `baseDir`. Throws ConfigError naming the key and the accepted values.
Config parseConfig(const std::string& tomlText, const std::string& path,
                   const std::string& baseDir);

// Reads and parses a file (throws ConfigError when it cannot be read).
Config loadConfig(const std::string& path);

// Pieces of loadConfig, shared with inspectConfig: the absolute, normalised form of a path; the
// bytes of a file (throws ConfigError); a path joined to `base` unless absolute (base "" = the
// working directory).
std::string absoluteConfigPath(const std::string& path);
std::string readConfigFile(const std::string& absPath);
std::string resolvePath(const std::string& base, const std::string& path);

// A config file as the control commands (`status`, `stop`) see it: they must find the running
// instance even when the file on disk is broken, since that is when an operator needs them.
struct ConfigFileView {
  std::string path;          // absolute
  std::string pidFile;       // absolute; found even when other keys are invalid
  uint64_t contentHash = 0;  // fnv1a64 of the bytes, 0 when unreadable
  std::string error;         // "" when the whole file is valid; else the ConfigError text
  Config config;             // the parsed file when error is ""
};
ConfigFileView inspectConfig(const std::string& path);

// PidFile of a document that may be invalid: the key itself when the TOML parses, else the first
// root-table line that sets it, else the default; resolved against `baseDir` like parseConfig.
std::string lenientPidFile(const std::string& tomlText, const std::string& baseDir);

// Resolves the worker/task addresses (§12.3) into worker.address / task.address. Throws
// ConfigError when they do not resolve, or share no host, or use the same port.
void normaliseAddresses(Config& config);

// Go time.ParseDuration syntax: "120s", "1m30s", "500ms", "1.5h", "-2s"; units ns, us, µs, ms,
// s, m, h; "0" alone is zero. Returns false on bad syntax. A bare integer means nanoseconds.
bool parseGoDuration(const std::string& text, std::chrono::nanoseconds& out);

}  // namespace netsvr
