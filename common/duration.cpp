// Go time.ParseDuration, reproduced step by step (Go 1.22 src/time/format.go) so that a duration
// written for the Go gateway means exactly the same number of nanoseconds here.
//
// Grammar: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ with units ns, us, µs (U+00B5), μs (U+03BC), ms, s,
// m, h; "0" alone (optionally signed) is zero. The one addition is netsvr's config-loader rule:
// a string of only digits is a count of nanoseconds.
#include <cstdint>
#include <string_view>

#include "common/config.hpp"

namespace netsvr {
namespace {

constexpr uint64_t kLimit = uint64_t{1} << 63;  // magnitude of INT64_MIN, Go's overflow bound

// Go leadingInt: consumes [0-9]*; false on overflow past 1<<63.
bool leadingInt(std::string_view& s, uint64_t& x) {
  x = 0;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') break;
    if (x > kLimit / 10) return false;
    x = x * 10 + static_cast<uint64_t>(c - '0');
    if (x > kLimit) return false;
  }
  s.remove_prefix(i);
  return true;
}

// Go leadingFraction: consumes [0-9]*; stops accumulating precision instead of failing.
void leadingFraction(std::string_view& s, uint64_t& x, double& scale) {
  x = 0;
  scale = 1;
  bool overflow = false;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    const char c = s[i];
    if (c < '0' || c > '9') break;
    if (overflow) continue;
    if (x > (kLimit - 1) / 10) {
      overflow = true;
      continue;
    }
    const uint64_t y = x * 10 + static_cast<uint64_t>(c - '0');
    if (y > kLimit) {
      overflow = true;
      continue;
    }
    x = y;
    scale *= 10;
  }
  s.remove_prefix(i);
}

// Nanoseconds per unit; 0 for an unknown unit.
uint64_t unitNanos(std::string_view u) {
  if (u == "ns") return 1;
  if (u == "us" || u == "\xC2\xB5s" /* µs U+00B5 */ || u == "\xCE\xBCs" /* μs U+03BC */)
    return 1'000;
  if (u == "ms") return 1'000'000;
  if (u == "s") return 1'000'000'000;
  if (u == "m") return 60'000'000'000;
  if (u == "h") return 3'600'000'000'000;
  return 0;
}

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// Exactly time.ParseDuration: false where Go returns an error.
bool parseGo(std::string_view s, int64_t& out) {
  uint64_t d = 0;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") {
    out = 0;
    return true;
  }
  if (s.empty()) return false;
  while (!s.empty()) {
    // The next character must be [0-9.].
    if (!(s[0] == '.' || isDigit(s[0]))) return false;
    uint64_t v = 0;
    const size_t before = s.size();
    if (!leadingInt(s, v)) return false;
    const bool pre = before != s.size();  // digits before the period

    uint64_t f = 0;
    double scale = 1;
    bool post = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      const size_t beforeFrac = s.size();
      leadingFraction(s, f, scale);
      post = beforeFrac != s.size();
    }
    if (!pre && !post) return false;  // no digits, e.g. ".s"

    // The unit is everything up to the next digit or period.
    size_t i = 0;
    while (i < s.size() && s[i] != '.' && !isDigit(s[i])) ++i;
    if (i == 0) return false;  // missing unit
    const uint64_t unit = unitNanos(s.substr(0, i));
    s.remove_prefix(i);
    if (unit == 0) return false;  // unknown unit
    if (v > kLimit / unit) return false;
    v *= unit;
    if (f > 0) {
      // Go uses float64 here: it is nanosecond-exact for fractions of hours.
      v += static_cast<uint64_t>(static_cast<double>(f) * (static_cast<double>(unit) / scale));
      if (v > kLimit) return false;
    }
    d += v;
    if (d > kLimit) return false;
  }
  if (neg) {
    // d <= 1<<63 here, so -d fits (d == 1<<63 is INT64_MIN).
    out = d == kLimit ? INT64_MIN : -static_cast<int64_t>(d);
    return true;
  }
  if (d > kLimit - 1) return false;
  out = static_cast<int64_t>(d);
  return true;
}

}  // namespace

bool parseGoDuration(const std::string& text, std::chrono::nanoseconds& out) {
  std::string_view s = text;
  // netsvr's config loader: only digits = nanoseconds (Go ParseDuration would say "missing
  // unit"). Overflow of int64 is an error.
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos) {
    uint64_t v = 0;
    if (!leadingInt(s, v) || v > kLimit - 1) return false;
    out = std::chrono::nanoseconds(static_cast<int64_t>(v));
    return true;
  }
  int64_t ns = 0;
  if (!parseGo(s, ns)) return false;
  out = std::chrono::nanoseconds(ns);
  return true;
}

}  // namespace netsvr
