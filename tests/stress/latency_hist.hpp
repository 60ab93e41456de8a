// Log-linear latency histogram in microseconds: exact below 128 us, then 64 buckets per power
// of two (relative error < 1.6 %). Buckets are plain counters so that a histogram can live in
// shared memory (one writer) and be summed by another process.
#pragma once

#include <bit>
#include <cstdint>
#include <vector>

namespace stress {

inline constexpr int kHistBuckets = 128 + 50 * 64;  // values up to 2^56 us

inline int histBucket(uint64_t us) {
  if (us < 128) return int(us);
  int msb = 63 - std::countl_zero(us);  // >= 7
  int shift = msb - 6;                  // (us >> shift) in [64, 127]
  int b = 128 + (shift - 1) * 64 + int((us >> shift) - 64);
  return b < kHistBuckets ? b : kHistBuckets - 1;
}

// Middle of a bucket's value range.
inline double histValue(int b) {
  if (b < 128) return double(b);
  int shift = (b - 128) / 64 + 1;
  uint64_t low = uint64_t(64 + (b - 128) % 64) << shift;
  return double(low) + double(uint64_t(1) << shift) / 2.0;
}

struct LatencySummary {
  uint64_t count = 0;
  double meanUs = 0, p50Us = 0, p90Us = 0, p99Us = 0, p999Us = 0, maxUs = 0;
};

// counts: kHistBuckets entries. sumUs/maxUs: exact totals kept beside the buckets.
inline LatencySummary summarize(const std::vector<uint64_t>& counts, uint64_t sumUs,
                                uint64_t maxUs) {
  LatencySummary s;
  for (uint64_t c : counts) s.count += c;
  if (s.count == 0) return s;
  s.meanUs = double(sumUs) / double(s.count);
  s.maxUs = double(maxUs);
  auto at = [&](double q) {
    uint64_t rank = uint64_t(q * double(s.count - 1)) + 1;  // 1-based
    uint64_t seen = 0;
    for (int b = 0; b < kHistBuckets; ++b) {
      seen += counts[size_t(b)];
      if (seen >= rank) {
        double v = histValue(b);
        return v > s.maxUs ? s.maxUs : v;
      }
    }
    return s.maxUs;
  };
  s.p50Us = at(0.50);
  s.p90Us = at(0.90);
  s.p99Us = at(0.99);
  s.p999Us = at(0.999);
  return s;
}

}  // namespace stress
