#include "tessera/algorithms/mf/mf_common.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace tessera::mf_internal {

Common::Common(const Ratings& train, const Ratings* test, const MfOptions& o,
               std::function<void(const MfEpoch&)> on_epoch_fn, bool random_h_side)
    : opts(o),
      on_epoch(std::move(on_epoch_fn)),
      uniform(o.UniformInit()),
      biases(o.FitsBiases()),
      rank(o.rank),
      k(o.rank + (biases ? 2 : 0)),
      num_users(train.num_users()),
      num_items(train.num_items()),
      num_test(test ? test->total() : 0),
      random_h(random_h_side) {
  RatingsCensus c = WholeCensus(train);
  num_train = c.count;
  user_count = std::move(c.per_user);
  item_count = std::move(c.per_item);
  user_count.resize(num_users);
  item_count.resize(num_items);
  const double mean = c.sum / static_cast<double>(num_train);
  model.mean = uniform ? 0 : mean;
  model.average = mean;
  model.biases = biases;
  // SGD steps are relative to the ratings' variance: an error of one standard deviation moves
  // the factors by the same amount on a 1-5 and on a -10..10 scale.
  step_scale = 1 / std::max(c.sum_squares / static_cast<double>(num_train) - mean * mean, 1e-12);
  model.users = train.users;
  model.items = train.items;
}

namespace {

std::uint64_t SplitMix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

}  // namespace

void Common::InitialRow(bool item, std::size_t index, double* row) const {
  // A SplitMix64 stream of this row's own.
  std::uint64_t state = opts.seed ^ (item ? 0x6a09e667f3bcc909ULL : 0xbb67ae8584caa73bULL);
  SplitMix(state);
  state ^= static_cast<std::uint64_t>(index) * 0x9e3779b97f4a7c15ULL;
  if (uniform) {
    const double scale = std::sqrt(std::pow(step_scale, -0.5) / static_cast<double>(rank));
    for (int c = 0; c < rank; ++c) {
      row[c] = scale * static_cast<double>(SplitMix(state) >> 11) * 0x1p-53;  // [0, 1)
    }
  } else if (item && !random_h) {
    std::fill(row, row + rank, 0.0);
  } else {
    // Standard normals by Box-Muller.
    const double scale = opts.init_scale / std::sqrt(static_cast<double>(rank));
    constexpr double kTwoPi = 6.283185307179586;
    for (int c = 0; c < rank; c += 2) {
      const double u1 = (static_cast<double>(SplitMix(state) >> 11) + 1) * 0x1p-53;  // (0, 1]
      const double u2 = static_cast<double>(SplitMix(state) >> 11) * 0x1p-53;
      const double r = scale * std::sqrt(-2 * std::log(u1));
      row[c] = r * std::cos(kTwoPi * u2);
      if (c + 1 < rank) row[c + 1] = r * std::sin(kTwoPi * u2);
    }
  }
  if (biases) {
    row[rank] = item ? 1 : 0;
    row[rank + 1] = item ? 0 : 1;
  }
}

void Common::AllocateModel(bool init) {
  model.w.setZero(static_cast<Eigen::Index>(num_users), k);
  model.h.setZero(static_cast<Eigen::Index>(num_items), k);
  if (!init) return;
  for (std::size_t u = 0; u < num_users; ++u) {
    InitialRow(false, u, model.w.data() + u * static_cast<std::size_t>(k));
  }
  for (std::size_t j = 0; j < num_items; ++j) {
    InitialRow(true, j, model.h.data() + j * static_cast<std::size_t>(k));
  }
}

double Common::RecordEpoch(const Eigen::VectorXd& t) {
  MfEpoch e;
  e.epoch = static_cast<int>(epochs.size()) + 1;
  e.seconds = clock.Seconds();
  e.train_rmse = std::sqrt(t[0] / static_cast<double>(num_train));
  e.test_rmse = num_test ? std::sqrt(t[1] / static_cast<double>(num_test))
                         : std::numeric_limits<double>::quiet_NaN();
  e.objective = t[0] + t[2];
  if (epochs.size() < static_cast<std::size_t>(opts.epochs)) {
    epochs.push_back(e);
    if (on_epoch) on_epoch(e);
  }
  return e.objective;
}

MfResult Common::Finish(RunResult run) {
  MfResult result;
  result.model = std::move(model);
  result.epochs = std::move(epochs);
  result.run = std::move(run);
  result.resumed = resumed;
  return result;
}

