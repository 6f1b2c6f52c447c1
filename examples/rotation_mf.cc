// A user's own app with carried blocks: matrix factorization by rotation SGD (DSGD) of a
// synthetic rank-3 matrix, written with FunctionalApp. Users are split over the workers; each
// owns its users' factor rows and ratings (its WorkerState). The item factor rows are P blocks
// that the engine moves to whichever worker a round gives them (carried blocks), so no worker
// holds more of them than the block it works on. Started by `tessera launch`, mpirun or srun,
// it runs across processes with the same result. Checks that the training RMSE reaches the
// noise level (0.1).   usage: rotation_mf [workers] [epochs]
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>

#include "tessera/core/model_parallel.h"
#include "tessera/core/ratings.h"
#include "tessera/tools/cluster.h"

using namespace tessera;
using Rows = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
constexpr int kRank = 3;

struct UserShard final : WorkerState {  // a worker's users: their factor rows and ratings
  KeyRange users;
  Rows w;
  std::vector<std::vector<Rating>> by_block;  // [item block]
  std::mt19937_64 rng;
  void Save(StateWriter& out) const override { out.Put<double>({w.data(), std::size_t(w.size())}); }
};
struct ItemBlock final : BlockState {  // the factor rows of a block of items
  Rows h;
  void Save(StateWriter& out) const override { out.Put<double>({h.data(), std::size_t(h.size())}); }
};
// Reads the rows of `range` into `m` (which has them at range.begin - offset).
Status ReadRows(StateReader& in, Rows& m, KeyRange range, Key offset = 0) {
  return in.GetInto<double>(
      {m.row(Eigen::Index(range.begin - offset)).data(), range.size() * kRank});
}

int main(int argc, char** argv) {
  const int workers = argc > 1 ? std::atoi(argv[1]) : 2;
  const int epochs = argc > 2 ? std::atoi(argv[2]) : 40;
  if (workers < 1 || epochs < 1)
    return Fail(InvalidArgument("usage: rotation_mf [workers] [epochs]"));
  // Every process makes the same data from the seed: a rank-3 model, 20% observed, noise 0.1.
  const int U = 300, I = 200;
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal(0, 1);
  Rows truth_w(U, kRank), truth_h(I, kRank), w(U, kRank), h(I, kRank);
  for (Rows* m : {&truth_w, &truth_h, &w, &h}) {
    for (Eigen::Index e = 0; e < m->size(); ++e)
      m->data()[e] = normal(gen) * (m == &w || m == &h ? 0.3 : 1);
  }
  std::vector<Rating> ratings;
  for (std::uint32_t u = 0; u < U; ++u) {
    for (std::uint32_t i = 0; i < I; ++i) {
      if (gen() % 5 == 0)
        ratings.push_back(
            {u, i, static_cast<float>(truth_w.row(u).dot(truth_h.row(i)) + 0.1 * normal(gen))});
    }
  }
  const auto user_blocks = SplitRange(U, workers), item_blocks = SplitRange(I, workers);
  std::vector<std::uint32_t> block_of(I);
  for (std::uint32_t b = 0; b < item_blocks.size(); ++b) {
    for (Key i = item_blocks[b].begin; i < item_blocks[b].end; ++i) block_of[i] = b;
  }

  FunctionalApp app;
  app.schedule = [&](ScheduleContext& ctx) {  // round r: worker p gets item block (p + r) mod P
    RoundSchedule plan;
    plan.done = ctx.round >= std::uint64_t(epochs) * workers;
    for (int p = 0; p < workers && !plan.done; ++p) {
      plan.blocks.push_back({std::uint32_t((p + ctx.round) % workers), {}, p});
    }
    return plan;
  };
  app.make_worker = [&](const WorkerSetup& s) {
    auto shard = std::make_unique<UserShard>();
    shard->users = user_blocks[s.worker];
    shard->w = w.middleRows(Eigen::Index(shard->users.begin), Eigen::Index(shard->users.size()));
    shard->by_block.resize(workers);
    for (const Rating& r : ratings) {
      if (shard->users.Contains(r.user)) shard->by_block[block_of[r.item]].push_back(r);
    }
    shard->rng.seed(s.worker);
    return shard;
  };
  app.carried_block_holders = [](int n) {
    std::vector<int> holders(n);
    std::iota(holders.begin(), holders.end(), 0);  // worker p holds block p first
    return holders;
  };
  app.make_block = [&](std::uint32_t b, WorkerContext&) {
    auto block = std::make_unique<ItemBlock>();
    block->h =
        h.middleRows(Eigen::Index(item_blocks[b].begin), Eigen::Index(item_blocks[b].size()));
    return block;
  };
  app.load_block = [&](std::uint32_t b, StateReader& in,
                       WorkerContext&) -> StatusOr<std::unique_ptr<BlockState>> {
    auto block = std::make_unique<ItemBlock>();
    block->h.resize(Eigen::Index(item_blocks[b].size()), kRank);
    TESSERA_RETURN_IF_ERROR(ReadRows(in, block->h, item_blocks[b], item_blocks[b].begin));
    return std::unique_ptr<BlockState>(std::move(block));
  };
  app.push = [&](WorkerContext& ctx, std::span<const Block> blocks) {
    auto& me = ctx.State<UserShard>();
    for (const Block& b : blocks) {
      Rows& hb = ctx.Carried<ItemBlock>(b.id).h;
      std::shuffle(me.by_block[b.id].begin(), me.by_block[b.id].end(), me.rng);
      for (const Rating& r : me.by_block[b.id]) {
        auto wu = me.w.row(r.user - me.users.begin);
        auto hi = hb.row(r.item - item_blocks[b.id].begin);
        const double err = r.value - wu.dot(hi);
        const Eigen::RowVectorXd old = wu;
        wu += 0.02 * (err * hi - 0.01 * wu);
        hi += 0.02 * (err * old - 0.01 * hi);
      }
    }
    return std::vector<Partial>{};  // the item rows travel with their blocks
  };
  app.pull = [](PullContext&, std::span<const Block>, std::span<const Partial>) {
    return Update{};
  };
  app.apply = [](WorkerContext&, const Update&) {};
  app.evaluate_terms = [](WorkerContext&) { return Eigen::VectorXd::Zero(1); };
  app.objective = [](const Eigen::VectorXd&) { return 0.0; };
  // The coordinator gets every worker's rows and every block at the end.
  app.gather_worker = [&](int p, StateReader& in) { return ReadRows(in, w, user_blocks[p]); };
  app.gather_block = [&](std::uint32_t b, StateReader& in) {
    return ReadRows(in, h, item_blocks[b]);
  };

  auto cluster = Cluster::Join(ClusterFlags{}, workers + 1, CoordinatorAlone, "--workers");
  if (!cluster.ok()) return Fail(cluster.status());
  EngineOptions options;
  options.workers = workers;
  options.progress = false;
  options.transport = (*cluster)->transport();
  auto run = RunModelParallel(app, options);
  if (!run.ok()) return (*cluster)->Finish(Fail(run.status()), LastError());
  if (!run->holds_result) return (*cluster)->Finish(0, "");
  double sse = 0;
  for (const Rating& r : ratings) sse += std::pow(r.value - w.row(r.user).dot(h.row(r.item)), 2);
  const double rmse = std::sqrt(sse / double(ratings.size()));
  std::printf("rotation_mf: %d workers, %d epochs, %zu ratings, training RMSE %.17g\n", workers,
              epochs, ratings.size(), rmse);
  return (*cluster)->Finish(rmse < 0.15 ? 0 : 1, "training RMSE above the noise level");
}
