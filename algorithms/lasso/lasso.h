// Lasso by model-parallel coordinate descent (STRADS Lasso, with glmnet's screening).
//
// Objective: (1/2n)‖y − b0 − Xb‖² + λ Σ_j pf_j |b_j|, intercept b0 unpenalized; pf_j = 1, or
// the column's standard deviation with `standardize` (glmnet's standardize=TRUE problem).
//
// Rows are partitioned over the workers; each owns its rows and their residual. A round
// schedules a block of coordinates; each worker pushes the partial gradients x_jᵀr over its
// rows; the sync layer sums them, soft-thresholds and commits b_j; workers apply Δb_j to their
// residuals. With `block_update = sequential` (default) workers also push the partial Gram
// entries x_jᵀx_k of the block (and of keys still in flight), so Pull performs exact
// sequential coordinate descent over the block on fresh values: any scheduler, block size and
// pipeline depth converges to the same optimum. `parallel` is STRADS/Shotgun's simultaneous
// update, which relies on the dependency scheduler to keep interference small.
#pragma once

#include <Eigen/Core>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tessera/core/data_parallel.h"
#include "tessera/core/dataset.h"
#include "tessera/core/model_parallel.h"
#include "tessera/core/status.h"
#include "tessera/schedulers/scheduler.h"

