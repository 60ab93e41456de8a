// parseGoDuration must agree with Go's time.ParseDuration (plus netsvr's digits-only = ns rule).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>

#include "common/config.hpp"

using namespace std::chrono_literals;
using netsvr::parseGoDuration;

namespace {

// Parsed nanoseconds; fails the test when the text is rejected.
int64_t ns(const std::string& text) {
  std::chrono::nanoseconds d{-42};
  INFO("duration: \"", text, "\"");
  REQUIRE(parseGoDuration(text, d));
  return d.count();
}

bool rejected(const std::string& text) {
  std::chrono::nanoseconds d{};
  return !parseGoDuration(text, d);
}

}  // namespace

TEST_CASE("duration: single units") {
  CHECK(ns("1ns") == 1);
  CHECK(ns("1us") == 1'000);
  CHECK(ns("1\xC2\xB5s") == 1'000);  // µs, U+00B5 micro sign
  CHECK(ns("1\xCE\xBCs") == 1'000);  // μs, U+03BC Greek mu
  CHECK(ns("500ms") == (500ms).count() * 1'000'000);
  CHECK(ns("120s") == 120'000'000'000);
  CHECK(ns("5m") == 300'000'000'000);
  CHECK(ns("2h") == 7'200'000'000'000);
}

TEST_CASE("duration: combinations, fractions and signs") {
  CHECK(ns("1m30s") == 90'000'000'000);
  CHECK(ns("1h2m3.5s") == 3'723'500'000'000);
  CHECK(ns("1.5h") == 5'400'000'000'000);
  CHECK(ns(".5s") == 500'000'000);
  CHECK(ns("1.s") == 1'000'000'000);  // Go accepts an empty fraction after digits
  CHECK(ns("1.0000000000000000000001s") == 1'000'000'000);  // excess precision is dropped
  CHECK(ns("0.1ns") == 0);
  CHECK(ns("3s3s") == 6'000'000'000);  // Go allows repeated units
  CHECK(ns("-1s") == -1'000'000'000);
  CHECK(ns("+1s") == 1'000'000'000);
  CHECK(ns("-1.5h") == -5'400'000'000'000);
}

TEST_CASE("duration: zero and bare digits") {
  CHECK(ns("0") == 0);
  CHECK(ns("-0") == 0);
  CHECK(ns("+0") == 0);
  CHECK(ns("0s") == 0);
  CHECK(ns("10") == 10);  // netsvr config rule: digits only = nanoseconds
  CHECK(ns("00") == 0);
  CHECK(ns("9223372036854775807") == std::numeric_limits<int64_t>::max());
}

TEST_CASE("duration: limits") {
  CHECK(ns("9223372036854775807ns") == std::numeric_limits<int64_t>::max());
  CHECK(ns("-9223372036854775808ns") == std::numeric_limits<int64_t>::min());
  CHECK(ns("2562047h") == 2562047LL * 3'600'000'000'000);
  CHECK(rejected("9223372036854775808ns"));
  CHECK(rejected("2562048h"));
  CHECK(rejected("9223372036854775808"));    // digits only, past int64
  CHECK(rejected("100000000000000000000"));  // digits overflow
  CHECK(rejected("2562047h48m"));            // sum overflows
}

TEST_CASE("duration: invalid syntax") {
  CHECK(rejected(""));
  CHECK(rejected("-"));
  CHECK(rejected("+"));
  CHECK(rejected("1x"));   // unknown unit
  CHECK(rejected("1.5"));  // missing unit
  CHECK(rejected("-10"));  // missing unit: only unsigned digits mean nanoseconds
  CHECK(rejected("s"));
  CHECK(rejected(".s"));  // no digits
  CHECK(rejected("."));
  CHECK(rejected("1 s"));  // unit " s"
  CHECK(rejected(" 1s"));
  CHECK(rejected("1s "));
  CHECK(rejected("1S"));  // units are case-sensitive
  CHECK(rejected("1e3s"));
  CHECK(rejected("1h-1m"));
  CHECK(rejected("1sec"));
}

TEST_CASE("duration: success overwrites the output") {
  std::chrono::nanoseconds d{123};
  REQUIRE(parseGoDuration("2s", d));
  CHECK(d == 2s);
}
