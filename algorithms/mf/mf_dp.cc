// Matrix factorization in data-parallel mode: SGD with the item factors H in the parameter
// server (Petuum Bösen / ps-lite style) and the user factors W with the workers.
//
// The data-parallel engine's rows are users: each worker owns a partition of the users, their
// ratings and their rows of W. For a batch of users it pulls the H rows of the items they
// rated, runs SGD over the batch's ratings (in a seeded random order) on W and on its copy of
// those rows, and pushes the change of each H row; the `add` updater folds the changes in.
// Any consistency model works; with model averaging each worker's changes are averaged.
//
// With adagrad steps (the default, as in rotation SGD) every row also keeps the mean squared
// gradients it has seen (of its first columns and of the rest): a W row's stay with its worker,
// an H row's are in a second table on the servers (kAdagradSlots values per item, pulled and
// pushed with the row), so the changes that workers push add up as the gradients they saw. A table
// of its own keeps the factors' table the model and the significantly-modified filter comparing
// factors with factors.
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
constexpr std::size_t kSlots = mf_internal::kAdagradSlots;
using FloatRows = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A worker's own state: its users' ratings, their rows of W, its random stream and scratch.
// W and a batch's copy of the H rows it pulls are float rows padded to whole SIMD vectors, as
// rotation SGD keeps them, so the two modes run the same SGD kernel; H on the servers stays
// double, and a batch pushes each row's change exactly (its float rows after the batch minus
// them before).
struct SgdWorker final : WorkerState {
  std::vector<std::int32_t> local;         // user -> row of `w` (the engine's row order), -1
                                           // for another worker's user
  std::vector<std::size_t> ptr, test_ptr;  // local user l: entries[ptr[l], ptr[l+1]), test[...]
  std::vector<Rating> entries, test;       // in file order within a user; `user` is the row
  FloatRows w;
  std::vector<float> wg;  // adagrad: each W row's kAdagradSlots mean squared gradients (else empty)
  int k = 0;              // W's columns (rank + 2 with biases); its rows are longer (padding)
  std::mt19937_64 rng;
  std::uint64_t rng_epoch = ~std::uint64_t{0};  // the epoch `rng` was seeded for
  // A batch's scratch: its ratings (item: the row of `h`), the items it touches in key order
  // (slot: item -> its row, -1 for items not in the batch) and their rows stepped on (`h`, and
  // with adagrad their squared gradients `hg`), from the tables' rows as pulled.
  std::vector<Rating> batch;
  std::vector<Key> items;
  std::vector<std::int32_t> slot;
  FloatRows h;
  std::vector<float> hg;

  std::size_t Row(std::uint32_t user) const { return static_cast<std::size_t>(local[user]); }
  // W's rows without their padding, in double: the coordinator's factors; then, with adagrad
  // steps, their squared gradients.
  void Save(StateWriter& out) const override {
    std::vector<double> rows(static_cast<std::size_t>(w.rows()) * static_cast<std::size_t>(k));
    for (Eigen::Index l = 0; l < w.rows(); ++l) {
      for (int c = 0; c < k; ++c) rows[static_cast<std::size_t>(l * k + c)] = w(l, c);
    }
    out.Put(std::span<const double>(rows));
    if (!wg.empty()) {
      const std::vector<double> g(wg.begin(), wg.end());
      out.Put(std::span<const double>(g));
    }
  }
};

// The ratings of `users` (local[u] = u's position) grouped by user, in file order, each one's
// user replaced by its position.
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
    if (local[r.user] >= 0) {
      const auto l = static_cast<std::uint32_t>(local[r.user]);
      out[fill[l]++] = Rating{l, r.item, r.value};
    }
  }
}

// Where slot l of the adagrad state of a worker's `users` (kAdagradSlots a row) is in the state
// of all users.
std::size_t Slot(std::span<const std::uint32_t> users, std::size_t l) {
  return kSlots * users[l / kSlots] + l % kSlots;
}

// Rows of k values (double, packed) into float rows of `out`'s length, zero-padded.
void ToFloatRows(std::span<const double> packed, int k, FloatRows& out) {
  const auto rows = static_cast<Eigen::Index>(packed.size() / static_cast<std::size_t>(k));
  out.resize(rows, out.cols());
  mf_internal::ToFloatRows(packed.data(), static_cast<std::size_t>(rows), k, out.data(),
                           static_cast<int>(out.cols()));
}

// The float value after a batch minus the one it started from (the pulled double rounded).
double Change(float after, double pulled) {
  return static_cast<double>(after) - static_cast<double>(static_cast<float>(pulled));
}

