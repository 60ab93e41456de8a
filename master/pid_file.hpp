// The pid file of an instance. The master holds an exclusive flock on it for its whole life,
// so a second instance on the same pid file fails at once, and a file left by a killed master
// (no lock holder) is recognised as stale and taken over.
#pragma once

#include <sys/types.h>
#include <string>

namespace netsvr {

class PidFile {
 public:
  // Locks and writes our pid. Throws std::runtime_error when another live master holds it.
  explicit PidFile(std::string path);
  ~PidFile();  // removes the file
  PidFile(const PidFile&) = delete;
  PidFile& operator=(const PidFile&) = delete;

 private:
  void rewrite();  // writes our pid over the file's content
  std::string path_;
  int fd_ = -1;
};

// The pid of the live master recorded in `path`, or 0 when none (missing, stale, unlocked).
pid_t readLivePid(const std::string& path);

}  // namespace netsvr
