// KeyIndex: key -> dense row number for sparse parameter-server tables and caches.
//
// Open addressing with linear probing and Fibonacci hashing over one flat array; rows are
// never removed, so there are no tombstones. std::unordered_map allocates a node per key and
// chases a pointer per lookup, which made keyed pushes to sparse tables 3x slower.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "tessera/core/keys.h"

namespace tessera {

class KeyIndex {
 public:
  static constexpr std::size_t kAbsent = ~std::size_t{0};

  std::size_t size() const { return size_; }

  // Row of `key`, or kAbsent.
  std::size_t Find(Key key) const {
    if (slots_.empty()) return kAbsent;
    for (std::size_t i = Hash(key);; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.row == kAbsent) return kAbsent;
      if (s.key == key) return s.row;
    }
  }

  // Row of `key`; an absent key becomes row size() and `added` is set.
  std::size_t Insert(Key key, bool& added) {
    if ((size_ + 1) * 4 > slots_.size() * 3) Grow();
    for (std::size_t i = Hash(key);; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.row == kAbsent) {
        s = {key, size_++};
        added = true;
        return s.row;
      }
      if (s.key == key) {
        added = false;
        return s.row;
      }
    }
  }

  // Calls f(key, row) for every key, in no particular order.
  template <typename F>
  void ForEach(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.row != kAbsent) f(s.key, s.row);
    }
  }

 private:
  struct Slot {
    Key key = 0;
    std::size_t row = kAbsent;
  };

  std::size_t Hash(Key key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ULL) >> shift_);
  }

  void Grow() {
    std::vector<Slot> old = std::move(slots_);
    const std::size_t capacity = old.empty() ? 16 : old.size() * 2;
    slots_.assign(capacity, Slot{});
    mask_ = capacity - 1;
    shift_ = 64;
    for (std::size_t c = capacity; c > 1; c >>= 1) --shift_;
    for (const Slot& s : old) {
      if (s.row == kAbsent) continue;
      std::size_t i = Hash(s.key);
      while (slots_[i].row != kAbsent) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  int shift_ = 64;
  std::size_t size_ = 0;
};

}  // namespace tessera
