// Matrix factorization in data-parallel mode: SGD with the item factors H in the parameter
// server (Petuum Bösen / ps-lite style) and the user factors W with the workers.
//
// The data-parallel engine's rows are users: each worker owns a partition of the users, their
// ratings and their rows of W. For a batch of users it pulls the H rows of the items they
// rated, runs SGD over the batch's ratings (in a seeded random order) on W and on its copy of
// those rows, and pushes the change of each H row; the `add` updater folds the changes in.
// Any consistency model works; with model averaging each worker's changes are averaged.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <random>

#include "tessera/algorithms/mf/mf.h"
#include "tessera/algorithms/mf/mf_common.h"
#include "tessera/core/checkpoint.h"
#include "tessera/core/metrics.h"

namespace tessera {
namespace {

using Factors = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A worker's own state: its users' ratings, their rows of W, its random stream and scratch.
struct SgdWorker final : WorkerState {
  std::vector<std::int32_t> local;         // user -> row of `w` (the engine's row order), -1
                                           // for another worker's user
  std::vector<std::size_t> ptr, test_ptr;  // local user l: entries[ptr[l], ptr[l+1]), test[...]
  std::vector<Rating> entries, test;       // in file order within a user
  Factors w;
  std::mt19937_64 rng;
  std::uint64_t rng_epoch = ~std::uint64_t{0};  // the epoch `rng` was seeded for
  std::vector<std::size_t> order;               // scratch
  std::vector<Key> items;

  std::size_t Row(std::uint32_t user) const { return static_cast<std::size_t>(local[user]); }
  void Save(StateWriter& out) const override {
    out.Put(std::span<const double>(w.data(), static_cast<std::size_t>(w.size())));
  }
};

// The ratings of `users` (local[u] = u's position) grouped by user, in file order.
void GroupByUser(const std::vector<Rating>& all, const std::vector<std::int32_t>& local,
                 std::size_t users, std::vector<std::size_t>& ptr, std::vector<Rating>& out) {
  ptr.assign(users + 1, 0);
  for (const Rating& r : all) {
    if (local[r.user] >= 0) ++ptr[static_cast<std::size_t>(local[r.user]) + 1];
  }
  for (std::size_t l = 0; l < users; ++l) ptr[l + 1] += ptr[l];
  out.resize(ptr[users]);
  std::vector<std::size_t> fill(ptr.begin(), ptr.end() - 1);
  for (const Rating& r : all) {
    if (local[r.user] >= 0) out[fill[static_cast<std::size_t>(local[r.user])]++] = r;
  }
}

class SgdApp final : public DataParallelApp {
 public:
  SgdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
         const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/true), train_(train), test_(test) {
    c_.AllocateModel(/*init=*/true);
  }

  std::size_t num_rows() const override { return num_users_; }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec h;
    h.name = "mf_h";
    h.num_keys = num_items_;
    h.dim = k_;
    h.consistency = o.consistency;
    h.model_averaging = o.model_averaging;
    // A worker's cached rows include its own changes: without them, under ssp a worker's next
    // batches start from rows that lack its last ones and take those steps again.
    h.read_my_writes = o.consistency.cached() && !o.model_averaging;
    h.initial_values = Eigen::Map<const Eigen::VectorXd>(model_.h.data(), model_.h.size());
    return {h};
  }

