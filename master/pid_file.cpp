#include "master/pid_file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace netsvr {

PidFile::PidFile(std::string path) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("pid file " + path_ + ": " + strerror(errno));
  // `status` and `stop` probe the lock for a moment (readLivePid): a start that meets a probe
  // tries again for a while instead of reporting another netsvr that does not exist.
  constexpr int kTries = 50;  // 5 ms apart: 250 ms
  bool locked = false;
  for (int attempt = 0; attempt < kTries && !locked; ++attempt) {
    locked = flock(fd_, LOCK_EX | LOCK_NB) == 0;
    if (locked || errno != EWOULDBLOCK || readLivePid(path_) != 0) break;  // a real owner
    usleep(5000);
  }
  if (!locked) {
    close(fd_);
    fd_ = -1;
    pid_t other = readLivePid(path_);
    throw std::runtime_error("another netsvr (pid " + std::to_string(other) +
                             ") is running with pid file " + path_);
  }
  rewrite();
}

void PidFile::rewrite() {
  std::string text = std::to_string(getpid()) + "\n";
  if (ftruncate(fd_, 0) != 0 || pwrite(fd_, text.data(), text.size(), 0) != ssize_t(text.size()))
    throw std::runtime_error("pid file " + path_ + ": " + strerror(errno));
}

PidFile::~PidFile() {
  if (fd_ < 0) return;
  unlink(path_.c_str());
  close(fd_);
}

pid_t readLivePid(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  // A held lock is the proof of life; the number alone may belong to a recycled pid.
  bool locked = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  char buf[32] = {};
  ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  close(fd);
  if (!locked || n <= 0) return 0;
  pid_t pid = pid_t(strtol(buf, nullptr, 10));
  return pid > 0 && kill(pid, 0) == 0 ? pid : 0;
}

}  // namespace netsvr
