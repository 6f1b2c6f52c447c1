#include "tessera/algorithms/lasso/lasso_dp.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace tessera {

namespace {

constexpr TableId kBeta = 0;  // the coefficients b (p keys, proximal step)
constexpr TableId kGrad = 1;  // hogwild only: G, the sum of the latest gradients (p keys, add)
constexpr int kPowerIterations = 30;
// L is estimated from below by the power iteration; a step of 1/(1.02 L) stays stable.
constexpr double kLipschitzMargin = 1.02;

// The server-side proximal step. State per coefficient: G (the sum of the workers' latest
// gradients), x (the last proximal iterate) and k (steps since the last restart).
UpdaterPtr ProximalUpdater(double lambda, double step, std::shared_ptr<const Eigen::VectorXd> pf,
                           bool momentum) {
  return FunctionUpdater(
      "lasso_proximal", 3,
      [=](Key first, std::size_t count, int, double* value, const double* delta, double* state) {
        std::vector<double> next(count);
        double restart_test = 0;  // (b − x_new)ᵀ(x_new − x): > 0 means momentum points uphill
        for (std::size_t i = 0; i < count; ++i) {
          double* s = state + 3 * i;
          s[0] += delta[i];
          const double t = step * lambda * (*pf)[static_cast<Eigen::Index>(first + i)];
          next[i] = SoftThreshold(value[i] - step * s[0], t);
          restart_test += (value[i] - next[i]) * (next[i] - s[1]);
        }
        const bool restart = restart_test > 0;
        for (std::size_t i = 0; i < count; ++i) {
          double* s = state + 3 * i;
          const double k = restart ? 0 : s[2];
          const double beta = momentum ? k / (k + 3) : 0;
          value[i] = next[i] + beta * (next[i] - s[1]);
          s[1] = next[i];
          s[2] = k + 1;
        }
      });
}

// The block method's steps: per feature the undelayed step 1/m_j of its block's metric M_B (see
// MakeBlocks), and per block how much the steps of the blocks stepped 1, 2, ... clocks before it
// can move its gradient: ρ(B, B') = ‖M_B^{-1/2} X̃_BᵀX̃_B' M_B'^{-1/2}‖/n, at most 1.
struct BlockSteps {
  Eigen::VectorXd step;
  std::vector<std::uint32_t> block_of;        // per feature
  std::vector<std::vector<double>> coupling;  // [block][k - 1]: ρ with the block k clocks back
  // The factor of a step of block b computed from values that missed the last τ clocks' steps:
  // the delayed block proximal gradient's step condition (Li, Andersen, Smola, Yu, NIPS 2014)
  // in these metrics, 1/(1 + Σ_k ρ_k), ρ = 1 beyond the couplings measured.
  double Shrink(std::size_t b, std::uint64_t tau) const {
    const auto& c = coupling[b];
    double delay = tau > c.size() ? static_cast<double>(tau - c.size()) : 0.0;
    for (std::size_t k = 0; k < c.size() && k < tau; ++k) delay += c[k];
    return 1.0 / (1.0 + delay);
  }
};

// The block method's server step on the block gradient g summed over the workers:
// b_j ← S(b_j − γ_j g_j, γ_j λ pf_j), γ_j = Shrink(τ) / m_j, with τ the staleness of the reads
// the clock's pushes were computed from (the shard's, per clock): steps shrink by the delay each
// clock actually had, not the worst the consistency model allows (delay-adaptive steps, Wu,
// Magnússon, Feyzmahdavian, Johansson, ICML 2022). No state: a step depends only on the value
// and the clock's summed gradient.
UpdaterPtr BlockProximalUpdater(double lambda, std::shared_ptr<const BlockSteps> steps,
                                std::shared_ptr<const Eigen::VectorXd> pf) {
  return StalenessAwareUpdater("lasso_block_proximal", 0,
                               [=](Key first, std::size_t count, int, double* value,
                                   const double* grad, double*, std::uint64_t staleness) {
                                 std::size_t block = steps->block_of.size();  // none yet
                                 double shrink = 1;
                                 for (std::size_t i = 0; i < count; ++i) {
                                   const auto j = static_cast<Eigen::Index>(first + i);
                                   if (steps->block_of[j] != block) {
                                     block = steps->block_of[j];
                                     shrink = steps->Shrink(block, staleness);
                                   }
                                   const double g = steps->step[j] * shrink;
                                   value[i] =
                                       SoftThreshold(value[i] - g * grad[i], g * lambda * (*pf)[j]);
                                 }
                               });
}

// Auto block count: about this many nonzeros per block, and at least this many blocks (small
// problems: coordinate descent). Under a bounded delay (bsp, sbp, ssp, essp) smaller blocks
// step closer to exact coordinate descent where columns share rows (news20 at λmax/10 to 1e-6
// under ssp:2: one block per 5,000 nonzeros 1.7x faster than per 20,000; the synthetic problem
// the same); under asp a pass of more clocks lets the workers drift further apart, and the
// larger blocks win (3.5x).
constexpr std::int64_t kNonzerosPerBlock = 5000;
constexpr std::int64_t kNonzerosPerAspBlock = 20000;
constexpr Eigen::Index kMinBlocks = 16;
constexpr int kBlockPowerIterations = 20;
constexpr int kCouplingIterations = 10;  // a coupling only scales a step: a rough one will do
// Under asp the couplings of a block with this many blocks before it are measured (ssp:S and
// essp:S: S); older steps count as ρ = 1.
constexpr std::size_t kAspCouplings = 4;
// Evaluations between recomputations of a worker's residual from scratch (the block method
// keeps it up to date incrementally; this bounds the rounding drift).
constexpr std::uint64_t kResidualRefresh = 32;
// The KKT filter's longest stretch of filtered passes between two full ones.
constexpr std::uint64_t kMaxFilteredPasses = 16;

}  // namespace

