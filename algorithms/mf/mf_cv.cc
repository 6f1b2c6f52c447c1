#include "tessera/algorithms/mf/mf_cv.h"

#include <cmath>

#include "tessera/core/metrics.h"

namespace tessera {

int MfFoldOf(std::uint64_t entry, int folds, std::uint64_t seed) {
  std::uint64_t z = entry + seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;  // SplitMix64
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<int>(z % static_cast<std::uint64_t>(folds));
}

StatusOr<MfCvResult> CrossValidateMf(
    const std::string& path, const MfOptions& options, int folds, std::uint64_t seed,
    const std::function<void(int fold, const MfFoldResult&)>& on_fold) {
  if (folds < 2 || folds > 1000) {
    return InvalidArgument("--cv must be in [2, 1000] folds, got " + std::to_string(folds));
  }
  MfOptions o = options;
  o.checkpoint_dir.clear();
  o.resume = false;
  o.engine.trace_path.clear();
  MfCvResult result;
  double pooled_se = 0;
  std::size_t pooled_n = 0;
  for (int k = 0; k < folds; ++k) {
    Stopwatch clock;
    RatingsOptions train_options;
    train_options.keep = MfRatingsToKeep(o);
    train_options.drop = [&](std::uint64_t e) { return MfFoldOf(e, folds, seed) == k; };
    TESSERA_ASSIGN_OR_RETURN(Ratings train, ReadRatings(path, train_options));
    RatingsOptions test_options;
    test_options.keep = train_options.keep;
    test_options.users = train.users;
    test_options.items = train.items;
    test_options.drop = [&](std::uint64_t e) { return MfFoldOf(e, folds, seed) != k; };
    auto test = ReadRatings(path, test_options);
    if (!test.ok()) {
      return InvalidArgument("fold " + std::to_string(k + 1) + " of " + std::to_string(folds) +
                             ": " + test.status().message());
    }
    o.engine.label =
        options.engine.label + " fold " + std::to_string(k + 1) + "/" + std::to_string(folds);
    const std::size_t train_count = train.census.count;
    TESSERA_ASSIGN_OR_RETURN(MfResult fit, TrainMf(std::move(train), &*test, o));
    if (!fit.run.holds_result) {
      result.holds_result = false;
      continue;
    }
    MfFoldResult f;
    f.train_count = train_count;
    f.test_count = test->census.count;
    f.skipped_unknown = test->skipped_unknown;
    if (!fit.epochs.empty()) {
      f.train_rmse = fit.epochs.back().train_rmse;
      f.test_rmse = fit.epochs.back().test_rmse;
    }
    f.seconds = clock.Seconds();
    pooled_se += f.test_rmse * f.test_rmse * static_cast<double>(f.test_count);
    pooled_n += f.test_count;
    result.folds.push_back(f);
    if (on_fold) on_fold(k + 1, f);
  }
  if (!result.holds_result) return result;
  result.mean_test_rmse =
      std::sqrt(pooled_se / static_cast<double>(std::max<std::size_t>(pooled_n, 1)));
  double mean = 0, spread = 0;
  for (const auto& f : result.folds) mean += f.test_rmse / folds;
  for (const auto& f : result.folds) spread += (f.test_rmse - mean) * (f.test_rmse - mean);
  result.sd_test_rmse = std::sqrt(spread / (folds - 1));
  return result;
}

}  // namespace tessera
