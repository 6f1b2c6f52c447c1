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

#include "algorithms/mf/mf.h"
#include "algorithms/mf/mf_common.h"
#include "core/checkpoint.h"
#include "core/metrics.h"

namespace tessera {
namespace {

using Factors = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class SgdApp final : public DataParallelApp {
 public:
  SgdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
         const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/true) {
    by_user_.resize(num_users_ + 1, 0);
    for (const Rating& r : train.entries) ++by_user_[r.user + 1];
    for (std::size_t u = 0; u < num_users_; ++u) by_user_[u + 1] += by_user_[u];
    entries_.resize(num_train_);
    std::vector<std::size_t> fill(by_user_.begin(), by_user_.end() - 1);
    for (const Rating& r : train.entries) entries_[fill[r.user]++] = r;
    if (test) {
      test_by_user_.resize(num_users_);
      for (const Rating& r : test->entries) test_by_user_[r.user].push_back(r);
    }
    rngs_.resize(o.engine.workers);
    rng_epoch_.assign(o.engine.workers, ~std::uint64_t{0});
    scratch_.resize(o.engine.workers);
  }

  std::size_t num_rows() const override { return num_users_; }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec h;
    h.name = "mf_h";
    h.num_keys = num_items_;
    h.dim = k_;
    h.consistency = o.consistency;
    h.model_averaging = o.model_averaging;
    h.initial_values = Eigen::Map<const Eigen::VectorXd>(model_.h.data(), model_.h.size());
    return {h};
  }

  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> users) override {
    // The batch's ratings, shuffled, and the items they touch.
    std::vector<std::size_t>& order = scratch_[ctx.worker].order;
    std::vector<Key>& items = scratch_[ctx.worker].items;
    order.clear();
    items.clear();
    for (auto u : users) {
      for (std::size_t e = by_user_[u]; e < by_user_[u + 1]; ++e) {
        order.push_back(e);
        items.push_back(entries_[e].item);
      }
    }
    if (order.empty()) return Status::Ok();
    std::sort(items.begin(), items.end());
    items.erase(std::unique(items.begin(), items.end()), items.end());
    // Each worker's stream restarts every epoch from (seed, worker, epoch): a run resumed at
    // an epoch shuffles as the uninterrupted one did.
    std::mt19937_64& rng = rngs_[ctx.worker];
    if (rng_epoch_[ctx.worker] != ctx.epoch) {
      rng.seed(opts_.seed + 1 + static_cast<std::uint64_t>(ctx.worker) + 1000003 * ctx.epoch);
      rng_epoch_[ctx.worker] = ctx.epoch;
    }
    std::shuffle(order.begin(), order.end(), rng);
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd pulled, ctx.client->Pull(0, items).Get());
    Eigen::VectorXd local = pulled;
    const double lr =
        step_scale_ * opts_.learning_rate / (1 + opts_.decay * static_cast<double>(ctx.epoch));
    const double lambda = opts_.lambda;
    const int k = k_;
    for (std::size_t e : order) {
      const Rating& r = entries_[e];
      const auto pos = static_cast<std::size_t>(
          std::lower_bound(items.begin(), items.end(), r.item) - items.begin());
      mf_internal::SgdStep(model_.w.data() + static_cast<std::size_t>(r.user) * k,
                           local.data() + pos * k, k, rank_, opts_.biases, model_.mean, r.value, lr,
                           lambda);
    }
    local -= pulled;  // the change of each H row
    return ctx.client->Push(0, items, {local.data(), static_cast<std::size_t>(local.size())});
  }

  // Terms: train SSE, test SSE, penalty of my users' W rows (+ all of H on worker 0).
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd hv,
                             ctx.client->PullRange(0, {0, static_cast<Key>(num_items_)}).Get());
    const Eigen::Map<const Factors> h(hv.data(), static_cast<Eigen::Index>(num_items_), k_);
    Eigen::VectorXd t = Eigen::VectorXd::Zero(3);
    const double fixed = opts_.biases ? 1.0 : 0.0;
    for (auto u : ctx.rows) {
      const auto wu = model_.w.row(u);
      for (std::size_t e = by_user_[u]; e < by_user_[u + 1]; ++e) {
        const Rating& r = entries_[e];
        t[0] += std::pow(r.value - model_.mean - wu.dot(h.row(r.item)), 2) / ctx.replication;
      }
      if (!test_by_user_.empty()) {
        for (const Rating& r : test_by_user_[u]) {
          t[1] += std::pow(r.value - model_.mean - wu.dot(h.row(r.item)), 2) / ctx.replication;
        }
      }
      t[2] += opts_.lambda * static_cast<double>(by_user_[u + 1] - by_user_[u]) *
              (wu.squaredNorm() - fixed) / ctx.replication;
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

  // H as the servers hold it after `epochs` epochs, W (every worker's rows are here then) and
  // the epochs' metrics.
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

  // Across processes: the W rows of a worker's users travel to the driver's process.
  Eigen::VectorXd FinalWorkerState(DpWorkerContext& ctx) override {
    Eigen::VectorXd rows(static_cast<Eigen::Index>(ctx.rows.size()) * k_);
    for (std::size_t i = 0; i < ctx.rows.size(); ++i) {
      rows.segment(static_cast<Eigen::Index>(i) * k_, k_) = model_.w.row(ctx.rows[i]).transpose();
    }
    return rows;
  }
  Status MergeWorkerState(int worker, std::span<const std::uint32_t> users,
                          const Eigen::VectorXd& rows) override {
    if (rows.size() != static_cast<Eigen::Index>(users.size()) * k_) {
      return Internal("worker " + std::to_string(worker) + " sent " + std::to_string(rows.size()) +
                      " values for " + std::to_string(users.size()) + " users of rank " +
                      std::to_string(k_));
    }
    for (std::size_t i = 0; i < users.size(); ++i) {
      model_.w.row(users[i]) = rows.segment(static_cast<Eigen::Index>(i) * k_, k_).transpose();
    }
    return Status::Ok();
  }
  mf_internal::Common& common() { return c_; }

 private:
  mf_internal::Common c_;  // first: the references below point into it
  const MfOptions& opts_ = c_.opts;
  const int rank_ = c_.rank, k_ = c_.k;
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const std::size_t num_train_ = c_.num_train;
  const double step_scale_ = c_.step_scale;
  MfModel& model_ = c_.model;         // W rows are written only by the worker owning the user
  std::vector<std::size_t> by_user_;  // ratings of user u: entries_[by_user_[u], by_user_[u+1])
  std::vector<Rating> entries_;
  std::vector<std::vector<Rating>> test_by_user_;
  std::vector<std::mt19937_64> rngs_;     // per worker
  std::vector<std::uint64_t> rng_epoch_;  // the epoch each worker's stream was seeded for
  struct Scratch {  // per worker (fibers move between threads: not thread_local)
    std::vector<std::size_t> order;
    std::vector<Key> items;
  };
  std::vector<Scratch> scratch_;
};

}  // namespace

StatusOr<MfResult> TrainMfSgdDataParallel(const Ratings& train, const Ratings* test,
                                          const MfOptions& options,
                                          const std::function<void(const MfEpoch&)>& on_epoch) {
  TESSERA_RETURN_IF_ERROR(mf_internal::CheckInputs(train, test, options));
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
