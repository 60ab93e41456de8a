#include <doctest/doctest.h>

#include "common/meter.hpp"
#include "common/token_bucket.hpp"

using namespace netsvr;

constexpr int64_t kSecond = 1000000000;

TEST_CASE("token bucket starts full, refills at the rate and never beyond the burst") {
  TokenBucket b;
  b.init(3, 0);
  CHECK(b.take(3, 0));
  CHECK(b.take(3, 0));
  CHECK(b.take(3, 0));
  CHECK_FALSE(b.take(3, 0));
  CHECK_FALSE(b.take(3, kSecond / 6));  // half a token
  CHECK(b.take(3, kSecond / 2));        // 1.5 tokens by then
  CHECK(b.take(3, 100 * kSecond));      // long pause: refilled to the burst only
  CHECK(b.take(3, 100 * kSecond));
  CHECK(b.take(3, 100 * kSecond));
  CHECK_FALSE(b.take(3, 100 * kSecond));
}

TEST_CASE("a bucket with rate <= 0 always allows; a raised rate refills faster, burst unchanged") {
  TokenBucket off;
  off.init(0, 0);
  for (int i = 0; i < 10; ++i) CHECK(off.take(0, 0));
  TokenBucket b;
  b.init(2, 0);
  CHECK(b.take(2, 0));
  CHECK(b.take(2, 0));
  CHECK_FALSE(b.take(10, 0));
  CHECK(b.take(10, kSecond / 10));  // 10/s after the Limit command
  CHECK(b.burst == 2);
}

TEST_CASE("fixed window: zero window first, then max per window, new window only after > size") {
  FixedWindow w;
  w.init(2);
  CHECK(w.allow(100, 1, 1));  // zero window
  CHECK(w.allow(100, 1, 1));
  CHECK(w.allow(100, 1, 1));  // window starts at 100
  CHECK_FALSE(w.allow(100, 1, 1));
  CHECK_FALSE(w.allow(101, 1, 1));  // 101 - 100 = 1, not > 1
  CHECK(w.allow(102, 1, 1));
  CHECK_FALSE(w.allow(102, 1, 1));
}

TEST_CASE("meter: first tick is the instantaneous rate, then an exponential average") {
  MeterRates m;
  m.tick(50);  // 50 events in 5 s
  CHECK(m.m1.rate == doctest::Approx(10.0));
  CHECK(m.m15.rate == doctest::Approx(10.0));
  m.tick(50);  // no new events
  double alpha1 = 1 - std::exp(-5.0 / 60.0);
  CHECK(m.m1.rate == doctest::Approx(10.0 * (1 - alpha1)));
  CHECK(m.m5.rate > m.m1.rate);  // the 5-minute average decays more slowly
}
