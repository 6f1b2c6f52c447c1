// Cross-validation of the Lasso against cv.glmnet (same folds, same λ, diabetes) and against
// the true prediction error of a known generating model.
#include "tessera/algorithms/lasso/lasso_cv.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include "tessera/algorithms/lasso/lasso_model.h"

namespace tessera {
namespace {

LassoOptions Quiet() {
  LassoOptions o;
  o.engine.workers = 2;
  o.engine.progress = false;
  o.tolerance = 1e-9;
  return o;
}

// tests/data/diabetes_cv_glmnet.csv (made by tests/data/diabetes_cv_glmnet.R): cv.glmnet's
// CV error and standard error per λ, with fold ids (7 i mod 10) + 1.
TEST(LassoCvTest, MatchesCvGlmnetOnDiabetes) {
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/tests/data/diabetes_cv_glmnet.csv");
  ASSERT_TRUE(in) << "missing reference";
  std::string line;
  std::getline(in, line);  // "# glmnet 4.1.6, lambda.min X, lambda.1se Y"
  const double glmnet_min = std::stod(line.substr(line.find("lambda.min ") + 11));
  const double glmnet_1se = std::stod(line.substr(line.find("lambda.1se ") + 11));
  std::getline(in, line);  // header
  std::vector<double> lambdas, cvm, cvsd;
  while (std::getline(in, line)) {
    std::stringstream ss(line);
    std::string f[3];
    for (auto& v : f) std::getline(ss, v, ',');
    lambdas.push_back(std::stod(f[0]));
    cvm.push_back(std::stod(f[1]));
    cvsd.push_back(std::stod(f[2]));
  }
  ASSERT_EQ(lambdas.size(), 30u);
  auto data =
      ReadCsv(std::string(TESSERA_SOURCE_DIR) + "/datasets/diabetes/lars_diabetes_x.csv.gz");
  ASSERT_TRUE(data.ok()) << data.status().message();
  LassoCvOptions cv;
  for (int i = 0; i < data->rows(); ++i) cv.foldid.push_back((7 * i) % 10 + 1);
  auto r = CrossValidateLasso(*data, Quiet(), lambdas, cv);
  ASSERT_TRUE(r.ok()) << r.status().message();
  for (std::size_t l = 0; l < lambdas.size(); ++l) {
    EXPECT_NEAR(r->cv_error[Eigen::Index(l)], cvm[l], 1e-6 * cvm[l]) << "lambda " << lambdas[l];
    EXPECT_NEAR(r->cv_sd[Eigen::Index(l)], cvsd[l], 1e-5 * cvsd[l]) << "lambda " << lambdas[l];
  }
  EXPECT_EQ(r->lambda_min(), glmnet_min);
  EXPECT_EQ(r->lambda_1se(), glmnet_1se);
}

// y = 2 + X b* + N(0, 1), 1,000 rows, 8 nonzeros among 60 independent standard normal features: the
// true prediction error of a fit (b0, b) is 1 + (b0 − 2)² + ‖b − b*‖². Ten-fold CV's λ.min is
// within one grid step (16 from λ_max to λ_max/1000) of the λ whose full-data fit minimizes
// it, for each of eight seeds.
TEST(LassoCvTest, PicksTheLambdaOfLeastTruePredictionError) {
  const int n = 1000, p = 60;
  for (std::uint64_t seed : {1, 2, 3, 4, 5, 6, 7, 8}) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    Eigen::VectorXd truth = Eigen::VectorXd::Zero(p);
    for (int k = 0; k < 8; ++k) truth[7 * k] = (k % 2 ? -1 : 1) * (0.2 + 0.1 * k);
    Dataset d;
    Eigen::MatrixXd x(n, p);
    for (Eigen::Index e = 0; e < x.size(); ++e) x.data()[e] = normal(rng);
    d.x = x.sparseView();
    d.y = (x * truth).array() + 2.0;
    for (int i = 0; i < n; ++i) d.y[i] += normal(rng);
    auto solver = LassoSolver::Create(d, Quiet());
    ASSERT_TRUE(solver.ok());
    const double lmax = (*solver)->LambdaMax();
    std::vector<double> lambdas;
    for (int k = 0; k < 16; ++k) lambdas.push_back(lmax * std::pow(1e-3, k / 15.0));
    auto full = (*solver)->FitLambdas(lambdas);
    ASSERT_TRUE(full.ok());
    std::size_t best = 0;
    double least = HUGE_VAL;
    for (std::size_t l = 0; l < lambdas.size(); ++l) {
      const auto& s = (*full)[l];
      const double err = 1 + std::pow(s.intercept - 2, 2) + (s.beta - truth).squaredNorm();
      if (err < least) least = err, best = l;
    }
    LassoCvOptions cv;
    cv.seed = seed;
    auto r = CrossValidateLasso(d, Quiet(), lambdas, cv);
    ASSERT_TRUE(r.ok()) << r.status().message();
    EXPECT_LE(std::abs(static_cast<long>(r->index_min) - static_cast<long>(best)), 1)
        << "seed " << seed << ": CV picked lambda " << r->lambda_min() << " (step " << r->index_min
        << "), the true error is least at " << lambdas[best] << " (step " << best << ")";
    EXPECT_LE(r->index_1se, r->index_min);  // λ.1se is never smaller than λ.min
    // The folds are balanced: 100 rows each.
    std::vector<int> count(11);
    for (int f : r->foldid) ++count[f];
    for (int f = 1; f <= 10; ++f) EXPECT_EQ(count[f], 100);
  }
}

TEST(LassoCvTest, BadFoldsAreClearErrors) {
  Dataset d;
  d.x.resize(4, 1);
  d.x.insert(0, 0) = 1;
  d.x.insert(1, 0) = 2;
  d.y = Eigen::Vector4d(1, 2, 3, 4);
  LassoCvOptions cv;
  cv.foldid = {1, 1, 1};
  auto r = CrossValidateLasso(d, Quiet(), {0.1}, cv);
  EXPECT_EQ(r.status().message(), "the fold ids number 3, the data has 4 rows");
  cv.foldid = {1, 1, 3, 3};
  r = CrossValidateLasso(d, Quiet(), {0.1}, cv);
  EXPECT_EQ(r.status().message(),
            "fold 2 has 0 rows: every fold needs held-out rows and training rows");
  cv.foldid.clear();
  cv.folds = 5;
  r = CrossValidateLasso(d, Quiet(), {0.1}, cv);
  EXPECT_EQ(r.status().message(), "--cv must be in [2, rows = 4], got 5");
}

}  // namespace
}  // namespace tessera
