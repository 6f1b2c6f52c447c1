// What the three MF trainers share (internal to algorithms/mf): the data statistics, the
// initial factors, per-epoch metrics and the result.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "tessera/algorithms/mf/mf.h"
#include "tessera/core/checkpoint.h"
#include "tessera/core/metrics.h"

namespace tessera::mf_internal {

// Division and remainder of 32-bit numbers by a divisor fixed at run time, by multiplication
// (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019): exact for every
// 32-bit numerator. Grouping millions of ratings by block and tile divides each id several
// times.
class Divisor {
 public:
  // d >= 1 (for d = 1 the multiplier wraps to 0, which the two calls treat apart).
  explicit Divisor(std::uint32_t d) : d_(d), m_(~std::uint64_t{0} / d + 1) {}
  std::uint32_t Div(std::uint32_t a) const {
    if (m_ == 0) return a;
    return static_cast<std::uint32_t>((static_cast<unsigned __int128>(m_) * a) >> 64);
  }
  std::uint32_t Mod(std::uint32_t a) const {
    if (m_ == 0) return 0;
    const std::uint64_t low = m_ * a;
    return static_cast<std::uint32_t>((static_cast<unsigned __int128>(low) * d_) >> 64);
  }

 private:
  std::uint64_t d_;
  std::uint64_t m_;
};

struct Common {
  // The statistics of the data come from the census of `train` and `test`, so they are those
  // of the whole sets when a process keeps only its workers' share (MfRatingsToKeep). The
  // factors are not made here: a trainer makes the rows it needs (InitialRow) or the whole
  // model (AllocateModel).
  Common(const Ratings& train, const Ratings* test, const MfOptions& o,
         std::function<void(const MfEpoch&)> on_epoch, bool random_h);

  // The initial factors of user (`item` false) or item `index`: from the uniform start
  // U[0, 1)·√(σ/rank) per entry, from the normal one W rows N(0, init_scale²/rank) and H rows
  // the same if `random_h`, else 0 (CCD++). With biases the last two columns are (b_i, 1) and
  // (1, c_j), b and c starting at 0. Each row has a random stream of its own, so any worker
  // makes any row without the others.
  void InitialRow(bool item, std::size_t index, double* row) const;
  // model.w and model.h, sized for the data: the initial factors with `init`, else zeros.
  void AllocateModel(bool init);
  bool HasModel() const { return model.w.rows() > 0; }

  // The app's Objective: records an epoch from summed terms (train SSE, test SSE, penalty)
  // and returns the objective. The engine's closing evaluation repeats the last epoch's.
  double RecordEpoch(const Eigen::VectorXd& terms);
  // Squared norm of a factor row that is a parameter: minus the fixed 1 of the biases.
  double FixedNorm() const { return biases ? 1.0 : 0.0; }
  // Adagrad steps on ratings and factors scaled by 1/σ (step_scale = 1/σ²), as LIBMF runs them
  // on its own: the state every row starts from (1 there is σ³ here: squared gradients scale
  // as σ³) and the rate (LIBMF's rate is √σ times it here).
  double AdagradStart() const { return std::pow(step_scale, -1.5); }
  double AdagradRate() const { return opts.adagrad_rate * std::pow(step_scale, -0.25); }
  MfResult Finish(RunResult run);

  // Checkpoints. What one must match: the data and the shape of the model (plus `extra`, what
  // else the trainer's state depends on).
  std::string Problem(const std::string& extra = "") const;
  // A checkpoint of `model.w`, `h` (the data-parallel H lives on the servers) and the epochs'
  // metrics; Restore puts them back into `model` (allocating it) and `epochs`, checking their
  // sizes.
  Checkpoint Save(const std::string& problem, std::span<const double> h) const;
  Status Restore(const Checkpoint& c, const std::string& problem);
  // Runs a model-parallel trainer `app` (whose state this is) on the engine, first resuming
  // from and then writing checkpoints at its epoch ends as the options say.
  StatusOr<RunResult> RunModelParallel(ModelParallelApp& app);
  std::string resumed;  // MfResult::resumed

