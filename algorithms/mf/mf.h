// Matrix factorization of a ratings matrix: r_ij ≈ μ + w_iᵀh_j, minimizing
//   Σ_(i,j)∈Ω (r_ij − μ − w_iᵀh_j)² + λ (Σ_i |Ω_i| ‖w_i‖² + Σ_j |Ω_j| ‖h_j‖²)
// (the L2 weight is per rating, as in SGD solvers such as LIBMF). μ is the training mean from
// the "normal" start, 0 from LIBMF's "uniform" one (MfOptions::init). With biases, w_i and h_j
// end in (b_i, 1) and (1, c_j), so w_iᵀh_j includes b_i + c_j.
//
// Model-parallel SGD with rotation scheduling (DSGD) is in mf_dsgd.cc, data-parallel SGD in
// mf_dp.cc. Model-parallel CCD++ (Yu et al., ICDM 2012; STRADS MF): rank-one coordinate descent,
// one component t at a time: a round updates column t of H for every item, the next column t of W
// for every user, each in closed form. Users and items are partitioned over the workers; a
// worker owns the ratings of its users (by row) and of its items (by column) with their
// residuals, computes the new values of its own users' or items' coordinates (Push), and the
// sync layer commits them and broadcasts them (Pull/Apply). Each coordinate depends only on
// the other side's column, so the result does not depend on the number of workers.
#pragma once

#include <Eigen/Core>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tessera/core/data_parallel.h"
#include "tessera/core/model_parallel.h"
#include "tessera/core/ratings.h"
#include "tessera/core/status.h"