namespace tessera {

struct LassoOptions {
  // model-parallel: coordinate descent scheduled over workers (below);
  // data-parallel: proximal gradient with the model in a parameter server (lasso_dp.h).
  std::string mode = "model-parallel";
  // "NAME[:key=value,...]": a scheduler in DefaultSchedulers() and its own arguments.
  std::string scheduler = "round_robin";
  int block_size = 16;   // coordinates per round: the scheduler's block_size unless its
                         // arguments set one, and the KKT pass's
  EngineOptions engine;  // workers, pipeline depth, limits, trace
  std::string block_update = "sequential";  // sequential (exact) | parallel (Shotgun)
  // Sequential updates: working sets are solved at the coordinator from their gradient and Gram
  // entries (glmnet's covariance updates), in chunks of up to solve_keys features per round
  // (more for sparse columns whose Gram matrix stays sparse); 0: coordinate descent in
  // scheduled blocks of block_size instead.
  int solve_keys = 512;
  bool standardize = false;  // penalize b_j by the column's standard deviation (glmnet default)
  bool strong_rules = true;  // screen coordinates with the sequential strong rule
  bool active_set = true;    // sweep the nonzero coordinates until they converge, then all
  // Model-parallel stopping rule, checked by a full gradient pass: "gap" (converged when the
  // duality gap, see DualityGap, is below tolerance × the objective at b = 0, as celer and
  // skglm stop) or "kkt" (when every KKT violation, see KktViolation, is below
  // tolerance × λ_max).
  std::string stop = "gap";
  double tolerance = 1e-7;
  // Gap Safe screening (Ndiaye et al. 2017): at every gradient pass, features the duality gap
  // proves zero at the optimum leave the fit for good (the gradient passes skip them).
  bool gap_safe = true;
  // Data-parallel mode: servers, workers, consistency, frequency, partition, limits (the
  // engine options above are not used), and FISTA momentum under bsp.
  DataParallelOptions data_parallel;
  bool accelerate = true;
  // Data-parallel method (lasso_dp.h): "gradient" (full proximal gradient steps), "block" (the
  // delayed block proximal gradient: one block of features per clock), or "auto" (block under
  // ssp, essp, sparsessp, sspaggr and asp without mini-batches; gradient otherwise).
  std::string dp_method = "auto";
  int feature_blocks = 0;  // the block method's blocks; 0: from the data's size
  // The block method's KKT filter: after a pass that stepped every feature, passes step (and
  // the workers compute and push the gradient of) only the features nonzero at the last
  // evaluation, since a zero feature whose gradient stays within λ would not move; a full
  // pass, which checks every feature's KKT condition, comes after 1, 2, 4, ... up to 16 such
  // passes (twice as many as before while the full passes leave the support as it was), and
  // the objective tolerance ends a fit only after a full pass.
  bool kkt_filter = true;
  // Checkpoints (FitLambdas / FitPath): after every λ, and within a fit every checkpoint_every
  // seconds (0: only after every λ; model-parallel at a round boundary with the pipeline
  // drained, data-parallel at an epoch-end barrier), the coefficients and the finished
  // solutions go to checkpoint_dir (core/checkpoint.h), written by the process of the
  // coordinator (or driver). With `resume`, every process first reads the newest whole
  // checkpoint there and the path goes on from it: the finished λ are not fitted again and
  // the current one starts from the saved coefficients.
  std::string checkpoint_dir;
  double checkpoint_every = 0;
  bool resume = false;
  // Called by FitLambdas / FitPath after each λ is fitted (where the results are: the
  // coordinator's or driver's process), e.g. to print it at once.
  std::function<void(const struct LassoSolution&)> on_lambda;
  Status Validate() const;
};

struct LassoSolution {
  double lambda = 0;
  double intercept = 0;
  Eigen::VectorXd beta;       // one per feature, on the data's scale
  double objective = 0;       // recomputed from the full data, independent of the workers
  double kkt_violation = 0;   // max over j, see KktViolation
  double gap = 0;             // the duality gap at (intercept, beta), see DualityGap
  std::int64_t screened = 0;  // features Gap Safe screening removed (model-parallel)
  std::uint64_t rounds = 0;
  double seconds = 0;
  std::uint64_t bytes = 0;
  std::uint64_t updates = 0;
  std::string stop_reason;
  std::vector<RoundMetrics> evaluations;  // objective after each sweep
  std::vector<TableStaleness> staleness;  // data-parallel: how stale the reads were
  bool holds_result = true;               // see RunResult::holds_result
  int nonzeros() const;
};

// What the serial oracle says of a point: its objective, largest KKT violation and duality gap.
struct LassoCertificate {
  double objective = 0;
  double kkt_violation = 0;
  double gap = 0;
};

// Serial oracles over the full data, independent of any worker: the objective, and the
// largest violation of the optimality conditions: |g_j − λ pf_j sign(b_j)| for b_j ≠ 0,
// max(|g_j| − λ pf_j, 0) for b_j = 0, with g = X̃ᵀr/n (X̃ the centered columns), and |mean(r)|
// for the intercept. Keeps references to x and y.
class LassoOracle {
 public:
  LassoOracle(const SparseRowMatrix& x, const Eigen::VectorXd& y, Eigen::VectorXd mu,
              Eigen::VectorXd pf);
  double Objective(double lambda, double intercept, const Eigen::VectorXd& beta) const;
  double KktViolation(double lambda, double intercept, const Eigen::VectorXd& beta) const;
  // The duality gap P(b) − D(θ) at `beta` with its optimal intercept, an upper bound on
  // P(b) − P*: D(θ) = −λ²‖r‖²/(2n s²) + λ rᵀỹ/(n s) is the Lasso dual (ỹ the centered
  // responses) at θ = r/(n s), the residual scaled into the dual feasible set,
  // s = max(λ, max_j |x̃_jᵀr|/(n pf_j)).
  double DualityGap(double lambda, const Eigen::VectorXd& beta) const;
  // The intercept that goes with `beta`: ȳ − μᵀb.
  double Intercept(const Eigen::VectorXd& beta) const;
  // All three from one residual and one product X̃ᵀr.
  LassoCertificate Certify(double lambda, double intercept, const Eigen::VectorXd& beta) const;