  const MfOptions& opts;
  std::function<void(const MfEpoch&)> on_epoch;
  bool uniform = false, biases = false;  // opts.UniformInit(), opts.FitsBiases()
  int rank = 0, k = 0;                   // latent rank; factor columns (rank + 2 with biases)
  std::size_t num_users = 0, num_items = 0, num_train = 0, num_test = 0;
  double step_scale = 1;  // 1 / variance of the training ratings (SGD steps)
  bool random_h = false;
  MfModel model;
  std::vector<std::uint32_t> user_count, item_count;
  std::vector<MfEpoch> epochs;
  Stopwatch clock;
};

// One SGD step on rating r for rows w and h (k columns each), per-rating L2 weight λ. With
// biases, the fixed 1s (w[rank + 1] and h[rank]) are put back after the branch-free
// (vectorizable) update.
inline void SgdStep(double* __restrict w, double* __restrict h, int k, int rank, bool biases,
                    double mean, double rating, double lr, double lambda) {
  double pred = mean;
  for (int c = 0; c < k; ++c) pred += w[c] * h[c];
  const double err = rating - pred;
  for (int c = 0; c < k; ++c) {
    const double wc = w[c], hc = h[c];
    w[c] = wc + lr * (err * hc - lambda * wc);
    h[c] = hc + lr * (err * wc - lambda * hc);
  }
  if (biases) {
    w[rank + 1] = 1;
    h[rank] = 1;
  }
}

// Float factor rows of kRowFloats-multiple length (zero-padded; the zeros stay zero): the
// kernels of rotation SGD, each compiled for AVX-512, AVX2 and the baseline and chosen when the
// program starts (the CPU's widest). Ratings' user and item are row numbers in `w` and `h`.
constexpr int kRowFloats = 16;
// The length of a padded row of k factor columns.
constexpr int PaddedRow(int k) { return (k + kRowFloats - 1) / kRowFloats * kRowFloats; }
struct SgdStepParams {
  int row = 0;   // floats per row (a multiple of kRowFloats)
  int rank = 0;  // the fixed 1s of the biases: w[rank + 1] and h[rank]
  bool biases = false;
  float mean = 0, lr = 0, lambda = 0;
  // Adaptive steps: the factor columns (rank plus the biases' two), and whether to step the
  // first kSlowColumns only (LIBMF's first epoch).
  int dims = 0;
  bool slow_only = false;
};
// Adaptive steps keep kAdagradSlots values per row: the mean squared gradients of its first
// kSlowColumns columns and of the rest (LIBMF's "slow" and "fast" parts).
constexpr int kAdagradSlots = 2;
constexpr int kSlowColumns = 8;
// SgdStep on every rating in [first, last), in order.
void SgdRatings(const Rating* first, const Rating* last, float* w, float* h,
                const SgdStepParams& p);
// The same with LIBMF's adaptive steps: each part (the first kSlowColumns columns, the rest)
// of rows w_u and h_i steps by lr / √g over that part's slot of wg[kAdagradSlots·u] and
// hg[kAdagradSlots·i], and each slot then grows by its part's mean squared gradient (over the
// part's columns of the p.dims that are factors). Under p.slow_only the rest stays as it is.
void SgdRatingsAdaptive(const Rating* first, const Rating* last, float* w, float* h, float* wg,
                        float* hg, const SgdStepParams& p);
// Σ (r − mean − w_uᵀh_i)² over [first, last).
double SquaredErrors(const Rating* first, const Rating* last, const float* w, const float* h,
                     int row, double mean);
// `rows` rows of k doubles (packed) into float rows of `row` floats, zero-padded.
void ToFloatRows(const double* packed, std::size_t rows, int k, float* out, int row);
// In place of each packed double row (k values, as pulled): damp × (the float row after the
// steps − the pulled value rounded to float), the change a worker pushes.
void FloatRowChanges(const float* after, int row, double* packed, std::size_t rows, int k,
                     double damp);

// The checks every trainer makes before it starts.
Status CheckInputs(const Ratings& train, const Ratings* test, const MfOptions& options);

}  // namespace tessera::mf_internal