bool UsesBlockMethod(const LassoOptions& o) {
  const ConsistencyModel m = o.data_parallel.consistency.model;
  if (o.dp_method != "auto") return o.dp_method == "block";
  // Under bsp FISTA: with its KKT filter the block method is faster at λmax/10 (news20 0.86x,
  // golub 0.36x, the synthetic problem 0.17x FISTA's time), but without momentum it fell
  // behind on news20 at λmax/100 (22 s against 18 s to 1e-6). sbp folds a backup's late block
  // into a later clock's step, and hogwild has no per-clock sums: the gradient method.
  return (m == ConsistencyModel::kSsp || m == ConsistencyModel::kEssp ||
          m == ConsistencyModel::kSparseSsp || m == ConsistencyModel::kSspAggr ||
          m == ConsistencyModel::kAsp) &&
         o.data_parallel.batch_size == 0;
}

class DataParallelLasso::App final : public DataParallelApp {
  struct Shard;  // a worker's rows (below)

 public:
  App(const Dataset& data, const LassoOptions& opts)
      : data_(data), opts_(opts), n_(data.rows()), p_(data.cols()) {
    beta_ = Eigen::VectorXd::Zero(p_);
  }

  std::size_t num_rows() const override { return static_cast<std::size_t>(n_); }

  int RoundsPerBatch(const DataParallelOptions&) const override {
    return block_ ? static_cast<int>(blocks_.size()) : 1;
  }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec beta;
    beta.name = "lasso_beta";
    beta.num_keys = static_cast<std::uint64_t>(p_);
    beta.consistency = o.consistency;
    beta.initial_values = beta_;
    if (block_) {
      beta.sum_per_clock = true;
      beta.updater = BlockProximalUpdater(lambda_, MakeBlockSteps(), pf_);
      return {beta};
    }
    const bool sync = o.consistency.model == ConsistencyModel::kBsp;
    // Asynchronously each push takes a step with gradients up to (1 + S) clocks of every
    // worker old: 1/(L P (1 + S)) keeps that delayed iteration stable. Under sbp:B one step per
    // clock, on every worker's latest gradient, of which the B backups' may be older: 1/(L (1 +
    // B)).
    const bool backups = o.consistency.model == ConsistencyModel::kSbp;
    const double delay = sync      ? 1.0
                         : backups ? 1.0 + o.consistency.backups
                                   : o.workers * (1.0 + o.consistency.staleness);
    step_ = 1.0 / (lipschitz_ * delay);
    if (o.consistency.model != ConsistencyModel::kHogwild) {
      beta.updater = ProximalUpdater(lambda_, step_, pf_, opts_.accelerate && sync);
      return {beta};
    }
    // Hogwild: no update may keep state that a lost write would corrupt for good. G lives in
    // its own table of atomic adds, and workers write proximal steps into b themselves; a
    // step lost to a concurrent write is simply taken again.
    hogwild_ = true;
    beta.updater =
        FunctionUpdater("assign", 0,
                        [](Key, std::size_t count, int dim, double* value, const double* sum,
                           double*) { std::copy(sum, sum + count * dim, value); });
    TableSpec grad;
    grad.name = "lasso_gradient";
    grad.num_keys = static_cast<std::uint64_t>(p_);
    grad.consistency = o.consistency;
    return {beta, grad};
  }

  // The setup statistics: column sums, sums of squares and xᵀy, Σy and the row count of a
  // shard's rows.
  Eigen::VectorXd ShardStats(const Shard& sh) const {
    const Eigen::Index p = p_;
    Eigen::VectorXd s = Eigen::VectorXd::Zero(3 * p + 2);
    for (Eigen::Index j = 0; j < p; ++j) {
      for (SparseColMatrix::InnerIterator it(sh.x, j); it; ++it) {
        s[j] += it.value();
        s[p + j] += it.value() * it.value();
        s[2 * p + j] += it.value() * sh.y[it.index()];
      }
    }
    s[3 * p] = sh.y.sum();
    s[3 * p + 1] = static_cast<double>(sh.y.size());
    return s;
  }

  struct SetupValues {
    Eigen::VectorXd mu, pf, d, v;  // v: the power iteration's start
    double ybar = 0, lambda_max = 0;
  };
  // From the statistics summed over every row.
  SetupValues Derive(const Eigen::VectorXd& tot) const {
    const Eigen::Index p = p_;
    const double n = static_cast<double>(n_);
    SetupValues out;
    out.mu = tot.head(p) / n;
    out.pf.resize(p);
    out.d.resize(p);
    out.ybar = tot[3 * p] / n;
    for (Eigen::Index j = 0; j < p; ++j) {
      const double dj = std::max(0.0, tot[p + j] - n * out.mu[j] * out.mu[j]);
      out.d[j] = dj <= 1e-12 * std::max(tot[p + j], 1e-300) ? 0 : dj;  // 0: constant column
      out.pf[j] = opts_.standardize ? std::sqrt(out.d[j] / n) : 1.0;
      if (out.d[j] > 0 && out.pf[j] > 0) {
        // x̃_jᵀỹ = Σ x_ij y_i − ȳ Σ x_ij
        out.lambda_max = std::max(out.lambda_max,
                                  std::abs(tot[2 * p + j] - out.ybar * tot[j]) / (n * out.pf[j]));
      }
    }
    // Power iteration for L = λ_max(X̃ᵀX̃/n): every worker starts from the same v.
    std::mt19937_64 rng(opts_.data_parallel.seed);
    std::normal_distribution<double> normal;
    out.v.resize(p);
    for (Eigen::Index j = 0; j < p; ++j) out.v[j] = out.d[j] > 0 ? normal(rng) : 0.0;
    if (out.v.norm() > 0) out.v /= out.v.norm();
    return out;
  }

  void Keep(const SetupValues& s, double lipschitz) {
    mu_ = s.mu;
    pf_ = std::make_shared<const Eigen::VectorXd>(s.pf);
    ybar_ = s.ybar;
    lambda_max_ = s.lambda_max;
    lipschitz_ = std::max(lipschitz, 1e-300) * kLipschitzMargin;
  }

  // The setup values (column means, penalty factors, λ_max, the Lipschitz constant), which
  // every process computes itself from the whole data set it has read, so that the updaters of
  // the shards it runs agree with every other process's; the workers then only build their
  // shards.
  void LocalSetup() {
    Shard all;
    std::vector<std::uint32_t> rows(static_cast<std::size_t>(n_));
    for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<std::uint32_t>(i);
    BuildShard(all, rows);
    const SetupValues s = Derive(ShardStats(all));
    block_ = UsesBlockMethod(opts_);
    if (block_) {
      Keep(s, 1.0);
      MakeBlocks(all, s);
      return;
    }
    Eigen::VectorXd v = s.v;
    double lipschitz = 0;
    for (int it = 0; it < kPowerIterations && v.norm() > 0; ++it) {
      const Eigen::VectorXd sum = CenteredGradient(all, s.mu, v, false) / static_cast<double>(n_);
      lipschitz = sum.norm();
      if (!(lipschitz > 0)) break;
      v = sum / lipschitz;
    }
    Keep(s, lipschitz);
  }

  // A worker's rows, built by its first fit and kept for the rest of the path.
  std::unique_ptr<WorkerState> MakeWorker(const DpWorkerSetup& setup) override {
    auto sh = std::make_unique<Shard>();
    BuildShard(*sh, setup.rows);
    sh->y.array() -= ybar_;  // from here on, the centered response ỹ
    return sh;
  }
  // A later fit of the path: its gradients start anew.
  void ReuseWorker(WorkerState& state, const DpWorkerSetup&) override {
    auto& sh = static_cast<Shard&>(state);
    sh.g_acc.resize(0);
    sh.g_last.resize(0);
  }

  // The block method: every fit starts from the coefficients the shards hold (a warm start
  // from the last λ), with the residual over the worker's rows to match.
  Status Setup(DpWorkerContext& ctx) override {
    if (!block_) return Status::Ok();
    Shard& sh = ctx.State<Shard>();
    PullFuture f = ctx.client->PullRange(kBeta, {0, static_cast<Key>(p_)});
    TESSERA_ASSIGN_OR_RETURN(sh.b, f.Get());
    sh.r = Residual(sh, sh.b);
    sh.seen = f.served_clock();
    sh.evaluations = 0;
    sh.full_pass = true;
    sh.support.clear();
    sh.filtered_run = 1;
    sh.filtered_left = 0;
    return Status::Ok();
  }

  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> batch) override {
    Shard& sh = ctx.State<Shard>();
    if (block_) {
      if (batch.size() != ctx.rows.size()) {
        return FailedPrecondition("the block method works on whole partitions (batch size 0)");
      }
      return BlockStep(ctx, sh);
    }
    const KeyRange all{0, static_cast<Key>(p_)};
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd b, ctx.client->PullRange(kBeta, all).Get());
    if (sh.g_acc.size() != p_) sh.g_acc = Eigen::VectorXd::Zero(p_);
    if (sh.g_last.size() != p_) sh.g_last = Eigen::VectorXd::Zero(p_);
    if (batch.size() == ctx.rows.size()) {
      sh.g_acc += CenteredGradient(sh, mu_, b, /*subtract_y=*/true) / ctx.rows_per_clock;
    } else {  // a mini-batch: rows straight from the row-major data
      const double c = mu_.dot(b);
      double rsum = 0;
      Eigen::VectorXd g = Eigen::VectorXd::Zero(p_);
      for (auto i : batch) {
        const double r = data_.x.row(i).dot(b) - c - (data_.y[i] - ybar_);
        for (SparseRowMatrix::InnerIterator it(data_.x, i); it; ++it)
          g[it.index()] += r * it.value();
        rsum += r;
      }
      g -= mu_ * rsum;
      sh.g_acc += g / ctx.rows_per_clock;
    }
    if (!ctx.ends_clock) return Status::Ok();
    // Push the change of this worker's gradient: the server's G becomes the sum of the latest.
    Eigen::VectorXd delta = sh.g_acc - sh.g_last;
    std::swap(sh.g_last, sh.g_acc);
    sh.g_acc.setZero();
    if (!hogwild_) return ctx.client->PushRange(kBeta, all, Span(delta));
    TESSERA_RETURN_IF_ERROR(ctx.client->PushRange(kGrad, all, Span(delta)));
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd grad, ctx.client->PullRange(kGrad, all).Get());
    TESSERA_ASSIGN_OR_RETURN(b, ctx.client->PullRange(kBeta, all).Get());
    for (Eigen::Index j = 0; j < p_; ++j) {
      b[j] = SoftThreshold(b[j] - step_ * grad[j], step_ * lambda_ * (*pf_)[j]);
    }
    return ctx.client->PushRange(kBeta, all, Span(b));
  }

  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    Eigen::VectorXd t = Eigen::VectorXd::Zero(2);
    Shard& sh = ctx.State<Shard>();
    if (block_) {  // reads are exact here: catching up makes b and r the shards' values
      TESSERA_RETURN_IF_ERROR(CatchUp(ctx, sh, ctx.client->clock()));
      if (++sh.evaluations % kResidualRefresh == 0) sh.r = Residual(sh, sh.b);
      t.resize(3);
      t[0] = sh.r.squaredNorm() / ctx.replication;
      t[1] = ctx.worker == 0 ? pf_->dot(sh.b.cwiseAbs()) : 0.0;
      t[2] = ctx.worker == 0 && sh.full_pass ? 1.0 : 0.0;
      NextPass(sh);
      return t;
    }
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd b,
                             ctx.client->PullRange(kBeta, {0, static_cast<Key>(p_)}).Get());
    t[0] = Residual(sh, b).squaredNorm() / ctx.replication;
    if (ctx.worker == 0) {
      for (Eigen::Index j = 0; j < p_; ++j) t[1] += (*pf_)[j] * std::abs(b[j]);
    }
    return t;
  }

  double Objective(const Eigen::VectorXd& t) override {
    return t[0] / (2.0 * static_cast<double>(n_)) + lambda_ * t[1];
  }
  // The block method's KKT filter: only a full pass shows that no zero feature should move.
  bool MayStop(const Eigen::VectorXd& t) override { return t.size() < 3 || t[2] > 0; }

  // The solver's side, between runs.
  void BeginFit(double lambda) { lambda_ = lambda; }
  std::shared_ptr<KeptWorkers> kept_workers() const { return kept_; }
  void FinishSetup(const Dataset& data) {
    oracle_ = std::make_unique<LassoOracle>(data.x, data.y, mu_, *pf_);
  }
  double lambda_max() const { return lambda_max_; }
  std::size_t blocks() const { return block_ ? blocks_.size() : 0; }
  const LassoOracle& oracle() const { return *oracle_; }
  Eigen::VectorXd& beta() { return beta_; }

 private:
  struct Shard final : WorkerState {
    SparseColMatrix x;              // the worker's rows, column-major
    Eigen::VectorXd y;              // their responses (centered after setup)
    Eigen::VectorXd g_acc, g_last;  // gradient of this clock so far; the last one pushed
    // The block method: the coefficients as this worker last read them, the residual X̃b − ỹ
    // over its rows at them, and the clock up to which they hold every block step.
    Eigen::VectorXd b, r;
    std::uint64_t seen = 0;
    std::uint64_t evaluations = 0;
    // The KKT filter (LassoOptions::kkt_filter): whether this pass steps every feature or only
    // `support` (sorted: the features nonzero at the last evaluation), and the filtered passes
    // left before the next full one and in the last stretch of them. Every worker decides
    // alike, from the coefficients every worker reads at an evaluation.
    bool full_pass = true;
    std::vector<Key> support;
    std::uint64_t filtered_left = 0, filtered_run = 1;
  };

  // At an evaluation (b exact): what the next pass steps. After a full pass, filtered ones:
  // twice as many as the last time when the full pass left the support as it was (the support
  // has settled), else one; a support of more than half the features is not worth filtering.
  void NextPass(Shard& sh) const {
    if (!opts_.kkt_filter) return;
    std::vector<Key> support;
    for (Eigen::Index j = 0; j < p_; ++j) {
      if (sh.b[j] != 0) support.push_back(static_cast<Key>(j));
    }
    if (sh.full_pass) {
      sh.filtered_run =
          support == sh.support ? std::min(2 * sh.filtered_run, kMaxFilteredPasses) : 1;
      sh.filtered_left = sh.filtered_run;
    }
    sh.support = std::move(support);
    sh.full_pass = sh.filtered_left == 0 || 2 * sh.support.size() > static_cast<std::size_t>(p_);
    if (!sh.full_pass) --sh.filtered_left;
  }

  // X̃b − ỹ over the shard's rows.
  Eigen::VectorXd Residual(const Shard& sh, const Eigen::VectorXd& b) const {
    Eigen::VectorXd r = sh.x * b;
    r.array() -= mu_.dot(b);
    r -= sh.y;
    return r;
  }

  // Reads the blocks stepped in clocks [sh.seen, upto) and moves b and r to them. The reads
  // follow the table's consistency: under ssp:S they may miss the last S clocks' steps, which
  // the next catch-up reads again.
  // In a filtered pass (which an evaluation's catch-up never straddles: it reads up to the
  // current clock) the blocks' features outside the support did not move: only the support's
  // are read, and a block with none of them not at all.
  Status CatchUp(DpWorkerContext& ctx, Shard& sh, std::uint64_t upto) {
    if (upto <= sh.seen) return Status::Ok();
    const std::uint64_t nb = blocks_.size();
    std::vector<KeyRange> want;
    if (upto - sh.seen >= nb) {
      want.push_back({0, static_cast<Key>(p_)});
    } else {
      for (std::uint64_t k = sh.seen; k < upto; ++k) want.push_back(blocks_[k % nb]);
    }
    struct Read {
      std::span<const Key> keys;  // empty: the whole range
      KeyRange range;
      PullFuture pull;
    };
    std::vector<Read> reads;
    reads.reserve(want.size());
    for (const KeyRange& range : want) {
      if (sh.full_pass) {
        reads.push_back({{}, range, ctx.client->PullRange(kBeta, range)});
        continue;
      }
      const std::span<const Key> keys = SupportIn(sh, range);
      if (!keys.empty()) reads.push_back({keys, range, ctx.client->Pull(kBeta, keys)});
    }
    std::uint64_t served = upto;
    double shift = 0;  // μᵀΔb: the centering of X̃Δb
    auto move = [&](Eigen::Index j, double value) {
      const double d = value - sh.b[j];
      if (d == 0) return;
      for (SparseColMatrix::InnerIterator it(sh.x, j); it; ++it) sh.r[it.index()] += d * it.value();
      shift += mu_[j] * d;
      sh.b[j] += d;
    };
    for (Read& read : reads) {
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, read.pull.Get());
      served = std::min(served, read.pull.served_clock());
      if (read.keys.empty()) {
        for (Key k = read.range.begin; k < read.range.end; ++k) {
          move(static_cast<Eigen::Index>(k), v[static_cast<Eigen::Index>(k - read.range.begin)]);
        }
      } else {
        for (std::size_t i = 0; i < read.keys.size(); ++i) {
          move(static_cast<Eigen::Index>(read.keys[i]), v[static_cast<Eigen::Index>(i)]);
        }
      }
    }
    sh.r.array() -= shift;
    sh.seen = std::max(sh.seen, served);
    return Status::Ok();
  }

  // The support's features in `range`.
  static std::span<const Key> SupportIn(const Shard& sh, const KeyRange& range) {
    const auto first = std::lower_bound(sh.support.begin(), sh.support.end(), range.begin);
    const auto last = std::lower_bound(first, sh.support.end(), range.end);
    return {sh.support.data() + (first - sh.support.begin()),
            static_cast<std::size_t>(last - first)};
  }

  // One clock of the block method: the gradient of this clock's block over the worker's rows,
  // at the coefficients it has caught up to, pushed for the shards to sum and step on.
  // In a filtered pass, only the block's features in the support.
  Status BlockStep(DpWorkerContext& ctx, Shard& sh) {
    const std::uint64_t c = ctx.client->clock();
    TESSERA_RETURN_IF_ERROR(CatchUp(ctx, sh, c));
    const KeyRange& block = blocks_[c % blocks_.size()];
    if (sh.full_pass) {
      const Eigen::VectorXd g = TransposeTimes(sh, block, sh.r) / ctx.replication;
      return ctx.client->PushRange(kBeta, block, Span(g));
    }
    const std::span<const Key> keys = SupportIn(sh, block);
    if (keys.empty()) return Status::Ok();
    const double usum = sh.r.sum();
    Eigen::VectorXd g(static_cast<Eigen::Index>(keys.size()));
    for (std::size_t i = 0; i < keys.size(); ++i) {
      g[static_cast<Eigen::Index>(i)] =
          ColumnGradient(sh, static_cast<Eigen::Index>(keys[i]), sh.r, usum) / ctx.replication;
    }
    return ctx.client->Push(kBeta, keys, Span(g));
  }

  // X̃_B t over every row, t one value per feature of `block`.
  Eigen::VectorXd Times(const Shard& all, const KeyRange& block, const Eigen::VectorXd& t) const {
    const auto first = static_cast<Eigen::Index>(block.begin);
    Eigen::VectorXd u = Eigen::VectorXd::Constant(n_, -mu_.segment(first, t.size()).dot(t));
    for (Eigen::Index j = 0; j < t.size(); ++j) {
      if (t[j] == 0) continue;
      for (SparseColMatrix::InnerIterator x(all.x, first + j); x; ++x) {
        u[x.index()] += t[j] * x.value();
      }
    }
    return u;
  }
  // X̃_Bᵀu / n over the rows of `sh` (every row, or a worker's with u its residual: that
  // worker's part of the block gradient).
  Eigen::VectorXd TransposeTimes(const Shard& sh, const KeyRange& block,
                                 const Eigen::VectorXd& u) const {
    const auto first = static_cast<Eigen::Index>(block.begin);
    const auto width = static_cast<Eigen::Index>(block.size());
    const double usum = u.sum();
    Eigen::VectorXd v(width);
    for (Eigen::Index j = 0; j < width; ++j) v[j] = ColumnGradient(sh, first + j, u, usum);
    return v;
  }
  // x̃_jᵀu / n over the rows of `sh`, `usum` the sum of u.
  double ColumnGradient(const Shard& sh, Eigen::Index j, const Eigen::VectorXd& u,
                        double usum) const {
    double dot = 0;
    for (SparseColMatrix::InnerIterator x(sh.x, j); x; ++x) dot += x.value() * u[x.index()];
    return (dot - mu_[j] * usum) / static_cast<double>(n_);
  }
  // A start for a power iteration over `block`'s features (0 at constant columns).
  Eigen::VectorXd RandomStart(const KeyRange& block, std::mt19937_64& rng) const {
    std::normal_distribution<double> normal;
    Eigen::VectorXd v(static_cast<Eigen::Index>(block.size()));
    for (Eigen::Index j = 0; j < v.size(); ++j) {
      v[j] = curvature_[static_cast<Eigen::Index>(block.begin) + j] > 0 ? normal(rng) : 0.0;
    }
    return v;
  }

  // λ_max(X̃_BᵀX̃_B/n) of `block` by power iteration.
  double BlockLipschitz(const Shard& all, const KeyRange& block, std::mt19937_64& rng) const {
    Eigen::VectorXd v = RandomStart(block, rng);
    double eigenvalue = 0;
    for (int it = 0; it < kBlockPowerIterations && v.norm() > 0; ++it) {
      v /= v.norm();
      v = TransposeTimes(all, block, Times(all, block, v));
      eigenvalue = v.norm();
    }
    return eigenvalue;
  }

  // ρ(B, B') = ‖M_B^{-1/2} X̃_BᵀX̃_B' M_B'^{-1/2}‖/n (curvature_ holds the metrics), by power
  // iteration on AᵀA, capped at 1 (which it is in exact arithmetic).
  double Coupling(const Shard& all, const KeyRange& b, const KeyRange& c,
                  std::mt19937_64& rng) const {
    auto scale = [&](const KeyRange& block) {
      Eigen::VectorXd m = curvature_.segment(static_cast<Eigen::Index>(block.begin),
                                             static_cast<Eigen::Index>(block.size()));
      for (Eigen::Index j = 0; j < m.size(); ++j) m[j] = m[j] > 0 ? 1.0 / std::sqrt(m[j]) : 0.0;
      return m;
    };
    const Eigen::VectorXd sb = scale(b), sc = scale(c);
    Eigen::VectorXd v = RandomStart(c, rng);
    double sigma = 0;
    for (int it = 0; it < kCouplingIterations && v.norm() > 0; ++it) {
      v /= v.norm();
      const Eigen::VectorXd a =
          TransposeTimes(all, b, Times(all, c, v.cwiseProduct(sc))).cwiseProduct(sb);
      sigma = a.norm();
      v = TransposeTimes(all, c, Times(all, b, a.cwiseProduct(sb))).cwiseProduct(sc);
    }
    return std::min(1.0, kLipschitzMargin * sigma);
  }

  // Contiguous blocks of features with about equal nonzeros, and for each feature the
  // curvature m_j of a diagonal metric M_B ⪰ X̃_BᵀX̃_B/n of its block, whichever of two lets
  // the block's columns move further relative to their own curvature x̃_jᵀx̃_j/n:
  //   L_B I, L_B the block's largest eigenvalue (by power iteration): for dense, correlated
  //     columns;
  //   m_j = Σ_i |x_ij| a_i / n, a_i = Σ_{k∈B} |x_ik| (the expected separable overapproximation
  //     of parallel coordinate descent: by Cauchy–Schwarz (Σ_j |x_ij v_j|)² ≤ a_i Σ_j |x_ij| v_j²,
  //     and X̃ᵀX̃ ⪯ XᵀX): for sparse columns that rarely share a row, close to each column's
  //     own curvature.
  // A block of one column steps by exact coordinate minimization.
  void MakeBlocks(const Shard& all, const SetupValues& s) {
    const std::int64_t nnz = all.x.nonZeros();
    const std::int64_t per_block = opts_.data_parallel.consistency.model == ConsistencyModel::kAsp
                                       ? kNonzerosPerAspBlock
                                       : kNonzerosPerBlock;
    Eigen::Index nb = opts_.feature_blocks > 0
                          ? opts_.feature_blocks
                          : std::max<Eigen::Index>(nnz / per_block, kMinBlocks);
    nb = std::clamp<Eigen::Index>(nb, 1, std::max<Eigen::Index>(p_, 1));
    blocks_.clear();
    Key begin = 0;
    std::int64_t done = 0;
    for (Eigen::Index j = 0; j < p_; ++j) {
      done += all.x.col(j).nonZeros();
      const Eigen::Index left = nb - static_cast<Eigen::Index>(blocks_.size());
      // Close the block at its share of the nonzeros, or when each later block needs a column.
      const bool share = done * nb >= nnz * static_cast<std::int64_t>(blocks_.size() + 1);
      if (left > 1 && (share || p_ - 1 - j < left)) {
        blocks_.push_back({begin, static_cast<Key>(j + 1)});
        begin = static_cast<Key>(j + 1);
      }
    }
    blocks_.push_back({begin, static_cast<Key>(p_)});
    const double n = static_cast<double>(n_);
    curvature_ = s.d / n;  // x̃_jᵀx̃_j/n
    std::mt19937_64 rng(opts_.data_parallel.seed);
    Eigen::VectorXd a = Eigen::VectorXd::Zero(n_);
    for (const KeyRange& block : blocks_) {
      const auto first = static_cast<Eigen::Index>(block.begin);
      const auto width = static_cast<Eigen::Index>(block.size());
      if (width == 1) continue;
      const double lipschitz = BlockLipschitz(all, block, rng);
      a.setZero();
      for (Eigen::Index j = first; j < first + width; ++j) {
        for (SparseColMatrix::InnerIterator x(all.x, j); x; ++x)
          a[x.index()] += std::abs(x.value());
      }
      Eigen::VectorXd eso(width);
      double uniform = 0, separable = 0;  // Σ_j (x̃_jᵀx̃_j/n) / m_j in either metric
      for (Eigen::Index j = 0; j < width; ++j) {
        const double own = curvature_[first + j];
        eso[j] = 0;
        for (SparseColMatrix::InnerIterator x(all.x, first + j); x; ++x) {
          eso[j] += std::abs(x.value()) * a[x.index()] / n;
        }
        if (own <= 0) continue;  // a constant column stays out
        uniform += lipschitz > 0 ? own / lipschitz : 0.0;
        separable += eso[j] > 0 ? own / eso[j] : 0.0;
      }
      for (Eigen::Index j = first; j < first + width; ++j) {
        if (curvature_[j] > 0) curvature_[j] = uniform >= separable ? lipschitz : eso[j - first];
      }
    }
    // How much the blocks stepped just before each block couple with it (what a stale read
    // misses), as far back as the consistency model lets reads lag.
    const Consistency& c = opts_.data_parallel.consistency;
    const std::size_t count = blocks_.size();
    std::size_t back = c.model == ConsistencyModel::kAsp   ? kAspCouplings
                       : c.model == ConsistencyModel::kBsp ? 0
                                                           : static_cast<std::size_t>(c.staleness);
    back = std::min(back, count - 1);
    coupling_.assign(count, {});
    for (std::size_t b = 0; b < count; ++b) {
      for (std::size_t k = 1; k <= back; ++k) {
        coupling_[b].push_back(Coupling(all, blocks_[b], blocks_[(b + count - k) % count], rng));
      }
    }
  }

  std::shared_ptr<const BlockSteps> MakeBlockSteps() const {
    auto steps = std::make_shared<BlockSteps>();
    steps->step = Eigen::VectorXd::Zero(p_);
    steps->block_of.resize(static_cast<std::size_t>(p_));
    for (std::size_t b = 0; b < blocks_.size(); ++b) {
      for (Key k = blocks_[b].begin; k < blocks_[b].end; ++k) {
        const auto j = static_cast<Eigen::Index>(k);
        steps->block_of[k] = static_cast<std::uint32_t>(b);
        // Constant columns: a zero step keeps their coefficients at 0.
        if (curvature_[j] > 0) steps->step[j] = 1.0 / (kLipschitzMargin * curvature_[j]);
      }
    }
    steps->coupling = coupling_;
    return steps;
  }

  static std::span<const double> Span(const Eigen::VectorXd& v) {
    return {v.data(), static_cast<std::size_t>(v.size())};
  }

  void BuildShard(Shard& sh, std::span<const std::uint32_t> rows) {
    sh.y.resize(static_cast<Eigen::Index>(rows.size()));
    for (std::size_t l = 0; l < rows.size(); ++l) {
      sh.y[static_cast<Eigen::Index>(l)] = data_.y[rows[l]];
    }
    sh.x = ColumnMajorRows(data_.x, rows);
  }

  // X̃ᵀ(X̃v − ỹ) over the shard's rows (or X̃ᵀX̃v without ỹ), X̃ the centered columns.
  static Eigen::VectorXd CenteredGradient(const Shard& sh, const Eigen::VectorXd& mu,
                                          const Eigen::VectorXd& v, bool subtract_y) {
    Eigen::VectorXd r = sh.x * v;
    r.array() -= mu.dot(v);
    if (subtract_y) r -= sh.y;
    Eigen::VectorXd g = sh.x.transpose() * r;
    g -= mu * r.sum();
    return g;
  }

  const Dataset& data_;
  LassoOptions opts_;
  const Eigen::Index n_, p_;
  std::shared_ptr<KeptWorkers> kept_ = std::make_shared<KeptWorkers>();  // the workers' Shards
  // Set by LocalSetup, read-only afterwards.
  Eigen::VectorXd mu_;
  std::shared_ptr<const Eigen::VectorXd> pf_ = std::make_shared<const Eigen::VectorXd>();
  double ybar_ = 0, lambda_max_ = 0, lipschitz_ = 1;
  std::unique_ptr<LassoOracle> oracle_;
  double lambda_ = 0;
  Eigen::VectorXd beta_;
  double step_ = 0;  // set by Tables() before the workers start
  bool hogwild_ = false;
  // The block method (set by LocalSetup): the blocks of features, stepped one per clock in
  // turn, and the curvature of each feature's step.
  bool block_ = false;
  std::vector<KeyRange> blocks_;
  Eigen::VectorXd curvature_;                  // m_j: the diagonal of the metric of j's block
  std::vector<std::vector<double>> coupling_;  // see BlockSteps
};

