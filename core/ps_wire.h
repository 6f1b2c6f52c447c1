// Managed communication for the parameter server (Li et al., "Scaling Distributed Machine
// Learning with the Parameter Server", OSDI 2014, section 4): what a table's messages leave
// out or shrink on their way, chosen per table (TableSpec::communication).
//
//   sparse  values travel as their nonzero entries and those entries' positions whenever that
//           is smaller (a sparse row delta of an LDA word-topic row, a Lasso coefficient vector
//           with few nonzeros); lossless.
//   keys    key-list caching: a worker's list of keys that its shard has seen from it before
//           travels as the list's 64-bit hash (a batch's keys repeat every epoch, and a push
//           follows the pull of the same keys); lossless. `keys:N` holds up to N keys of
//           lists per worker, shard and table on each side (default 2^19, 4 MiB); lists beyond
//           it are forgotten least recently used first, so a working set larger than N keys
//           never hits.
//   f32     values travel as 32-bit floats (rounded by the sender; integers up to 2^24 and
//           anything already a float pass exactly); lossy.
//   significant:θ
//           the significantly-modified filter: a worker sends a key's pushed change only once
//           the change it has accumulated (largest element) exceeds θ times the key's row as
//           the worker last read it (largest element); smaller changes stay with the worker,
//           summed into its later pushes of the key, and every held change goes before the
//           clock of each evaluation (PsClient::ReleaseHeld), so an evaluated or final model
//           misses none. Keys the worker has not read are always sent. Needs a model whose
//           workers cache their reads (not asp or hogwild); lossy between evaluations.
//   lz4, zstd
//           value compression: a message's values (and the positions of sparse ones, as
//           differences) are byte-shuffled, the k-th bytes of all of them together, and
//           compressed with LZ4 or Zstandard (level 1); lossless. Messages under 512 bytes of
//           values, and those that do not shrink, travel as they are.
//
// Whatever the features, a message's explicit keys that are one run of consecutive keys travel
// as that range (16 bytes instead of 8 a key), and replies to a pull never repeat its keys:
// the worker knows what it asked.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/core/message.h"
#include "tessera/core/status.h"

namespace tessera {

enum class Compression : std::uint8_t { kNone = 0, kLz4 = 1, kZstd = 2 };

struct Communication {
  bool sparse_values = true;
  bool key_lists = true;
  bool float_values = false;
  std::uint64_t key_cache_keys = kDefaultKeyCacheKeys;  // keys:N
  double significant = 0;                               // θ of significant:θ; 0: off
  Compression compression = Compression::kNone;         // lz4, zstd
  static constexpr std::uint64_t kDefaultKeyCacheKeys = std::uint64_t{1} << 19;
  // Bandwidth-managed consistency models (sspaggr:S): what a worker may send one table's shards
  // between clocks, per interval.
  std::uint64_t budget_bytes = 256 << 10;
  double interval_seconds = 0.005;
  // "none", or a comma-separated subset of "sparse", "keys" (or "keys:N"), "f32",
  // "significant:θ" and one of "lz4", "zstd".
  static StatusOr<Communication> Parse(std::string_view text);
  std::string ToString() const;
};

// Sender: shrinks `values` (in place) as `c` allows and says how in `p`.
void PackValues(const Communication& c, Eigen::VectorXd& values, PackedValues& p);
// Receiver: `values` back to `expected` plain doubles, or why the packing a peer sent does not
// fit (positions out of order or beyond `expected`, counts that disagree, compressed bytes that
// do not decompress to what the packing says).
Status UnpackValues(Eigen::VectorXd& values, PackedValues& p, std::size_t expected);

// Sender of values already sparse: `values` are the nonzero ones at ascending positions
// `p.nonzero` of `p.size` (p.sparse set); rounds them to floats and compresses them as `c`
// allows.
void PackSparseValues(const Communication& c, Eigen::VectorXd& values, PackedValues& p);
// Receiver that keeps values sparse: after it, `values` are the nonzero ones at ascending
// positions `p.nonzero` of `expected` (p.sparse set), whether the peer sent them sparse, dense
// or compressed; or why the packing does not fit.
Status UnpackSparseValues(Eigen::VectorXd& values, PackedValues& p, std::size_t expected);

// Sender: explicit keys that are one run of three or more consecutive keys, as that range.
void KeysAsRange(TableKeys& at);

// One direction of key-list caching: the lists one sender has sent one receiver for one table,
// kept alike on both sides. Both remember every list of at least kMinKeys keys they send or
// receive in full, and forget the least recently used ones beyond `capacity` keys, so the two
// copies stay equal as long as messages arrive in the order they were sent. When lists leave
// before they come back (kMissesBeforeRest times `capacity` keys remembered without a hit: a
// cycle of lists longer than the cache, which least-recently-used never hits), both sides stop
// hashing and remembering for the next kRestFactor times `capacity` keys of lists, then try
// again; they decide alike, from the same lists in the same order.
class KeyListCache {
 public:
  static constexpr std::size_t kMinKeys = 16;
  static constexpr std::uint64_t kMissesBeforeRest = 2, kRestFactor = 8;
  explicit KeyListCache(std::size_t capacity = Communication::kDefaultKeyCacheKeys)
      : capacity_(capacity) {}
  // Sender: a list the receiver holds leaves as its hash (`at.keys` emptied, `at.key_list` set).
  void Compress(TableKeys& at);
  // Receiver: the keys of `at.key_list` back in `at.keys`; an error for a hash it does not hold.
  Status Expand(TableKeys& at);
  std::size_t keys_held() const { return held_; }
  std::size_t bytes_held() const { return bytes_; }  // the held lists' coded size
  std::uint64_t rests() const { return rests_; }     // times it stopped caching for a while

 private:
  // A list as held: its length and the zigzag-coded differences between neighbouring keys,
  // seven bits a byte (a sorted list of nearby keys takes one or two bytes a key, not eight).
  struct Entry {
    std::size_t count = 0;
    std::vector<std::uint8_t> coded;
    std::list<std::uint64_t>::iterator recent;
  };
  void Remember(std::uint64_t hash, const std::vector<Key>& keys);
  void Touch(Entry& e);
  // True (and counts the list) while the cache rests; a missed list remembered.
  bool Resting(std::size_t keys);
  void Missed(std::uint64_t hash, const std::vector<Key>& keys);

  std::size_t capacity_;
  std::size_t held_ = 0;
  std::size_t bytes_ = 0;
  std::uint64_t since_hit_ = 0;  // keys of lists remembered since the last hit
  std::uint64_t resting_ = 0;    // keys of lists still to pass uncached
  std::uint64_t rests_ = 0;
  std::unordered_map<std::uint64_t, Entry> lists_;
  std::list<std::uint64_t> recent_;  // most recently used first
};

}  // namespace tessera
