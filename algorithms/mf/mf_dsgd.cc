// Matrix factorization, model-parallel SGD with rotation scheduling (DSGD, Gemulla et al.
// 2011; FPSG/LIBMF's blocking; STRADS MF's rotation).
//
// Users and items are each cut into P blocks, P = workers. Worker w owns user block w, its
// rows of W and its ratings, grouped by item block. In round r the `rotation` scheduler hands
// worker w item block (w + r) mod P: no two workers hold the same items, so their SGD updates
// never touch the same parameters. A worker runs SGD over the ratings of (its users, that item
// block) on W and on a scratch copy of the block's H rows, and pushes the new rows; the sync
// layer commits them and every worker applies them. An epoch is P rounds.
#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "algorithms/mf/mf.h"
#include "algorithms/mf/mf_common.h"
#include "core/fiber_pool.h"
#include "core/metrics.h"
#include "schedulers/scheduler.h"

namespace tessera {
namespace {

using Factors = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::vector<std::uint32_t> RandomPermutation(std::size_t n, std::mt19937_64& rng) {
  std::vector<std::uint32_t> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::uint32_t>(i);
  std::shuffle(p.begin(), p.end(), rng);
  return p;
}

// Row i of `f` moves to row perm[i].
void Permute(Factors& f, const std::vector<std::uint32_t>& perm) {
  Factors out(f.rows(), f.cols());
  for (Eigen::Index i = 0; i < f.rows(); ++i) out.row(perm[static_cast<std::size_t>(i)]) = f.row(i);
  f = std::move(out);
}

struct DsgdShard {
  KeyRange users;
  std::vector<std::vector<Rating>> strata;  // [item block]: ratings of my users in that block
  std::vector<Rating> test;
  Factors h;  // my copy of H, changed only by committed updates
  Factors scratch;
  std::mt19937_64 rng;
};

class DsgdApp final : public ModelParallelApp {
 public:
  DsgdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
          const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/true) {
    // Users and items are relabelled by a random permutation before they are cut into blocks:
    // ids come in file order, where the busiest users and items cluster, and on MovieLens the
    // largest of the four 2 x 2 blocks held 8x the ratings of the smallest. Random blocks are
    // balanced, and a round waits for its slowest worker. Finish() restores the file's order.
    std::mt19937_64 rng(o.seed ^ 0x5eed);
    user_perm_ = RandomPermutation(num_users_, rng);
    item_perm_ = RandomPermutation(num_items_, rng);
    Permute(model_.w, user_perm_);
    Permute(model_.h, item_perm_);
    user_count_.resize(num_users_);
    item_count_.resize(num_items_);
    for (std::size_t u = 0; u < num_users_; ++u) user_count_[user_perm_[u]] = c_.user_count[u];
    for (std::size_t j = 0; j < num_items_; ++j) item_count_[item_perm_[j]] = c_.item_count[j];
    const int P = o.engine.workers;
    item_blocks_ = SplitRange(num_items_, P);  // the rotation scheduler's partitions
    const auto user_blocks = SplitRange(num_users_, P);
    shards_.resize(P);
    for (int w = 0; w < P; ++w) {
      DsgdShard& s = shards_[w];
      s.users = user_blocks[w];
      s.strata.resize(P);
      s.h = model_.h;
      s.rng.seed(o.seed + 1 + w);
    }
    for (const Rating& r : train.entries) {
      const Rating p{user_perm_[r.user], item_perm_[r.item], r.value};
      shards_[ShardIn(user_blocks, p.user)].strata[ShardIn(item_blocks_, p.item)].push_back(p);
    }
    if (test) {
      for (const Rating& r : test->entries) {
        const Rating p{user_perm_[r.user], item_perm_[r.item], r.value};
        shards_[ShardIn(user_blocks, p.user)].test.push_back(p);
      }
    }
    SchedulerOptions so;
    so.partitions = P;
    scheduler_ = MakeRotationScheduler(so);
    std::vector<Key> items(num_items_);
    for (std::size_t j = 0; j < num_items_; ++j) items[j] = j;
    scheduler_->Reset(items);
  }

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (ctx.round == 0) clock_ = Stopwatch();
    const auto P = static_cast<std::uint64_t>(ctx.num_workers);
    if (ctx.round >= P * static_cast<std::uint64_t>(opts_.epochs)) {
      plan.done = true;
      plan.done_reason = "max epochs";
      return plan;
    }
    plan.blocks = scheduler_->Next(ctx);
    plan.evaluate_after = (ctx.round + 1) % P == 0;
    plan.checkpoint_after = plan.evaluate_after;
    return plan;
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    DsgdShard& s = shards_[ctx.worker];
    const auto epoch = static_cast<double>(ctx.round / static_cast<std::uint64_t>(ctx.num_workers));
    const double lr = step_scale_ * opts_.learning_rate / (1 + opts_.decay * epoch);
    const int k = k_;
    std::vector<Partial> out;
    for (const Block& b : blocks) {
      const KeyRange items = item_blocks_[b.id];
      s.scratch = s.h.middleRows(static_cast<Eigen::Index>(items.begin),
                                 static_cast<Eigen::Index>(items.size()));
      std::vector<Rating>& ratings = s.strata[b.id];
      std::shuffle(ratings.begin(), ratings.end(), s.rng);
      for (const Rating& r : ratings) {
        mf_internal::SgdStep(model_.w.data() + static_cast<std::size_t>(r.user) * k,  // mine
                             s.scratch.data() + (r.item - items.begin) * k, k, rank_, opts_.biases,
                             model_.mean, r.value, lr, opts_.lambda);
      }
      out.push_back({b.id, ctx.worker,
                     Eigen::Map<const Eigen::VectorXd>(s.scratch.data(), s.scratch.size())});
    }
    return out;
  }

