// Matrix factorization, model-parallel SGD with rotation scheduling (DSGD, Gemulla et al.
// 2011; FPSG/LIBMF's blocking; STRADS MF's rotation).
//
// Users and items are each dealt to P blocks in turn, P = workers: user (or item) i is in block
// i mod P, at row i / P of it. Ids come in file order, where the busiest users and items
// cluster; dealt in turn they spread over the blocks evenly, and a round waits for its slowest
// worker. Worker w owns user block w, its rows of W and its ratings, grouped by item block. The
// H rows of an item block are a carried block: in round r the `rotation` scheduler hands worker
// w item block (w + r) mod P, and the engine moves the block's rows to it from the worker that
// had them, by message. No two workers hold the same items, so their SGD updates never touch
// the same parameters, and no worker holds more of H than the block it is working on. Which
// block a rating belongs to follows from its ids alone, so a process reads only the ratings of
// the users its workers own (MfRatingsToKeep) and makes only their factor rows.
#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <span>
#include <utility>

#include "tessera/algorithms/mf/mf.h"
#include "tessera/algorithms/mf/mf_common.h"
#include "tessera/core/fiber_pool.h"
#include "tessera/core/memory_limit.h"
#include "tessera/core/metrics.h"
#include "tessera/schedulers/scheduler.h"