class SgdApp final : public DataParallelApp {
 public:
  SgdApp(const Ratings& train, const Ratings* test, const MfOptions& o,
         const std::function<void(const MfEpoch&)>& on_epoch)
      : c_(train, test, o, on_epoch, /*random_h=*/true), train_(train), test_(test) {
    c_.AllocateModel(/*init=*/true);
  }

  std::size_t num_rows() const override { return num_users_; }
  // A user's work is its ratings (of the whole training set: the same in every process).
  std::vector<double> RowWeights() const override {
    return {c_.user_count.begin(), c_.user_count.end()};
  }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec h;
    h.name = "mf_h";
    h.num_keys = num_items_;
    h.dim = k_;
    h.consistency = o.consistency;
    h.model_averaging = o.model_averaging;
    // A worker's cached rows include its own changes: without them, under ssp a worker's next
    // batches start from rows that lack its last ones and take those steps again. (Under bsp
    // a batch reads at a clock its last push has completed: nothing to add.)
    const bool bsp = o.consistency.model == ConsistencyModel::kBsp;
    h.read_my_writes = o.consistency.cached() && !o.model_averaging && !bsp;
    // Under bsp every batch is a clock and reads each row once: a cached row never serves.
    h.cache_reads = !bsp || o.communication.significant > 0;
    h.dense_rows = true;  // a row read or changed is nonzero in (about) every column
    // The adagrad table: the same consistency and caching as the rows it steps (copied before
    // H's initial values, which it does not need).
    TableSpec g = h;
    h.initial_values = Eigen::Map<const Eigen::VectorXd>(model_.h.data(), model_.h.size());
    if (!adaptive_) return {h};
    g.name = "mf_h_adagrad";
    g.dim = kSlots;
    const auto values = static_cast<Eigen::Index>(kSlots * num_items_);
    g.initial_values = Eigen::VectorXd::Constant(values, c_.AdagradStart());
    if (!h_gradients_.empty()) {
      g.initial_values = Eigen::Map<const Eigen::VectorXd>(h_gradients_.data(), values);
    }
    return {h, g};
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
    me->k = k_;
    me->w.setZero(static_cast<Eigen::Index>(users.size()), kp_);
    for (std::size_t l = 0; l < users.size(); ++l) {
      for (int c = 0; c < k_; ++c) {
        me->w(static_cast<Eigen::Index>(l), c) = static_cast<float>(model_.w(users[l], c));
      }
    }
    if (adaptive_) {
      me->wg.resize(kSlots * users.size());
      for (std::size_t l = 0; l < me->wg.size(); ++l) {
        me->wg[l] = static_cast<float>(w_gradients_.empty() ? c_.AdagradStart()
                                                            : w_gradients_[Slot(users, l)]);
      }
    }
    me->slot.assign(num_items_, -1);
    me->h.resize(0, kp_);
    return me;
  }

  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> users) override {
    SgdWorker& me = ctx.State<SgdWorker>();
    // The batch's ratings and the items they touch, each item's row numbered in key order.
    me.batch.clear();
    me.items.clear();
    for (auto u : users) {
      const std::size_t l = me.Row(u);
      for (std::size_t e = me.ptr[l]; e < me.ptr[l + 1]; ++e) {
        const Rating& r = me.entries[e];
        me.batch.push_back(r);
        if (me.slot[r.item] < 0) {
          me.slot[r.item] = 0;
          me.items.push_back(r.item);
        }
      }
    }
    if (me.batch.empty()) return Status::Ok();
    std::vector<Key>& items = me.items;
    // In key order: sorted when few, else collected by a scan of the marks.
    if (items.size() * 16 < num_items_) {
      std::sort(items.begin(), items.end());
    } else {
      items.clear();
      for (std::size_t j = 0; j < num_items_; ++j) {
        if (me.slot[j] == 0) items.push_back(j);
      }
    }
    for (std::size_t i = 0; i < items.size(); ++i) {
      me.slot[items[i]] = static_cast<std::int32_t>(i);
    }
    for (Rating& r : me.batch) r.item = static_cast<std::uint32_t>(me.slot[r.item]);
    for (Key item : items) me.slot[item] = -1;
    // Each worker's stream restarts every epoch from (seed, worker, epoch): a run resumed at
    // an epoch shuffles as the uninterrupted one did.
    if (me.rng_epoch != ctx.epoch) {
      me.rng.seed(opts_.seed + 1 + static_cast<std::uint64_t>(ctx.worker) + 1000003 * ctx.epoch);
      me.rng_epoch = ctx.epoch;
    }
    std::shuffle(me.batch.begin(), me.batch.end(), me.rng);
    const std::uint64_t clock = ctx.client->clock();
    PullFuture pull = ctx.client->Pull(0, items);
    PullFuture pull_g;
    if (adaptive_) pull_g = ctx.client->Pull(1, items);
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd rows, pull.Get());
    Eigen::VectorXd g;
    if (adaptive_) {
      TESSERA_ASSIGN_OR_RETURN(g, pull_g.Get());
      me.hg.assign(g.begin(), g.end());
    }
    // How many clocks stale the oldest row read was, as the client's staleness histogram counts
    // it (16 or more in one bucket).
    const std::uint64_t stale = std::min<std::uint64_t>(
        clock > pull.served_clock() ? clock - pull.served_clock() : 0, kStalenessBuckets - 1);
    ToFloatRows({rows.data(), static_cast<std::size_t>(rows.size())}, k_, me.h);
    mf_internal::SgdStepParams step;
    step.row = kp_;
    step.rank = rank_;
    step.biases = c_.biases;
    step.mean = static_cast<float>(model_.mean);
    step.lambda = static_cast<float>(opts_.lambda);
    step.dims = k_;
    step.slow_only = ctx.epoch == 0;  // LIBMF's first epoch steps the first columns only
    const Rating* first = me.batch.data();
    const Rating* last = first + me.batch.size();
    if (adaptive_) {
      step.lr = static_cast<float>(c_.AdagradRate());
      mf_internal::SgdRatingsAdaptive(first, last, me.w.data(), me.h.data(), me.wg.data(),
                                      me.hg.data(), step);
    } else {
      step.lr = static_cast<float>(step_scale_ * opts_.learning_rate /
                                   (1 + opts_.decay * static_cast<double>(ctx.epoch)));
      mf_internal::SgdRatings(first, last, me.w.data(), me.h.data(), step);
    }
    // The change of each H row (Change), computed in place of the pulled row. With decaying steps
    // it is a delay-adaptive step: a change computed from rows s clocks stale is pushed divided
    // by sqrt(1 + s). Several workers stepping on the same popular items from stale copies
    // otherwise overshoot (4 workers under ssp:4 or essp:2 diverge at the default step);
    // dividing by 1 + s also converges but slows ssp:2 with 2 workers (test RMSE after 20
    // epochs 0.9285 against 0.9227). Adagrad steps shrink by themselves as the rows' squared
    // gradients, which every worker's pushes add to, grow: their changes go as they are (damped
    // too, ssp:2 ended at 0.9278 against bsp's 0.9216; undamped at 0.9217, and 4 workers under
    // ssp:4, essp:2, asp and hogwild converge). The squared gradients' change is never damped.
    const double damp =
        !adaptive_ && stale > 0 ? 1 / std::sqrt(1.0 + static_cast<double>(stale)) : 1.0;
    mf_internal::FloatRowChanges(me.h.data(), kp_, rows.data(),
                                 static_cast<std::size_t>(me.h.rows()), k_, damp);
    TESSERA_RETURN_IF_ERROR(
        ctx.client->Push(0, items, {rows.data(), static_cast<std::size_t>(rows.size())}));
    if (!adaptive_) return Status::Ok();
    for (Eigen::Index i = 0; i < g.size(); ++i)
      g[i] = Change(me.hg[static_cast<std::size_t>(i)], g[i]);
    return ctx.client->Push(1, items, {g.data(), static_cast<std::size_t>(g.size())});
  }

  // Terms: train SSE, test SSE, penalty of my users' W rows (+ all of H on worker 0).
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    const SgdWorker& me = ctx.State<SgdWorker>();
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd hv,
                             ctx.client->PullRange(0, {0, static_cast<Key>(num_items_)}).Get());
    FloatRows h(0, kp_);
    ToFloatRows({hv.data(), static_cast<std::size_t>(hv.size())}, k_, h);
    Eigen::VectorXd t = Eigen::VectorXd::Zero(3);
    const double fixed = c_.FixedNorm();
    for (auto u : ctx.rows) {
      const std::size_t l = me.Row(u);
      const Rating* train = me.entries.data();
      t[0] += mf_internal::SquaredErrors(train + me.ptr[l], train + me.ptr[l + 1], me.w.data(),
                                         h.data(), kp_, model_.mean);
      if (test_) {
        const Rating* test = me.test.data();
        t[1] += mf_internal::SquaredErrors(test + me.test_ptr[l], test + me.test_ptr[l + 1],
                                           me.w.data(), h.data(), kp_, model_.mean);
      }
      t[2] += opts_.lambda * static_cast<double>(me.ptr[l + 1] - me.ptr[l]) *
              (me.w.row(static_cast<Eigen::Index>(l)).cast<double>().squaredNorm() - fixed);
    }
    if (ctx.worker == 0) {
      const Eigen::Map<const Factors> hd(hv.data(), static_cast<Eigen::Index>(num_items_), k_);
      for (std::size_t j = 0; j < num_items_; ++j) {
        t[2] += opts_.lambda * c_.item_count[j] *
                (hd.row(static_cast<Eigen::Index>(j)).squaredNorm() - fixed);
      }
    }
    return t;
  }

  void RunStarted() override { c_.clock = Stopwatch(); }
  double Objective(const Eigen::VectorXd& t) override { return c_.RecordEpoch(t); }

  // The driver's W (and its rows' squared gradients), from the workers' rows at the end and
  // before each checkpoint.
  Status GatherWorker(int, std::span<const std::uint32_t> users, StateReader& in) override {
    Factors rows(static_cast<Eigen::Index>(users.size()), k_);
    TESSERA_RETURN_IF_ERROR(
        in.GetInto(std::span<double>(rows.data(), static_cast<std::size_t>(rows.size()))));
    for (std::size_t l = 0; l < users.size(); ++l) {
      model_.w.row(users[l]) = rows.row(static_cast<Eigen::Index>(l));
    }
    if (!adaptive_) return Status::Ok();
    std::vector<double> g(kSlots * users.size());
    TESSERA_RETURN_IF_ERROR(in.GetInto(std::span<double>(g)));
    w_gradients_.resize(kSlots * num_users_, c_.AdagradStart());
    for (std::size_t l = 0; l < g.size(); ++l) w_gradients_[Slot(users, l)] = g[l];
    return Status::Ok();
  }

  // H as the servers hold it after `epochs` epochs, W (gathered from the workers) and the
  // epochs' metrics; with adagrad steps every row's squared gradients.
  StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t epochs,
                                      const std::vector<Eigen::VectorXd>& tables) override {
    const Eigen::VectorXd& h = tables[0];
    Checkpoint c = c_.Save(Problem(), {h.data(), static_cast<std::size_t>(h.size())});
    c.PutU64("epochs", epochs);
    if (adaptive_) {
      c.PutDoubles("w_gradients", w_gradients_);
      c.PutDoubles("h_gradients", {tables[1].data(), static_cast<std::size_t>(tables[1].size())});
    }
    return c;
  }

  // Puts a checkpoint's factors and metrics back; returns the epochs it had done.
  StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) override {
    TESSERA_RETURN_IF_ERROR(c_.Restore(c, Problem()));
    if (adaptive_) {
      TESSERA_ASSIGN_OR_RETURN(w_gradients_, c.Doubles("w_gradients"));
      TESSERA_ASSIGN_OR_RETURN(h_gradients_, c.Doubles("h_gradients"));
      if (w_gradients_.size() != kSlots * num_users_ ||
          h_gradients_.size() != kSlots * num_items_) {
        return DataLoss(c.source() +
                        ": the rows' step state does not have the sizes the problem says");
      }
    }
    return c.U64("epochs");
  }

  mf_internal::Common& common() { return c_; }

 private:
  mf_internal::Common c_;  // first: the references below point into it
  const Ratings& train_;
  const Ratings* test_;
  const MfOptions& opts_ = c_.opts;
  const int rank_ = c_.rank, k_ = c_.k;
  const int kp_ = mf_internal::PaddedRow(k_);  // a worker row's length
  const std::size_t num_users_ = c_.num_users, num_items_ = c_.num_items;
  const double step_scale_ = c_.step_scale;
  // The driver's copy of the factors: the initial (or restored) W every worker starts its
  // rows from, then what GatherWorker brings back.
  MfModel& model_ = c_.model;
  // Adagrad steps: LIBMF's rule, as rotation SGD runs it (the H rows' squared gradients in a
  // second table).
  const bool adaptive_ = opts_.sgd_step == "adagrad";
  // A restored run's squared gradients (empty: every row starts from AdagradStart()), then W's as
  // gathered.
  std::vector<double> w_gradients_, h_gradients_;
  // Checkpoints of one step rule do not resume the other.
  std::string Problem() const { return c_.Problem(adaptive_ ? ", adagrad steps" : ""); }
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
