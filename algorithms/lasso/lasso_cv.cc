#include "tessera/algorithms/lasso/lasso_cv.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>

#include "tessera/algorithms/lasso/lasso_model.h"
#include "tessera/core/line_reader.h"

namespace tessera {

std::vector<int> RandomFolds(std::int64_t rows, int folds, std::uint64_t seed) {
  std::vector<int> id(static_cast<std::size_t>(std::max<std::int64_t>(rows, 0)));
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<int>(i % folds) + 1;
  std::mt19937_64 rng(seed);
  std::shuffle(id.begin(), id.end(), rng);
  return id;
}

StatusOr<std::vector<int>> ReadFoldIds(const std::string& path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::vector<int> ids;
  std::string_view line;
  bool first = true;
  while (in.Next(line)) {
    const std::string_view field = line.substr(0, line.find(','));
    std::uint64_t v = 0;
    if (!ParseCount(field, v)) {
      if (first && !field.empty() && !std::isdigit(static_cast<unsigned char>(field[0]))) {
        first = false;  // a header
        continue;
      }
      return InvalidArgument(in.Where() + "a fold id must be a whole number >= 1, not '" +
                             std::string(field) + "'");
    }
    first = false;
    if (v < 1 || v > 1000000) {
      return InvalidArgument(in.Where() + "a fold id must be in [1, 1000000], not " +
                             std::to_string(v));
    }
    ids.push_back(static_cast<int>(v));
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (ids.empty()) return InvalidArgument(path + ": no fold ids");
  return ids;
}

Dataset SelectRows(const Dataset& data, const std::vector<char>& keep) {
  Dataset out;
  out.feature_names = data.feature_names;
  out.source = data.source;
  std::int64_t rows = 0;
  for (char k : keep) rows += k != 0;
  out.x.resize(rows, data.cols());
  out.y.resize(rows);
  std::vector<Eigen::Triplet<double, std::int64_t>> entries;
  std::int64_t r = 0;
  for (std::int64_t i = 0; i < data.rows(); ++i) {
    if (!keep[static_cast<std::size_t>(i)]) continue;
    for (SparseRowMatrix::InnerIterator it(data.x, i); it; ++it)
      entries.emplace_back(r, it.col(), it.value());
    out.y[r++] = data.y[i];
  }
  out.x.setFromTriplets(entries.begin(), entries.end());
  out.x.makeCompressed();
  return out;
}

void SummarizeFolds(const Eigen::MatrixXd& fold_mse, const Eigen::VectorXd& fold_rows,
                    LassoCvResult& result) {
  const Eigen::Index folds = fold_mse.rows(), m = fold_mse.cols();
  const double total = fold_rows.sum();
  result.cv_error = (fold_rows.transpose() * fold_mse).transpose() / total;
  result.cv_sd.resize(m);
  for (Eigen::Index l = 0; l < m; ++l) {
    const Eigen::VectorXd d = fold_mse.col(l).array() - result.cv_error[l];
    const double spread = fold_rows.dot(d.cwiseProduct(d)) / total;
    result.cv_sd[l] = std::sqrt(spread / static_cast<double>(std::max<Eigen::Index>(folds - 1, 1)));
  }
  // λ.min: the least error, the largest λ on ties; λ.1se: the largest λ within one standard
  // error of it (the lambdas are decreasing, so "largest" is "first").
  const double least = result.cv_error.minCoeff();
  for (Eigen::Index l = 0; l < m; ++l) {
    if (result.cv_error[l] <= least) {
      result.index_min = static_cast<std::size_t>(l);
      break;
    }
  }
  const double bound = least + result.cv_sd[static_cast<Eigen::Index>(result.index_min)];
  for (Eigen::Index l = 0; l < m; ++l) {
    if (result.cv_error[l] <= bound) {
      result.index_1se = static_cast<std::size_t>(l);
      break;
    }
  }
}

StatusOr<LassoCvResult> CrossValidateLasso(const Dataset& data, const LassoOptions& options,
                                           const std::vector<double>& lambdas,
                                           const LassoCvOptions& cv) {
  if (lambdas.empty()) return InvalidArgument("cross-validation needs at least one lambda");
  LassoCvResult result;
  result.lambdas = lambdas;
  int folds = cv.folds;
  if (cv.foldid.empty()) {
    if (folds < 2 || folds > data.rows()) {
      return InvalidArgument("--cv must be in [2, rows = " + std::to_string(data.rows()) +
                             "], got " + std::to_string(folds));
    }
    result.foldid = RandomFolds(data.rows(), folds, cv.seed);
  } else {
    if (static_cast<std::int64_t>(cv.foldid.size()) != data.rows()) {
      return InvalidArgument("the fold ids number " + std::to_string(cv.foldid.size()) +
                             ", the data has " + std::to_string(data.rows()) + " rows");
    }
    result.foldid = cv.foldid;
    folds = *std::max_element(result.foldid.begin(), result.foldid.end());
  }
  Eigen::VectorXd fold_rows = Eigen::VectorXd::Zero(folds);
  for (int f : result.foldid) fold_rows[f - 1] += 1;
  for (int k = 0; k < folds; ++k) {
    if (fold_rows[k] == 0 || fold_rows[k] == static_cast<double>(data.rows())) {
      return InvalidArgument("fold " + std::to_string(k + 1) + " has " +
                             std::to_string(static_cast<long long>(fold_rows[k])) +
                             " rows: every fold needs held-out rows and training rows");
    }
  }
  if (folds < 2) return InvalidArgument("cross-validation needs at least 2 folds");
  LassoOptions fold_options = options;
  fold_options.checkpoint_dir.clear();
  fold_options.resume = false;
  fold_options.on_lambda = nullptr;
  fold_options.engine.trace_path.clear();
  fold_options.data_parallel.trace_path.clear();
  Eigen::MatrixXd fold_mse(folds, static_cast<Eigen::Index>(lambdas.size()));
  for (int k = 1; k <= folds; ++k) {
    std::vector<char> train(static_cast<std::size_t>(data.rows()));
    for (std::size_t i = 0; i < train.size(); ++i) train[i] = result.foldid[i] != k;
    const Dataset fit_rows = SelectRows(data, train);
    for (char& t : train) t = !t;
    const Dataset held_out = SelectRows(data, train);
    // The progress line says which fold it is on.
    fold_options.engine.label = fold_options.data_parallel.label =
        options.engine.label + " fold " + std::to_string(k) + "/" + std::to_string(folds);
    TESSERA_ASSIGN_OR_RETURN(auto solver, LassoSolver::Create(fit_rows, fold_options));
    TESSERA_ASSIGN_OR_RETURN(auto path, solver->FitLambdas(lambdas));
    for (std::size_t l = 0; l < path.size(); ++l) {
      if (!path[l].holds_result) {
        result.holds_result = false;
        continue;
      }
      const Eigen::VectorXd predicted = PredictLasso(held_out, path[l].intercept, path[l].beta);
      fold_mse(k - 1, static_cast<Eigen::Index>(l)) =
          (predicted - held_out.y).squaredNorm() / static_cast<double>(held_out.rows());
    }
    if (cv.on_fold) cv.on_fold(k, folds);
  }
  if (result.holds_result) SummarizeFolds(fold_mse, fold_rows, result);
  return result;
}

}  // namespace tessera