namespace tessera {

struct MfOptions {
  // model-parallel: CCD++ (above); data-parallel: SGD with H on a parameter server and W with
  // the workers that own the users (mf_dp.cc).
  std::string mode = "model-parallel";
  // Model-parallel: sgd (rotation-scheduled SGD, DSGD; the fastest to a given test RMSE) or
  // ccd++ (deterministic: the same result for any number of workers).
  std::string algorithm = "sgd";
  int rank = 40;             // latent dimension k
  double lambda = 0.1;       // L2 weight per rating
  int epochs = 20;           // passes over every component
  int inner_iterations = 1;  // CCD++: H/W alternations per component per epoch
  // The start: "uniform" (LIBMF's: μ = 0, W and H entries U[0, 1)·√(σ/rank), σ the training
  // ratings' standard deviation), "normal" (μ the training mean, W entries N(0,
  // init_scale²/rank), H the same under SGD and 0 under CCD++), or "auto": uniform for SGD
  // with adagrad steps (LIBMF's start with LIBMF's steps), else normal. Each is what its
  // algorithm reaches a given test RMSE soonest from (bench/README.md).
  std::string init = "auto";
  double init_scale = 0.1;
  // Also fit a bias per user and per item, stored as two extra factor columns (b_i, 1) and
  // (1, c_j); unset: with the normal start only.
  std::optional<bool> biases;
  std::uint64_t seed = 42;
  EngineOptions engine;  // workers, time limit, trace, progress (depth must be 1)
  // SGD with decaying steps: step size relative to the training ratings' variance σ² (the step
  // is lr / σ² / (1 + decay · epoch), so the same lr suits 1-5 stars and -10..10).
  double learning_rate = 0.08;
  double decay = 0.1;
  // The steps of SGD, rotation (model-parallel) and data-parallel alike: "adagrad" (LIBMF's
  // rule: each factor row r keeps the mean squared gradient G_r it has seen, from 1, of its
  // first 8 columns and of the rest apart, steps each part by adagrad_rate / √G_r on ratings
  // and factors normalized by the ratings' standard deviation, and the first epoch steps the
  // first 8 columns only), or "decay" (the rule above).
  std::string sgd_step = "adagrad";
  double adagrad_rate = 0.1;
  // Data-parallel mode: the parameter-server options (servers, consistency, frequency, partition
  // of the users, batch size in users, model averaging). Workers, seed, time limit and progress
  // come from `engine`.
  DataParallelOptions data_parallel;
  // Data-parallel: checkpoints of H, W and the epochs so far in checkpoint_dir, at the end of
  // an epoch once checkpoint_every seconds have passed (0: after every epoch), written by the
  // driver's process; with `resume` every process first reads the newest whole one and the
  // run goes on from its epoch.
  std::string checkpoint_dir;
  double checkpoint_every = 0;
  bool resume = false;
  Status Validate() const;
  // `init` and `biases` as the run takes them.
  bool UniformInit() const {
    return init == "uniform" || (init == "auto" && sgd_step == "adagrad" &&
                                 (algorithm == "sgd" || mode == "data-parallel"));
  }
  bool FitsBiases() const { return biases.value_or(!UniformInit()); }
};

// A trained model: factors and the id maps of the training data.
struct MfModel {
  double mean = 0;      // μ of the prediction: the training mean, or 0 (the uniform start)
  double average = 0;   // the training ratings' mean (the same as μ in files of version < 3)
  bool biases = false;  // the last two factor columns are (b_i, 1) for users, (1, c_j) for items
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> w;  // users x k
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> h;  // items x k
  std::shared_ptr<IdMap> users, items;
  double Predict(std::uint32_t user, std::uint32_t item) const {
    return mean + w.row(user).dot(h.row(item));
  }
  // Predict for ids of the model (indices below its rows); an index past them is an id the
  // model has not seen, whose prediction falls back to μ plus the known side's bias, or, for a
  // model without a global mean (μ = 0, the uniform start), to the training ratings' average
  // (as LIBMF's mf-predict falls back to its average).
  bool Knows(std::uint32_t user, std::uint32_t item) const {
    return user < w.rows() && item < h.rows();
  }
  bool FallsBackToAverage() const { return mean == 0; }
  double PredictOrFallBack(std::uint32_t user, std::uint32_t item) const {
    if (Knows(user, item)) return Predict(user, item);
    if (FallsBackToAverage()) return average;
    double p = mean;
    if (biases && user < w.rows()) p += w(user, w.cols() - 2);
    if (biases && item < h.rows()) p += h(item, h.cols() - 1);
    return p;
  }
  // The n items with the highest predicted rating for `user`, best first, skipping `exclude`.
  std::vector<std::pair<std::uint32_t, double>> TopN(std::uint32_t user, int n,
                                                     const std::vector<char>& exclude = {}) const;
};

struct MfEpoch {
  int epoch = 0;
  double seconds = 0;
  double train_rmse = 0;
  double test_rmse = 0;  // NaN without a test set
  double objective = 0;
};

struct MfResult {
  std::string resumed;  // the checkpoint a resumed run went on from, and its epoch ("" if none)
  MfModel model;
  std::vector<MfEpoch> epochs;  // after each epoch
  RunResult run;
};

// Which ratings the workers that `options.engine` builds in this process need
// (RatingsOptions::keep for the training and the test set): rotation SGD's workers need only
// their users' ratings; null where they need every rating (CCD++, data-parallel SGD, and every
// trainer in one process).
std::function<bool(std::uint32_t user, std::uint32_t item)> MfRatingsToKeep(
    const MfOptions& options);

// Root mean squared error of `model` on `ratings` (read against the model's id maps).
double Rmse(const MfModel& model, const Ratings& ratings);

// Trains on `train` in options.mode, reporting test RMSE after every epoch when `test` is
// given (read with train's id maps). `on_epoch`, if set, is called after each epoch. Rotation
// SGD gives back the memory of the training ratings as it hands them to its workers: pass them
// with std::move and they are kept once.
StatusOr<MfResult> TrainMf(Ratings train, const Ratings* test, const MfOptions& options,
                           const std::function<void(const MfEpoch&)>& on_epoch = {});
// The two modes.
StatusOr<MfResult> TrainMfSgdDataParallel(const Ratings& train, const Ratings* test,
                                          const MfOptions& options,
                                          const std::function<void(const MfEpoch&)>& on_epoch);
StatusOr<MfResult> TrainMfDsgd(Ratings train, const Ratings* test, const MfOptions& options,
                               const std::function<void(const MfEpoch&)>& on_epoch = {});
StatusOr<MfResult> TrainMfCcd(const Ratings& train, const Ratings* test, const MfOptions& options,
                              const std::function<void(const MfEpoch&)>& on_epoch = {});

// The model as text: a header, then one line per user and per item with its original id
// and k factors (format in the README). Written atomically. The reader also takes version 1
// files (no `biases` line: read as without biases).
Status WriteMfModel(const std::string& path, const MfModel& model);
StatusOr<MfModel> ReadMfModel(const std::string& path);

}  // namespace tessera
