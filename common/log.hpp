// One log for master and workers: every line says which process wrote it. Lines are written
// with one write(2) on an O_APPEND descriptor, so processes never interleave within a line.
#pragma once

#include <string>

namespace netsvr::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

// Returns false for an unknown name.
bool parseLevel(const std::string& name, Level& out);
void setLevel(Level level);
bool enabled(Level level);
// "master", "worker 0/3" ...
void setProcessTag(const std::string& tag);
// "" = stderr. Opens (or reopens, for logrotate) the file; returns false with errno set.
bool openFile(const std::string& path);
bool reopen();

void write(Level level, const char* format, ...) __attribute__((format(printf, 2, 3)));

}  // namespace netsvr::log

#define NLOG(level, ...)                                                         \
  do {                                                                           \
    if (::netsvr::log::enabled(level)) ::netsvr::log::write(level, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(...) NLOG(::netsvr::log::Level::Debug, __VA_ARGS__)
#define LOG_INFO(...) NLOG(::netsvr::log::Level::Info, __VA_ARGS__)
#define LOG_WARN(...) NLOG(::netsvr::log::Level::Warn, __VA_ARGS__)
#define LOG_ERROR(...) NLOG(::netsvr::log::Level::Error, __VA_ARGS__)
