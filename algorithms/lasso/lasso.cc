#include "tessera/algorithms/lasso/lasso.h"

#include <Eigen/Cholesky>
#include <algorithm>
#include <cmath>
#include <functional>
#include <optional>
#include <sstream>
#include <unordered_map>

#include "tessera/algorithms/lasso/lasso_dp.h"
#include "tessera/core/checkpoint.h"
#include "tessera/core/fiber_pool.h"
#include "tessera/core/memory_limit.h"
#include "tessera/core/metrics.h"

namespace tessera {

namespace {

// Block ids tell a worker what to compute.
// Block::op: what the workers compute for a block's features.
constexpr std::uint32_t kUpdate = 0;        // partial gradients (+ Gram) for an update
constexpr std::uint32_t kGradientPass = 1;  // partial gradients only (KKT / screening pass)
// The whole working set at once: partial gradients and Gram entries, which the coordinator
// solves the working set's problem with (covariance updates) before it commits anything.
constexpr std::uint32_t kSolve = 2;
// The same with the nonzero Gram entries only (a chunk of sparse columns), found through the rows
// the columns share; its blocks have this id too, so that Aggregate knows their layout.
constexpr std::uint32_t kSolveSparse = 3;
// A chunk takes more than LassoOptions::solve_keys features while its Gram matrix has at most
// this many nonzero pairs (over all rows) and it has at most kMaxChunkKeys features.
constexpr std::uint64_t kChunkPairs = 1 << 20;
// A chunk solved before: the workers send its gradients only, and the coordinator solves it
// with the Gram matrix it kept (the Gram entries do not change; the chunks of a working set
// recur in every sweep over it and at every λ of a path).
constexpr std::uint32_t kSolveCached = 4;
// A chunk of sparse columns whose Gram matrix would cost more to go over than the columns
// themselves: the coordinator solves it on the columns and its own residual (the workers send
// nothing).
constexpr std::uint32_t kSolveColumns = 5;
constexpr std::size_t kMaxChunkKeys = 1 << 14;

class WorkingSetSolver;

// Part of a working set solved in one round (LassoApp::MakeChunks).
struct Chunk {
  std::vector<Key> keys;
  bool sparse = false;                       // kSolveSparse, not kSolve
  bool columns = false;                      // kSolveColumns
  std::shared_ptr<WorkingSetSolver> solver;  // its Gram matrix, once a round brought it
};
// Multiply-adds one solve may spend (about 10 ms): the coordinator's fiber does nothing else
// meanwhile. A working set not solved within it is taken up again by the next sweep.
constexpr double kSolveWork = 1 << 24;
// The fewest violators a working set takes in: 64 was the best of 32..1024 on arcene, news20
// and the synthetic problem (bench/README.md).
constexpr std::int64_t kMinRoom = 64;

// Partial Gram entries by pair (a << 32 | b, a < b, so never 0): open addressing in two arrays
// that double when half full, nothing allocated per entry (workers fill theirs at once, and
// an allocation per entry made them take turns at the allocator's lock).
class GramCache {
 public:
  std::size_t size() const { return size_; }
  void clear() {
    keys_.clear();
    values_.clear();
    size_ = 0;
  }
  const double* find(std::uint64_t key) const {
    if (keys_.empty()) return nullptr;
    for (std::size_t i = Slot(key);; i = (i + 1) & (keys_.size() - 1)) {
      if (keys_[i] == key) return &values_[i];
      if (keys_[i] == 0) return nullptr;
    }
  }
  void emplace(std::uint64_t key, double value) {
    if (2 * (size_ + 1) > keys_.size()) Grow();
    std::size_t i = Slot(key);
    while (keys_[i] != 0 && keys_[i] != key) i = (i + 1) & (keys_.size() - 1);
    if (keys_[i] == 0) ++size_;
    keys_[i] = key;
    values_[i] = value;
  }

 private:
  std::size_t Slot(std::uint64_t key) const {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & (keys_.size() - 1);
  }
  void Grow() {
    std::vector<std::uint64_t> keys = std::move(keys_);
    std::vector<double> values = std::move(values_);
    keys_.assign(std::max<std::size_t>(1024, 2 * keys.size()), 0);
    values_.assign(keys_.size(), 0.0);
    size_ = 0;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (keys[i] != 0) emplace(keys[i], values[i]);
    }
  }
  std::vector<std::uint64_t> keys_;  // 0: an empty slot
  std::vector<double> values_;
  std::size_t size_ = 0;
};

// One worker's rows, residual and scratch space; touched only by that worker's fiber.
struct RowShard final : WorkerState {
  // Local rows x all features, read in place from the data's column-major copy (or, when the
  // data has none, from a column-major copy of this worker's rows).
  std::shared_ptr<const ColumnRowRange> x;
  Eigen::VectorXd y;        // local responses, centered by the global mean
  Eigen::VectorXd colsum;   // Σ_i x_ij over local rows
  Eigen::VectorXd rs;       // r_s = ỹ − X b (uncentered X); residual r = r_s + c
  double c = 0;             // μᵀb: the centering part of the residual, the same everywhere
  Eigen::VectorXd beta;     // the committed coefficients as this worker applied them; equal
                            // bitwise to the coordinator's (which may be in another process)
  Eigen::VectorXd scatter;  // dense scratch of local-row length, kept all zero between uses
  // Partial Gram entries x_aᵀx_b over local rows, by pair: active-set sweeps revisit the same
  // pairs, and on count data with frequent terms the dots cost more than the gradients.
  GramCache gram_cache;
  std::size_t scattered = SIZE_MAX;  // the column currently in `scatter`
  std::uint64_t start = 0;           // the LassoApp::SetBeta whose coefficients `beta` began at
};

constexpr std::size_t kGramCacheLimit = 1 << 22;  // entries per worker (128 MiB worst case)
// Below this many nonzeros a dot product is cheaper than a hash-table visit: not cached.
constexpr std::int64_t kGramCacheMinNonzeros = 128;

double ColumnDot(const ColumnRowRange& x, Eigen::Index j, const Eigen::VectorXd& v) {
  double s = 0;
  for (auto it = x.Column(j); it; ++it) s += it.value() * v[it.index()];
  return s;
}

// Appends `deltas` to `update.delta` (its keys already pushed).
void AppendDeltas(Update& update, const std::vector<double>& deltas) {
  const Eigen::Index at = update.delta.size();
  update.delta.conservativeResize(at + static_cast<Eigen::Index>(deltas.size()));
  for (std::size_t t = 0; t < deltas.size(); ++t) {
    update.delta[at + static_cast<Eigen::Index>(t)] = deltas[t];
  }
}

// Anderson extrapolation of a fixed-point iteration (Anderson 1965; as skglm's
// AndersonAcceleration, K = 5): from the last K+1 iterates x_0..x_K, the combination
// Σ_{i>=1} c_i x_i with Σ c_i = 1 that minimizes ‖Σ c_i (x_i − x_{i−1})‖, i.e.
// c ∝ (UᵀU)⁻¹1 with U the K differences. A companion vector that depends affinely on x
// (a gradient, a residual) is extrapolated with the same c. The caller keeps the result only
// when it lowers the objective.
class Anderson {
 public:
  static constexpr int kDepth = 5;
  Anderson(Eigen::Index dim, Eigen::Index companion_dim)
      : x_(dim, kDepth + 1), y_(companion_dim, kDepth + 1) {}
  // Records an iterate; true when K+1 are held (Extrapolate may be called).
  bool Record(const Eigen::VectorXd& x, const Eigen::VectorXd& y) {
    x_.col(count_) = x;
    y_.col(count_) = y;
    return ++count_ == kDepth + 1;
  }
  // The extrapolated iterate and companion; false when UᵀU is singular. Starts over either way.
  bool Extrapolate(Eigen::VectorXd& x, Eigen::VectorXd& y) {
    count_ = 0;
    const Eigen::MatrixXd u = x_.rightCols(kDepth) - x_.leftCols(kDepth);
    const Eigen::MatrixXd utu = u.transpose() * u;
    const Eigen::LDLT<Eigen::MatrixXd> ldlt(utu);
    if (ldlt.info() != Eigen::Success) return false;
    Eigen::VectorXd c = ldlt.solve(Eigen::VectorXd::Ones(kDepth));
    const double sum = c.sum();
    if (!std::isfinite(sum) || sum == 0 || !c.allFinite()) return false;
    c /= sum;
    x = x_.rightCols(kDepth) * c;
    y = y_.rightCols(kDepth) * c;
    return true;
  }

 private:
  Eigen::MatrixXd x_, y_;
  Eigen::Index count_ = 0;
};

// The problem of a working set (or a chunk of one), solved at the coordinator:
//   min_b (1/2n)‖r₀ − X̃(b − b₀)‖² + (1/n) Σ_i t_i |b_i|,   t_i = nλ pf_i,
// by coordinate descent on the gradient g = X̃ᵀr and the Gram matrix of the centered columns
// G = X̃ᵀX̃ = S − n μμᵀ (S the raw products x_aᵀx_b, μ the column means): glmnet's covariance
// updates, a coordinate step changes every other gradient by G_jk·Δ. Held dense (G), or sparse
// (S's nonzeros by column, the rank-one part kept aside as the scalar τ = μᵀ(b − b₀), so that a
// step costs the column's nonzeros: g = h + n μ τ with h = g₀ − S(b − b₀)), or on the columns
// themselves and the residual (r_s = ỹ − Xb over every row and c = μᵀb, so that r = r_s + c and
// g_i = x_iᵀr_s + c n μ_i: a step costs the column's nonzeros twice, and nothing is built
// first). Passes alternate with Newton steps on the support and Anderson extrapolation (skglm's
// AndersonCD), each kept only when it lowers the objective.
class WorkingSetSolver {
 public:
  // Dense: the centered Gram matrix.
  explicit WorkingSetSolver(Eigen::MatrixXd g) : dense_(std::move(g)) {
    mu_ = Eigen::VectorXd::Zero(dense_.rows());
  }
  // Sparse: S's off-diagonal nonzeros as (column start, row, value) with both triangles, its
  // diagonal, and μ.
  WorkingSetSolver(std::vector<std::int64_t> start, std::vector<std::int32_t> index,
                   std::vector<double> value, Eigen::VectorXd s_diag, Eigen::VectorXd mu)
      : sparse_(true),
        start_(std::move(start)),
        index_(std::move(index)),
        value_(std::move(value)),
        s_diag_(std::move(s_diag)),
        mu_(std::move(mu)) {}
  // Columns: `cols` of `x` (read in place), μ of each, and the residual r_s and c at the
  // coefficients the solve starts from.
  WorkingSetSolver(std::shared_ptr<const SparseColMatrix> x, std::vector<Eigen::Index> cols,
                   Eigen::VectorXd mu, const Eigen::VectorXd& rs, double c)
      : columns_(std::make_shared<const ColumnRowRange>(x, 0, x->rows())),
        cols_(std::move(cols)),
        mu_(std::move(mu)) {
    residual_.resize(rs.size() + 1);
    residual_.head(rs.size()) = rs;
    residual_[rs.size()] = c;
  }

