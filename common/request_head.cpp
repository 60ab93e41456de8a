#include "common/request_head.hpp"

#include <cctype>

namespace netsvr::http {
namespace {

bool equalsFold(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(uint8_t(a[i])) != std::tolower(uint8_t(b[i]))) return false;
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// RFC 7230 tchar.
bool isToken(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (std::isalnum(uint8_t(c))) continue;
    switch (c) {
      case '!':
      case '#':
      case '$':
      case '%':
      case '&':
      case '\'':
      case '*':
      case '+':
      case '-':
      case '.':
      case '^':
      case '_':
      case '`':
      case '|':
      case '~':
        continue;
      default:
        return false;
    }
  }
  return true;
}

struct Header {
  std::string_view name;
  std::string_view value;
};

struct Request {
  std::string_view method;
  std::string_view target;
  std::vector<Header> headers;

  // The first header of that name; `found` tells an empty value from an absent header.
  std::string_view first(std::string_view name, bool* found = nullptr) const {
    for (const Header& h : headers)
      if (equalsFold(h.name, name)) {
        if (found) *found = true;
        return h.value;
      }
    if (found) *found = false;
    return {};
  }
};

bool parseRequest(std::string_view head, Request& req) {
  size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return false;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != std::string_view::npos)
    return false;
  req.method = line.substr(0, sp1);
  req.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!isToken(req.method) || req.target.empty()) return false;
  // HTTP/<digit>.<digit>, as Go's http.ParseHTTPVersion for one-digit versions.
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" ||
      !std::isdigit(uint8_t(version[5])) || version[6] != '.' || !std::isdigit(uint8_t(version[7])))
    return false;
  size_t at = eol + 2;
  while (at < head.size()) {
    size_t end = head.find("\r\n", at);
    if (end == std::string_view::npos) return false;
    std::string_view field = head.substr(at, end - at);
    at = end + 2;
    if (field.empty()) break;  // the blank line that ends the head
    size_t colon = field.find(':');
    if (colon == std::string_view::npos) return false;
    std::string_view name = field.substr(0, colon);
    if (!isToken(name)) return false;  // also refuses obsolete line folding (leading space)
    req.headers.push_back({name, trim(field.substr(colon + 1))});
  }
  return true;
}

// Connection: a comma-separated token list that contains "upgrade" (DECISIONS.md 2), in any of
// the request's Connection headers.
bool connectionUpgrades(const Request& req) {
  for (const Header& h : req.headers) {
    if (!equalsFold(h.name, "Connection")) continue;
    std::string_view list = h.value;
    while (!list.empty()) {
      size_t comma = list.find(',');
      std::string_view item = trim(list.substr(0, comma));
      if (equalsFold(item, "upgrade")) return true;
      list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
  }
  return false;
}

// Sec-WebSocket-Extensions (RFC 6455 §9.1): extension *( ";" param [ "=" value ] ), comma
// separated; a value is a token or a quoted string. Empty list elements are allowed (RFC 7230).
bool extensionsParse(std::string_view value) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view item = trim(value.substr(0, comma));
    if (!item.empty()) {
      bool firstPart = true;
      while (true) {
        size_t semi = item.find(';');
        std::string_view part = trim(item.substr(0, semi));
        if (firstPart) {
          if (!isToken(part)) return false;
        } else {
          size_t eq = part.find('=');
          if (!isToken(trim(part.substr(0, eq)))) return false;
          if (eq != std::string_view::npos) {
            std::string_view v = trim(part.substr(eq + 1));
            bool quoted = v.size() >= 2 && v.front() == '"' && v.back() == '"';
            if (!quoted && !isToken(v)) return false;
          }
        }
        firstPart = false;
        if (semi == std::string_view::npos) break;
        item = item.substr(semi + 1);
      }
    }
    if (comma == std::string_view::npos) return true;
    value = value.substr(comma + 1);
  }
}

}  // namespace

Verdict refusal(int status, std::string_view reason, std::string_view body) {
  Verdict v;
  v.status = status;
  v.reason = reason;
  v.body = body.empty() ? reason : body;
  return v;
}

size_t headLength(std::string_view bytes) {
  size_t end = bytes.find("\r\n\r\n");
  return end == std::string_view::npos ? 0 : end + 4;
}

Verdict checkHandshake(std::string_view head, const HandshakeRules& rules) {
  Request req;
  if (!parseRequest(head, req)) return refusal(400, "Bad Request");
  if (req.method != "GET") return refusal(405, "Method Not Allowed");
  std::string_view upgrade = req.first("Upgrade");
  if (upgrade.empty()) return refusal(200, "OK", "Hello netsvr");
  size_t question = req.target.find('?');
  std::string_view path = req.target.substr(0, question);
  if (!rules.autobahn && path != rules.handlePattern) return refusal(404, "Not Found");
  if (!rules.autobahn && rules.allowOrigin && !rules.allowOrigin->empty()) {
    std::string_view origin = req.first("Origin");
    bool allowed = false;
    for (const std::string& o : *rules.allowOrigin)
      if (!origin.empty() && origin.find(o) != std::string_view::npos) allowed = true;
    if (!allowed) return refusal(403, "Forbidden");
  }
  if (!equalsFold(upgrade, "websocket"))
    return refusal(400, "Bad Request", "invalid Upgrade header");
  if (!connectionUpgrades(req)) return refusal(400, "Bad Request", "invalid Connection header");
  if (req.first("Sec-WebSocket-Version") != "13") return refusal(426, "Upgrade Required");
  bool offered = false;
  std::string_view extensions = req.first("Sec-WebSocket-Extensions", &offered);
  if (offered && !extensionsParse(extensions))
    return refusal(400, "Bad Request", "invalid Sec-WebSocket-Extensions header");
  if (req.first("Sec-WebSocket-Key").empty())
    return refusal(400, "Bad Request", "missing Sec-WebSocket-Key");
  Verdict ok;
  ok.rawQuery =
      question == std::string_view::npos ? std::string_view() : req.target.substr(question + 1);
  ok.xForwardedFor = req.first("X-Forwarded-For");
  ok.xRealIp = req.first("X-Real-IP");
  ok.wsKey = req.first("Sec-WebSocket-Key");
  ok.offersExtensions = offered;
  return ok;
}

std::string refusalResponse(const Verdict& v) {
  std::string out = "HTTP/1.1 " + std::to_string(v.status) + " ";
  out.append(v.reason);
  out += "\r\nConnection: close\r\n";
  if (v.status == 426) out += "Sec-WebSocket-Version: 13\r\n";
  out += "\r\n";
  out.append(v.body);
  return out;
}

std::string upgradeResponse(std::string_view acceptValue) {
  std::string out =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: ";
  out.append(acceptValue);
  out += "\r\n\r\n";
  return out;
}

}  // namespace netsvr::http