  // Worker: its users' ratings and their W rows, from the initial (or restored) factors.
  std::unique_ptr<WorkerState> MakeWorker(const DpWorkerSetup& setup) override {
    auto me = std::make_unique<SgdWorker>();
    const std::span<const std::uint32_t> users = setup.rows;
    me->local.assign(num_users_, -1);
    for (std::size_t l = 0; l < users.size(); ++l) {
      me->local[users[l]] = static_cast<std::int32_t>(l);
    }
    GroupByUser(train_.entries, me->local, users.size(), me->ptr, me->entries);
    if (test_) GroupByUser(test_->entries, me->local, users.size(), me->test_ptr, me->test);
    me->w.resize(static_cast<Eigen::Index>(users.size()), k_);
    for (std::size_t l = 0; l < users.size(); ++l) {
      me->w.row(static_cast<Eigen::Index>(l)) = model_.w.row(users[l]);
    }
    return me;
  }

  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> users) override {
    SgdWorker& me = ctx.State<SgdWorker>();
    // The batch's ratings, shuffled, and the items they touch.
    me.order.clear();
    me.items.clear();
    for (auto u : users) {
      const std::size_t l = me.Row(u);
      for (std::size_t e = me.ptr[l]; e < me.ptr[l + 1]; ++e) {
        me.order.push_back(e);
        me.items.push_back(me.entries[e].item);
      }
    }
    if (me.order.empty()) return Status::Ok();
    std::vector<Key>& items = me.items;
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    // Each worker's stream restarts every epoch from (seed, worker, epoch): a run resumed at
    // an epoch shuffles as the uninterrupted one did.
    if (me.rng_epoch != ctx.epoch) {
      me.rng.seed(opts_.seed + 1 + static_cast<std::uint64_t>(ctx.worker) + 1000003 * ctx.epoch);
      me.rng_epoch = ctx.epoch;
    }
    std::shuffle(me.order.begin(), me.order.end(), me.rng);
    const std::uint64_t clock = ctx.client->clock();
    PullFuture pull = ctx.client->Pull(0, items);
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd pulled, pull.Get());
    // How many clocks stale the oldest row read was, as the client's staleness histogram counts
    // it (16 or more in one bucket).
    const std::uint64_t stale = std::min<std::uint64_t>(
        clock > pull.served_clock() ? clock - pull.served_clock() : 0, kStalenessBuckets - 1);
    Eigen::VectorXd local = pulled;
    const double lr =
        step_scale_ * opts_.learning_rate / (1 + opts_.decay * static_cast<double>(ctx.epoch));
    const double lambda = opts_.lambda;
    const int k = k_;
    for (std::size_t e : me.order) {
      const Rating& r = me.entries[e];
      const auto pos = static_cast<std::size_t>(
          std::lower_bound(items.begin(), items.end(), r.item) - items.begin());
      mf_internal::SgdStep(me.w.data() + me.Row(r.user) * static_cast<std::size_t>(k),
                           local.data() + pos * k, k, rank_, opts_.biases, model_.mean,
                           static_cast<double>(r.value), lr, lambda);
    }
    local -= pulled;  // the change of each H row
    // A delay-adaptive step: a change computed from rows s clocks stale is pushed divided by
    // sqrt(1 + s). Several workers stepping on the same popular items from stale copies
    // otherwise overshoot (4 workers under ssp:4 or essp:2 diverge at the default step); a
    // fresh read (always under bsp) pushes the change as it is. Dividing by 1 + s also
    // converges but slows ssp:2 with 2 workers (test RMSE after 20 epochs 0.9285 against 0.9227).
    if (stale > 0) local /= std::sqrt(1.0 + static_cast<double>(stale));
    return ctx.client->Push(0, items, {local.data(), static_cast<std::size_t>(local.size())});
  }

  // Terms: train SSE, test SSE, penalty of my users' W rows (+ all of H on worker 0).
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    const SgdWorker& me = ctx.State<SgdWorker>();
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd hv,
                             ctx.client->PullRange(0, {0, static_cast<Key>(num_items_)}).Get());
    const Eigen::Map<const Factors> h(hv.data(), static_cast<Eigen::Index>(num_items_), k_);
    Eigen::VectorXd t = Eigen::VectorXd::Zero(3);
    const double fixed = opts_.biases ? 1.0 : 0.0;
    for (auto u : ctx.rows) {
      const std::size_t l = me.Row(u);
      const auto wu = me.w.row(static_cast<Eigen::Index>(l));
      for (std::size_t e = me.ptr[l]; e < me.ptr[l + 1]; ++e) {
        const Rating& r = me.entries[e];
        t[0] += std::pow(r.value - model_.mean - wu.dot(h.row(r.item)), 2);
      }
      if (test_) {
        for (std::size_t e = me.test_ptr[l]; e < me.test_ptr[l + 1]; ++e) {
          const Rating& r = me.test[e];
          t[1] += std::pow(r.value - model_.mean - wu.dot(h.row(r.item)), 2);
        }
      }
      t[2] += opts_.lambda * static_cast<double>(me.ptr[l + 1] - me.ptr[l]) *
              (wu.squaredNorm() - fixed);
    }
    if (ctx.worker == 0) {
      for (std::size_t j = 0; j < num_items_; ++j) {
        t[2] += opts_.lambda * c_.item_count[j] *
                (h.row(static_cast<Eigen::Index>(j)).squaredNorm() - fixed);
      }
    }
    return t;
  }

  double Objective(const Eigen::VectorXd& t) override { return c_.RecordEpoch(t); }

  // The driver's W, from the workers' rows at the end and before each checkpoint.
  Status GatherWorker(int, std::span<const std::uint32_t> users, StateReader& in) override {
    Factors rows(static_cast<Eigen::Index>(users.size()), k_);
    TESSERA_RETURN_IF_ERROR(
        in.GetInto(std::span<double>(rows.data(), static_cast<std::size_t>(rows.size()))));
    for (std::size_t l = 0; l < users.size(); ++l) {
      model_.w.row(users[l]) = rows.row(static_cast<Eigen::Index>(l));
    }
    return Status::Ok();
  }

  // H as the servers hold it after `epochs` epochs, W (gathered from the workers) and the
  // epochs' metrics.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t epochs,
                                      const std::vector<Eigen::VectorXd>& tables) override {
    const Eigen::VectorXd& h = tables[0];
    Checkpoint c = c_.Save(c_.Problem(), {h.data(), static_cast<std::size_t>(h.size())});
    c.PutU64("epochs", epochs);
    return c;
  }

  // Puts a checkpoint's factors and metrics back; returns the epochs it had done.
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, c_.Problem()));
    return c.U64("epochs");
  }

  mf_internal::Common& common() { return c_; }

 private:
  mf_internal::Common c_;  // first: the references below point into it
  const Ratings& train_;
  const Ratings* test_;
  const MfOptions& opts_ = c_.opts;
  const int rank_ = c_.rank, k_ = c_.k;
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const double step_scale_ = c_.step_scale;
  // The driver's copy of the factors: the initial (or restored) W every worker starts its
  // rows from, then what GatherWorker brings back.
  MfModel& model_ = c_.model;
};

}  // namespace

