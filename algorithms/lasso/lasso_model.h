// A fitted Lasso as the `tessera lasso --output` file holds it, and predictions from it.
//
// Two layouts, both CSV with a header:
//   one λ:   `name,value`, then `(intercept),b0` and one `feature,b_j` row per feature;
//   a path:  `lambda,intercept,<features...>,objective,kkt_max_violation`, one row per λ.
// Coefficients are on the scale of the data (standardization, if used, is undone).
#pragma once

#include <Eigen/Core>
#include <string>
#include <vector>

#include "tessera/core/dataset.h"
#include "tessera/core/status.h"

namespace tessera {

struct LassoModel {
  std::vector<std::string> features;
  std::vector<double> lambdas;     // NaN for a one-λ file (its λ is not recorded)
  std::vector<double> intercepts;  // per λ
  std::vector<Eigen::VectorXd> betas;
  // Intercept and coefficients at `lambda`: a λ of the path (within 1e-9 relative), or linear
  // interpolation between the two that bracket it (as glmnet's predict does); an error outside
  // the path's range. A one-λ model ignores `lambda`.
  Status At(double lambda, double& intercept, Eigen::VectorXd& beta) const;
};

// Reads either layout; malformed files are `file:line` errors.
StatusOr<LassoModel> ReadLassoModel(const std::string& path);

// Checks that `data` has the model's features: a CSV's header names in the model's order, or
// for LIBSVM (no names) at most as many columns. Then intercept + X beta per row.
Status CheckFeatures(const LassoModel& model, const Dataset& data);
Eigen::VectorXd PredictLasso(const Dataset& data, double intercept, const Eigen::VectorXd& beta);

}  // namespace tessera
