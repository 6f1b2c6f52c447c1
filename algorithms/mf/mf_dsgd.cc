// Matrix factorization, model-parallel SGD with rotation scheduling (DSGD, Gemulla et al.
// 2011; FPSG/LIBMF's blocking; STRADS MF's rotation).
//
// Users and items are each cut into P blocks, P = workers. Worker w owns user block w, its
// rows of W and its ratings, grouped by item block. The H rows of an item block are a carried
// block: in round r the `rotation` scheduler hands worker w item block (w + r) mod P, and the
// engine moves the block's rows to it from the worker that had them, by message. No two workers
// hold the same items, so their SGD updates never touch the same parameters, and no worker
// holds more of H than the block it is working on.
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

// Worker w: user block w, its rows of W and its ratings grouped by item block.
struct DsgdWorker final : WorkerState {
  KeyRange users;
  Factors w;                                // rows of my users, from users.begin
  std::vector<std::vector<Rating>> strata;  // [item block]: ratings of my users in that block
  std::vector<std::vector<Rating>> test;    // [item block]: test ratings of my users
  std::mt19937_64 rng;
  double train_sse = 0, test_sse = 0;  // of the evaluation rounds since the last EvaluateTerms
  std::uint64_t evaluated = 0;         // training ratings those covered
  void Save(StateWriter& out) const override {
    out.Put(std::span<const double>(w.data(), static_cast<std::size_t>(w.size())));
  }
};

// The H rows of one item block: the state that travels with the block.
struct HBlock final : BlockState {
  Factors h;
  void Save(StateWriter& out) const override {
    out.Put(std::span<const double>(h.data(), static_cast<std::size_t>(h.size())));
  }
};

// Reads the factor rows `rows` of `f` (row-major, so contiguous), which has them from row
// `offset` on.
Status ReadRows(StateReader& in, Factors& f, KeyRange rows, Key offset = 0) {
  return in.GetInto(std::span<double>(f.data() + (rows.begin - offset) * f.cols(),
                                      rows.size() * static_cast<std::size_t>(f.cols())));
}