std::string Common::Problem(const std::string& extra) const {
  return "users " + std::to_string(num_users) + ", items " + std::to_string(num_items) +
         ", ratings " + std::to_string(num_train) + ", test " + std::to_string(num_test) +
         ", rank " + std::to_string(rank) + (biases ? ", biases" : "") +
         (uniform ? ", uniform start" : "") + extra;
}

Checkpoint Common::Save(const std::string& problem, std::span<const double> h) const {
  Checkpoint c = Checkpoint::For("mf", problem);
  c.PutDoubles("h", h);
  c.PutDoubles("w", {model.w.data(), static_cast<std::size_t>(model.w.size())});
  std::vector<double> history;
  for (const MfEpoch& e : epochs) {
    history.insert(history.end(), {static_cast<double>(e.epoch), e.seconds, e.objective,
                                   e.train_rmse, e.test_rmse});
  }
  c.PutDoubles("history", history);
  return c;
}

Status Common::Restore(const Checkpoint& c, const std::string& problem) {
  TESSERA_RETURN_IF_ERROR(c.Matches("mf", problem));
  TESSERA_ASSIGN_OR_RETURN(auto h, c.Doubles("h"));
  TESSERA_ASSIGN_OR_RETURN(auto w, c.Doubles("w"));
  TESSERA_ASSIGN_OR_RETURN(auto history, c.Doubles("history"));
  const auto kk = static_cast<std::size_t>(k);
  if (h.size() != num_items * kk || w.size() != num_users * kk || history.size() % 5 != 0) {
    return DataLoss(c.source() + ": the factors do not have the sizes the problem says");
  }
  if (history.size() / 5 > static_cast<std::size_t>(opts.epochs)) {
    return InvalidArgument(c.source() + ": " + std::to_string(history.size() / 5) +
                           " epochs are done already; --epochs is " + std::to_string(opts.epochs));
  }
  AllocateModel(false);
  std::copy(h.begin(), h.end(), model.h.data());
  std::copy(w.begin(), w.end(), model.w.data());
  epochs.clear();
  for (std::size_t i = 0; i < history.size(); i += 5) {
    MfEpoch e;
    e.epoch = static_cast<int>(history[i]);
    e.seconds = history[i + 1];
    e.objective = history[i + 2];
    e.train_rmse = history[i + 3];
    e.test_rmse = history[i + 4];
    epochs.push_back(e);
  }
  return Status::Ok();
}

StatusOr<RunResult> Common::RunModelParallel(ModelParallelApp& app) {
  EngineOptions engine = opts.engine;
  std::optional<CheckpointDir> dir;
  TESSERA_ASSIGN_OR_RETURN(
      std::string from,
      UseCheckpoints(app, {opts.checkpoint_dir, opts.checkpoint_every, opts.resume, "epochs"},
                     engine, dir));
  if (!from.empty()) {
    resumed = from + ": " + std::to_string(epochs.size()) + " of " + std::to_string(opts.epochs) +
              " epochs done";
  }
  clock = Stopwatch();
  return tessera::RunModelParallel(app, engine);
}

Status CheckInputs(const Ratings& train, const Ratings* test, const MfOptions& options) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  if (train.total() == 0) return InvalidArgument(train.source + ": no ratings");
  if (test && (test->users != train.users || test->items != train.items)) {
    return InvalidArgument("the test set must be read with the training set's id maps");
  }
  return Status::Ok();
}

// Under sanitizers clang may not vectorize the `omp simd` loops below and says so; that costs
// speed only.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpass-failed"
#endif

// The kernels are compiled for AVX-512, AVX2 and the baseline, the CPU's widest chosen when the
// program is loaded (an ifunc). Sanitizer builds take the baseline only: ThreadSanitizer's
// runtime is not up yet when ifunc resolvers run, and they crash.
#if defined(TESSERA_SANITIZED)
#define TESSERA_SIMD_CLONES
#else
#define TESSERA_SIMD_CLONES [[gnu::target_clones("avx512f", "avx2", "default")]]
#endif

namespace {

// w·h over a row of n floats (a multiple of kRowFloats); the compiler may reorder the sum.
inline float RowDot(const float* __restrict w, const float* __restrict h, int n) {
  float dot = 0;
#pragma omp simd reduction(+ : dot)
  for (int c = 0; c < n; ++c) dot += w[c] * h[c];
  return dot;
}

// One part of an adaptive step: columns [begin, end) of rows wr and hr step by lr / √gu and
// lr / √gi on the gradient of err; gu and gi then grow by the part's mean squared gradient.
[[gnu::always_inline]] inline void AdaptivePart(float* __restrict wr, float* __restrict hr,
                                                float& gu, float& gi, int begin, int end,
                                                float per_dim, float err, const SgdStepParams& p) {
  const float eta_w = p.lr / std::sqrt(gu), eta_h = p.lr / std::sqrt(gi);
  float sw = 0, sh = 0;
#pragma omp simd reduction(+ : sw, sh)
  for (int c = begin; c < end; ++c) {
    const float wc = wr[c], hc = hr[c];
    const float gw = p.lambda * wc - err * hc, gh = p.lambda * hc - err * wc;
    sw += gw * gw;
    sh += gh * gh;
    wr[c] = wc - eta_w * gw;
    hr[c] = hc - eta_h * gh;
  }
  gu += sw * per_dim;
  gi += sh * per_dim;
}

}  // namespace

