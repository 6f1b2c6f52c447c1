#include "algorithms/mf/mf_common.h"

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
  return result;
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