class DsgdApp final : public ModelParallelApp {
 public:
  DsgdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
          const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/true), train_(train), test_(test) {
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
    user_blocks_ = SplitRange(num_users_, P);
    scheduler_ = MakeRotation(P);
    std::vector<Key> items(num_items_);
    for (std::size_t j = 0; j < num_items_; ++j) items[j] = j;
    scheduler_->Reset(items);
  }

  // An epoch is 2P rounds: P of SGD, in which every worker meets every item block once, then P
  // that evaluate the training and test error stratum by stratum the same way (the H rows of
  // a block are only ever with one worker).
  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (ctx.round == 0) clock_ = Stopwatch();
    if (ctx.round >= RoundsPerEpoch() * static_cast<std::uint64_t>(opts_.epochs)) {
      plan.done = true;
      plan.done_reason = "max epochs";
      return plan;
    }
    plan.blocks = scheduler_->Next(ctx);
    plan.evaluate_after = (ctx.round + 1) % RoundsPerEpoch() == 0;
    plan.checkpoint_after = plan.evaluate_after;
    return plan;
  }

  std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup& setup) override {
    auto me = std::make_unique<DsgdWorker>();
    const int P = setup.num_workers;
    me->users = user_blocks_[static_cast<std::size_t>(setup.worker)];
    me->w = model_.w.middleRows(static_cast<Eigen::Index>(me->users.begin),
                                static_cast<Eigen::Index>(me->users.size()));
    me->strata.resize(static_cast<std::size_t>(P));
    me->test.resize(static_cast<std::size_t>(P));
    for (const Rating& r : train_.entries) {
      const Rating p{user_perm_[r.user], item_perm_[r.item], r.value};
      if (me->users.Contains(p.user)) me->strata[ShardIn(item_blocks_, p.item)].push_back(p);
    }
    if (test_) {
      for (const Rating& r : test_->entries) {
        const Rating p{user_perm_[r.user], item_perm_[r.item], r.value};
        if (me->users.Contains(p.user)) me->test[ShardIn(item_blocks_, p.item)].push_back(p);
      }
    }
    // A resumed run's shuffles go on from a stream seeded by the rounds done, so it visits the
    // ratings in another order than the uninterrupted one would have.
    if (resumed_rounds_ == 0) {
      me->rng.seed(opts_.seed + 1 + static_cast<std::uint64_t>(setup.worker));
    } else {
      std::seed_seq seq{opts_.seed, static_cast<std::uint64_t>(setup.worker) + 1, resumed_rounds_};
      me->rng.seed(seq);
    }
    return me;
  }

  std::vector<int> CarriedBlockHolders(int num_workers) override {
    std::vector<int> holders(static_cast<std::size_t>(num_workers));
    for (int b = 0; b < num_workers; ++b) holders[static_cast<std::size_t>(b)] = b;  // round 0
    return holders;
  }

  std::unique_ptr<BlockState> MakeBlock(std::uint32_t block, WorkerContext&) override {
    auto b = std::make_unique<HBlock>();
    const KeyRange items = item_blocks_[block];
    b->h = model_.h.middleRows(static_cast<Eigen::Index>(items.begin),
                               static_cast<Eigen::Index>(items.size()));
    return b;
  }

  StatusOr<std::unique_ptr<BlockState>> LoadBlock(std::uint32_t block, StateReader& in,
                                                  WorkerContext&) override {
    auto b = std::make_unique<HBlock>();
    const KeyRange items = item_blocks_[block];
    b->h.resize(static_cast<Eigen::Index>(items.size()), k_);
    TESSERA_RETURN_IF_ERROR(ReadRows(in, b->h, items, items.begin));
    return std::unique_ptr<BlockState>(std::move(b));
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    auto& me = ctx.State<DsgdWorker>();
    const std::uint64_t epoch_round = ctx.round % RoundsPerEpoch();
    const auto P = static_cast<std::uint64_t>(ctx.num_workers);
    for (const Block& b : blocks) {
      const KeyRange items = item_blocks_[b.id];
      Factors& h = ctx.Carried<HBlock>(b.id).h;
      auto err2 = [&](const Rating& r) {
        return std::pow(r.value - model_.mean -
                            me.w.row(r.user - me.users.begin).dot(h.row(r.item - items.begin)),
                        2);
      };
      if (epoch_round < P) {
        const auto epoch = static_cast<double>(ctx.round / RoundsPerEpoch());
        const double lr = step_scale_ * opts_.learning_rate / (1 + opts_.decay * epoch);
        std::vector<Rating>& ratings = me.strata[b.id];
        std::shuffle(ratings.begin(), ratings.end(), me.rng);
        for (const Rating& r : ratings) {
          mf_internal::SgdStep(me.w.data() + (r.user - me.users.begin) * k_,
                               h.data() + (r.item - items.begin) * k_, k_, rank_, opts_.biases,
                               model_.mean, r.value, lr, opts_.lambda);
        }
      } else {
        for (const Rating& r : me.strata[b.id]) me.train_sse += err2(r);
        for (const Rating& r : me.test[b.id]) me.test_sse += err2(r);
        me.evaluated += me.strata[b.id].size();
      }
    }
    return {};  // the H rows travel with their blocks; nothing to commit
  }

  Update Pull(PullContext&, std::span<const Block>, std::span<const Partial>) override {
    return {};
  }
  void Apply(WorkerContext&, const Update&) override {}

  // Terms: train SSE and test SSE of the evaluation rounds, my share of the penalty (my users,
  // the item blocks I hold), and the training ratings the errors cover.
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    auto& me = ctx.State<DsgdWorker>();
    Eigen::VectorXd t = Eigen::VectorXd::Zero(4);
    t[0] = me.train_sse;
    t[1] = me.test_sse;
    t[3] = static_cast<double>(me.evaluated);
    me.train_sse = me.test_sse = 0;
    me.evaluated = 0;
    const double fixed = c_.FixedNorm();
    for (Key i = me.users.begin; i < me.users.end; ++i) {
      t[2] += opts_.lambda * user_count_[i] *
              (me.w.row(static_cast<Eigen::Index>(i - me.users.begin)).squaredNorm() - fixed);
    }
    for (const auto& [id, state] : *ctx.held) {
      const KeyRange items = item_blocks_[id];
      const Factors& h = static_cast<const HBlock&>(*state).h;
      for (Key j = items.begin; j < items.end; ++j) {
        t[2] += opts_.lambda * item_count_[j] *
                (h.row(static_cast<Eigen::Index>(j - items.begin)).squaredNorm() - fixed);
      }
    }
    return t;
  }

  // An epoch's metrics once its evaluation rounds have covered every rating; the closing
  // evaluation of a run stopped within an epoch (a time limit) repeats the last one.
  double Objective(const Eigen::VectorXd& t) override {
    if (t[3] != static_cast<double>(c_.num_train)) return last_objective_;
    return last_objective_ = c_.RecordEpoch(t.head(3));
  }

  // The coordinator's copy of the factors, filled from the workers and blocks at the end and
  // before each checkpoint.
  Status GatherWorker(int worker, StateReader& in) override {
    return ReadRows(in, model_.w, user_blocks_[static_cast<std::size_t>(worker)]);
  }
  Status GatherBlock(std::uint32_t block, StateReader& in) override {
    return ReadRows(in, model_.h, item_blocks_[block]);
  }

  // The factors (in block order, which the seed and the workers fix) after `rounds` rounds, an
  // epoch's end.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) override {
    Checkpoint c = c_.Save(Problem(), {model_.h.data(), static_cast<std::size_t>(model_.h.size())});
    c.PutU64("rounds", rounds);
    return c;
  }
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, Problem()));
    TESSERA_ASSIGN_OR_RETURN(resumed_rounds_, c.U64("rounds"));
    return resumed_rounds_;
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
  std::uint64_t RoundsPerEpoch() const { return 2 * item_blocks_.size(); }
  // The blocks depend on the workers, the relabelling on the seed.
  std::string Problem() const {
    return c_.Problem(", sgd, workers " + std::to_string(item_blocks_.size()) + ", seed " +
                      std::to_string(opts_.seed));
  }

  mf_internal::Common c_;  // first: the references below point into it
  const Ratings& train_;
  const Ratings* test_;
  const MfOptions& opts_ = c_.opts;
  const int rank_ = c_.rank, k_ = c_.k;
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const double step_scale_ = c_.step_scale;
  // The coordinator's copy of the factors: the initial values every process starts the workers
  // and blocks from, then what GatherWorker and GatherBlock bring back.
  MfModel& model_ = c_.model;
  std::vector<std::uint32_t> user_perm_, item_perm_;    // file id -> block order
  std::vector<std::uint32_t> user_count_, item_count_;  // in block order
  Stopwatch& clock_ = c_.clock;
  std::vector<KeyRange> item_blocks_, user_blocks_;
  std::unique_ptr<Scheduler> scheduler_;
  std::uint64_t resumed_rounds_ = 0;
  double last_objective_ = std::numeric_limits<double>::quiet_NaN();
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
