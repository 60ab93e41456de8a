#include "common/log.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <ctime>

namespace netsvr::log {
namespace {

Level gLevel = Level::Info;
std::string gTag = "netsvr";
std::string gPath;
int gFd = STDERR_FILENO;

const char* levelName(Level level) {
  switch (level) {
    case Level::Debug:
      return "debug";
    case Level::Info:
      return "info";
    case Level::Warn:
      return "warn";
    case Level::Error:
      return "error";
  }
  return "?";
}

// syslog priority of a level, as the "<N>" line prefix journald reads (sd-daemon(3)).
int priority(Level level) {
  switch (level) {
    case Level::Debug:
      return 7;
    case Level::Info:
      return 6;
    case Level::Warn:
      return 4;
    case Level::Error:
      return 3;
  }
  return 6;
}

// systemd connects stderr to the journal and says so in JOURNAL_STREAM ("device:inode" of that
// stream, systemd.exec(5)); comparing both keeps a redirected stderr from being taken for it.
bool stderrIsJournal() {
  const char* env = getenv("JOURNAL_STREAM");
  unsigned long long dev = 0, ino = 0;
  struct stat st {};
  if (!env || sscanf(env, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
    return false;
  return st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

bool parseLevel(const std::string& name, Level& out) {
  if (name == "debug")
    out = Level::Debug;
  else if (name == "info")
    out = Level::Info;
  else if (name == "warn")
    out = Level::Warn;
  else if (name == "error")
    out = Level::Error;
  else
    return false;
  return true;
}

void setLevel(Level level) {
  gLevel = level;
}
bool enabled(Level level) {
  return level >= gLevel;
}
void setProcessTag(const std::string& tag) {
  gTag = tag + "[" + std::to_string(getpid()) + "]";
}

bool openFile(const std::string& path) {
  gPath = path;
  return reopen();
}

bool reopen() {
  if (gPath.empty()) return true;
  int fd = ::open(gPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  int old = gFd;
  gFd = fd;
  if (old != STDERR_FILENO) ::close(old);
  return true;
}

void write(Level level, const char* format, ...) {
  char line[4096];
  // The journal stamps each line itself and keeps the level as the priority (journalctl -p).
  static const bool journal = stderrIsJournal();
  int n = 0;
  if (journal && gFd == STDERR_FILENO) {
    n = snprintf(line, sizeof line, "<%d>%s ", priority(level), gTag.c_str());
  } else {
    timespec ts{};
    clock_gettime(CLOCK_REALTIME, &ts);
    tm local{};
    localtime_r(&ts.tv_sec, &local);
    n = snprintf(line, sizeof line, "%04d-%02d-%02d %02d:%02d:%02d.%03ld %-5s %s ",
                 local.tm_year + 1900, local.tm_mon + 1, local.tm_mday, local.tm_hour, local.tm_min,
                 local.tm_sec, ts.tv_nsec / 1000000, levelName(level), gTag.c_str());
  }
  if (n < 0) return;
  va_list args;
  va_start(args, format);
  int m = vsnprintf(line + n, sizeof line - size_t(n) - 1, format, args);
  va_end(args);
  size_t len = size_t(n) + (m < 0 ? 0 : std::min<size_t>(size_t(m), sizeof line - size_t(n) - 2));
  line[len++] = '\n';
  ssize_t ignored = ::write(gFd, line, len);
  (void)ignored;
}

}  // namespace netsvr::log