  // Coordinate descent from `b` (the coefficients) and `g` (their gradient X̃ᵀr) until a pass
  // changes no d_i·|Δb_i|/n by `tolerance` or more (true) or `work` multiply-adds are spent
  // (false). `d` is G's diagonal (the centered squared norms), `t` the thresholds; `g` is not
  // read by a solver on columns.
  bool Run(Eigen::VectorXd& b, const Eigen::VectorXd& g, const Eigen::VectorXd& d,
           const Eigen::VectorXd& t, double n, double tolerance, double work) {
    const Eigen::Index u = b.size();
    n_ = n;
    const Eigen::VectorXd start = b, g0 = columns_ ? Eigen::VectorXd() : g;
    // The state: h (and τ, last element), the gradient being h + n μ τ; or r_s and c.
    Eigen::VectorXd state;
    if (columns_) {
      state = std::move(residual_);
    } else {
      state.resize(u + 1);
      state.head(u) = g;
      state[u] = 0;
    }
    // The objective up to a constant: with δ = b − b₀, ‖r‖² = ‖r₀‖² − (g₀ + g)ᵀδ (as g = g₀ − Gδ).
    auto objective = [&](const Eigen::VectorXd& bb, const Eigen::VectorXd& st) {
      const double fit = columns_
                             ? (st.head(st.size() - 1).array() + st[st.size() - 1]).square().sum()
                             : -(g0 + Gradient(st)).dot(bb - start);
      return fit / (2.0 * n) + (t.array() * bb.array().abs()).sum() / n;
    };
    Anderson anderson(u, state.size());
    bool newton_tried = false;  // for the current sign pattern
    int since_newton = 0;       // passes since the last attempt
    double pass_cost = static_cast<double>(u) * static_cast<double>(u);
    if (columns_) {
      pass_cost = 0;
      for (Eigen::Index col : cols_)
        pass_cost += 2.0 * static_cast<double>(columns_->NonZeros(col));
    } else if (sparse_) {
      pass_cost = static_cast<double>(u + static_cast<Eigen::Index>(value_.size()));
    }
    const double passes = std::max(1.0, work / std::max(pass_cost, 1.0));
    double spent = 0;  // multiply-adds of the passes not yet matched by a Newton attempt
    for (double pass = 0; pass < passes; ++pass) {
      double change = 0;
      bool pattern_changed = false;
      for (Eigen::Index i = 0; i < u; ++i) {
        if (d[i] <= 0) continue;
        const double gi = GradientAt(i, state);
        const double nb = SoftThreshold(gi + d[i] * b[i], t[i]) / d[i];
        const double delta = nb - b[i];
        if (delta == 0) continue;
        pattern_changed |= (nb > 0) != (b[i] > 0) || (nb < 0) != (b[i] < 0);
        b[i] = nb;
        Step(i, delta, state);
        change = std::max(change, d[i] * std::abs(delta) / n);
      }
      if (change < tolerance) return true;
      // Newton on the support once the sign pattern holds for a pass, and every few passes
      // while it does not (a coefficient that flickers at zero); each attempt (a factorization,
      // m³/3 multiply-adds for m nonzeros) at most as costly as the passes before it.
      spent += pass_cost;
      newton_tried &= !pattern_changed;
      if (!newton_tried || ++since_newton > Anderson::kDepth) {
        newton_tried = true;
        since_newton = 0;
        const double m = static_cast<double>((b.array() != 0).count());
        if (m * m * m / 3 <= spent) {
          spent -= m * m * m / 3;
          SupportNewton(t, objective, b, state);
        }
      }
      if (anderson.Record(b, state)) {
        Eigen::VectorXd b_acc, s_acc;
        if (anderson.Extrapolate(b_acc, s_acc) && objective(b_acc, s_acc) < objective(b, state)) {
          b = std::move(b_acc);
          state = std::move(s_acc);
        }
      }
    }
    return false;
  }

 private:
  // Newton steps factor the support's Gram block: up to this many nonzeros.
  static constexpr Eigen::Index kNewtonKeys = 512;

  double GradientAt(Eigen::Index i, const Eigen::VectorXd& state) const {
    const Eigen::Index last = state.size() - 1;
    if (!columns_) return state[i] + n_ * mu_[i] * state[last];
    double dot = 0;
    for (auto it = Column(i); it; ++it) dot += it.value() * state[it.index()];
    return dot + n_ * mu_[i] * state[last];
  }

  Eigen::VectorXd Gradient(const Eigen::VectorXd& state) const {
    Eigen::VectorXd g(mu_.size());
    for (Eigen::Index i = 0; i < g.size(); ++i) g[i] = GradientAt(i, state);
    return g;
  }

  // b_i moved by `delta`: h −= (G or S) e_i δ, τ += μ_i δ; or r_s −= x_i δ, c += μ_i δ.
  void Step(Eigen::Index i, double delta, Eigen::VectorXd& state) const {
    const Eigen::Index u = state.size() - 1;
    if (columns_) {
      for (auto it = Column(i); it; ++it) state[it.index()] -= it.value() * delta;
      state[u] += mu_[i] * delta;
      return;
    }
    if (!sparse_) {
      state.head(u).noalias() -= dense_.col(i) * delta;
      return;
    }
    state[i] -= s_diag_[i] * delta;
    for (std::int64_t k = start_[static_cast<std::size_t>(i)];
         k < start_[static_cast<std::size_t>(i) + 1]; ++k) {
      state[index_[static_cast<std::size_t>(k)]] -= value_[static_cast<std::size_t>(k)] * delta;
    }
    state[u] += mu_[i] * delta;
  }

  // G's block on `act`.
  Eigen::MatrixXd Block(const std::vector<Eigen::Index>& act) const {
    const auto m = static_cast<Eigen::Index>(act.size());
    Eigen::MatrixXd h(m, m);
    if (columns_) {  // x_aᵀx_b − n μ_a μ_b, column a scattered into a dense row vector
      Eigen::VectorXd scatter = Eigen::VectorXd::Zero(columns_->rows());
      for (Eigen::Index a = 0; a < m; ++a) {
        for (auto it = Column(act[a]); it; ++it) scatter[it.index()] = it.value();
        for (Eigen::Index c = a; c < m; ++c) {
          double dot = 0;
          for (auto it = Column(act[c]); it; ++it) dot += it.value() * scatter[it.index()];
          h(a, c) = h(c, a) = dot - n_ * mu_[act[a]] * mu_[act[c]];
        }
        for (auto it = Column(act[a]); it; ++it) scatter[it.index()] = 0;
      }
      return h;
    }
    if (!sparse_) {
      for (Eigen::Index a = 0; a < m; ++a) {
        for (Eigen::Index c = 0; c < m; ++c) h(a, c) = dense_(act[a], act[c]);
      }
      return h;
    }
    std::unordered_map<Eigen::Index, Eigen::Index> where;
    for (Eigen::Index a = 0; a < m; ++a) where.emplace(act[a], a);
    h.setZero();
    for (Eigen::Index a = 0; a < m; ++a) {
      const auto i = static_cast<std::size_t>(act[a]);
      h(a, a) = s_diag_[act[a]];
      for (std::int64_t k = start_[i]; k < start_[i + 1]; ++k) {
        auto it = where.find(index_[static_cast<std::size_t>(k)]);
        if (it != where.end()) h(a, it->second) = value_[static_cast<std::size_t>(k)];
      }
    }
    for (Eigen::Index a = 0; a < m; ++a) {
      for (Eigen::Index c = 0; c < m; ++c) h(a, c) -= n_ * mu_[act[a]] * mu_[act[c]];
    }
    return h;
  }

  // With the signs of the nonzero coefficients held, the optimum solves a linear system on
  // them: G_AA (b*_A − b_A) = g_A − t_A ⊙ sign(b_A), the zeros staying zero. Once coordinate
  // descent has found the sign pattern this lands on the optimum it would approach slowly on
  // ill-conditioned problems (p ≫ n, correlated columns). The full step with every coefficient
  // whose sign it would flip set to zero; if that does not lower the objective, the step up to
  // the first coefficient that reaches zero (along which the signs hold and the objective
  // falls), as an active-set method would. Kept only when the objective falls; the next pass
  // confirms the zeros.
  template <typename Objective>
  bool SupportNewton(const Eigen::VectorXd& t, const Objective& objective, Eigen::VectorXd& b,
                     Eigen::VectorXd& state) const {
    std::vector<Eigen::Index> act;
    for (Eigen::Index i = 0; i < b.size(); ++i) {
      if (b[i] != 0) act.push_back(i);
    }
    const auto m = static_cast<Eigen::Index>(act.size());
    if (m == 0 || m > kNewtonKeys) return false;
    const Eigen::VectorXd g = Gradient(state);
    Eigen::VectorXd rhs(m);
    for (Eigen::Index a = 0; a < m; ++a) {
      rhs[a] = g[act[a]] - t[act[a]] * (b[act[a]] > 0 ? 1 : -1);
    }
    const Eigen::LDLT<Eigen::MatrixXd> ldlt(Block(act));
    if (ldlt.info() != Eigen::Success) return false;
    const Eigen::VectorXd step = ldlt.solve(rhs);
    if (!step.allFinite()) return false;
    double first = 1;  // the fraction of the step at which the first coefficient reaches zero
    Eigen::Index hit = -1;
    for (Eigen::Index a = 0; a < m; ++a) {
      const double v = b[act[a]] + step[a];
      if (v == 0 || (v > 0) != (b[act[a]] > 0)) {
        const double ta = -b[act[a]] / step[a];
        if (ta < first) {
          first = ta;
          hit = a;
        }
      }
    }
    auto take = [&](bool truncated, Eigen::VectorXd& nb, Eigen::VectorXd& ns) {
      nb = b;
      ns = state;
      for (Eigen::Index a = 0; a < m; ++a) {
        const double old = b[act[a]], v = old + step[a];
        const bool to_zero = truncated ? a == hit : (v == 0 || (v > 0) != (old > 0));
        const double delta = to_zero ? -old : (truncated ? first * step[a] : step[a]);
        nb[act[a]] = to_zero ? 0.0 : old + delta;
        Step(act[a], delta, ns);
      }
    };
    Eigen::VectorXd nb, ns;
    take(false, nb, ns);
    if (hit >= 0 && !(objective(nb, ns) < objective(b, state))) {
      if (!(first > 0)) return false;
      take(true, nb, ns);
    }
    if (!(objective(nb, ns) < objective(b, state))) return false;
    b = std::move(nb);
    state = std::move(ns);
    return true;
  }

  // On columns: the chunk's column i.
  ColumnRowRange::Iterator Column(Eigen::Index i) const {
    return columns_->Column(cols_[static_cast<std::size_t>(i)]);
  }

  bool sparse_ = false;
  std::shared_ptr<const ColumnRowRange> columns_;  // null unless solving on columns
  std::vector<Eigen::Index> cols_;
  Eigen::VectorXd residual_;  // r_s and c as the solve starts
  Eigen::MatrixXd dense_;
  std::vector<std::int64_t> start_;
  std::vector<std::int32_t> index_;
  std::vector<double> value_;
  Eigen::VectorXd s_diag_, mu_;
  double n_ = 1;
};

// x_jᵀr over a worker's rows (r = r_s + c).
double PartialGradient(const RowShard& s, Eigen::Index j) {
  return ColumnDot(*s.x, j, s.rs) + s.c * s.colsum[j];
}

}  // namespace

namespace {

// The scheduler `o` names, offered the fit's block size, with `dependency`.
StatusOr<std::unique_ptr<Scheduler>> MakeScheduler(const LassoOptions& o, DependencyFn dependency) {
  TESSERA_ASSIGN_OR_RETURN(SchedulerSpec spec, SchedulerSpec::Parse(o.scheduler));
  spec.args.SetDefault("block_size", std::to_string(o.block_size));
  SchedulerSetup setup;
  setup.num_workers = o.engine.workers;
  setup.dependency = std::move(dependency);
  return DefaultSchedulers().Create(spec.name, setup, spec.args);
}

}  // namespace