namespace tessera {
namespace {

using Factors = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// The workers' factor rows: float (as LIBMF keeps them), each padded with zeros to a multiple of
// 16 values, so that an SGD step is whole SIMD vectors (the zeros stay zero).
using Rows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
// The W rows and the H rows of a tile of ratings take about this many bytes each.
constexpr std::size_t kTileBytes = 96 * 1024;

// Rows of block b of n indices dealt to P blocks in turn.
std::size_t BlockRows(std::size_t n, std::size_t P, std::size_t b) {
  return b < n ? (n - b + P - 1) / P : 0;
}

// Ratings in memory that takes no space until written: std::allocator constructs nothing, so a
// page holds memory from its first write on (Rating is an implicit-lifetime type).
class RatingArray {
 public:
  RatingArray() = default;
  explicit RatingArray(std::size_t n)
      : data_(n ? std::allocator<Rating>().allocate(n) : nullptr), size_(n) {}
  RatingArray(RatingArray&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  RatingArray& operator=(RatingArray&& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~RatingArray() {
    if (data_) std::allocator<Rating>().deallocate(data_, size_);
  }
  std::span<Rating> span() const { return {data_, size_}; }

 private:
  Rating* data_ = nullptr;
  std::size_t size_ = 0;
};

// Gives back to the system the whole 2 MiB extents between v's entry `from` and the address
// `end` (entries copied and not read again: they read as zeros after), in extents of huge
// pages (PreferHugePages), which smaller pieces would split without freeing; returns where
// the memory not yet given back now ends.
std::uintptr_t Release(std::vector<Rating>& v, std::size_t from, std::uintptr_t end) {
  const auto first = (reinterpret_cast<std::uintptr_t>(v.data() + from) + kHugePageBytes - 1) /
                     kHugePageBytes * kHugePageBytes;
  const auto last = end / kHugePageBytes * kHugePageBytes;
  if (last <= first) return end;
  madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
  return first;
}

// Worker w: user block w, its rows of W and its ratings grouped by item block. A rating's user
// and item are its rows in W and in the item block's H.
struct DsgdWorker final : WorkerState {
  std::size_t block = 0;
  Rows w;                // row l: user block + l·P
  std::vector<float> g;  // adagrad steps: each row's kAdagradSlots mean squared gradients
  RatingArray ratings;   // my users' training ratings, grouped (GroupInTiles)
  // [item block]: ratings of my users in that block, grouped by tile: a part of `ratings`.
  std::vector<std::span<Rating>> strata;
  std::vector<std::vector<std::uint32_t>> tiles;  // [item block]: where each tile starts, + end
  std::vector<std::vector<Rating>> test;          // [item block]: test ratings of my users
  std::mt19937_64 rng;
  double train_sse = 0, test_sse = 0;  // of the evaluation rounds since the last EvaluateTerms
  std::uint64_t evaluated = 0;         // training ratings those covered
  void Save(StateWriter& out) const override {
    out.Reserve<float>(2, static_cast<std::size_t>(w.size()) + g.size());
    out.Put(std::span<const float>(w.data(), static_cast<std::size_t>(w.size())));
    out.Put(std::span<const float>(g));
  }
};

// The H rows of one item block (row l: item block + l·P): the state that travels with the
// block.
struct HBlock final : BlockState {
  Rows h;
  std::vector<float> g;  // adagrad steps: each row's kAdagradSlots mean squared gradients
  void Save(StateWriter& out) const override {
    out.Reserve<float>(2, static_cast<std::size_t>(h.size()) + g.size());
    out.Put(std::span<const float>(h.data(), static_cast<std::size_t>(h.size())));
    out.Put(std::span<const float>(g));
  }
};

class DsgdApp final : public ModelParallelApp {
 public:
  DsgdApp(Ratings train, const Ratings* test, const MfOptions& o,
          const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/true),
        test_(test),
        P_(static_cast<std::size_t>(o.engine.workers)) {
    // The rotation scheduler's partitions are the item blocks: one key each.
    scheduler_ = MakeRotation(o.engine.workers);
    std::vector<Key> blocks(std::min(P_, num_items_));
    for (std::size_t b = 0; b < blocks.size(); ++b) blocks[b] = b;
    scheduler_->Reset(blocks);
    GroupInTiles(std::move(train.entries));
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
    const auto b = static_cast<std::size_t>(setup.worker);
    me->block = b;
    me->w = InitialRows(false, b);
    me->g = InitialGradients(false, b);
    // A worker's ratings are handed to it once: a run makes each of its workers once.
    TESSERA_CHECK(ratings_[b].span().size() == segments_[(b + 1) * P_] - segments_[b * P_])
        << "worker " << b << " made twice";
    me->ratings = std::move(ratings_[b]);
    me->strata.resize(P_);
    me->tiles.resize(P_);
    for (std::size_t s = 0; s < P_; ++s) {
      const std::size_t segment = b * P_ + s;
      me->strata[s] = me->ratings.span().subspan(segments_[segment] - segments_[b * P_],
                                                 segments_[segment + 1] - segments_[segment]);
      me->tiles[s] = tiles_[segment];
    }
    me->test.resize(P_);
    if (test_) {
      const mf_internal::Divisor by_p(static_cast<std::uint32_t>(P_));
      std::vector<std::size_t> size(P_);  // sized first: no spare capacity
      for (const Rating& r : test_->entries) size[by_p.Mod(r.item)] += by_p.Mod(r.user) == b;
      for (std::size_t i = 0; i < P_; ++i) me->test[i].reserve(size[i]);
      for (const Rating& r : test_->entries) {
        if (by_p.Mod(r.user) != b) continue;
        me->test[by_p.Mod(r.item)].push_back({by_p.Div(r.user), by_p.Div(r.item), r.value});
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
    b->h = InitialRows(true, block);
    b->g = InitialGradients(true, block);
    return b;
  }

  StatusOr<std::unique_ptr<BlockState>> LoadBlock(std::uint32_t block, StateReader& in,
                                                  WorkerContext&) override {
    auto b = std::make_unique<HBlock>();
    b->h.resize(static_cast<Eigen::Index>(BlockRows(num_items_, P_, block)), kp_);
    TESSERA_RETURN_IF_ERROR(
        in.GetInto(std::span<float>(b->h.data(), static_cast<std::size_t>(b->h.size()))));
    b->g.resize(mf_internal::kAdagradSlots * static_cast<std::size_t>(b->h.rows()));
    TESSERA_RETURN_IF_ERROR(in.GetInto(std::span<float>(b->g)));
    return std::unique_ptr<BlockState>(std::move(b));
  }

  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    auto& me = ctx.State<DsgdWorker>();
    const std::uint64_t epoch_round = ctx.round % RoundsPerEpoch();
    for (const Block& b : blocks) {
      Rows& h = ctx.Carried<HBlock>(b.id).h;
      if (epoch_round < P_) {
        const auto epoch = static_cast<double>(ctx.round / RoundsPerEpoch());
        mf_internal::SgdStepParams step;
        step.row = kp_;
        step.rank = rank_;
        step.biases = c_.biases;
        step.dims = k_;
        // LIBMF's first epoch steps the first columns only.
        step.slow_only = ctx.round < RoundsPerEpoch();
        step.mean = static_cast<float>(model_.mean);
        step.lr = static_cast<float>(adaptive_ ? c_.AdagradRate()
                                               : step_scale_ * opts_.learning_rate /
                                                     (1 + opts_.decay * epoch));
        step.lambda = static_cast<float>(opts_.lambda);
        HBlock& hb = ctx.Carried<HBlock>(b.id);
        // The tiles in a random order, each one's ratings shuffled: random enough for SGD,
        // and the W and H rows a tile touches stay in cache while it runs.
        std::span<Rating> ratings = me.strata[b.id];
        const std::vector<std::uint32_t>& tiles = me.tiles[b.id];
        std::vector<std::uint32_t> order(tiles.size() - 1);
        std::iota(order.begin(), order.end(), 0u);
        std::shuffle(order.begin(), order.end(), me.rng);
        for (std::uint32_t t : order) {
          const auto first = ratings.begin() + tiles[t], last = ratings.begin() + tiles[t + 1];
          std::shuffle(first, last, me.rng);
          if (adaptive_) {
            mf_internal::SgdRatingsAdaptive(&*first, &*first + (last - first), me.w.data(),
                                            h.data(), me.g.data(), hb.g.data(), step);
          } else {
            mf_internal::SgdRatings(&*first, &*first + (last - first), me.w.data(), h.data(), step);
          }
        }
      } else {
        auto sse = [&](std::span<const Rating> ratings) {
          return mf_internal::SquaredErrors(ratings.data(), ratings.data() + ratings.size(),
                                            me.w.data(), h.data(), kp_, model_.mean);
        };
        me.train_sse += sse(me.strata[b.id]);
        me.test_sse += sse(me.test[b.id]);
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
    auto penalty = [&](const Rows& f, std::size_t block, const std::vector<std::uint32_t>& count) {
      for (Eigen::Index l = 0; l < f.rows(); ++l) {
        t[2] += opts_.lambda * count[block + static_cast<std::size_t>(l) * P_] *
                (f.row(l).cast<double>().squaredNorm() - fixed);
      }
    };
    penalty(me.w, me.block, c_.user_count);
    for (const auto& [id, state] : *ctx.held) {
      penalty(static_cast<const HBlock&>(*state).h, id, c_.item_count);
    }
    return t;
  }

  // An epoch's metrics once its evaluation rounds have covered every rating; the closing
  // evaluation of a run stopped within an epoch (a time limit) repeats the last one.
  double Objective(const Eigen::VectorXd& t) override {
    if (t[3] != static_cast<double>(c_.num_train)) return last_objective_;
    return last_objective_ = c_.RecordEpoch(t.head(3));
  }

  // The coordinator's copy of the factors (in the file's order), filled from the workers and
  // blocks at the end and before each checkpoint.
  Status GatherWorker(int worker, StateReader& in) override {
    return Gather(in, false, static_cast<std::size_t>(worker));
  }
  Status GatherBlock(std::uint32_t block, StateReader& in) override {
    return Gather(in, true, block);
  }

  // The factors after `rounds` rounds, an epoch's end, with the rows' adagrad state.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) override {
    Checkpoint c = c_.Save(Problem(), {model_.h.data(), static_cast<std::size_t>(model_.h.size())});
    c.PutU64("rounds", rounds);
    c.PutDoubles("w_gradients", w_gradients_);
    c.PutDoubles("h_gradients", h_gradients_);
    return c;
  }
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, Problem()));
    TESSERA_ASSIGN_OR_RETURN(resumed_rounds_, c.U64("rounds"));
    TESSERA_ASSIGN_OR_RETURN(w_gradients_, c.Doubles("w_gradients"));
    TESSERA_ASSIGN_OR_RETURN(h_gradients_, c.Doubles("h_gradients"));
    if (w_gradients_.size() != mf_internal::kAdagradSlots * num_users_ ||
        h_gradients_.size() != mf_internal::kAdagradSlots * num_items_) {
      return DataLoss(c.source() +
                      ": the rows' step state does not have the sizes the problem says");
    }
    restored_ = true;
    return resumed_rounds_;
  }

  mf_internal::Common& common() { return c_; }

 private:
  std::uint64_t RoundsPerEpoch() const { return 2 * P_; }
  // The blocks depend on the workers, the initial factors on the seed.
  std::string Problem() const {
    return c_.Problem(", sgd with users and items dealt to " + std::to_string(P_) +
                      " blocks, seed " + std::to_string(opts_.seed));
  }

  // The training ratings this process read, grouped by worker (user block), then by stratum
  // (item block), then by tile: tile_rows users by tile_rows items, whose W and H rows fit in a
  // core's L2 cache; ids become rows within their blocks. A counting sort into an array per
  // worker, in file order within each tile (so a run gives the same factors in any number of
  // processes), that fills them from the end while giving back the pages of the ratings as read
  // it has copied: the ratings take their own size once, not twice. A worker's ratings are
  // freed with it, when the run's last gather has its rows.
  void GroupInTiles(std::vector<Rating> read) {
    const std::size_t tile_rows =
        std::max<std::size_t>(64, kTileBytes / (static_cast<std::size_t>(kp_) * sizeof(float)));
    const mf_internal::Divisor by_p(static_cast<std::uint32_t>(P_)),
        by_tile(static_cast<std::uint32_t>(tile_rows));
    auto segment_of = [&](const Rating& r) {
      return std::size_t{by_p.Mod(r.user)} * P_ + by_p.Mod(r.item);
    };
    // Tiles are numbered across the segments this process has ratings in.
    std::vector<std::size_t> in_segment(P_ * P_), first_tile(P_ * P_ + 1), item_tiles(P_);
    for (const Rating& r : read) ++in_segment[segment_of(r)];
    for (std::size_t s = 0; s < P_; ++s)
      item_tiles[s] = BlockRows(num_items_, P_, s) / tile_rows + 1;
    for (std::size_t segment = 0; segment < P_ * P_; ++segment) {
      const std::size_t tiles =
          (BlockRows(num_users_, P_, segment / P_) / tile_rows + 1) * item_tiles[segment % P_];
      first_tile[segment + 1] = first_tile[segment] + (in_segment[segment] > 0 ? tiles : 0);
    }
    auto tile_of = [&](const Rating& r, std::size_t segment) {
      return first_tile[segment] +
             std::size_t{by_tile.Div(by_p.Div(r.user))} * item_tiles[segment % P_] +
             by_tile.Div(by_p.Div(r.item));
    };
    std::vector<std::size_t> end(first_tile.back() + 1);  // counts, then where each tile ends
    for (const Rating& r : read) ++end[tile_of(r, segment_of(r)) + 1];
    for (std::size_t t = 0; t < first_tile.back(); ++t) end[t + 1] += end[t];
    segments_.assign(P_ * P_ + 1, 0);
    tiles_.assign(P_ * P_, {});
    for (std::size_t segment = 0; segment < P_ * P_; ++segment) {
      segments_[segment + 1] = end[first_tile[segment + 1]];
      std::vector<std::uint32_t>& kept = tiles_[segment];  // relative; empty tiles left out
      kept.push_back(0);
      for (std::size_t t = first_tile[segment]; t < first_tile[segment + 1]; ++t) {
        if (end[t + 1] > end[t]) {
          kept.push_back(static_cast<std::uint32_t>(end[t + 1] - segments_[segment]));
        }
      }
    }
    ratings_.clear();
    for (std::size_t b = 0; b < P_; ++b) {
      ratings_.emplace_back(segments_[(b + 1) * P_] - segments_[b * P_]);
    }
    constexpr std::size_t kReleaseEvery = std::size_t{1} << 14;  // ratings (192 KiB)
    // The ratings as read up to here are still held: those from entry i on are copied.
    auto held_to = reinterpret_cast<std::uintptr_t>(read.data() + read.size());
    for (std::size_t i = read.size(); i-- > 0;) {
      const Rating& r = read[i];
      const std::size_t segment = segment_of(r), b = segment / P_;
      const std::size_t at = --end[tile_of(r, segment) + 1] - segments_[b * P_];
      ratings_[b].span()[at] = {by_p.Div(r.user), by_p.Div(r.item), r.value};
      if (i % kReleaseEvery == 0) held_to = Release(read, i, held_to);
    }
  }

  // Where slot l of block b's adagrad state (kAdagradSlots a row, rows b, b + P, ...) is in the
  // state of all rows.
  std::size_t Slot(std::size_t b, std::size_t l) const {
    constexpr std::size_t kSlots = mf_internal::kAdagradSlots;
    return kSlots * (b + l / kSlots * P_) + l % kSlots;
  }

  // The adagrad state of the rows of user (or item) block b: a resumed run's, else the start.
  std::vector<float> InitialGradients(bool items, std::size_t b) const {
    const std::size_t n = items ? num_items_ : num_users_;
    constexpr std::size_t kSlots = mf_internal::kAdagradSlots;
    std::vector<float> g(kSlots * BlockRows(n, P_, b), static_cast<float>(c_.AdagradStart()));
    if (restored_) {
      const std::vector<double>& saved = items ? h_gradients_ : w_gradients_;
      for (std::size_t l = 0; l < g.size(); ++l) g[l] = static_cast<float>(saved[Slot(b, l)]);
    }
    return g;
  }

  // The factor rows of user (or item) block b: a resumed run's, else the initial ones.
  Rows InitialRows(bool items, std::size_t b) const {
    const std::size_t n = items ? num_items_ : num_users_;
    Rows f = Rows::Zero(static_cast<Eigen::Index>(BlockRows(n, P_, b)), kp_);
    Eigen::RowVectorXd row(k_);
    for (Eigen::Index l = 0; l < f.rows(); ++l) {
      const std::size_t i = b + static_cast<std::size_t>(l) * P_;
      if (restored_) {
        row = (items ? model_.h : model_.w).row(static_cast<Eigen::Index>(i));
      } else {
        c_.InitialRow(items, i, row.data());
      }
      f.row(l).head(k_) = row.cast<float>();
    }
    return f;
  }

  // Block b's rows, as Save wrote them, into the coordinator's copy (made at the first call).
  Status Gather(StateReader& in, bool items, std::size_t b) {
    if (!c_.HasModel()) c_.AllocateModel(/*init=*/false);
    Factors& f = items ? model_.h : model_.w;
    const std::size_t rows = BlockRows(static_cast<std::size_t>(f.rows()), P_, b);
    const auto kp = static_cast<std::size_t>(kp_);
    TESSERA_ASSIGN_OR_RETURN(std::string_view got, in.GetBytesOf<float>(rows * kp));
    std::vector<float> row(kp);
    for (std::size_t l = 0; l < rows; ++l) {
      std::memcpy(row.data(), got.data() + l * kp * sizeof(float), kp * sizeof(float));
      for (int c = 0; c < k_; ++c) {
        f(static_cast<Eigen::Index>(b + l * P_), c) = row[static_cast<std::size_t>(c)];
      }
    }
    constexpr std::size_t kSlots = mf_internal::kAdagradSlots;
    std::vector<double>& g = items ? h_gradients_ : w_gradients_;
    g.resize(kSlots * static_cast<std::size_t>(f.rows()), c_.AdagradStart());
    TESSERA_ASSIGN_OR_RETURN(std::string_view grads, in.GetBytesOf<float>(kSlots * rows));
    for (std::size_t l = 0; l < kSlots * rows; ++l) {
      float v;
      std::memcpy(&v, grads.data() + l * sizeof(float), sizeof v);
      g[Slot(b, l)] = v;
    }
    return Status::Ok();
  }

  mf_internal::Common c_;  // first: the references below point into it
  // The training ratings this process read, grouped by GroupInTiles, in order of segment b·P + s
  // (worker b's stratum s): [segments_[b·P + s], segments_[b·P + s + 1]) in that order, of which
  // worker b's are in ratings_[b] until MakeWorker hands them to it. tiles_[b·P + s] says where
  // the segment's tiles start within it, + its end.
  std::vector<RatingArray> ratings_;
  std::vector<std::size_t> segments_;
  std::vector<std::vector<std::uint32_t>> tiles_;
  const Ratings* test_;
  const std::size_t P_;
  const MfOptions& opts_ = c_.opts;
  const int rank_ = c_.rank, k_ = c_.k;
  const int kp_ = mf_internal::PaddedRow(k_);  // a worker row's length
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const double step_scale_ = c_.step_scale;
  // The coordinator's copy of the factors: made by the first gather, or by a restored
  // checkpoint (then every process starts its workers and blocks from it).
  MfModel& model_ = c_.model;
  bool restored_ = false;
  const bool adaptive_ = opts_.sgd_step == "adagrad";
  // The coordinator's copy of every row's adagrad state (gathered with the factors).
  std::vector<double> w_gradients_, h_gradients_;
  Stopwatch& clock_ = c_.clock;
  std::unique_ptr<Scheduler> scheduler_;
  std::uint64_t resumed_rounds_ = 0;
  double last_objective_ = std::numeric_limits<double>::quiet_NaN();
};

}  // namespace

StatusOr<MfResult> TrainMfDsgd(Ratings train, const Ratings* test, const MfOptions& options,
                               const std::function<void(const MfEpoch&)>& on_epoch) {
  TESSERA_RETURN_IF_ERROR(mf_internal::CheckInputs(train, test, options));
  DsgdApp app(std::move(train), test, options, on_epoch);
  TESSERA_ASSIGN_OR_RETURN(RunResult run, app.common().RunModelParallel(app));
  return app.common().Finish(std::move(run));
}

}  // namespace tessera
