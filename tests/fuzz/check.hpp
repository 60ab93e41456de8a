// FUZZ_CHECK: an invariant of a fuzz target; a violation aborts, which libFuzzer reports as a
// crash with the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>

#define FUZZ_CHECK(c)                                                        \
  do {                                                                       \
    if (!(c)) {                                                              \
      fprintf(stderr, "check failed: %s (%s:%d)\n", #c, __FILE__, __LINE__); \
      abort();                                                               \
    }                                                                        \
  } while (0)
