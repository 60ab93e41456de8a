// The master process (DESIGN.md §2): binds the listeners, creates the shared memory, forks and
// execs the workers, supervises them, and runs stop. Signals only wake the loop; the loop acts.
#pragma once

#include <string>

namespace netsvr {

struct StartOptions {
  std::string configPath;  // absolute
  bool daemon = false;
};

// Runs the master until it stops. Returns the process exit code.
int runMaster(const StartOptions& options);

}  // namespace netsvr