Status LassoOptions::Validate() const {
  TESSERA_RETURN_IF_ERROR(engine.Validate());
  if (block_size < 1) {
    return InvalidArgument("--block-size must be at least 1, got " + std::to_string(block_size));
  }
  if (solve_keys < 0) {
    return InvalidArgument("--solve-keys must be >= 0, got " + std::to_string(solve_keys));
  }
  if (mode == "model-parallel") {  // the scheduler's name and arguments
    TESSERA_RETURN_IF_ERROR(
        MakeScheduler(*this, [](Key, Key) { return 0.0; }).status());  // the fit's own later
  }
  if (block_update != "sequential" && block_update != "parallel") {
    return InvalidArgument("--block-update must be 'sequential' or 'parallel', got '" +
                           block_update + "'");
  }
  if (!(tolerance > 0)) return InvalidArgument("--tolerance must be > 0");
  if (stop != "gap" && stop != "kkt") {
    return InvalidArgument("--stop must be 'gap' or 'kkt', got '" + stop + "'");
  }
  if (mode != "model-parallel" && mode != "data-parallel") {
    return InvalidArgument("--mode must be 'model-parallel' or 'data-parallel', got '" + mode +
                           "'");
  }
  if (mode == "data-parallel") TESSERA_RETURN_IF_ERROR(data_parallel.Validate());
  if (dp_method != "auto" && dp_method != "gradient" && dp_method != "block") {
    return InvalidArgument("--dp-method must be 'auto', 'gradient' or 'block', got '" + dp_method +
                           "'");
  }
  if (feature_blocks < 0) {
    return InvalidArgument("--feature-blocks must be >= 0, got " + std::to_string(feature_blocks));
  }
  if (dp_method == "block") {
    const ConsistencyModel m = data_parallel.consistency.model;
    if (m == ConsistencyModel::kHogwild || m == ConsistencyModel::kSbp) {
      return InvalidArgument(
          "--dp-method block needs consistency bsp, ssp:S, essp:S, sparsessp:S, sspaggr:S or "
          "asp, not " +
          data_parallel.consistency.ToString());
    }
    if (data_parallel.batch_size != 0) {
      return InvalidArgument("--dp-method block works on whole partitions: --batch-size must be 0");
    }
  }
  if (!(checkpoint_every >= 0)) return InvalidArgument("--checkpoint-every must be >= 0");
  if (resume && checkpoint_dir.empty()) {
    return InvalidArgument("resuming needs the checkpoint directory");
  }
  return Status::Ok();
}

LassoOracle::LassoOracle(const SparseRowMatrix& x, const Eigen::VectorXd& y, Eigen::VectorXd mu,
                         Eigen::VectorXd pf)
    : x_(x), y_(y), mu_(std::move(mu)), pf_(std::move(pf)) {}

Eigen::VectorXd LassoOracle::Residual(double b0, const Eigen::VectorXd& beta) const {
  return (y_.array() - b0).matrix() - x_ * beta;
}

double LassoOracle::Intercept(const Eigen::VectorXd& beta) const {
  return y_.mean() - mu_.dot(beta);
}

double LassoOracle::Objective(double lambda, double b0, const Eigen::VectorXd& beta) const {
  const Eigen::VectorXd r = Residual(b0, beta);
  double pen = 0;
  for (Eigen::Index j = 0; j < beta.size(); ++j) pen += pf_[j] * std::abs(beta[j]);
  return r.squaredNorm() / (2.0 * static_cast<double>(y_.size())) + lambda * pen;
}

double LassoOracle::KktViolation(double lambda, double b0, const Eigen::VectorXd& beta) const {
  return Certify(lambda, b0, beta).kkt_violation;
}

double LassoOracle::DualityGap(double lambda, const Eigen::VectorXd& beta) const {
  return Certify(lambda, Intercept(beta), beta).gap;
}

LassoCertificate LassoOracle::Certify(double lambda, double b0, const Eigen::VectorXd& beta) const {
  const double n = static_cast<double>(y_.size());
  const Eigen::VectorXd r = Residual(b0, beta);
  const double rmean = r.mean();
  // x̃_jᵀr/n = x_jᵀr/n − μ_j·mean(r); the same for the centered residual r − mean(r), which is
  // the residual at the optimal intercept of `beta` that the gap is taken at.
  const Eigen::VectorXd xr = (x_.transpose() * r) / n;
  LassoCertificate c;
  c.kkt_violation = std::abs(rmean);  // stationarity in the intercept
  double s = lambda, pen = 0;
  for (Eigen::Index j = 0; j < beta.size(); ++j) {
    const double gj = xr[j] - mu_[j] * rmean;
    const double t = lambda * pf_[j];
    const double v =
        beta[j] != 0 ? std::abs(gj - t * (beta[j] > 0 ? 1 : -1)) : std::max(std::abs(gj) - t, 0.0);
    c.kkt_violation = std::max(c.kkt_violation, v);
    if (pf_[j] > 0) s = std::max(s, std::abs(gj) / pf_[j]);
    pen += pf_[j] * std::abs(beta[j]);
  }
  c.objective = r.squaredNorm() / (2 * n) + lambda * pen;
  const auto rc = r.array() - rmean;  // the centered residual
  const double rr = rc.square().sum(), ry = (rc * (y_.array() - y_.mean())).sum();
  const double primal = rr / (2 * n) + lambda * pen;
  const double dual = -lambda * lambda * rr / (2 * n * s * s) + lambda * ry / (n * s);
  c.gap = std::max(primal - dual, 0.0);
  return c;
}

int LassoSolution::nonzeros() const { return static_cast<int>((beta.array() != 0).count()); }

class LassoApp final : public ModelParallelApp {
 public:
  LassoApp(const Dataset& data, const LassoOptions& opts) : opts_(opts), rows_(data.x) {
    SchedulerArgs verifier;
    verifier.SetDefault("block_size", std::to_string(opts.block_size));
    verifier_ = std::move(MakeRoundRobinScheduler({}, verifier).value());
    n_ = data.rows();
    p_ = data.cols();
    sequential_ = opts.block_update == "sequential";
    if (data.columns && data.columns->rows() == n_ && data.columns->cols() == p_) {
      columns_ = data.columns;
    }
    y_full_ = data.y;
    ybar_ = data.y.mean();
    null_ms_ = (data.y.array() - ybar_).matrix().squaredNorm() / n_;
    // The column sums, sums of squares and x_jᵀỹ, summed over each worker's rows and then over
    // the workers, in every process the same way (so they agree bitwise); each worker builds its
    // own column-major shard (MakeWorker).
    yc_ = data.y.array() - ybar_;
    ranges_ = SplitRange(n_, opts.engine.workers);
    std::vector<Eigen::VectorXd> sum_parts(ranges_.size()), sq_parts(ranges_.size()),
        xty_parts(ranges_.size()), nnz_parts(ranges_.size());
    ParallelFor(static_cast<int>(ranges_.size()), [&](int w) {
      Eigen::VectorXd& sum = sum_parts[w] = Eigen::VectorXd::Zero(p_);
      Eigen::VectorXd& sq = sq_parts[w] = Eigen::VectorXd::Zero(p_);
      Eigen::VectorXd& xty = xty_parts[w] = Eigen::VectorXd::Zero(p_);
      Eigen::VectorXd& nnz = nnz_parts[w] = Eigen::VectorXd::Zero(p_);
      for (Key i = ranges_[w].begin; i < ranges_[w].end; ++i) {
        const auto row = static_cast<Eigen::Index>(i);
        for (SparseRowMatrix::InnerIterator it(rows_, row); it; ++it) {
          nnz[it.index()] += 1;
          sum[it.index()] += it.value();
          sq[it.index()] += it.value() * it.value();
          xty[it.index()] += it.value() * yc_[row];
        }
      }
    });
    Eigen::VectorXd sum = Eigen::VectorXd::Zero(p_), sq = sum, xty = sum;
    col_nnz_ = sum;
    for (std::size_t w = 0; w < ranges_.size(); ++w) {
      col_nnz_ += nnz_parts[w];
      sum += sum_parts[w];
      sq += sq_parts[w];
      xty += xty_parts[w];
    }
    mu_ = sum / static_cast<double>(n_);
    d_.resize(p_);
    pf_.resize(p_);
    for (Eigen::Index j = 0; j < p_; ++j) {
      d_[j] = std::max(0.0, sq[j] - n_ * mu_[j] * mu_[j]);
      if (d_[j] <= 1e-12 * std::max(sq[j], 1e-300)) d_[j] = 0;  // constant column
      pf_[j] = opts.standardize ? std::sqrt(d_[j] / n_) : 1.0;
    }
    // λ_max = max_j |x̃_jᵀỹ| / (n pf_j); x̃_jᵀỹ = x_jᵀỹ since Σỹ = 0.
    for (Eigen::Index j = 0; j < p_; ++j) {
      if (d_[j] > 0 && pf_[j] > 0) {
        lambda_max_ = std::max(lambda_max_, std::abs(xty[j]) / (n_ * pf_[j]));
      }
    }
    beta_ = Eigen::VectorXd::Zero(p_);
    last_lambda_ = lambda_max_;
    oracle_ = std::make_unique<LassoOracle>(rows_, y_full_, mu_, pf_);
  }

  double LambdaMax() const { return lambda_max_; }

  // Dependency between coordinates a and b: |corr| of the centered columns.
  double ColumnDependency(Key a, Key b) {
    const auto ia = static_cast<Eigen::Index>(a), ib = static_cast<Eigen::Index>(b);
    if (d_[ia] <= 0 || d_[ib] <= 0) return 0;
    EnsureColumns();
    SparseColMatrix::InnerIterator i(*x_, ia), k(*x_, ib);
    double dot = 0;
    while (i && k) {
      if (i.index() == k.index()) {
        dot += i.value() * k.value();
        ++i;
        ++k;
      } else if (i.index() < k.index()) {
        ++i;
      } else {
        ++k;
      }
    }
    return std::abs(dot - n_ * mu_[ia] * mu_[ib]) / std::sqrt(d_[ia] * d_[ib]);
  }

  // Prepares a fit at `lambda`, warm-started from the current coefficients. The first round
  // is a gradient pass over every feature that picks the working set.
  void BeginFit(double lambda) {
    lambda_ = lambda;
    working_.assign(p_, 0);
    working_list_.clear();
    penalty_ = 0;
    nonzeros_ = 0;
    for (Eigen::Index j = 0; j < p_; ++j) {
      penalty_ += pf_[j] * std::abs(beta_[j]);
      nonzeros_ += beta_[j] != 0;
    }
    first_pass_ = true;
    sweep_left_ = 0;
    skip_to_kkt_ = true;
    done_ = false;
    kkt_pending_ = false;
    screened_.assign(p_, 0);
    screened_count_ = 0;
    gap_ = HUGE_VAL;
    kkt_floor_ = opts_.tolerance * std::max(lambda_max_, 1e-300);
  }

  // The last gradient pass's duality gap (of the problem restricted to the features not
  // screened, whose optimum is the whole problem's) and the features screened in this fit.
  double gap() const { return gap_; }
  std::int64_t screened() const { return screened_count_; }

  void EndFit(double lambda) { last_lambda_ = lambda; }