StatusOr<std::unique_ptr<DataParallelLasso>> DataParallelLasso::Create(
    const Dataset& data, const LassoOptions& options) {
  const DataParallelOptions& dp = options.data_parallel;
  if (dp.workers > data.rows()) {
    return InvalidArgument("--workers " + std::to_string(dp.workers) + " is more than the " +
                           std::to_string(data.rows()) + " rows");
  }
  std::unique_ptr<DataParallelLasso> solver(new DataParallelLasso);
  solver->options_ = options;
  solver->app_ = std::make_unique<App>(data, options);
  solver->app_->LocalSetup();
  solver->app_->FinishSetup(data);
  return solver;
}

DataParallelLasso::~DataParallelLasso() = default;

double DataParallelLasso::LambdaMax() const { return app_->lambda_max(); }

std::string DataParallelLasso::Method() const {
  if (app_->blocks() > 0) {
    return "delayed block proximal gradient, " + std::to_string(app_->blocks()) + " blocks";
  }
  const bool bsp = options_.data_parallel.consistency.model == ConsistencyModel::kBsp;
  return options_.accelerate && bsp ? "FISTA" : "proximal gradient";
}

void DataParallelLasso::Reset() { app_->beta().setZero(); }

void DataParallelLasso::SetBeta(const Eigen::VectorXd& beta) { app_->beta() = beta; }

