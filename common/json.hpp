// The few pieces of JSON output the gateway writes (/status.json, `netsvr status --json`).
// Pure code; output only: nothing in the gateway parses JSON.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

namespace netsvr::json {

// `text` as a JSON string literal, quotes included. Bytes that are not valid UTF-8 are passed
// through: the inputs (config text, state names) are the operator's own.
inline std::string quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (char ch : text) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

// A finite double with enough digits for a rate; JSON has no NaN or infinity.
inline std::string number(double value) {
  if (value != value || value > 1e300 || value < -1e300) return "0";
  char buf[32];
  snprintf(buf, sizeof buf, "%.3f", value);
  return buf;
}

}  // namespace netsvr::json
