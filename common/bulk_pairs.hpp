// The pairing rules of the bulk commands (PROTOCOL.md §4.4: SingleCastBulk,
// SingleCastBulkByCustomerId, TopicPublishBulk). Pure code.
#pragma once

namespace netsvr {

// Rule 1: one target and several data items: every item, in order, to that target; stops at
// the first send that fails. Rule 2: as many targets as items (> 0): item i to target i.
// Otherwise nothing. Empty items are skipped in every rule (DECISIONS 7).
// send(target, item) returns false when the send failed.
template <class Targets, class Items, class Send>
void forEachBulkPair(const Targets& targets, const Items& items, Send&& send) {
  if (targets.size() == 1 && items.size() > 1) {
    for (const auto& item : items)
      if (!item.empty() && !send(targets[0], item)) break;
  } else if (targets.size() > 0 && targets.size() == items.size()) {
    for (int i = 0; i < int(targets.size()); ++i)
      if (!items[i].empty()) send(targets[i], items[i]);
  }
}

}  // namespace netsvr