const LassoOracle& DataParallelLasso::oracle() const { return app_->oracle(); }

void DataParallelLasso::SetLabel(const std::string& label) { options_.data_parallel.label = label; }

StatusOr<LassoSolution> DataParallelLasso::Fit(double lambda, const CheckpointHook& checkpoint,
                                               double every) {
  app_->BeginFit(lambda);
  DataParallelOptions dp = options_.data_parallel;
  if (UsesBlockMethod(options_)) {
    // One block per clock; the objective after whole passes over the blocks (a pass over
    // blocks of zeros alone changes nothing, which would stop the tolerance rule early).
    dp.frequency.kind = UpdateFrequency::Kind::kBatch;
    if (dp.evaluate_every_epochs == 0) dp.evaluate_every_epochs = 1;
  }
  dp.kept_workers = app_->kept_workers();
  if (checkpoint && every > 0) {
    dp.checkpoint_every = every;
    dp.checkpoint = [&checkpoint](std::uint64_t epochs,
                                  const std::vector<Eigen::VectorXd>& tables) {
      return checkpoint(tables[kBeta], epochs);
    };
  }
  TESSERA_ASSIGN_OR_RETURN(DataParallelResult r,
                           RunDataParallel(*app_, dp, options_.engine.transport));
  // The next fit's shards start from this one's values (in a process without the driver: the
  // ranges of the shards it hosts, which are the ones it will host again).
  app_->beta() = r.tables[kBeta];
  LassoSolution s;
  s.lambda = lambda;
  if (!r.run.holds_result) {  // the coefficients are where the run's result is
    s.holds_result = false;
    return s;
  }
  s.beta = r.tables[kBeta];
  s.intercept = app_->oracle().Intercept(s.beta);
  const LassoCertificate c = app_->oracle().Certify(lambda, s.intercept, s.beta);
  s.objective = c.objective;
  s.kkt_violation = c.kkt_violation;
  s.gap = c.gap;
  s.rounds = r.run.rounds;
  s.seconds = r.run.seconds;
  s.bytes = r.run.bytes;
  s.updates = r.run.updates;
  s.stop_reason = r.run.stop_reason;
  s.evaluations = std::move(r.run.evaluations);
  s.staleness = std::move(r.run.staleness);
  return s;
}

}  // namespace tessera
