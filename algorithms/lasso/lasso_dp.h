// Lasso in data-parallel mode: proximal gradient with the coefficients in a parameter server.
//
// The same problem as lasso.h. Rows are partitioned over workers (any partition scheme). Each
// worker pulls b, computes the gradient of (1/2n)‖r‖² over its rows (implicitly centered, so
// sparse data stays sparse) and pushes the change of its gradient since its last push. The
// server keeps the sum of the workers' latest gradients G and runs the proximal step
//   x ← S(b − G/L, λ pf / L),   b ← x + β (x − x_prev)
// in its update function. Under bsp a shard runs it once per clock on every worker's push, so
// this is exactly ISTA or, with `accelerate`, FISTA with gradient-based adaptive restart
// (O'Donoghue & Candès 2015). Under ssp, essp, asp and hogwild it runs on each push as it
// arrives with the other workers' latest (stale) gradients: the proximal incremental
// aggregated gradient method, without momentum, with step 1/(L P (1 + S)). asp and hogwild
// bound nothing (S = 0 in that step): only the evaluation barrier keeps workers within
// evaluate_every clocks of each other, and when the cores are contended and a worker falls
// that far behind, the iteration can stall short of the optimum. Use evaluate_every 1 (or
// ssp:S) when the exact optimum matters.
//
// Setup (once per solver, through the parameter server): column sums, sums of squares and
// xᵀy give μ, the penalty factors and λ_max; 30 power iterations give L, the largest
// eigenvalue of X̃ᵀX̃/n, so the step 1/L needs no line search.
#pragma once

#include <functional>
#include <memory>

#include "tessera/algorithms/lasso/lasso.h"

namespace tessera {

// Whether `options` run the delayed block proximal gradient (LassoOptions::dp_method).
bool UsesBlockMethod(const LassoOptions& options);

class DataParallelLasso {
 public:
  static StatusOr<std::unique_ptr<DataParallelLasso>> Create(const Dataset& data,
                                                             const LassoOptions& options);
  ~DataParallelLasso();
  double LambdaMax() const;
  // "FISTA", "proximal gradient" or "delayed block proximal gradient, N blocks".
  std::string Method() const;
  // Fits at `lambda` warm-started from the current coefficients. With `checkpoint`, the
  // driver's process hands it the coefficients and the epochs of this fit at an epoch-end
  // barrier (nobody pushes then) once `every` seconds have passed since the fit or the last
  // checkpoint began.
  using CheckpointHook = std::function<Status(const Eigen::VectorXd& beta, std::uint64_t epochs)>;
  StatusOr<LassoSolution> Fit(double lambda, const CheckpointHook& checkpoint = {},
                              double every = 0);
  void Reset();
  // The progress line's label of the next fits.
  void SetLabel(const std::string& label);
  // The coefficients the next fit starts from.
  void SetBeta(const Eigen::VectorXd& beta);
  const LassoOracle& oracle() const;

 private:
  class App;
  DataParallelLasso() = default;
  std::unique_ptr<App> app_;
  LassoOptions options_;
};

}  // namespace tessera