  const Eigen::VectorXd& beta() const { return beta_; }
  double intercept() const { return ybar_ - mu_.dot(beta_); }
  void SetZero() { SetBeta(Eigen::VectorXd::Zero(p_), lambda_max_); }
  // The coefficients the next fit starts from, and the λ they were fitted at (for the strong
  // rule). Called the same way in every process; the workers take them up as their next run
  // starts (ReuseWorker).
  void SetBeta(const Eigen::VectorXd& beta, double fitted_at) {
    beta_ = beta;
    ++start_;
    last_lambda_ = fitted_at;
  }
  std::shared_ptr<KeptWorkers> kept_workers() const { return kept_; }

  Status InitScheduler() {
    TESSERA_ASSIGN_OR_RETURN(
        scheduler_, MakeScheduler(opts_, [this](Key a, Key b) { return ColumnDependency(a, b); }));
    return Status::Ok();
  }

  // --- ModelParallelApp ---

  // Worker: the column-major shard of its rows, at the coefficients the fit starts from.
  std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup& setup) override {
    auto s = std::make_unique<RowShard>();
    const auto begin = static_cast<Eigen::Index>(ranges_[setup.worker].begin);
    const auto len = static_cast<Eigen::Index>(ranges_[setup.worker].size());
    if (columns_) {
      s->x = std::make_shared<const ColumnRowRange>(columns_, begin, len, &s->colsum);
    } else {
      s->x = std::make_shared<const ColumnRowRange>(
          std::make_shared<const SparseColMatrix>(ColumnMajorRows(rows_, begin, len)), 0, len,
          &s->colsum);
    }
    s->y = yc_.segment(begin, len);
    s->scatter = Eigen::VectorXd::Zero(len);
    s->beta = beta_;
    s->start = start_;
    Resync(*s);
    return s;
  }
  // The shard of the previous fit: it goes on from its own copy of the coefficients (the
  // coordinator's may be in another process) unless SetBeta gave new ones since.
  void ReuseWorker(WorkerState& state, const WorkerSetup&) override {
    auto& s = static_cast<RowShard&>(state);
    if (s.start != start_) {
      s.beta = beta_;
      s.start = start_;
    }
    Resync(s);
  }

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (done_) {
      plan.done = true;
      return plan;
    }
    while (sweep_left_ == 0) {
      if (!ctx.in_flight.empty()) return plan;  // barrier: judge the sweep on fresh values
      if (kkt_pending_) {
        kkt_pending_ = false;
        if (FinishKkt()) {
          done_ = true;
          plan.done = true;
          return plan;
        }
      } else if (NextPhase()) {
        // Converged on the candidates: one gradient pass over every feature checks KKT.
        kkt_pending_ = true;
        Block b;  // for every worker
        b.op = kGradientPass;
        for (Eigen::Index j = 0; j < p_; ++j) {
          if (!screened_[j]) b.keys.push_back(static_cast<Key>(j));
        }
        plan.blocks.push_back(std::move(b));
        stale_[ctx.round] = {};
        return plan;
      }
    }
    Block merged;  // for every worker
    merged.op = kUpdate;
    if (solving_) {
      // One chunk per round, each solved on the coefficients the chunks before it committed.
      if (!ctx.in_flight.empty()) return plan;
      const Chunk& c = chunks_[next_chunk_];
      current_chunk_ = next_chunk_++;
      merged.op = c.columns  ? kSolveColumns
                  : c.solver ? kSolveCached
                  : c.sparse ? kSolveSparse
                             : kSolve;
      if (merged.op == kSolveSparse) {
        merged.id = kSolveSparse;
        sparse_chunk_keys_ = c.keys.size();
      }
      merged.keys = c.keys;
    } else {
      Scheduler& s = verifying_ ? *verifier_ : *scheduler_;
      std::vector<Block> blocks = s.Next(ctx);
      for (auto& b : blocks) merged.keys.insert(merged.keys.end(), b.keys.begin(), b.keys.end());
    }
    TESSERA_CHECK(!merged.keys.empty()) << "scheduler returned no keys";
    for (Key k : merged.keys) {
      if (visited_[k] != sweep_id_) {
        visited_[k] = sweep_id_;
        ++visited_count_;
      }
    }
    sweep_left_ -=
        std::min<std::int64_t>(sweep_left_, static_cast<std::int64_t>(merged.keys.size()));
    plan.evaluate_after = sweep_left_ == 0;
    plan.blocks.push_back(std::move(merged));
    stale_[ctx.round].assign(ctx.in_flight.begin(), ctx.in_flight.end());
    return plan;
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    RowShard& s = ctx.State<RowShard>();
    std::vector<Partial> out;
    for (const Block& b : blocks) {
      if (b.op == kSolveSparse) {
        out.push_back(SparseSolvePartial(s, b));
        continue;
      }
      if (b.op == kSolveColumns) {
        Partial part;
        part.block = b.id;
        out.push_back(std::move(part));
        continue;
      }
      const std::size_t u = b.keys.size();
      if (b.op == kSolveCached) {
        Partial part;
        part.block = b.id;
        part.values.resize(static_cast<Eigen::Index>(u));
        for (std::size_t i = 0; i < u; ++i) {
          const auto j = static_cast<Eigen::Index>(b.keys[i]);
          part.values[static_cast<Eigen::Index>(i)] = PartialGradient(s, j);
        }
        out.push_back(std::move(part));
        continue;
      }
      const bool gram = (b.op == kUpdate && sequential_) || b.op == kSolve;
      const std::size_t m = gram ? ctx.stale_keys.size() : 0;
      const bool pass = b.op == kGradientPass;
      Partial part;
      part.block = b.id;
      part.values.resize(
          static_cast<Eigen::Index>(u + (gram ? u * (u - 1) / 2 + u * m : 0) + (pass ? 2 : 0)));
      Eigen::Index at = 0;
      for (Key k : b.keys) {
        const auto j = static_cast<Eigen::Index>(k);
        part.values[at++] = PartialGradient(s, j);
      }
      if (pass) {  // the duality gap's partials: ‖r‖² and rᵀỹ over this worker's rows
        const auto r = s.rs.array() + s.c;
        part.values[at++] = r.square().sum();
        part.values[at++] = (r * s.y.array()).sum();
      }
      if (gram) {
        if (s.gram_cache.size() > kGramCacheLimit) s.gram_cache.clear();
        for (std::size_t i = 0; i < u; ++i) {
          const Key a = b.keys[i];
          for (std::size_t k = i + 1; k < u; ++k) part.values[at++] = GramEntry(s, a, b.keys[k]);
          for (std::size_t k = 0; k < m; ++k)
            part.values[at++] = GramEntry(s, a, ctx.stale_keys[k]);
        }
        ClearScatter(s);
      }
      out.push_back(std::move(part));
    }
    return out;
  }

  // A kSolveSparse block's partial: the gradients x_jᵀr, then the nonzero raw Gram entries
  // x_aᵀx_b (a < b, positions in the chunk) over this worker's rows as [m, a·u + b (m), values
  // (m)] in increasing a·u + b. They are found through the rows the columns share, so a chunk
  // of sparse columns costs its pairs, not u(u−1)/2 dot products.
  Partial SparseSolvePartial(RowShard& s, const Block& b) const {
    const std::size_t u = b.keys.size(), rows = static_cast<std::size_t>(s.x->rows());
    // The chunk's entries by row (a counting sort), each row's in increasing position.
    std::vector<std::uint32_t> start(rows + 1, 0);
    std::size_t total = 0;
    for (Key k : b.keys) {
      for (auto it = s.x->Column(static_cast<Eigen::Index>(k)); it; ++it) {
        ++start[static_cast<std::size_t>(it.index()) + 1];
        ++total;
      }
    }
    for (std::size_t r = 0; r < rows; ++r) start[r + 1] += start[r];
    std::vector<std::uint32_t> next(start.begin(), start.end() - 1), pos(total), slot(total);
    std::vector<double> val(total);
    std::size_t c = 0;
    for (std::size_t i = 0; i < u; ++i) {
      for (auto it = s.x->Column(static_cast<Eigen::Index>(b.keys[i])); it; ++it) {
        const std::uint32_t q = next[static_cast<std::size_t>(it.index())]++;
        pos[q] = static_cast<std::uint32_t>(i);
        val[q] = it.value();
        slot[c++] = q;
      }
    }
    Partial part;
    part.block = b.id;
    std::vector<double> out(u + 1);
    for (std::size_t i = 0; i < u; ++i) {
      const auto j = static_cast<Eigen::Index>(b.keys[i]);
      out[i] = PartialGradient(s, j);
    }
    // Column a's partners b > a: the later entries of the rows it has.
    std::vector<double> acc(u, 0.0), keys, values;
    std::vector<char> seen(u, 0);
    std::vector<std::uint32_t> touched;
    c = 0;
    for (std::size_t a = 0; a < u; ++a) {
      for (auto it = s.x->Column(static_cast<Eigen::Index>(b.keys[a])); it; ++it) {
        const std::uint32_t q = slot[c++];
        const std::uint32_t end = start[static_cast<std::size_t>(it.index()) + 1];
        for (std::uint32_t z = q + 1; z < end; ++z) {
          const std::uint32_t k = pos[z];
          if (!seen[k]) {
            seen[k] = 1;
            touched.push_back(k);
          }
          acc[k] += val[q] * val[z];
        }
      }
      std::sort(touched.begin(), touched.end());
      for (std::uint32_t k : touched) {
        keys.push_back(static_cast<double>(a * u + k));
        values.push_back(acc[k]);
        acc[k] = 0;
        seen[k] = 0;
      }
      touched.clear();
    }
    out[u] = static_cast<double>(keys.size());
    out.insert(out.end(), keys.begin(), keys.end());
    out.insert(out.end(), values.begin(), values.end());
    part.values =
        Eigen::Map<const Eigen::VectorXd>(out.data(), static_cast<Eigen::Index>(out.size()));
    return part;
  }

  // Coordinator: the workers' kSolveSparse partials, checked and merged (gradients summed, Gram
  // entries of the same pair added); partials of every other block are summed.
  StatusOr<Partial> Aggregate(std::span<const Partial> partials) override {
    if (partials[0].block != kSolveSparse) return ModelParallelApp::Aggregate(partials);
    const std::size_t u = sparse_chunk_keys_;
    const double pairs = static_cast<double>(u) * (static_cast<double>(u) - 1) / 2;
    std::vector<double> keys, values, merged_keys, merged_values;
    Eigen::VectorXd g = Eigen::VectorXd::Zero(static_cast<Eigen::Index>(u));
    for (const Partial& p : partials) {
      const auto& v = p.values;
      const std::string who = "worker " + std::to_string(p.worker) + ": ";
      if (static_cast<std::size_t>(v.size()) < u + 1) {
        return InvalidArgument(who + "a chunk of " + std::to_string(u) +
                               " features needs at least " + std::to_string(u + 1) +
                               " partial values, got " + std::to_string(v.size()));
      }
      const double m = v[static_cast<Eigen::Index>(u)];
      if (!(m >= 0 && m <= pairs && m == std::floor(m)) ||
          static_cast<double>(v.size()) != static_cast<double>(u) + 1 + 2 * m) {
        return InvalidArgument(who + "Gram entry count " + FormatDouble(m) + " does not fit " +
                               std::to_string(v.size()) + " partial values of a chunk of " +
                               std::to_string(u) + " features");
      }
      g += v.head(static_cast<Eigen::Index>(u));
      const auto count = static_cast<std::size_t>(m);
      keys.clear();
      values.clear();
      double last = -1;
      for (std::size_t t = 0; t < count; ++t) {
        const double key = v[static_cast<Eigen::Index>(u + 1 + t)];
        const double a = std::floor(key / static_cast<double>(u)),
                     b = key - a * static_cast<double>(u);
        if (!(key > last && key == std::floor(key) && a < b && b < static_cast<double>(u))) {
          return InvalidArgument(who + "Gram entry " + std::to_string(t) + " has position " +
                                 FormatDouble(key) +
                                 ": not a pair a < b of the chunk, or out of order");
        }
        last = key;
        keys.push_back(key);
        values.push_back(v[static_cast<Eigen::Index>(u + 1 + count + t)]);
      }
      // Merge into what the workers before sent (both in increasing order).
      std::vector<double> mk, mv;
      std::size_t x = 0, y = 0;
      while (x < merged_keys.size() || y < keys.size()) {
        if (y == keys.size() || (x < merged_keys.size() && merged_keys[x] < keys[y])) {
          mk.push_back(merged_keys[x]);
          mv.push_back(merged_values[x++]);
        } else if (x == merged_keys.size() || keys[y] < merged_keys[x]) {
          mk.push_back(keys[y]);
          mv.push_back(values[y++]);
        } else {
          mk.push_back(keys[y]);
          mv.push_back(merged_values[x++] + values[y++]);
        }
      }
      merged_keys = std::move(mk);
      merged_values = std::move(mv);
    }
    Partial out;
    out.block = partials[0].block;
    const std::size_t m = merged_keys.size();
    out.values.resize(static_cast<Eigen::Index>(u + 1 + 2 * m));
    out.values.head(static_cast<Eigen::Index>(u)) = g;
    out.values[static_cast<Eigen::Index>(u)] = static_cast<double>(m);
    for (std::size_t t = 0; t < m; ++t) {
      out.values[static_cast<Eigen::Index>(u + 1 + t)] = merged_keys[t];
      out.values[static_cast<Eigen::Index>(u + 1 + m + t)] = merged_values[t];
    }
    return out;
  }

  // The solver of a chunk from its merged kSolveSparse partial (Aggregate checked its layout).
  WorkingSetSolver SparseSolver(const std::vector<Key>& keys, const Eigen::VectorXd& v) const {
    const std::size_t u = keys.size();
    const auto m = static_cast<std::size_t>(v[static_cast<Eigen::Index>(u)]);
    std::vector<std::int64_t> start(u + 1, 0);
    auto pair = [&](std::size_t t) {
      const auto key = static_cast<std::uint64_t>(v[static_cast<Eigen::Index>(u + 1 + t)]);
      return std::pair<std::size_t, std::size_t>(key / u, key % u);
    };
    for (std::size_t t = 0; t < m; ++t) {
      const auto [a, b] = pair(t);
      ++start[a + 1];
      ++start[b + 1];
    }
    for (std::size_t i = 0; i < u; ++i) start[i + 1] += start[i];
    std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
    std::vector<std::int32_t> index(2 * m);
    std::vector<double> value(2 * m);
    for (std::size_t t = 0; t < m; ++t) {
      const auto [a, b] = pair(t);
      const double x = v[static_cast<Eigen::Index>(u + 1 + m + t)];
      index[static_cast<std::size_t>(fill[a])] = static_cast<std::int32_t>(b);
      value[static_cast<std::size_t>(fill[a]++)] = x;
      index[static_cast<std::size_t>(fill[b])] = static_cast<std::int32_t>(a);
      value[static_cast<std::size_t>(fill[b]++)] = x;
    }
    Eigen::VectorXd s_diag(static_cast<Eigen::Index>(u)), mu(static_cast<Eigen::Index>(u));
    for (std::size_t i = 0; i < u; ++i) {
      const auto j = static_cast<Eigen::Index>(keys[i]);
      mu[static_cast<Eigen::Index>(i)] = mu_[j];
      s_diag[static_cast<Eigen::Index>(i)] = d_[j] + n_ * mu_[j] * mu_[j];
    }
    return WorkingSetSolver(std::move(start), std::move(index), std::move(value), std::move(s_diag),
                            std::move(mu));
  }

  // The solver of a chunk on its columns, from the residual at the committed coefficients
  // (r_s = ỹ − Xb from the nonzeros, c = μᵀb).
  WorkingSetSolver ColumnSolver(const std::vector<Key>& keys) {
    EnsureColumns();
    Eigen::VectorXd rs = yc_;
    double c = 0;
    for (Eigen::Index j = 0; j < p_; ++j) {
      const double bj = beta_[j];
      if (bj == 0) continue;
      for (SparseColMatrix::InnerIterator it(*x_, j); it; ++it) rs[it.index()] -= bj * it.value();
      c += mu_[j] * bj;
    }
    std::vector<Eigen::Index> cols(keys.size());
    Eigen::VectorXd mu(static_cast<Eigen::Index>(keys.size()));
    for (std::size_t i = 0; i < keys.size(); ++i) {
      cols[i] = static_cast<Eigen::Index>(keys[i]);
      mu[static_cast<Eigen::Index>(i)] = mu_[cols[i]];
    }
    return WorkingSetSolver(x_, std::move(cols), std::move(mu), rs, c);
  }

  // Partial x_aᵀx_b over this worker's rows, from the cache or by scattering column a and
  // gathering column b.
  static double GramEntry(RowShard& s, Key a, Key b) {
    TESSERA_CHECK(a < (1ull << 32) && b < (1ull << 32)) << "feature index too large";
    const std::uint64_t pair = a < b ? (a << 32 | b) : (b << 32 | a);
    const auto ia = static_cast<Eigen::Index>(a), ib = static_cast<Eigen::Index>(b);
    const bool cache = s.x->NonZeros(ia) + s.x->NonZeros(ib) >= kGramCacheMinNonzeros;
    if (cache) {
      if (const double* v = s.gram_cache.find(pair)) return *v;
    }
    if (s.scattered != a) {
      ClearScatter(s);
      for (auto it = s.x->Column(static_cast<Eigen::Index>(a)); it; ++it) {
        s.scatter[it.index()] = it.value();
      }
      s.scattered = a;
    }
    const double v = ColumnDot(*s.x, ib, s.scatter);
    if (cache) s.gram_cache.emplace(pair, v);
    return v;
  }

  static void ClearScatter(RowShard& s) {
    if (s.scattered == SIZE_MAX) return;
    for (auto it = s.x->Column(static_cast<Eigen::Index>(s.scattered)); it; ++it) {
      s.scatter[it.index()] = 0;
    }
    s.scattered = SIZE_MAX;
  }

  Update Pull(PullContext& ctx, std::span<const Block> blocks,
              std::span<const Partial> merged) override {
    Update update;
    std::vector<Key> stale = std::move(stale_[ctx.round]);
    stale_.erase(ctx.round);
    for (std::size_t bi = 0; bi < blocks.size(); ++bi) {
      const Block& b = blocks[bi];
      const Eigen::VectorXd& v = merged[bi].values;
      const std::size_t u = b.keys.size();
      if (b.op == kSolveColumns) {
        TESSERA_CHECK(ctx.stale_updates.empty()) << "a chunk is solved with no round in flight";
        TESSERA_CHECK(chunks_[current_chunk_].keys == b.keys)
            << "the chunk pulled is not the chunk scheduled";
        WorkingSetSolver solver = ColumnSolver(b.keys);
        Solve(b.keys, Eigen::VectorXd(), solver, update);
        continue;
      }
      if (b.op == kSolveSparse || b.op == kSolveCached) {
        TESSERA_CHECK(ctx.stale_updates.empty()) << "a chunk is solved with no round in flight";
        Chunk& c = chunks_[current_chunk_];
        TESSERA_CHECK(c.keys == b.keys) << "the chunk pulled is not the chunk scheduled";
        if (b.op == kSolveSparse) {
          c.solver = std::make_shared<WorkingSetSolver>(SparseSolver(b.keys, v));
        }
        TESSERA_CHECK(c.solver) << "a cached chunk without its Gram matrix";
        Solve(b.keys, v.head(static_cast<Eigen::Index>(u)), *c.solver, update);
        continue;
      }
      if (b.op == kGradientPass) {
        kkt_grad_ = Eigen::VectorXd::Zero(p_);  // screened features are left out
        for (std::size_t i = 0; i < u; ++i) {
          kkt_grad_[static_cast<Eigen::Index>(b.keys[i])] =
              v[static_cast<Eigen::Index>(i)] / static_cast<double>(n_);
        }
        residual_sq_ = v[static_cast<Eigen::Index>(u)];
        residual_dot_y_ = v[static_cast<Eigen::Index>(u + 1)];
        continue;
      }
      Eigen::VectorXd g = v.head(static_cast<Eigen::Index>(u));
      auto gram = [&](std::size_t i, std::size_t k) {  // G(keys[i], keys[k]) for i < k
        const std::size_t row_start = i * u - i * (i + 1) / 2 + i * stale.size();
        const auto a = static_cast<Eigen::Index>(b.keys[i]),
                   c = static_cast<Eigen::Index>(b.keys[k]);
        return v[static_cast<Eigen::Index>(u + row_start + (k - i - 1))] - n_ * mu_[a] * mu_[c];
      };
      if (sequential_ && !ctx.stale_updates.empty()) {
        // The workers' gradients miss the updates committed since they pushed: correct them.
        std::unordered_map<Key, std::size_t> where;
        for (std::size_t k = 0; k < stale.size(); ++k) where.emplace(stale[k], k);
        for (std::size_t i = 0; i < u; ++i) {
          const std::size_t row_start = i * u - i * (i + 1) / 2 + i * stale.size();
          const std::size_t cross = u + row_start + (u - i - 1);
          const auto a = static_cast<Eigen::Index>(b.keys[i]);
          for (const Update& su : ctx.stale_updates) {
            for (std::size_t t = 0; t < su.keys.size(); ++t) {
              auto it = where.find(su.keys[t]);
              TESSERA_CHECK(it != where.end()) << "stale update of a key not pushed as stale";
              const auto kk = static_cast<Eigen::Index>(su.keys[t]);
              const double gak =
                  v[static_cast<Eigen::Index>(cross + it->second)] - n_ * mu_[a] * mu_[kk];
              g[static_cast<Eigen::Index>(i)] -= gak * su.delta[static_cast<Eigen::Index>(t)];
            }
          }
        }
      }
      if (b.op == kSolve) {
        const auto uu = static_cast<Eigen::Index>(u);
        Eigen::MatrixXd gm(uu, uu);
        for (std::size_t i = 0; i < u; ++i) {
          const auto ii = static_cast<Eigen::Index>(i);
          gm(ii, ii) = d_[static_cast<Eigen::Index>(b.keys[i])];
          for (std::size_t k = i + 1; k < u; ++k) {
            gm(ii, static_cast<Eigen::Index>(k)) = gm(static_cast<Eigen::Index>(k), ii) =
                gram(i, k);
          }
        }
        Chunk& c = chunks_[current_chunk_];
        TESSERA_CHECK(c.keys == b.keys) << "the chunk pulled is not the chunk scheduled";
        c.solver = std::make_shared<WorkingSetSolver>(std::move(gm));
        Solve(b.keys, g, *c.solver, update);
        continue;
      }
      std::vector<double> deltas;
      for (std::size_t i = 0; i < u; ++i) {
        const auto j = static_cast<Eigen::Index>(b.keys[i]);
        if (d_[j] <= 0) continue;
        const double old = beta_[j];
        const double nb =
            SoftThreshold(g[static_cast<Eigen::Index>(i)] + d_[j] * old, n_ * lambda_ * pf_[j]) /
            d_[j];
        const double delta = nb - old;
        if (delta == 0) continue;
        beta_[j] = old + delta;  // what every worker's copy becomes (Apply), bit for bit
        penalty_ += pf_[j] * (std::abs(nb) - std::abs(old));
        nonzeros_ += (nb != 0) - (old != 0);
        if (old == 0) entered_ = true;
        deltas.push_back(delta);
        update.keys.push_back(b.keys[i]);
        sweep_change_ = std::max(sweep_change_, d_[j] * std::abs(delta) / n_);
        if (sequential_) {
          for (std::size_t k = i + 1; k < u; ++k)
            g[static_cast<Eigen::Index>(k)] -= gram(i, k) * delta;
        }
      }
      AppendDeltas(update, deltas);
    }
    if (!update.empty()) {
      scheduler_->Observe(update.keys, update.delta);
    }
    return update;
  }

  // Solves the working-set chunk `keys` at the coordinator (WorkingSetSolver) from the
  // gradient g = X̃ᵀr and its Gram matrix, and commits the total change of each coefficient.
  void Solve(const std::vector<Key>& keys, const Eigen::VectorXd& g, WorkingSetSolver& solver,
             Update& update) {
    const auto u = static_cast<Eigen::Index>(keys.size());
    Eigen::VectorXd b(u), thresh(u), diag(u);
    for (Eigen::Index i = 0; i < u; ++i) {
      const auto j = static_cast<Eigen::Index>(keys[static_cast<std::size_t>(i)]);
      b[i] = beta_[j];
      diag[i] = d_[j];
      thresh[i] = n_ * lambda_ * pf_[j];
    }
    const Eigen::VectorXd start = b;
    const bool converged =
        solver.Run(b, g, diag, thresh, static_cast<double>(n_), inner_tolerance_, kSolveWork);
    solve_converged_ = solve_converged_ && converged;
    std::vector<double> deltas;
    for (Eigen::Index i = 0; i < u; ++i) {
      const auto j = static_cast<Eigen::Index>(keys[static_cast<std::size_t>(i)]);
      const double old = start[i], delta = b[i] - old;
      if (delta == 0) continue;
      beta_[j] = old + delta;  // what every worker's copy becomes (Apply), bit for bit
      const double nb = beta_[j];
      penalty_ += pf_[j] * (std::abs(nb) - std::abs(old));
      nonzeros_ += (nb != 0) - (old != 0);
      if (old == 0) entered_ = true;
      sweep_change_ = std::max(sweep_change_, d_[j] * std::abs(delta) / n_);
      update.keys.push_back(keys[static_cast<std::size_t>(i)]);
      deltas.push_back(delta);
    }
    AppendDeltas(update, deltas);
  }

  void Apply(WorkerContext& ctx, const Update& update) override {
    RowShard& s = ctx.State<RowShard>();
    for (std::size_t t = 0; t < update.keys.size(); ++t) {
      const auto j = static_cast<Eigen::Index>(update.keys[t]);
      const double delta = update.delta[static_cast<Eigen::Index>(t)];
      for (auto it = s.x->Column(j); it; ++it) s.rs[it.index()] -= delta * it.value();
      s.c += mu_[j] * delta;
      s.beta[j] += delta;
    }
  }

  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    const RowShard& s = ctx.State<RowShard>();
    Eigen::VectorXd t(1);
    t[0] = (s.rs.array() + s.c).square().sum();
    return t;
  }

  double Objective(const Eigen::VectorXd& terms) override {
    return terms[0] / (2.0 * n_) + lambda_ * penalty_;
  }

  // A worker's residual from its coefficients (as a fit starts; also clears the rounding drift
  // of incremental updates).
  void Resync(RowShard& s) const {
    s.rs = s.y;
    for (Eigen::Index j = 0; j < p_; ++j) {
      if (s.beta[j] == 0) continue;
      for (auto it = s.x->Column(j); it; ++it) s.rs[it.index()] -= s.beta[j] * it.value();
    }
    s.c = mu_.dot(s.beta);
  }

  const LassoOracle& oracle() const { return *oracle_; }

 private:
  enum class Phase { kFull, kActive };

  void StartSweep(Phase phase, bool verifying = false) {
    phase_ = phase;
    verifying_ = verifying;
    solving_ = false;
    std::vector<Key> keys;  // nonzeros are always in the working set (FinishKkt)
    for (Key k : working_list_) {
      if (phase == Phase::kFull || beta_[static_cast<Eigen::Index>(k)] != 0) keys.push_back(k);
    }
    if (keys.empty()) {  // nothing to update: go straight to the KKT pass
      sweep_left_ = 0;
      sweep_keys_ = 0;
      sweep_change_ = 0;
      entered_ = false;
      skip_to_kkt_ = true;
      return;
    }
    skip_to_kkt_ = false;
    solving_ = sequential_ && opts_.solve_keys > 0;
    if (solving_) {  // rounds that solve the working set chunk by chunk: no scheduler
      if (keys != chunked_keys_) {
        chunks_ = MakeChunks(keys);
        chunked_keys_ = std::move(keys);
      }
      next_chunk_ = 0;
      solve_converged_ = true;
      sweep_keys_ = sweep_left_ = static_cast<std::int64_t>(chunked_keys_.size());
      ++sweep_id_;
      visited_.resize(p_, 0);
      visited_count_ = 0;
      sweep_change_ = 0;
      entered_ = false;
      return;
    }
    (verifying ? *verifier_ : *scheduler_).Reset(keys);
    sweep_keys_ = static_cast<std::int64_t>(keys.size());
    sweep_left_ = sweep_keys_;
    ++sweep_id_;
    visited_.resize(p_, 0);
    visited_count_ = 0;
    sweep_change_ = 0;
    entered_ = false;
  }

  // Splits a working set into the chunks solved one per round: one chunk if it has at most
  // solve_keys features; else a chunk takes features in order while it has fewer than
  // solve_keys, or while its Gram matrix has at most kChunkPairs nonzero pairs (counted on the
  // full data: a row with k of the chunk's columns holds k(k−1)/2) and fewer than kMaxChunkKeys
  // features. A chunk larger than solve_keys, or whose Gram matrix is (or is estimated) less
  // than a quarter full, is solved from its nonzero entries only, or on its columns when a pass
  // over them (each entry twice) costs no more than a pass over the Gram matrix's nonzeros
  // (each pair twice; building the Gram matrix costs more again).
  std::vector<Chunk> MakeChunks(const std::vector<Key>& keys) {
    const auto solve_keys = static_cast<std::size_t>(opts_.solve_keys);
    auto on_columns = [](double u, double entries, double pairs) {
      return 2 * entries <= u + 2 * pairs;
    };
    if (keys.size() <= solve_keys) {  // one chunk; the pairs estimated for rows alike: E²/2n
      double entries = 0;
      for (Key k : keys) entries += col_nnz_[static_cast<Eigen::Index>(k)];
      const double u = static_cast<double>(keys.size());
      const double pairs = entries * entries / (2.0 * static_cast<double>(n_));
      Chunk c;
      c.keys = keys;
      c.sparse = 4 * pairs < u * (u - 1) / 2;
      c.columns = c.sparse && on_columns(u, entries, pairs);
      return {std::move(c)};
    }
    EnsureColumns();
    row_count_.resize(static_cast<std::size_t>(n_), 0);
    std::vector<Chunk> chunks;
    std::vector<Eigen::Index> touched;
    Chunk c;
    std::uint64_t pairs = 0, entries = 0;
    auto close = [&] {
      const std::uint64_t u = c.keys.size();
      c.sparse = u > solve_keys || 4 * pairs < u * (u - 1) / 2;
      c.columns = c.sparse && on_columns(static_cast<double>(u), static_cast<double>(entries),
                                         static_cast<double>(pairs));
      chunks.push_back(std::move(c));
      c = {};
      pairs = entries = 0;
      for (Eigen::Index r : touched) row_count_[static_cast<std::size_t>(r)] = 0;
      touched.clear();
    };
    for (Key k : keys) {
      const auto j = static_cast<Eigen::Index>(k);
      std::uint64_t add = 0;
      for (SparseColMatrix::InnerIterator it(*x_, j); it; ++it) {
        add += row_count_[static_cast<std::size_t>(it.index())];
      }
      const std::size_t u = c.keys.size();
      if (u > 0 && (u >= kMaxChunkKeys || (u >= solve_keys && pairs + add > kChunkPairs))) {
        close();
        add = 0;
      }
      for (SparseColMatrix::InnerIterator it(*x_, j); it; ++it) {
        if (row_count_[static_cast<std::size_t>(it.index())]++ == 0) touched.push_back(it.index());
      }
      entries += static_cast<std::uint64_t>(col_nnz_[j]);
      pairs += add;
      c.keys.push_back(k);
    }
    if (!c.keys.empty()) close();
    return chunks;
  }

  // The coordinator's column-major copy of the data: the data's own (Dataset::BuildColumns),
  // else made on first use.
  void EnsureColumns() {
    if (x_) return;
    x_ = columns_
             ? columns_
             : std::make_shared<const SparseColMatrix>(ColumnMajorRows(rows_, 0, rows_.rows()));
  }

  // Called at a sweep boundary with every round pulled. Starts the next sweep and returns
  // false, or returns true when the candidates have converged.
  bool NextPhase() {
    if (skip_to_kkt_) return true;
    if (solving_) {
      // A chunk out of work for one round, or chunks that moved each other: go on solving.
      if (!solve_converged_ || (chunks_.size() > 1 && sweep_change_ >= inner_tolerance_)) {
        StartSweep(phase_);
        return false;
      }
      // The nonzeros are solved: sweep the whole working set (a change there may move them).
      if (phase_ == Phase::kActive) {
        StartSweep(Phase::kFull);
        return false;
      }
      return true;  // the working set is solved: check KKT over every feature
    }
    const bool converged = sweep_change_ < inner_tolerance_;
    const bool full_pass = visited_count_ >= sweep_keys_;
    if (!converged) {
      StartSweep(opts_.active_set && nonzeros_ > 0 ? Phase::kActive : Phase::kFull);
      return false;
    }
    if (!full_pass) {  // a sampled sweep looked converged: confirm with an ordered pass
      StartSweep(phase_, /*verifying=*/true);
      return false;
    }
    if (phase_ == Phase::kActive || entered_) {
      StartSweep(Phase::kFull);
      return false;
    }
    return true;
  }

  // The KKT violations a fit tolerates. Under the gap rule this starts at tolerance × λ_max
  // and tightens tenfold whenever it is met but the gap is not (FinishKkt).
  double KktTolerance() const { return kkt_floor_; }

  // After a gradient pass: the duality gap at the committed coefficients, from the workers'
  // ‖r‖², rᵀỹ and the gradient (LassoOracle::DualityGap; over the features not screened).
  // Then Gap Safe screening: the optimal dual point lies within √(2n·gap)/(nλ) of θ = r/(n s),
  // so a feature with |x̃_jᵀθ| + that radius × ‖x̃_j‖ < pf_j is zero at the optimum.
  void ComputeGap() {
    const double n = static_cast<double>(n_);
    double s = lambda_;
    for (Eigen::Index j = 0; j < p_; ++j) {
      if (!screened_[j] && d_[j] > 0) s = std::max(s, std::abs(kkt_grad_[j]) / pf_[j]);
    }
    const double primal = residual_sq_ / (2 * n) + lambda_ * penalty_;
    const double dual =
        -lambda_ * lambda_ * residual_sq_ / (2 * n * s * s) + lambda_ * residual_dot_y_ / (n * s);
    gap_ = std::max(primal - dual, 0.0);
    if (!opts_.gap_safe) return;
    const double radius = std::sqrt(2 * n * gap_) / (n * lambda_);
    bool dropped = false;
    for (Eigen::Index j = 0; j < p_; ++j) {
      if (screened_[j] || beta_[j] != 0 || d_[j] <= 0) continue;
      if (std::abs(kkt_grad_[j]) / s + radius * std::sqrt(d_[j]) < pf_[j]) {
        screened_[j] = 1;
        ++screened_count_;
        if (working_[j]) {
          working_[j] = 0;
          dropped = true;
        }
      }
    }
    if (dropped) {
      std::erase_if(working_list_,
                    [this](Key k) { return screened_[static_cast<Eigen::Index>(k)]; });
    }
  }

  // After a gradient pass over every feature: the working set becomes the nonzero features and
  // the worst violators of the optimality conditions. Returns true when every condition holds
  // within KktTolerance() (and, under the gap rule, the gap is small enough).
  bool FinishKkt() {
    // The sequential strong rule (Tibshirani et al. 2012) screens the first pass of a fit: a
    // feature with |g_j| < pf_j (2λ − λ_prev) may join only at a later pass.
    const double strong_cut =
        first_pass_ && opts_.strong_rules ? std::max(2 * lambda_ - last_lambda_, 0.0) : 0.0;
    first_pass_ = false;
    const double last_gap = gap_;
    ComputeGap();
    const bool by_gap = opts_.stop == "gap";
    if (by_gap && gap_ <= opts_.tolerance * null_ms_ / 2) return true;  // P(0) = null_ms_ / 2
    double worst = 0;
    std::int64_t working = 0;
    std::vector<std::pair<double, Eigen::Index>> violators;  // outside the working set
    // The working set is rebuilt at every pass (skglm): the nonzeros, and the worst violators.
    for (Key k : working_list_) working_[static_cast<Eigen::Index>(k)] = 0;
    working_list_.clear();
    for (Eigen::Index j = 0; j < p_; ++j) {
      if (d_[j] <= 0 || screened_[j]) continue;
      const double t = lambda_ * pf_[j], g = kkt_grad_[j];
      const double v = beta_[j] != 0 ? std::abs(g - t * (beta_[j] > 0 ? 1 : -1))
                                     : std::max(std::abs(g) - t, 0.0);
      worst = std::max(worst, v);
      if (beta_[j] != 0) {
        working_[j] = 1;
        working_list_.push_back(static_cast<Key>(j));
      } else if (v > KktTolerance() && std::abs(g) >= pf_[j] * strong_cut) {
        violators.emplace_back(v / pf_[j], j);
      }
      working += working_[j];
    }
    if (violators.empty() && worst <= KktTolerance()) {
      if (!by_gap) return true;
      // The conditions hold as asked but the gap is not small enough yet: ask more of them,
      // unless this pass did not shrink the gap or rounding allows no more (then the
      // coordinates are as exact as they can be).
      if (gap_ >= last_gap || kkt_floor_ <= 1e-15 * lambda_max_) return true;
      kkt_floor_ = std::max(0.1 * std::min(kkt_floor_, worst), 1e-15 * lambda_max_);
    }
    // Up to as many violators as the working set holds already (at least kMinRoom), worst
    // first (skglm, celer, Blitz): at small λ almost every feature violates at b = 0, but few
    // end up nonzero.
    const std::size_t room = static_cast<std::size_t>(std::max<std::int64_t>(working, kMinRoom));
    if (violators.size() > room) {
      std::nth_element(violators.begin(), violators.begin() + static_cast<std::ptrdiff_t>(room),
                       violators.end(), std::greater<>());
      violators.resize(room);
    }
    for (const auto& [v, j] : violators) {
      working_[j] = 1;
      working_list_.push_back(static_cast<Key>(j));
    }
    std::sort(working_list_.begin(), working_list_.end());
    // Solve the working set only as precisely as the outer problem is solved so far: early
    // working sets are wrong anyway, and polishing them is most of the work otherwise.
    inner_tolerance_ = std::max(KktTolerance(), 0.1 * worst);
    StartSweep(Phase::kFull);
    return false;
  }

  LassoOptions opts_;
  std::unique_ptr<Scheduler> scheduler_, verifier_;
  bool sequential_ = true;
  Eigen::Index n_ = 0, p_ = 0;
  // The full data, row-major, as the solver was given it (it outlives the solver): the
  // oracles and the dependency function read it.
  const SparseRowMatrix& rows_;
  // The data's column-major copy when it has one (Dataset::BuildColumns; workers read their
  // rows in it), and the coordinator's: that one, or one built when it first walks columns.
  std::shared_ptr<const SparseColMatrix> columns_, x_;
  Eigen::VectorXd y_full_;
  double ybar_ = 0, null_ms_ = 0;
  Eigen::VectorXd mu_, d_, pf_, beta_;
  Eigen::VectorXd col_nnz_;       // nonzeros per column
  Eigen::VectorXd yc_;            // the responses, centered
  std::vector<KeyRange> ranges_;  // worker w's rows
  std::uint64_t start_ = 0;       // SetBeta calls so far
  // The workers' shards, from one fit of a path to the next (in their own process).
  std::shared_ptr<KeptWorkers> kept_ = std::make_shared<KeptWorkers>();
  std::unique_ptr<LassoOracle> oracle_;

  double lambda_ = 0, last_lambda_ = 0, lambda_max_ = 0;
  double inner_tolerance_ = 0;  // sweep convergence threshold of the current working set
  Eigen::VectorXd kkt_grad_;    // X̃ᵀr/n from the last gradient pass
  double residual_sq_ = 0, residual_dot_y_ = 0;  // ‖r‖² and rᵀỹ, from the same pass
  double gap_ = HUGE_VAL;                        // the duality gap there (ComputeGap)
  double kkt_floor_ = 0;                         // KktTolerance()
  // Solving sweeps: the working set in chunks, one kSolve or kSolveSparse round each.
  bool solving_ = false;           // this sweep solves chunks
  bool solve_converged_ = false;   // every chunk of it reached the inner tolerance
  std::vector<Key> chunked_keys_;  // the keys chunks_ split
  std::vector<Chunk> chunks_;
  std::size_t next_chunk_ = 0;
  std::size_t current_chunk_ = 0;         // the chunk in flight
  std::size_t sparse_chunk_keys_ = 0;     // the kSolveSparse chunk in flight: its size
  std::vector<std::uint32_t> row_count_;  // MakeChunks' scratch, all zero between uses
  std::vector<char> screened_;            // Gap Safe: zero at the optimum of this λ
  std::int64_t screened_count_ = 0;
  std::vector<char> working_;      // the features coordinate descent sweeps over
  std::vector<Key> working_list_;  // the same, as a sorted list
  double penalty_ = 0;             // Σ pf_j |b_j|, kept up to date by Pull
  std::int64_t nonzeros_ = 0;
  Phase phase_ = Phase::kFull;
  bool verifying_ = false, done_ = false, kkt_pending_ = false, entered_ = false,
       skip_to_kkt_ = false, first_pass_ = true;
  std::int64_t sweep_left_ = 0, sweep_keys_ = 0;
  std::uint64_t sweep_id_ = 0;
  std::vector<std::uint64_t> visited_;
  std::int64_t visited_count_ = 0;
  double sweep_change_ = 0;
  std::unordered_map<std::uint64_t, std::vector<Key>> stale_;  // round -> keys in flight at push
};

