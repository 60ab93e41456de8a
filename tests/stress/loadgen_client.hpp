// One loadgen client process: opens its share of the websocket connections at the configured
// rate, sends heartbeats, checks and counts what arrives, and closes everything when the
// controller raises the stop flag. Writes only its own slots of the SharedArea.
#pragma once

#include <cstdint>
#include <string>

#include "loadgen_shared.hpp"
#include "ws_conn.hpp"

namespace stress {

struct ClientOptions {
  std::string url;
  uint32_t firstId = 0;       // global number of this process's first connection
  uint32_t count = 0;         // connections of this process
  double connectRate = 0;     // connects per second for this process; 0 = as fast as allowed
  uint32_t maxPending = 256;  // connects + handshakes in flight at once
  uint32_t heartbeatS = 30;   // heartbeat text every N seconds per connection; 0 = never
  std::string heartbeat = "~6YOt5rW35piO~";
  uint32_t sourceIps = 254;  // source addresses 127.0.0.1 .. 127.0.0.<sourceIps>
  double closeTimeoutS = 5;  // after stop: close handshakes get this long, then sockets drop
  bool verifyAccept = true;
  uint64_t keySeed = 0;
};

// Runs the loop until stopped; returns the process exit status.
int runClientProcess(const ClientOptions& options, SharedArea& shared, int procIndex);

}  // namespace stress
