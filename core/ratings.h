// Rating data for matrix factorization, and its readers. Every reader returns StatusOr and
// reports bad input as "file:line: what is wrong"; gzip is read transparently.
//
// Formats:
//   triples         "user item rating [timestamp]" per line, separated by tabs, commas or
//                   spaces (MovieLens u.data, ratings.csv, Jester TSV). Ids are any tokens; a
//                   first line whose rating is not a number is a header and is skipped.
//   matrix-market   "%%MatrixMarket matrix coordinate real|integer general", a size line
//                   "rows cols entries", then "i j value" with 1-based indices.
// User and item ids are remapped densely (0..n-1) in order of first appearance; the IdMap keeps
// the mapping both ways so a saved model answers queries in the file's own ids.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

class IdMap {
 public:
  // Index of `id`, added at the end if new.
  std::uint32_t Add(std::string_view id);
  std::optional<std::uint32_t> Find(std::string_view id) const;
  const std::string& Name(std::uint32_t index) const { return names_[index]; }
  std::size_t size() const { return names_.size(); }

 private:
  // Ids written as decimal numbers below kDirect (no sign, no leading zero) are found by their
  // value in `direct_` (index + 1, 0 for none; grown to the largest such id seen, at most
  // 4 MiB); every other id through the hash table, looked up without a copy.
  static constexpr std::uint32_t kDirect = 1u << 20;
  static std::optional<std::uint32_t> Number(std::string_view id);
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  std::unordered_map<std::string, std::uint32_t, Hash, std::equal_to<>> index_;
  std::vector<std::uint32_t> direct_;
  std::vector<std::string> names_;
};

// 12 bytes: the rating in single precision, as LIBMF keeps it (star ratings and two-decimal
// scores are read exactly or to a relative 6e-8).
struct Rating {
  std::uint32_t user = 0;
  std::uint32_t item = 0;
  float value = 0;
};

// What every rating read contributes, kept or not (RatingsOptions::keep): all that a reader
// which keeps only a share of the ratings still needs to know of the whole set.
struct RatingsCensus {
  std::size_t count = 0;  // ratings read (with a known user and item, for frozen maps)
  double sum = 0, sum_squares = 0;
  std::vector<std::uint32_t> per_user, per_item;  // ratings of each user and item index
};

struct Ratings {
  std::vector<Rating> entries;  // the ratings kept
  RatingsCensus census;         // of every rating read; empty (count 0) for ratings built in
                                // code: then WholeCensus counts the entries
  std::shared_ptr<IdMap> users, items;
  std::string source;
  std::size_t skipped_unknown = 0;  // entries dropped because their user or item was unknown
  std::size_t num_users() const { return users ? users->size() : 0; }
  // Ratings in the whole set: the census's count, or the entries' for ratings built in code.
  std::size_t total() const { return census.count > 0 ? census.count : entries.size(); }
  std::size_t num_items() const { return items ? items->size() : 0; }
};

// The census of the whole set: `ratings.census`, or, where that is empty, one counted from the
// entries.
RatingsCensus WholeCensus(const Ratings& ratings);

enum class RatingsFormat { kAuto, kTriples, kMatrixMarket };

struct RatingsOptions {
  RatingsFormat format = RatingsFormat::kAuto;  // kAuto: matrix-market if the first line says so
  // A test or query set read against a training set's maps: ids not in them are skipped and
  // counted in Ratings::skipped_unknown instead of being added. Null: new maps.
  std::shared_ptr<IdMap> users, items;
  // With maps given: add unknown ids to them (after the known ones) instead of skipping the
  // entry, e.g. to answer every line of a query (pass copies of a model's maps).
  bool add_unknown = false;
  // Keeps only the ratings for which keep(user index, item index) is true (every id is still
  // mapped and counted in the census); null: keeps every rating. Ids are numbered in order of
  // first appearance, so every reader of one file sees the same numbers.
  std::function<bool(std::uint32_t user, std::uint32_t item)> keep;
  // Drops the file's entry-th rating (from 0, in file order) before anything else: its ids are
  // not mapped, it is not counted in the census. Null: drops none. (Cross-validation folds:
  // which ratings a fold holds follows from their place in the file, in every process.)
  std::function<bool(std::uint64_t entry)> drop;
};

StatusOr<Ratings> ReadRatings(const std::string& path, const RatingsOptions& options = {});

}  // namespace tessera