StatusOr<std::unique_ptr<LassoSolver>> LassoSolver::Create(const Dataset& data,
                                                           const LassoOptions& options) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  if (data.rows() < 2) return InvalidArgument(data.source + ": need at least 2 rows");
  if (data.cols() < 1) return InvalidArgument(data.source + ": no feature columns");
  // Before any per-feature vector is allocated: the solvers keep about eight of them (the
  // coefficients, gradients, penalty factors, column statistics, the workers' copies).
  TESSERA_RETURN_IF_ERROR(
      CheckAllocation(data.source + ": a model of " + std::to_string(data.cols()) + " features",
                      8.0 * 8.0 * static_cast<double>(data.cols())));
  if (options.engine.workers > data.rows()) {
    return InvalidArgument("--workers " + std::to_string(options.engine.workers) +
                           " is more than the " + std::to_string(data.rows()) + " rows");
  }
  std::unique_ptr<LassoSolver> solver(new LassoSolver);
  solver->options_ = options;
  solver->features_ = static_cast<std::size_t>(data.cols());
  solver->fingerprint_ = "rows " + std::to_string(data.rows()) + ", features " +
                         std::to_string(data.cols()) + ", nonzeros " +
                         std::to_string(data.x.nonZeros()) + ", response sum " +
                         FormatDouble(data.y.sum()) + (options.standardize ? ", standardized" : "");
  if (options.mode == "data-parallel") {
    TESSERA_ASSIGN_OR_RETURN(solver->dp_, DataParallelLasso::Create(data, options));
    return solver;
  }
  solver->app_ = std::make_unique<LassoApp>(data, options);
  TESSERA_RETURN_IF_ERROR(solver->app_->InitScheduler());
  return solver;
}

