#include "algorithms/mf/mf_common.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

namespace tessera::mf_internal {

Common::Common(const Ratings& train, const Ratings* test, const MfOptions& o,
               std::function<void(const MfEpoch&)> on_epoch_fn, bool random_h)
    : opts(o),
      on_epoch(std::move(on_epoch_fn)),
      rank(o.rank),
      k(o.rank + (o.biases ? 2 : 0)),
      num_users(train.num_users()),
      num_items(train.num_items()),
      num_train(train.entries.size()),
      num_test(test ? test->entries.size() : 0) {
  double sum = 0, sq = 0;
  user_count.assign(num_users, 0);
  item_count.assign(num_items, 0);
  for (const Rating& r : train.entries) {
    sum += r.value;
    sq += r.value * r.value;
    ++user_count[r.user];
    ++item_count[r.item];
  }
  model.mean = sum / static_cast<double>(num_train);
  model.biases = o.biases;
  // SGD steps are relative to the ratings' variance: an error of one standard deviation moves
  // the factors by the same amount on a 1-5 and on a -10..10 scale.
  step_scale = 1 / std::max(sq / static_cast<double>(num_train) - model.mean * model.mean, 1e-12);
  model.users = train.users;
  model.items = train.items;
  std::mt19937_64 rng(o.seed);
  std::normal_distribution<double> normal(0, o.init_scale / std::sqrt(static_cast<double>(rank)));
  model.w.resize(static_cast<Eigen::Index>(num_users), k);
  for (Eigen::Index i = 0; i < model.w.size(); ++i) model.w.data()[i] = normal(rng);
  model.h.setZero(static_cast<Eigen::Index>(num_items), k);
  if (random_h) {  // SGD needs both sides nonzero to leave the saddle point at 0
    for (Eigen::Index i = 0; i < model.h.size(); ++i) model.h.data()[i] = normal(rng);
  }
  if (o.biases) {
    model.w.col(rank).setZero();
    model.w.col(rank + 1).setOnes();
    model.h.col(rank).setOnes();
    model.h.col(rank + 1).setZero();
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
         ", rank " + std::to_string(rank) + (opts.biases ? ", biases" : "") + extra;
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
  if (h.size() != static_cast<std::size_t>(model.h.size()) ||
      w.size() != static_cast<std::size_t>(model.w.size()) || history.size() % 5 != 0) {
    return DataLoss(c.source() + ": the factors do not have the sizes the problem says");
  }
  if (history.size() / 5 > static_cast<std::size_t>(opts.epochs)) {
    return InvalidArgument(c.source() + ": " + std::to_string(history.size() / 5) +
                           " epochs are done already; --epochs is " + std::to_string(opts.epochs));
  }
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
  if (train.entries.empty()) return InvalidArgument(train.source + ": no ratings");
  if (test && (test->users != train.users || test->items != train.items)) {
    return InvalidArgument("the test set must be read with the training set's id maps");
  }
  return Status::Ok();
}

}  // namespace tessera::mf_internal
