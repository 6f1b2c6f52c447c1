// Parameter keys, key ranges and blocks: the units a scheduler hands out.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

namespace tessera {

using Key = std::uint64_t;

// Half-open range [begin, end) of keys.
struct KeyRange {
  Key begin = 0;
  Key end = 0;
  std::uint64_t size() const { return end - begin; }
  bool Contains(Key k) const { return k >= begin && k < end; }
  bool operator==(const KeyRange&) const = default;
};

// Splits [0, num_keys) into `parts` contiguous ranges whose sizes differ by at most one.
std::vector<KeyRange> SplitRange(std::uint64_t num_keys, int parts);

inline constexpr int kAllWorkers = -1;

// One unit of scheduled work: the keys to update, and which worker computes on it
// (kAllWorkers: every worker contributes a partial, e.g. row-partitioned Lasso).
struct Block {
  std::uint32_t id = 0;
  std::vector<Key> keys;
  int worker = kAllWorkers;
  // What the app's Push is asked to do with the block, for an app with more than one kind of
  // work (the Lasso: an update, or a gradient pass); the app's own numbering, 0 by default.
  std::uint32_t op = 0;
  // A carried block (ModelParallelApp::CarriedBlockHolders): the worker whose memory holds the
  // block's state before this round; the engine moves it to `worker` first. Set by the engine;
  // -1 for blocks without state.
  int holder = -1;
};

}  // namespace tessera