  // Commits the new H rows; keys are elements: item * k + column.
  Update Pull(PullContext&, std::span<const Block> blocks,
              std::span<const Partial> merged) override {
    Update u;
    std::vector<double> delta;
    for (std::size_t b = 0; b < blocks.size(); ++b) {
      if (merged[b].values.size() == 0) continue;
      const KeyRange items = item_blocks_[blocks[b].id];
      double* h = model_.h.data() + items.begin * k_;
      for (Eigen::Index e = 0; e < merged[b].values.size(); ++e) {
        const double next = merged[b].values[e];
        if (next == h[e]) continue;
        u.keys.push_back(items.begin * k_ + static_cast<Key>(e));
        delta.push_back(next - h[e]);
        h[e] = next;
      }
    }
    u.delta = Eigen::Map<Eigen::VectorXd>(delta.data(), static_cast<Eigen::Index>(delta.size()));
    return u;
  }

  void Apply(WorkerContext& ctx, const Update& u) override {
    double* h = shards_[ctx.worker].h.data();
    for (std::size_t a = 0; a < u.keys.size(); ++a)
      h[u.keys[a]] += u.delta[static_cast<Eigen::Index>(a)];
  }

  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    const DsgdShard& s = shards_[ctx.worker];
    Eigen::VectorXd t = Eigen::VectorXd::Zero(3);
    auto err2 = [&](const Rating& r) {
      return std::pow(r.value - model_.mean - model_.w.row(r.user).dot(s.h.row(r.item)), 2);
    };
    for (const auto& stratum : s.strata) {
      for (const Rating& r : stratum) t[0] += err2(r);
    }
    for (const Rating& r : s.test) t[1] += err2(r);
    const double fixed = opts_.biases ? 1.0 : 0.0;
    for (Key i = s.users.begin; i < s.users.end; ++i) {
      t[2] += opts_.lambda * user_count_[i] *
              (model_.w.row(static_cast<Eigen::Index>(i)).squaredNorm() - fixed);
    }
    const KeyRange items = item_blocks_[ctx.worker];
    for (Key j = items.begin; j < items.end; ++j) {
      t[2] += opts_.lambda * item_count_[j] *
              (s.h.row(static_cast<Eigen::Index>(j)).squaredNorm() - fixed);
    }
    return t;
  }

  double Objective(const Eigen::VectorXd& t) override { return c_.RecordEpoch(t); }

  // The factors (in block order, which the seed and the workers fix) after `rounds` rounds, an
  // epoch's end, when every worker's copy of H is the committed one.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) override {
    Checkpoint c = c_.Save(Problem(), {model_.h.data(), static_cast<std::size_t>(model_.h.size())});
    c.PutU64("rounds", rounds);
    return c;
  }
  // Puts them back; each worker's shuffles go on from a stream seeded by the rounds done, so a
  // resumed run visits the ratings in another order than the uninterrupted one would have.
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, Problem()));
    TESSERA_ASSIGN_OR_RETURN(std::uint64_t rounds, c.U64("rounds"));
    for (std::size_t w = 0; w < shards_.size(); ++w) {
      shards_[w].h = model_.h;
      std::seed_seq seq{opts_.seed, static_cast<std::uint64_t>(w) + 1, rounds};
      shards_[w].rng.seed(seq);
    }
    return rounds;
  }

  mf_internal::Common& common() { return c_; }

  // The trainer's state, with the factors back in the training file's order.
  mf_internal::Common& Unpermuted() {
    Factors w = model_.w, h = model_.h;
    for (std::size_t u = 0; u < num_users_; ++u) {
      model_.w.row(static_cast<Eigen::Index>(u)) = w.row(user_perm_[u]);
    }
    for (std::size_t j = 0; j < num_items_; ++j) {
      model_.h.row(static_cast<Eigen::Index>(j)) = h.row(item_perm_[j]);
    }
    return c_;
  }

 private:
  // The blocks depend on the workers, the relabelling on the seed.
  std::string Problem() const {
    return c_.Problem(", sgd, workers " + std::to_string(shards_.size()) + ", seed " +
                      std::to_string(opts_.seed));
  }

  mf_internal::Common c_;  // first: the references below point into it
  const MfOptions& opts_ = c_.opts;
  const int rank_ = c_.rank, k_ = c_.k;
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const double step_scale_ = c_.step_scale;
  // W rows are written only by the worker owning the user; H only through Pull (coordinator)
  // and Apply (each worker's copy).
  MfModel& model_ = c_.model;
  std::vector<std::uint32_t> user_perm_, item_perm_;    // file id -> block order
  std::vector<std::uint32_t> user_count_, item_count_;  // in block order
  Stopwatch& clock_ = c_.clock;
  std::vector<KeyRange> item_blocks_;
  std::vector<DsgdShard> shards_;
  std::unique_ptr<Scheduler> scheduler_;
};

}  // namespace

StatusOr<MfResult> TrainMfDsgd(const Ratings& train, const Ratings* test, const MfOptions& options,
                               const std::function<void(const MfEpoch&)>& on_epoch) {
  TESSERA_RETURN_IF_ERROR(mf_internal::CheckInputs(train, test, options));
  DsgdApp app(train, test, options, on_epoch);
  TESSERA_ASSIGN_OR_RETURN(RunResult run, app.common().RunModelParallel(app));
  return app.Unpermuted().Finish(std::move(run));
}

}  // namespace tessera
