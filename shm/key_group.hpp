// The connections indexed under one name of a routing table (a customerId, a topic), in shared
// memory. A customerId nearly always has one connection and most topics have a few, so up to
// kInline keys live in the index entry itself; a larger group moves to a hash set of its own and
// comes back in place when it shrinks. A hash set for every name cost ~290 B more per customerId
// (Boost 1.74 allocates at least 17 buckets): docs/PERFORMANCE.md, fourth round, "Where the
// memory per connection went under the heavy load".
#pragma once

#include <boost/interprocess/allocators/allocator.hpp>
#include <boost/interprocess/managed_shared_memory.hpp>
#include <boost/interprocess/offset_ptr.hpp>
#include <boost/unordered_set.hpp>
#include <cstddef>
#include <cstdint>
#include <iterator>

namespace netsvr::shm {

namespace bip = boost::interprocess;
using Segment = bip::managed_shared_memory;
using SegmentManager = Segment::segment_manager;
template <class T>
using Alloc = bip::allocator<T, SegmentManager>;

struct KeyHash {
  size_t operator()(uint64_t k) const { return size_t(k * 0x9E3779B97F4A7C15ULL); }
};
using KeySet = boost::unordered_set<uint64_t, KeyHash, std::equal_to<uint64_t>, Alloc<uint64_t>>;

class KeyGroup {
 public:
  static constexpr uint32_t kInline = 3;

  KeyGroup() = default;
  KeyGroup(KeyGroup&& other) noexcept : count_(other.count_), big_(other.big_) {
    for (uint32_t i = 0; i < kInline; ++i) inline_[i] = other.inline_[i];
    other.big_ = nullptr;
    other.count_ = 0;
  }
  KeyGroup(const KeyGroup&) = delete;
  KeyGroup& operator=(const KeyGroup&) = delete;
  KeyGroup& operator=(KeyGroup&&) = delete;
  ~KeyGroup() { dropBig(); }

  size_t size() const { return big_ ? big_->size() : count_; }
  bool empty() const { return size() == 0; }
  bool contains(uint64_t key) const {
    if (big_) return big_->count(key) != 0;
    for (uint32_t i = 0; i < count_; ++i)
      if (inline_[i] == key) return true;
    return false;
  }

  // Adds `key` (present already: nothing). Throws bip::bad_alloc with the group unchanged.
  void insert(uint64_t key, SegmentManager* segment) {
    if (big_) {
      big_->insert(key);
      return;
    }
    if (contains(key)) return;
    if (count_ < kInline) {
      inline_[count_++] = key;
      return;
    }
    KeySet* set = segment->construct<KeySet>(bip::anonymous_instance)(
        2 * kInline + 2, KeyHash(), std::equal_to<uint64_t>(), Alloc<uint64_t>(segment));
    try {
      set->insert(inline_, inline_ + count_);
      set->insert(key);
    } catch (...) {
      segment->destroy_ptr(set);
      throw;
    }
    big_ = set;
  }

  // Removes `key` if present. Allocates nothing (a refused write's undo relies on it).
  void erase(uint64_t key) {
    if (!big_) {
      for (uint32_t i = 0; i < count_; ++i) {
        if (inline_[i] != key) continue;
        inline_[i] = inline_[--count_];
        return;
      }
      return;
    }
    big_->erase(key);
    if (big_->size() >= kInline) return;  // back in place only below kInline: no flapping
    count_ = 0;
    for (uint64_t k : *big_) inline_[count_++] = k;
    dropBig();
  }

  class const_iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = uint64_t;
    using difference_type = std::ptrdiff_t;
    using pointer = const uint64_t*;
    using reference = const uint64_t&;

    const_iterator() = default;
    reference operator*() const { return big_ ? *it_ : *p_; }
    const_iterator& operator++() {
      if (big_)
        ++it_;
      else
        ++p_;
      return *this;
    }
    const_iterator operator++(int) {
      const_iterator old = *this;
      ++*this;
      return old;
    }
    bool operator==(const const_iterator& o) const { return big_ ? it_ == o.it_ : p_ == o.p_; }

   private:
    friend class KeyGroup;
    explicit const_iterator(const uint64_t* p) : p_(p) {}
    explicit const_iterator(KeySet::const_iterator it) : it_(it), big_(true) {}
    const uint64_t* p_ = nullptr;
    KeySet::const_iterator it_;
    bool big_ = false;
  };

  const_iterator begin() const {
    return big_ ? const_iterator(KeySet::const_iterator(big_->begin())) : const_iterator(inline_);
  }
  const_iterator end() const {
    return big_ ? const_iterator(KeySet::const_iterator(big_->end()))
                : const_iterator(inline_ + count_);
  }

 private:
  void dropBig() {
    if (!big_) return;
    KeySet* set = big_.get();
    big_ = nullptr;
    set->get_allocator().get_segment_manager()->destroy_ptr(set);
  }

  uint32_t count_ = 0;  // inline keys; unused while big_ is set
  uint64_t inline_[kInline] = {};
  bip::offset_ptr<KeySet> big_;
};

static_assert(sizeof(KeyGroup) == 40, "an index entry's keys stay in one cache line");

}  // namespace netsvr::shm
