// Handing back what start-up touched and serving does not need (docs/PERFORMANCE.md, "Idle
// memory"): RSS counts every page of a shared library that a process has mapped, once per
// process, and start-up maps a lot of them that are never read again.
#pragma once

#include <cstddef>

namespace netsvr {

enum class StartupRelease {
  // The dynamic linker's tables (the first, read-only segment of each library: ELF and program
  // headers, .dynsym, .dynstr, .gnu.hash, .rela.dyn), read once to relocate the process.
  LinkerTables,
  // Every read-only file page (code, constants and the tables): for a process that from now
  // on mostly waits (the master).
  AllFilePages,
};

// malloc_trim(0), then drops the process's page-table entries for the file pages chosen (only
// mappings that are private, not writable and hold no anonymous (copied) page: nothing is
// lost, a page read again comes back from the page cache, a minor fault). Returns the bytes
// of RSS given back; 0 where /proc/self/smaps cannot be read.
size_t releaseStartupMemory(StartupRelease what);

}  // namespace netsvr
