// `netsvr check` (like `nginx -t`): everything about a config file that can be known without
// starting the gateway. `start`, `reload` (before it signals the master) and the master's own
// reload run the same check, so a file that passes here is refused later only for what depends
// on the running state: ports already in use, addresses that a reload cannot change.
#pragma once

#include <string>
#include <vector>

#include "common/config.hpp"

namespace netsvr {

// Loads `path` and checks every key (loadConfig), the business addresses (§12.3, normalised in
// place), that the client and Prometheus addresses resolve, that the TLS certificate and key
// load and belong together, and that the callback URLs are http(s) URLs. Throws ConfigError
// naming the key. What is not wrong but worth telling goes to `notes` when given: a directory of
// PidFile or LogFile that does not exist yet, keys that are ignored.
Config checkConfig(const std::string& path, std::vector<std::string>* notes = nullptr);

}  // namespace netsvr