TESSERA_SIMD_CLONES void SgdRatings(const Rating* first, const Rating* last, float* w, float* h,
                                    const SgdStepParams& p) {
  const std::size_t row = static_cast<std::size_t>(p.row);
  for (const Rating* r = first; r != last; ++r) {
    float* __restrict wr = w + std::size_t{r->user} * row;
    float* __restrict hr = h + std::size_t{r->item} * row;
    const float err = static_cast<float>(r->value) - p.mean - RowDot(wr, hr, p.row);
    for (int c = 0; c < p.row; ++c) {
      const float wc = wr[c], hc = hr[c];
      wr[c] = wc + p.lr * (err * hc - p.lambda * wc);
      hr[c] = hc + p.lr * (err * wc - p.lambda * hc);
    }
    if (p.biases) {
      wr[p.rank + 1] = 1;
      hr[p.rank] = 1;
    }
  }
}

TESSERA_SIMD_CLONES void SgdRatingsAdaptive(const Rating* first, const Rating* last, float* w,
                                            float* h, float* wg, float* hg,
                                            const SgdStepParams& p) {
  const std::size_t row = static_cast<std::size_t>(p.row);
  // The slow part is the first kSlowColumns columns (all when there are no more); the fast
  // part the rest of the row, whose padding stays 0.
  const int slow = std::min(kSlowColumns, p.row);
  const bool fast = p.dims > kSlowColumns && !p.slow_only;
  const float per_slow = 1.0f / static_cast<float>(std::min(kSlowColumns, p.dims));
  const float per_fast = 1.0f / static_cast<float>(std::max(p.dims - kSlowColumns, 1));
  for (const Rating* r = first; r != last; ++r) {
    float* __restrict wr = w + std::size_t{r->user} * row;
    float* __restrict hr = h + std::size_t{r->item} * row;
    float* gu = wg + std::size_t{kAdagradSlots} * r->user;
    float* gi = hg + std::size_t{kAdagradSlots} * r->item;
    const float err = static_cast<float>(r->value) - p.mean - RowDot(wr, hr, p.row);
    AdaptivePart(wr, hr, gu[0], gi[0], 0, slow, per_slow, err, p);
    if (fast) AdaptivePart(wr, hr, gu[1], gi[1], slow, p.row, per_fast, err, p);
    if (p.biases) {
      wr[p.rank + 1] = 1;
      hr[p.rank] = 1;
    }
  }
}

TESSERA_SIMD_CLONES double SquaredErrors(const Rating* first, const Rating* last, const float* w,
                                         const float* h, int row, double mean) {
  double sse = 0;
  const auto n = static_cast<std::size_t>(row);
  for (const Rating* r = first; r != last; ++r) {
    const double e =
        r->value - mean - RowDot(w + std::size_t{r->user} * n, h + std::size_t{r->item} * n, row);
    sse += e * e;
  }
  return sse;
}

TESSERA_SIMD_CLONES void ToFloatRows(const double* packed, std::size_t rows, int k, float* out,
                                     int row) {
  for (std::size_t i = 0; i < rows; ++i) {
    float* to = out + i * static_cast<std::size_t>(row);
    const double* from = packed + i * static_cast<std::size_t>(k);
    for (int c = 0; c < k; ++c) to[c] = static_cast<float>(from[c]);
    for (int c = k; c < row; ++c) to[c] = 0.0f;
  }
}

TESSERA_SIMD_CLONES void FloatRowChanges(const float* after, int row, double* packed,
                                         std::size_t rows, int k, double damp) {
  for (std::size_t i = 0; i < rows; ++i) {
    const float* a = after + i * static_cast<std::size_t>(row);
    double* v = packed + i * static_cast<std::size_t>(k);
    for (int c = 0; c < k; ++c) {
      v[c] = damp * (static_cast<double>(a[c]) - static_cast<double>(static_cast<float>(v[c])));
    }
  }
}

}  // namespace tessera::mf_internal