StatusOr<MfResult> TrainMfSgdDataParallel(const Ratings& train, const Ratings* test,
                                          const MfOptions& options,
                                          const std::function<void(const MfEpoch&)>& on_epoch) {
  TESSERA_RETURN_IF_ERROR(mf_internal::CheckInputs(train, test, options));
  if (options.data_parallel.partition == PartitionScheme::kOverlapReshuffle) {
    return InvalidArgument(
        "MF needs disjoint user partitions (each user's factors have one owner), not "
        "overlap_reshuffle");
  }
  DataParallelOptions dp = options.data_parallel;
  CopyRunOptions(options.engine, dp);
  dp.max_epochs = static_cast<std::uint64_t>(options.epochs);
  dp.seed = options.seed;
  dp.evaluate_every = 0;  // every epoch
  SgdApp app(train, test, options, on_epoch);
  std::optional<CheckpointDir> dir;
  TESSERA_ASSIGN_OR_RETURN(
      std::string resumed,
      UseCheckpoints(app,
                     {options.checkpoint_dir, options.checkpoint_every, options.resume, "epochs"},
                     options.engine.transport, dp, dir));
  app.common().clock = Stopwatch();
  TESSERA_ASSIGN_OR_RETURN(DataParallelResult r,
                           RunDataParallel(app, dp, options.engine.transport));
  MfResult result = app.common().Finish(std::move(r.run));
  result.resumed = resumed;
  if (!result.run.holds_result) return result;
  result.model.h = Eigen::Map<const Factors>(
      r.tables[0].data(), static_cast<Eigen::Index>(train.num_items()), result.model.w.cols());
  return result;
}

}  // namespace tessera
