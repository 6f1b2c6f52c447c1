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
#include <random>

#include "algorithms/mf/mf.h"
#include "core/metrics.h"

namespace tessera {
namespace {

using Factors = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

class SgdApp final : public DataParallelApp {
 public:
  SgdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
         const std::function<void(const MfEpoch&)>& on_epoch)
      : opts_(o), on_epoch_(on_epoch), rank_(o.rank), k_(o.rank + (o.biases ? 2 : 0)) {
    num_users_ = train.num_users();
    num_items_ = train.num_items();
    num_train_ = train.entries.size();
    num_test_ = test ? test->entries.size() : 0;
    double sum = 0, sq = 0;
    for (const Rating& r : train.entries) {
      sum += r.value;
      sq += r.value * r.value;
    }
    model_.mean = sum / static_cast<double>(num_train_);
    // The step is relative to the ratings' variance: an error of one standard deviation moves
    // the factors by the same amount on a 1-5 and on a -10..10 scale.
    const double variance = sq / static_cast<double>(num_train_) - model_.mean * model_.mean;
    step_scale_ = 1 / std::max(variance, 1e-12);
    model_.users = train.users;
    model_.items = train.items;
    // W and H random, biases as (b_i, 1) and (1, c_j) starting at 0.
    model_.w.resize(static_cast<Eigen::Index>(num_users_), k_);
    std::mt19937_64 rng(o.seed);
    std::normal_distribution<double> normal(0, o.init_scale / std::sqrt(double(rank_)));
    for (Eigen::Index i = 0; i < model_.w.size(); ++i) model_.w.data()[i] = normal(rng);
    // Unlike CCD++, SGD needs both sides nonzero to leave the saddle at 0.
    h0_.resize(static_cast<Eigen::Index>(num_items_), k_);
    for (Eigen::Index i = 0; i < h0_.size(); ++i) h0_.data()[i] = normal(rng);
    if (o.biases) {
      model_.w.col(rank_).setZero();
      model_.w.col(rank_ + 1).setOnes();
      h0_.col(rank_).setOnes();
      h0_.col(rank_ + 1).setZero();
    }
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
    scratch_.resize(o.engine.workers);
    for (int w = 0; w < o.engine.workers; ++w) rngs_[w].seed(o.seed + 1 + w);
  }

  std::size_t num_rows() const override { return num_users_; }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec h;
    h.name = "mf_h";
    h.num_keys = num_items_;
    h.dim = k_;
    h.consistency = o.consistency;
    h.model_averaging = o.model_averaging;
    h.initial_values = Eigen::Map<const Eigen::VectorXd>(h0_.data(), h0_.size());
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
    std::shuffle(order.begin(), order.end(), rngs_[ctx.worker]);
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd pulled, ctx.client->Pull(0, items).Get());
    Eigen::VectorXd local = pulled;
    const double lr =
        step_scale_ * opts_.learning_rate / (1 + opts_.decay * static_cast<double>(ctx.epoch));
    const double lambda = opts_.lambda;
    const int k = k_;
    // Columns SGD may change: the rank factors and b_i on the W side, the factors and c_j on
    // the H side; the fixed 1s stay 1.
    const int w_end = opts_.biases ? rank_ + 1 : rank_;
    const int h_skip = opts_.biases ? rank_ : -1;
    for (std::size_t e : order) {
      const Rating& r = entries_[e];
      const auto pos = static_cast<std::size_t>(
          std::lower_bound(items.begin(), items.end(), r.item) - items.begin());
      double* h = local.data() + pos * k;
      double* w = model_.w.data() + static_cast<std::size_t>(r.user) * k;
      double pred = model_.mean;
      for (int c = 0; c < k; ++c) pred += w[c] * h[c];
      const double err = r.value - pred;
      for (int c = 0; c < k; ++c) {
        const double wc = w[c], hc = h[c];
        if (c < w_end) w[c] += lr * (err * hc - lambda * wc);
        if (c != h_skip) h[c] += lr * (err * wc - lambda * hc);
      }
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
      std::vector<std::size_t> count(num_items_, 0);
      for (const Rating& r : entries_) ++count[r.item];
      for (std::size_t j = 0; j < num_items_; ++j) {
        t[2] +=
            opts_.lambda * count[j] * (h.row(static_cast<Eigen::Index>(j)).squaredNorm() - fixed);
      }
    }
    return t;
  }

  double Objective(const Eigen::VectorXd& t) override {
    MfEpoch e;
    e.epoch = static_cast<int>(epochs_.size()) + 1;
    e.seconds = clock_.Seconds();
    e.train_rmse = std::sqrt(t[0] / static_cast<double>(num_train_));
    e.test_rmse = num_test_ ? std::sqrt(t[1] / static_cast<double>(num_test_))
                            : std::numeric_limits<double>::quiet_NaN();
    e.objective = t[0] + t[2];
    epochs_.push_back(e);
    if (on_epoch_) on_epoch_(e);
    return e.objective;
  }

  MfModel& model() { return model_; }
  std::vector<MfEpoch>& epochs() { return epochs_; }
  void StartClock() { clock_ = Stopwatch(); }

 private:
  const MfOptions& opts_;
  std::function<void(const MfEpoch&)> on_epoch_;
  const int rank_, k_;
  std::size_t num_users_ = 0, num_items_ = 0, num_train_ = 0, num_test_ = 0;
  MfModel model_;  // W rows are written only by the worker owning the user
  double step_scale_ = 1;
  Factors h0_;
  std::vector<std::size_t> by_user_;  // ratings of user u: entries_[by_user_[u], by_user_[u+1])
  std::vector<Rating> entries_;
  std::vector<std::vector<Rating>> test_by_user_;
  std::vector<std::mt19937_64> rngs_;  // per worker
  struct Scratch {                     // per worker (fibers move between threads: not thread_local)
    std::vector<std::size_t> order;
    std::vector<Key> items;
  };
  std::vector<Scratch> scratch_;
  std::vector<MfEpoch> epochs_;
  Stopwatch clock_;
};

}  // namespace

StatusOr<MfResult> TrainMfSgdDataParallel(const Ratings& train, const Ratings* test,
                                          const MfOptions& options,
                                          const std::function<void(const MfEpoch&)>& on_epoch) {
  TESSERA_RETURN_IF_ERROR(options.Validate());
  if (train.entries.empty()) return InvalidArgument(train.source + ": no ratings");
  if (test && (test->users != train.users || test->items != train.items)) {
    return InvalidArgument("the test set must be read with the training set's id maps");
  }
  DataParallelOptions dp = options.data_parallel;
  dp.workers = options.engine.workers;
  dp.max_epochs = static_cast<std::uint64_t>(options.epochs);
  dp.max_seconds = options.engine.max_seconds;
  dp.seed = options.seed;
  dp.progress = options.engine.progress;
  dp.label = options.engine.label;
  dp.trace_path = options.engine.trace_path;
  dp.evaluate_every = 0;  // every epoch
  SgdApp app(train, test, options, on_epoch);
  app.StartClock();
  TESSERA_ASSIGN_OR_RETURN(DataParallelResult r, RunDataParallel(app, dp));
  MfResult result;
  result.model = std::move(app.model());
  result.model.h = Eigen::Map<const Factors>(
      r.tables[0].data(), static_cast<Eigen::Index>(train.num_items()), result.model.w.cols());
  result.epochs = std::move(app.epochs());
  result.run = std::move(r.run);
  return result;
}

}  // namespace tessera