LassoSolver::~LassoSolver() = default;

double LassoSolver::LambdaMax() const { return dp_ ? dp_->LambdaMax() : app_->LambdaMax(); }

std::string LassoSolver::DataParallelMethod() const { return dp_ ? dp_->Method() : ""; }

void LassoSolver::Reset() {
  if (dp_) {
    dp_->Reset();
  } else {
    app_->SetZero();
  }
}

const LassoOracle& LassoSolver::oracle() const { return dp_ ? dp_->oracle() : app_->oracle(); }

namespace {

// A solution whose objective is not a finite number is an error, not a result: the data or the
// options (a huge value, a step that diverged) gave NaN or infinity.
StatusOr<LassoSolution> Finite(StatusOr<LassoSolution> s) {
  if (!s.ok() || !s->holds_result || std::isfinite(s->objective)) return s;
  return DataLoss("lambda " + FormatDouble(s->lambda) + ": the objective is " +
                  FormatDouble(s->objective) + " after " + std::to_string(s->rounds) +
                  " rounds: the data or the options give values that are not finite numbers");
}

}  // namespace

void LassoSolver::SetLabel(const std::string& label) {
  options_.engine.label = label;
  if (dp_) dp_->SetLabel(label);
}

StatusOr<LassoSolution> LassoSolver::Fit(double lambda) {
  if (!(lambda > 0) || !std::isfinite(lambda)) {
    return InvalidArgument("--lambda must be a positive number, got " + FormatDouble(lambda));
  }
  if (dp_) {
    return Finite(dp_->Fit(lambda, checkpoint_, options_.checkpoint_every));
  }
  app_->BeginFit(lambda);
  EngineOptions eo = options_.engine;
  eo.kept_workers = app_->kept_workers();
  if (checkpoint_) {
    eo.checkpoint = [this](std::uint64_t rounds) { return checkpoint_(app_->beta(), rounds); };
    eo.checkpoint_every = options_.checkpoint_every;
  }
  TESSERA_ASSIGN_OR_RETURN(RunResult run, RunModelParallel(*app_, eo));
  app_->EndFit(lambda);
  LassoSolution s;
  s.lambda = lambda;
  if (!run.holds_result) {  // the coefficients are where the run's result is
    s.holds_result = false;
    return s;
  }
  s.beta = app_->beta();
  s.intercept = app_->intercept();
  const LassoCertificate c = oracle().Certify(lambda, s.intercept, s.beta);
  s.objective = c.objective;
  s.kkt_violation = c.kkt_violation;
  s.gap = c.gap;
  s.screened = app_->screened();
  s.rounds = run.rounds;
  s.seconds = run.seconds;
  s.bytes = run.bytes;
  s.updates = run.updates;
  s.stop_reason = run.stop_reason;
  s.evaluations = std::move(run.evaluations);
  return Finite(std::move(s));
}

