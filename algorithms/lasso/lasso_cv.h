// K-fold cross-validation of a Lasso path, by glmnet's rules (cv.glmnet, type.measure = "mse"):
// each fold's model is fitted on the other folds' rows along the same λ sequence (the full
// data's) and scored by the mean squared error of its held-out rows; the CV error of a λ is
// the mean over folds weighted by fold size, its standard error the weighted spread of the
// fold errors over sqrt(K − 1). λ.min is the λ of least CV error (the largest on ties), λ.1se
// the largest λ whose CV error is within one standard error of λ.min's.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <vector>

#include "tessera/algorithms/lasso/lasso.h"
#include "tessera/core/dataset.h"
#include "tessera/core/status.h"

namespace tessera {

struct LassoCvOptions {
  int folds = 10;
  // One fold number in 1..folds per row (glmnet's foldid); empty: RandomFolds(rows, folds, seed).
  std::vector<int> foldid;
  std::uint64_t seed = 1;
  // Called after each fold's path is fitted (fold 1..folds), e.g. for progress.
  std::function<void(int fold, int folds)> on_fold;
};

struct LassoCvResult {
  std::vector<double> lambdas;
  Eigen::VectorXd cv_error;  // per λ: the weighted mean of the folds' mean squared errors
  Eigen::VectorXd cv_sd;     // per λ: its standard error
  std::vector<int> foldid;   // the folds used, per row
  std::size_t index_min = 0, index_1se = 0;
  // False in the processes of a multi-process run that do not hold the fits' results (they
  // took part in the fits; the figures above are the coordinator's process's).
  bool holds_result = true;
  double lambda_min() const { return lambdas[index_min]; }
  double lambda_1se() const { return lambdas[index_1se]; }
};

// Balanced folds in a seeded random order: fold k+1 for row i is a permutation of
// 1, 2, ..., K, 1, 2, ... (as cv.glmnet's sample(rep(seq(K), length = n))).
std::vector<int> RandomFolds(std::int64_t rows, int folds, std::uint64_t seed);
// Reads glmnet-style fold ids: one integer in 1..K per line (or the first CSV column), one per
// row; K is the largest. Errors name the file and line.
StatusOr<std::vector<int>> ReadFoldIds(const std::string& path);
// The rows of `data` for which keep[i] is true, in order.
Dataset SelectRows(const Dataset& data, const std::vector<char>& keep);

// Cross-validates `lambdas` (decreasing, as a path) with `options` for every fold's fit
// (checkpoints are not used within folds). In a multi-process run every process calls it
// alike; the fold fits run one after another, each over all the workers.
StatusOr<LassoCvResult> CrossValidateLasso(const Dataset& data, const LassoOptions& options,
                                           const std::vector<double>& lambdas,
                                           const LassoCvOptions& cv);

// Given per-fold mean squared errors (folds × λ) and the folds' sizes: the CV error, its
// standard error, λ.min and λ.1se, by glmnet's rules. `result.lambdas` must be set.
void SummarizeFolds(const Eigen::MatrixXd& fold_mse, const Eigen::VectorXd& fold_rows,
                    LassoCvResult& result);

}  // namespace tessera
