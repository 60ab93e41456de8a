// After a worker dies, its clients are gone with it; the business must still learn that they
// closed (DESIGN.md §3 rule 3). A short-lived child of the master reads the dead worker's table
// and hands one ConnClose per connection to a live worker, which sends them to the business.
// Reading a table that may have been left half-written happens in that child, so a bad read can
// only kill the child, never the master.
#pragma once

#include <string>

namespace netsvr {

// Runs in the forked child; returns its exit status.
int announceClosedConnections(const std::string& instanceKey, int deadSerial,
                              const std::string& uniqIdPrefix);

}  // namespace netsvr