StatusOr<std::vector<LassoSolution>> LassoSolver::FitPath(int count, double ratio) {
  TESSERA_ASSIGN_OR_RETURN(std::vector<double> lambdas, PathLambdas(count, ratio));
  return FitLambdas(lambdas);
}

StatusOr<std::vector<double>> LassoSolver::PathLambdas(int count, double ratio) const {
  if (count < 1) return InvalidArgument("--path must be at least 1, got " + std::to_string(count));
  if (!(ratio > 0 && ratio < 1)) {
    return InvalidArgument("--path-ratio must be in (0, 1), got " + FormatDouble(ratio));
  }
  const double lmax = LambdaMax();
  if (!(lmax > 0)) return InvalidArgument("lambda_max is 0: the response is constant or X is 0");
  std::vector<double> lambdas;
  for (int k = 0; k < count; ++k) {
    const double t = count == 1 ? 0.0 : static_cast<double>(k) / (count - 1);
    lambdas.push_back(lmax * std::pow(ratio, t));
  }
  return lambdas;
}

StatusOr<std::vector<LassoSolution>> LassoSolver::FitLambdas(const std::vector<double>& lambdas) {
  std::vector<LassoSolution> out;
  const auto& transport = options_.engine.transport;
  const bool writer = WritesResults(transport);
  TESSERA_ASSIGN_OR_RETURN(CheckpointStart ck,
                           OpenCheckpoints(options_.checkpoint_dir, options_.resume, writer));
  if (ck.latest) TESSERA_RETURN_IF_ERROR(Restore(*ck.latest, lambdas, out));
  std::optional<CheckpointDir>& dir = ck.dir;
  bool within = false;  // a checkpoint from within a fit (the hook while Fit runs)
  if (dir && writer) {
    checkpoint_ = [&](const Eigen::VectorXd& beta, std::uint64_t rounds) -> Status {
      return dir->Save(MakeCheckpoint(lambdas, out, beta, rounds, within)).status();
    };
  }
  struct Unhook {
    std::function<Status(const Eigen::VectorXd&, std::uint64_t)>& hook;
    ~Unhook() { hook = nullptr; }
  } unhook{checkpoint_};
  struct Relabel {  // back to the solver's own label when the path ends
    LassoSolver* solver;
    std::string label;
    ~Relabel() { solver->SetLabel(label); }
  } relabel{this, options_.engine.label};
  const std::string& label = relabel.label;
  for (std::size_t k = out.size(); k < lambdas.size(); ++k) {
    if (lambdas.size() > 1) {  // the progress line says which λ of the path it is on
      SetLabel(label + " lambda " + std::to_string(k + 1) + "/" + std::to_string(lambdas.size()));
    }
    within = true;
    TESSERA_ASSIGN_OR_RETURN(auto s, Fit(lambdas[k]));
    within = false;
    if (options_.on_lambda && s.holds_result) options_.on_lambda(s);
    out.push_back(std::move(s));
    if (checkpoint_) TESSERA_RETURN_IF_ERROR(checkpoint_(out.back().beta, out.back().rounds));
  }
  return out;
}

