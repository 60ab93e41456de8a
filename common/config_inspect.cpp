// A config file as `netsvr status` and `netsvr stop` see it (issue 10, item 6): after a refused
// reload the file on disk is broken, and the operator still has to see and stop what runs. The
// running instance is found through its pid file, so PidFile is read however broken the rest is.
#include <toml++/toml.h>

#include <filesystem>
#include <sstream>
#include <string_view>

#include "common/config.hpp"
#include "common/fnv1a.hpp"

namespace netsvr {
namespace {

constexpr const char* kDefaultPidFile = "netsvr.pid";

std::string_view trimmed(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// The string value of the root key PidFile in `root`, "" when absent or not a string.
std::string pidFileKey(const toml::table& root) {
  const toml::node* n = root.get("PidFile");
  const auto* s = n ? n->as_string() : nullptr;
  return s ? s->get() : "";
}

}  // namespace

std::string lenientPidFile(const std::string& tomlText, const std::string& baseDir) {
  std::string value;
  try {
    value = pidFileKey(toml::parse(std::string_view(tomlText)));
  } catch (const toml::parse_error&) {
    // A syntax error elsewhere must not hide the pid file: parse the root table's own
    // `PidFile = ...` line on its own (the root table ends at the first [table] header).
    std::istringstream lines(tomlText);
    for (std::string line; std::getline(lines, line);) {
      const std::string_view t = trimmed(line);
      if (!t.empty() && t.front() == '[') break;
      if (t.substr(0, 7) != "PidFile") continue;
      try {
        value = pidFileKey(toml::parse(t));
      } catch (const toml::parse_error&) {
        continue;
      }
      if (!value.empty()) break;
    }
  }
  return resolvePath(baseDir, value.empty() ? kDefaultPidFile : value);
}

ConfigFileView inspectConfig(const std::string& path) {
  ConfigFileView view;
  view.path = absoluteConfigPath(path);
  const std::string baseDir = std::filesystem::path(view.path).parent_path().string();
  std::string text;
  try {
    text = readConfigFile(view.path);
    view.contentHash = fnv1a64(text);
    view.config = parseConfig(text, view.path, baseDir);
    view.config.contentHash = view.contentHash;
    view.pidFile = view.config.pidFile;
  } catch (const ConfigError& e) {
    view.error = e.what();
    view.pidFile = lenientPidFile(text, baseDir);
  }
  return view;
}

}  // namespace netsvr