 private:
  Eigen::VectorXd Residual(double intercept, const Eigen::VectorXd& beta) const;
  const SparseRowMatrix& x_;
  const Eigen::VectorXd& y_;
  Eigen::VectorXd mu_, pf_;
};

// The proximal operator of t|·|: shared by both modes' coordinate and proximal steps.
inline double SoftThreshold(double z, double t) { return z > t ? z - t : (z < -t ? z + t : 0.0); }

class LassoApp;
class DataParallelLasso;
class Checkpoint;

// Owns the data partitions and the warm-start state between fits along a λ path. The data it
// is created from must outlive it (it reads it, it does not copy it); with
// Dataset::BuildColumns done first, the model-parallel workers read their rows in place in the
// data's column-major copy (else each builds a column-major copy of its rows).
class LassoSolver {
 public:
  static StatusOr<std::unique_ptr<LassoSolver>> Create(const Dataset& data,
                                                       const LassoOptions& options);
  ~LassoSolver();

  // Smallest λ for which b = 0 is optimal.
  double LambdaMax() const;
  // Data-parallel mode: the method, e.g. "FISTA" or "delayed block proximal gradient, 63 blocks".
  std::string DataParallelMethod() const;
  // Fits at `lambda`, starting from the current coefficients (warm start).
  StatusOr<LassoSolution> Fit(double lambda);
  // glmnet-style path: `count` values from LambdaMax() down to LambdaMax() × `ratio`,
  // log-spaced, each warm-started from the previous one (FitLambdas).
  StatusOr<std::vector<LassoSolution>> FitPath(int count, double ratio);
  // The λ of that path (count >= 1, ratio in (0, 1)).
  StatusOr<std::vector<double>> PathLambdas(int count, double ratio) const;
  // Fits each λ in turn, warm-started from the previous one, checkpointing and resuming as
  // the options say. A resumed λ reports the rounds, time and bytes of its resumed part.
  StatusOr<std::vector<LassoSolution>> FitLambdas(const std::vector<double>& lambdas);
  // After a resumed FitLambdas: the checkpoint it went on from and how far it was ("" if none).
  const std::string& resumed() const { return resumed_; }
  // Sets the coefficients (e.g. back to zero); workers' residuals follow on the next fit.
  void Reset();
  // The progress line's label of the next fits.
  void SetLabel(const std::string& label);

  // See LassoOracle.
  double Objective(double lambda, double intercept, const Eigen::VectorXd& beta) const;
  double KktViolation(double lambda, double intercept, const Eigen::VectorXd& beta) const;
  double DualityGap(double lambda, const Eigen::VectorXd& beta) const;

 private:
  LassoSolver() = default;
  const LassoOracle& oracle() const;
  // The checkpoint of a path: `lambdas`, the finished solutions, the coefficients to go on
  // from, and what identifies the problem.
  Checkpoint MakeCheckpoint(const std::vector<double>& lambdas,
                            const std::vector<LassoSolution>& done, const Eigen::VectorXd& beta,
                            std::uint64_t rounds, bool within) const;
  // Restores the finished solutions into `done` and the coefficients to go on from.
  Status Restore(const Checkpoint& c, const std::vector<double>& lambdas,
                 std::vector<LassoSolution>& done);
  std::string fingerprint_;  // the data and problem a checkpoint must match
  std::size_t features_ = 0;
  std::string resumed_;
  // Set by FitLambdas while a checkpoint directory is in use: saves the path with `beta` as
  // the coefficients to go on from.
  std::function<Status(const Eigen::VectorXd& beta, std::uint64_t rounds)> checkpoint_;
  std::unique_ptr<LassoApp> app_;          // model-parallel
  std::unique_ptr<DataParallelLasso> dp_;  // data-parallel
  LassoOptions options_;
};

// Writes "name,value" rows (intercept first) to `path` atomically.
Status WriteCoefficients(const std::string& path, const Dataset& data,
                         const LassoSolution& solution);
// Writes one row per λ: lambda,intercept,<features...>,objective,kkt_max_violation,duality_gap.
Status WritePath(const std::string& path, const Dataset& data,
                 const std::vector<LassoSolution>& path_solutions);

}  // namespace tessera