Checkpoint LassoSolver::MakeCheckpoint(const std::vector<double>& lambdas,
                                       const std::vector<LassoSolution>& done,
                                       const Eigen::VectorXd& beta, std::uint64_t rounds,
                                       bool within) const {
  Checkpoint c = Checkpoint::For("lasso", fingerprint_);
  c.PutDoubles("lambdas", lambdas);
  c.PutU64("done", done.size());
  c.PutDoubles("beta", {beta.data(), static_cast<std::size_t>(beta.size())});
  c.PutU64("rounds", rounds);
  c.PutU64("within", within ? 1 : 0);
  std::vector<double> intercept, objective, kkt, seconds, betas;
  std::vector<std::uint64_t> counts;  // rounds, bytes, updates per solution
  std::string stops;
  for (const LassoSolution& s : done) {
    intercept.push_back(s.intercept);
    objective.push_back(s.objective);
    kkt.push_back(s.kkt_violation);
    seconds.push_back(s.seconds);
    betas.insert(betas.end(), s.beta.data(), s.beta.data() + s.beta.size());
    counts.insert(counts.end(), {s.rounds, s.bytes, s.updates});
    stops += s.stop_reason + "\n";
  }
  c.PutDoubles("done.intercept", intercept);
  c.PutDoubles("done.objective", objective);
  c.PutDoubles("done.kkt", kkt);
  c.PutDoubles("done.seconds", seconds);
  c.PutDoubles("done.beta", betas);
  c.PutU64s("done.rounds_bytes_updates", counts);
  c.PutText("done.stop", stops);
  return c;
}

Status LassoSolver::Restore(const Checkpoint& c, const std::vector<double>& lambdas,
                            std::vector<LassoSolution>& done) {
  const std::string& src = c.source();
  TESSERA_RETURN_IF_ERROR(c.Matches("lasso", fingerprint_));
  TESSERA_ASSIGN_OR_RETURN(auto saved, c.Doubles("lambdas"));
  // λ_max is a sum over the data whose rounding depends on how it is split (processes,
  // workers): equal to 1e-12, the sequences are the same.
  bool same = saved.size() == lambdas.size();
  for (std::size_t k = 0; same && k < saved.size(); ++k) {
    same = std::abs(saved[k] - lambdas[k]) <= 1e-12 * std::abs(lambdas[k]);
  }
  if (!same) {
    return InvalidArgument(src + ": written for another λ sequence (" +
                           std::to_string(saved.size()) + " values from " +
                           (saved.empty() ? "-" : FormatDouble(saved[0])) +
                           "; this run: " + std::to_string(lambdas.size()) + " from " +
                           (lambdas.empty() ? "-" : FormatDouble(lambdas[0])) +
                           "): resume with the same --path, --path-ratio or --lambda");
  }
  TESSERA_ASSIGN_OR_RETURN(std::uint64_t n, c.U64("done"));
  TESSERA_ASSIGN_OR_RETURN(auto beta, c.Doubles("beta"));
  TESSERA_ASSIGN_OR_RETURN(auto intercept, c.Doubles("done.intercept"));
  TESSERA_ASSIGN_OR_RETURN(auto objective, c.Doubles("done.objective"));
  TESSERA_ASSIGN_OR_RETURN(auto kkt, c.Doubles("done.kkt"));
  TESSERA_ASSIGN_OR_RETURN(auto seconds, c.Doubles("done.seconds"));
  TESSERA_ASSIGN_OR_RETURN(auto betas, c.Doubles("done.beta"));
  TESSERA_ASSIGN_OR_RETURN(auto counts, c.U64s("done.rounds_bytes_updates"));
  TESSERA_ASSIGN_OR_RETURN(std::string stops, c.Text("done.stop"));
  const std::size_t p = features_;
  if (n > lambdas.size() || beta.size() != p || intercept.size() != n || objective.size() != n ||
      kkt.size() != n || seconds.size() != n || betas.size() != n * p || counts.size() != 3 * n) {
    return DataLoss(src + ": the sections disagree on the number of solutions or features");
  }
  std::istringstream stop_lines(stops);
  for (std::size_t k = 0; k < n; ++k) {
    LassoSolution s;
    s.lambda = lambdas[k];
    s.intercept = intercept[k];
    s.objective = objective[k];
    s.kkt_violation = kkt[k];
    s.seconds = seconds[k];
    s.gap = oracle().DualityGap(s.lambda, Eigen::Map<const Eigen::VectorXd>(
                                              betas.data() + k * p, static_cast<Eigen::Index>(p)));
    s.beta = Eigen::Map<const Eigen::VectorXd>(betas.data() + k * p, static_cast<Eigen::Index>(p));
    s.rounds = counts[3 * k];
    s.bytes = counts[3 * k + 1];
    s.updates = counts[3 * k + 2];
    std::getline(stop_lines, s.stop_reason);
    done.push_back(std::move(s));
  }
  std::uint64_t within = 0;  // absent from checkpoints written before it was added
  if (c.Has("within")) {
    TESSERA_ASSIGN_OR_RETURN(within, c.U64("within"));
  }
  resumed_ = src + ": " + std::to_string(n) + " of " + std::to_string(lambdas.size()) +
             " lambdas done" + (within && n < lambdas.size() ? ", the next one part-fitted" : "");
  const Eigen::VectorXd start =
      Eigen::Map<const Eigen::VectorXd>(beta.data(), static_cast<Eigen::Index>(p));
  if (dp_) {
    dp_->SetBeta(start);
  } else {
    app_->SetBeta(start, n == 0 ? LambdaMax() : lambdas[n - 1]);
  }
  return Status::Ok();
}

double LassoSolver::Objective(double lambda, double intercept, const Eigen::VectorXd& beta) const {
  return oracle().Objective(lambda, intercept, beta);
}

double LassoSolver::KktViolation(double lambda, double intercept,
                                 const Eigen::VectorXd& beta) const {
  return oracle().KktViolation(lambda, intercept, beta);
}

double LassoSolver::DualityGap(double lambda, const Eigen::VectorXd& beta) const {
  return oracle().DualityGap(lambda, beta);
}

namespace {
std::string FeatureName(const Dataset& data, Eigen::Index j) {
  return j < static_cast<Eigen::Index>(data.feature_names.size()) ? data.feature_names[j]
                                                                  : "x" + std::to_string(j + 1);
}
}  // namespace

Status WriteCoefficients(const std::string& path, const Dataset& data,
                         const LassoSolution& solution) {
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(out.Open(path, "name,value"));
  out.Row("(intercept)," + FormatDouble(solution.intercept));
  for (Eigen::Index j = 0; j < solution.beta.size(); ++j) {
    out.Row(FeatureName(data, j) + "," + FormatDouble(solution.beta[j]));
  }
  return out.Finish();
}

Status WritePath(const std::string& path, const Dataset& data,
                 const std::vector<LassoSolution>& sols) {
  std::string header = "lambda,intercept";
  for (Eigen::Index j = 0; j < data.cols(); ++j) header += "," + FeatureName(data, j);
  header += ",objective,kkt_max_violation,duality_gap";
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(out.Open(path, header));
  for (const auto& s : sols) {
    std::string row = FormatDouble(s.lambda) + "," + FormatDouble(s.intercept);
    for (Eigen::Index j = 0; j < s.beta.size(); ++j) row += "," + FormatDouble(s.beta[j]);
    row += "," + FormatDouble(s.objective) + "," + FormatDouble(s.kkt_violation) + "," +
           FormatDouble(s.gap);
    out.Row(row);
  }
  return out.Finish();
}

}  // namespace tessera
