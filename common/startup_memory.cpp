#include "common/startup_memory.hpp"

#include <malloc.h>
#include <sys/mman.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace netsvr {

namespace {

struct Mapping {
  uintptr_t begin = 0, end = 0;
  char perms[5] = {};
  uint64_t offset = 0;
  bool file = false;
  long rssKib = 0, anonKib = -1;
};

bool chosen(const Mapping& m, StartupRelease what) {
  // r--p or r-xp: never written, so the pages are the file's and DONTNEED only unmaps them
  if (!m.file || m.anonKib != 0 || m.rssKib == 0) return false;
  if (m.perms[0] != 'r' || m.perms[1] != '-' || m.perms[3] != 'p') return false;
  if (what == StartupRelease::AllFilePages) return true;
  return m.perms[2] == '-' && m.offset == 0;
}

}  // namespace

size_t releaseStartupMemory(StartupRelease what) {
  malloc_trim(0);
  FILE* f = fopen("/proc/self/smaps", "re");
  if (!f) return 0;
  std::vector<Mapping> maps;
  char line[4096];
  while (fgets(line, sizeof line, f)) {
    Mapping m;
    unsigned long ino = 0;
    char dev[32];
    int path = 0;
    if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %4s %" SCNx64 " %31s %lu %n", &m.begin, &m.end,
               m.perms, &m.offset, dev, &ino, &path) >= 6 &&
        strchr(line, '-') < strchr(line, ' ')) {
      m.file = ino != 0 && path > 0 && line[path] == '/';
      maps.push_back(m);
    } else if (!maps.empty() && strncmp(line, "Rss:", 4) == 0) {
      maps.back().rssKib = strtol(line + 4, nullptr, 10);
    } else if (!maps.empty() && strncmp(line, "Anonymous:", 10) == 0) {
      maps.back().anonKib = strtol(line + 10, nullptr, 10);
    }
  }
  fclose(f);
  size_t released = 0;
  for (const Mapping& m : maps) {
    if (!chosen(m, what)) continue;
    if (madvise(reinterpret_cast<void*>(m.begin), m.end - m.begin, MADV_DONTNEED) == 0)
      released += size_t(m.rssKib) * 1024;
  }
  return released;
}

}  // namespace netsvr
