// K-fold cross-validation of matrix factorization (LIBMF's `mf-train -v K`): the ratings of a
// file are dealt to K folds by a seeded hash of their place in the file; each fold is held out
// once while the model is trained on the others with the same options, and scored by its RMSE
// on the held-out ratings whose user and item the training folds have.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "tessera/algorithms/mf/mf.h"
#include "tessera/core/status.h"

namespace tessera {

struct MfFoldResult {
  double train_rmse = 0, test_rmse = 0;
  std::size_t train_count = 0, test_count = 0;
  std::size_t skipped_unknown = 0;  // held-out ratings of a user or item the others lack
  double seconds = 0;
};

struct MfCvResult {
  std::vector<MfFoldResult> folds;
  double mean_test_rmse = 0;  // weighted by the scored ratings: sqrt of the pooled MSE
  double sd_test_rmse = 0;    // spread of the folds' RMSE
  // False in the processes of a multi-process run that do not hold the fits' results.
  bool holds_result = true;
};

// The fold (0..folds-1) of the file's entry-th rating.
int MfFoldOf(std::uint64_t entry, int folds, std::uint64_t seed);

// Cross-validates `options` on the ratings in `path`. `keep` is the process's filter
// (MfRatingsToKeep); `on_fold` is called after each fold (1..folds).
StatusOr<MfCvResult> CrossValidateMf(
    const std::string& path, const MfOptions& options, int folds, std::uint64_t seed,
    const std::function<void(int fold, const MfFoldResult&)>& on_fold = {});

}  // namespace tessera
