// The control commands of the CLI: check, status, stop, reload. They act on the instance that
// a config file names through its pid file, and `status` and `stop` keep working while that file
// is broken (a refused reload leaves it so), since that is when an operator needs them most.
#pragma once

#include <string>

namespace netsvr {

int cmdCheck(const std::string& configPath);
int cmdStatus(const std::string& configPath, bool json = false);  // json: as /status.json
int cmdStop(const std::string& configPath);
int cmdReload(const std::string& configPath);

}  // namespace netsvr
