// The model-parallel engine's semantics, checked with small instrumented apps.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/model_parallel.h"
#include "tests/core/test_transport.h"
#include "tests/test_util.h"

using ::testing::HasSubstr;

namespace tessera {
namespace {

// Each round updates key (round % 4) by +1. Workers count the updates they applied and report
// that count in their partial, so Pull can see exactly how stale each push was.
struct CountingApp : ModelParallelApp {
  explicit CountingApp(int workers, std::uint64_t rounds) : applied(workers, 0), limit(rounds) {
    for (int w = 0; w < workers; ++w) stale_keys_seen[w];  // no insertion from worker fibers
  }

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (ctx.round >= limit) {
      plan.done = true;
      return plan;
    }
    in_flight_seen.push_back(ctx.in_flight.size());
    plan.blocks.push_back({7, {ctx.round % 4}, kAllWorkers});
    return plan;
  }
  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    Partial p;
    p.block = blocks[0].id;
    p.values = Eigen::VectorXd::Constant(1, applied[ctx.worker]);
    stale_keys_seen.at(ctx.worker).push_back(ctx.stale_keys.size());
    return {p};
  }
  StatusOr<Partial> Aggregate(std::span<const Partial> parts) override {
    // Every worker must have applied the same number of updates when it pushed a round.
    for (const auto& p : parts) EXPECT_EQ(p.values[0], parts[0].values[0]);
    return parts[0];
  }
  Update Pull(PullContext& ctx, std::span<const Block> blocks,
              std::span<const Partial> merged) override {
    const auto seen = static_cast<std::uint64_t>(merged[0].values[0]);
    EXPECT_EQ(seen + ctx.stale_updates.size(), ctx.round) << "round " << ctx.round;
    max_stale = std::max<std::size_t>(max_stale, ctx.stale_updates.size());
    ++pulled;
    return Update{{blocks[0].keys[0]}, Eigen::VectorXd::Constant(1, 1.0)};
  }
  void Apply(WorkerContext& ctx, const Update&) override { ++applied[ctx.worker]; }
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    return Eigen::VectorXd::Constant(1, applied[ctx.worker]);
  }
  double Objective(const Eigen::VectorXd& t) override { return 1.0 / (1.0 + t[0]); }

  std::vector<int> applied;
  std::uint64_t limit;
  std::uint64_t pulled = 0;
  std::size_t max_stale = 0;
  std::vector<std::size_t> in_flight_seen;
  std::map<int, std::vector<std::size_t>> stale_keys_seen;
};

class PipelineTest : public ::testing::TestWithParam<std::tuple<int, int>> {};

TEST_P(PipelineTest, StalenessIsExactlyTheRoundsInFlight) {
  const auto [workers, depth] = GetParam();
  CountingApp app(workers, 50);
  EngineOptions o;
  o.workers = workers;
  o.pipeline_depth = depth;
  auto run = RunModelParallel(app, o);
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->rounds, 50u);
  EXPECT_EQ(run->stop_reason, "converged");
  EXPECT_EQ(app.pulled, 50u);
  EXPECT_EQ(app.max_stale, static_cast<std::size_t>(depth - 1));
  for (int w = 0; w < workers; ++w) EXPECT_EQ(app.applied[w], 50);
  // The final evaluation sees every update applied on every worker.
  EXPECT_DOUBLE_EQ(run->objective, 1.0 / (1.0 + 50.0 * workers));
  for (std::size_t r = 0; r < app.in_flight_seen.size(); ++r) {
    EXPECT_LE(app.in_flight_seen[r], static_cast<std::size_t>(depth - 1));
  }
}

INSTANTIATE_TEST_SUITE_P(WorkersAndDepth, PipelineTest,
                         ::testing::Combine(::testing::Values(1, 3), ::testing::Values(1, 2, 3)));

// An objective that is not a finite number stops the run at that evaluation, naming it.
TEST(EngineTest, ANonFiniteObjectiveStopsTheRunWithAnError) {
  struct Diverging : CountingApp {
    using CountingApp::CountingApp;
    double Objective(const Eigen::VectorXd& t) override {
      return t[0] >= 10 ? std::numeric_limits<double>::quiet_NaN() : 1.0;
    }
  };
  Diverging app(2, 1000);
  EngineOptions o;
  o.objective_every = 5;
  auto run = RunModelParallel(app, o);
  ASSERT_FALSE(run.ok());
  EXPECT_EQ(run.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(run.status().message().rfind("the objective is nan after round ", 0), 0u)
      << run.status().message();
  EXPECT_LT(app.pulled, 20u);  // stopped there, not at the end
}

TEST(EngineTest, StopsAtMaxRoundsAndWritesTrace) {
  testing::TempDir dir;
  CountingApp app(2, 1000);
  EngineOptions o;
  o.max_rounds = 10;
  o.objective_every = 5;
  o.trace_path = dir.Path("trace.csv");
  auto run = RunModelParallel(app, o);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->rounds, 10u);
  EXPECT_EQ(run->stop_reason, "max rounds");
  EXPECT_EQ(run->evaluations.size(), 2u);  // after rounds 5 and 10
  std::ifstream in(o.trace_path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "round,seconds,objective,updates,bytes");
  int rows = 0, with_objective = 0;
  while (std::getline(in, line)) {
    ++rows;
    if (line.find(",,") == std::string::npos) ++with_objective;
  }
  EXPECT_EQ(rows, 10);
  EXPECT_EQ(with_objective, 2);
  EXPECT_GT(run->bytes, 0u);
}

// Checkpoints at marked rounds (an app's epoch ends) with a pipeline: nothing is planned past
// a marked round until it is pulled and the checkpoint taken; a resumed run numbers its rounds
// on from first_round.
TEST(EngineTest, CheckpointsAtMarkedRoundsWithNothingInFlightAndResumesNumbering) {
  for (double every : {0.0, 1000.0}) {
    FunctionalApp app;
    std::vector<std::uint64_t> planned, pulled, checkpoints;
    std::uint64_t last_planned = 0;
    app.schedule = [&](ScheduleContext& ctx) {
      RoundSchedule plan;
      if (ctx.round >= 30) {
        plan.done = true;
        return plan;
      }
      planned.push_back(ctx.round);
      last_planned = ctx.round;
      plan.blocks.push_back({0, {0}, kAllWorkers});
      plan.checkpoint_after = (ctx.round + 1) % 5 == 0;
      return plan;
    };
    app.push = [](WorkerContext&, std::span<const Block> b) {
      return std::vector<Partial>{{b[0].id, -1, Eigen::VectorXd::Ones(1)}};
    };
    app.pull = [&](PullContext& ctx, std::span<const Block>, std::span<const Partial>) {
      pulled.push_back(ctx.round);
      return Update{};
    };
    app.apply = [](WorkerContext&, const Update&) {};
    app.evaluate_terms = [](WorkerContext&) { return Eigen::VectorXd::Zero(1); };
    app.objective = [](const Eigen::VectorXd&) { return 0.0; };
    EngineOptions o;
    o.pipeline_depth = 3;
    o.first_round = 10;
    o.checkpoint_at_marked_rounds = true;
    o.checkpoint_every = every;
    o.checkpoint = [&](std::uint64_t rounds) {
      checkpoints.push_back(rounds);
      EXPECT_EQ(pulled.back() + 1, rounds);
      EXPECT_EQ(last_planned + 1, rounds) << "a round was planned past the marked one";
      return Status::Ok();
    };
    auto run = RunModelParallel(app, o);
    ASSERT_TRUE(run.ok()) << run.status().message();
    EXPECT_EQ(run->rounds, 30u);
    ASSERT_EQ(planned.size(), 20u);
    EXPECT_EQ(planned.front(), 10u);
    EXPECT_EQ(pulled, planned);
    if (every == 0) {
      EXPECT_EQ(checkpoints, (std::vector<std::uint64_t>{15, 20, 25, 30}));
    } else {
      EXPECT_TRUE(checkpoints.empty()) << "none is due within 1000 s";
    }
  }
}

TEST(EngineTest, StopsOnObjectiveTolerance) {
  CountingApp app(1, 100000);
  EngineOptions o;
  o.workers = 1;
  o.objective_every = 1;
  o.objective_tolerance = 1e-2;  // 1/(1+k) changes by less than 1% once k > ~100
  auto run = RunModelParallel(app, o);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->stop_reason, "objective tolerance");
  EXPECT_GT(run->rounds, 50u);
  EXPECT_LT(run->rounds, 200u);
}

TEST(EngineTest, StopsOnTimeLimit) {
  CountingApp app(2, UINT64_MAX);
  EngineOptions o;
  o.max_seconds = 0.05;
  auto run = RunModelParallel(app, o);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->stop_reason, "time limit");
  EXPECT_GE(run->seconds, 0.05);
}

TEST(EngineTest, RoutesBlocksToTheirWorkerOnly) {
  FunctionalApp app;
  std::mutex mu;
  std::vector<std::pair<int, std::uint32_t>> seen;
  app.schedule = [](ScheduleContext& ctx) {
    RoundSchedule plan;
    plan.done = ctx.round == 3;
    for (int w = 0; w < ctx.num_workers && !plan.done; ++w) {
      plan.blocks.push_back({static_cast<std::uint32_t>(10 + w), {static_cast<Key>(w)}, w});
    }
    return plan;
  };
  app.push = [&](WorkerContext& ctx, std::span<const Block> blocks) {
    std::vector<Partial> out;
    for (const auto& b : blocks) {
      std::lock_guard lock(mu);
      seen.emplace_back(ctx.worker, b.id);
      out.push_back({b.id, 0, Eigen::VectorXd::Constant(1, ctx.worker)});
    }
    return out;
  };
  app.pull = [](PullContext&, std::span<const Block> blocks, std::span<const Partial> merged) {
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      EXPECT_EQ(merged[i].values[0], blocks[i].worker);  // only the owner contributed
    }
    return Update{};
  };
  app.apply = [](WorkerContext&, const Update&) {};
  app.evaluate_terms = [](WorkerContext&) { return Eigen::VectorXd::Zero(1); };
  app.objective = [](const Eigen::VectorXd&) { return 0.0; };
  EngineOptions o;
  o.workers = 4;
  auto run = RunModelParallel(app, o);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(seen.size(), 12u);
  for (auto [w, id] : seen) EXPECT_EQ(id, static_cast<std::uint32_t>(10 + w));
}

TEST(EngineTest, EmptyScheduleWithNothingInFlightIsAnError) {
  FunctionalApp app;
  app.schedule = [](ScheduleContext&) { return RoundSchedule{}; };
  app.push = [](WorkerContext&, std::span<const Block>) { return std::vector<Partial>{}; };
  app.pull = [](PullContext&, std::span<const Block>, std::span<const Partial>) {
    return Update{};
  };
  app.apply = [](WorkerContext&, const Update&) {};
  app.evaluate_terms = [](WorkerContext&) { return Eigen::VectorXd::Zero(1); };
  app.objective = [](const Eigen::VectorXd&) { return 0.0; };
  auto run = RunModelParallel(app, EngineOptions{});
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("no blocks"), std::string::npos);
}

// Partials that cannot be merged stop the run with an error naming the round, block and
// worker: by default when their sizes differ, and whatever an app's own Aggregate refuses.
TEST(EngineTest, PartialsThatCannotBeMergedStopTheRunWithTheReason) {
  for (const bool own : {false, true}) {
    FunctionalApp app;
    app.schedule = [](ScheduleContext& ctx) {
      RoundSchedule plan;
      plan.blocks.push_back({5, {ctx.round}, kAllWorkers});
      return plan;
    };
    app.push = [](WorkerContext& ctx, std::span<const Block> blocks) {
      // Worker 1 sends one value more than worker 0 from the third round on.
      const Eigen::Index size = ctx.worker == 1 && ctx.round >= 2 ? 2 : 1;
      return std::vector<Partial>{{blocks[0].id, ctx.worker, Eigen::VectorXd::Ones(size)}};
    };
    if (own) {
      app.aggregate = [](std::span<const Partial> parts) -> StatusOr<Partial> {
        for (const Partial& p : parts) {
          if (p.values.size() != 1) return InvalidArgument("a partial of the wrong layout");
        }
        return parts[0];
      };
    }
    app.pull = [](PullContext&, std::span<const Block>, std::span<const Partial>) {
      return Update{};
    };
    app.apply = [](WorkerContext&, const Update&) {};
    app.evaluate_terms = [](WorkerContext&) { return Eigen::VectorXd::Zero(1); };
    app.objective = [](const Eigen::VectorXd&) { return 0.0; };
    EngineOptions o;
    o.workers = 2;
    o.max_rounds = 10;
    auto run = RunModelParallel(app, o);
    ASSERT_FALSE(run.ok());
    EXPECT_THAT(run.status().message(), HasSubstr("round 2, block 5: "));
    EXPECT_THAT(run.status().message(), HasSubstr(own ? "a partial of the wrong layout"
                                                      : "worker 1 sent 2 partial values"));
  }
}

// An app with no Schedule of its own: the engine plans its rounds with the scheduler the
// options name. Each update moves a key halfway to its target, so a key's change halves with
// every visit and a pass whose largest change is below the tolerance ends the run.
struct HalvingApp : ModelParallelApp {
  std::vector<Key> ScheduleKeys() override { return {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; }
  std::vector<Partial> Push(WorkerContext&, std::span<const Block> blocks) override {
    std::vector<Partial> out;
    for (const Block& b : blocks) out.push_back({b.id, 0, Eigen::VectorXd::Zero(1)});
    return out;
  }
  Update Pull(PullContext&, std::span<const Block> blocks, std::span<const Partial>) override {
    Update u;
    for (const Block& b : blocks) {
      EXPECT_LE(b.keys.size(), 3u);  // the block_size argument
      for (Key k : b.keys) u.keys.push_back(k);
    }
    u.delta.resize(static_cast<Eigen::Index>(u.keys.size()));
    for (std::size_t i = 0; i < u.keys.size(); ++i) {
      double& x = value[u.keys[i]];
      u.delta[static_cast<Eigen::Index>(i)] = 0.5 * (1.0 + u.keys[i] - x);
      x += u.delta[static_cast<Eigen::Index>(i)];
    }
    return u;
  }
  void Apply(WorkerContext&, const Update&) override {}
  Eigen::VectorXd EvaluateTerms(WorkerContext&) override { return Eigen::VectorXd::Zero(1); }
  double Objective(const Eigen::VectorXd&) override {
    double s = 0;
    for (std::size_t k = 0; k < value.size(); ++k) s += std::abs(value[k] - 1.0 - k);
    return s;
  }
  std::vector<double> value = std::vector<double>(10, 0.0);
};

TEST(EngineTest, AnAppWithoutScheduleRunsTheSchedulerTheOptionsName) {
  {
    HalvingApp app;
    auto run = RunModelParallel(app, {.workers = 2,
                                      .pipeline_depth = 2,
                                      .scheduler = "round_robin:block_size=3",
                                      .change_tolerance = 1e-6});
    ASSERT_TRUE(run.ok()) << run.status().message();
    EXPECT_EQ(run->stop_reason, "converged");
    EXPECT_LT(run->objective, 1e-4);
  }
  {
    // priority samples keys by their last change (Observe), so the far ones first.
    HalvingApp app;
    auto run = RunModelParallel(
        app, {.workers = 3, .max_rounds = 400, .scheduler = "priority:block_size=3,eta=0.5"});
    ASSERT_TRUE(run.ok()) << run.status().message();
    EXPECT_EQ(run->stop_reason, "max rounds");
    EXPECT_LT(run->objective, 1e-4);
  }
  // With two keys a round, a pass is 5 rounds and visits every key once: after v visits key
  // k's change is (k + 1) / 2^v, and the largest, key 9's, is at most 1e-6 from v = 24 on.
  HalvingApp app;
  auto run =
      RunModelParallel(app, {.scheduler = "round_robin:block_size=2", .change_tolerance = 1e-6});
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->updates, 240u);
}

TEST(EngineTest, ASchedulerThatCannotBeMadeStopsTheRunWithTheReason) {
  HalvingApp app;
  EXPECT_EQ(RunModelParallel(app, {}).status().message(),
            "the app defines no Schedule and EngineOptions names no scheduler");
  EXPECT_EQ(RunModelParallel(app, {.scheduler = "round_robin:rho=0.1"}).status().message(),
            "--scheduler: scheduler round_robin takes no argument 'rho' (it takes: "
            "block_size=16)");
  EXPECT_EQ(RunModelParallel(app, {.scheduler = "dependency"}).status().message(),
            "--scheduler dependency: this app supplies no dependency function (it takes: "
            "block_size=16, rho=0.1, candidate_factor=4)");
  FunctionalApp none;  // no keys
  EXPECT_EQ(RunModelParallel(none, {.scheduler = "round_robin"}).status().message(),
            "--scheduler round_robin: the app names no keys to schedule (ScheduleKeys)");
}

TEST(EngineTest, InvalidOptionsNameTheFlag) {
  CountingApp app(1, 1);
  EngineOptions o;
  o.workers = 0;
  auto run = RunModelParallel(app, o);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("--workers"), std::string::npos);
  o.workers = 1;
  o.pipeline_depth = 0;
  EXPECT_NE(RunModelParallel(app, o).status().message().find("--pipeline-depth"),
            std::string::npos);
}

// Carried blocks under rotation: block b goes to worker (b - r) mod P in round r. Each block's
// state is the list of workers that had it; each worker's state counts its pushes. The states
// exist only as the engine's objects and as bytes in messages: the app object keeps nothing.
// Before the run's last gather the states are told to let go of what they do not save: the
// blocks then add kReleased to their list, the workers count it.
struct RotatingApp : ModelParallelApp {
  static constexpr std::int32_t kReleased = -100;
  struct Visits final : BlockState {
    std::vector<std::int32_t> workers;
    void Save(StateWriter& out) const override { out.Put(workers); }
    void ReleaseForLastSave() override { workers.push_back(kReleased); }
  };
  struct Counter final : WorkerState {
    std::vector<std::uint64_t> pushes{0, 0};  // pushes, releases
    void Save(StateWriter& out) const override { out.Put(pushes); }
    void ReleaseForLastSave() override { ++pushes[1]; }
  };
  RotatingApp(int workers, std::uint64_t rounds) : P(workers), limit(rounds) {}

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    if (ctx.round >= limit) {
      plan.done = true;
      return plan;
    }
    for (int w = 0; w < P; ++w) {
      const auto b = static_cast<std::uint32_t>((w + ctx.round) % static_cast<std::uint64_t>(P));
      plan.blocks.push_back({b, {b}, w});
    }
    return plan;
  }
  std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup&) override {
    return std::make_unique<Counter>();
  }
  std::vector<int> CarriedBlockHolders(int workers) override {
    std::vector<int> h(static_cast<std::size_t>(workers));
    for (int b = 0; b < workers; ++b) h[static_cast<std::size_t>(b)] = (b + 1) % workers;
    return h;
  }
  std::unique_ptr<BlockState> MakeBlock(std::uint32_t, WorkerContext& ctx) override {
    auto v = std::make_unique<Visits>();
    v->workers.push_back(-1 - ctx.worker);  // made here
    return v;
  }
  StatusOr<std::unique_ptr<BlockState>> LoadBlock(std::uint32_t, StateReader& in,
                                                  WorkerContext&) override {
    ++loads;
    auto v = std::make_unique<Visits>();
    TESSERA_RETURN_IF_ERROR(in.Get(v->workers));
    if (corrupt) return DataLoss(in.what() + ": refused");
    return std::unique_ptr<BlockState>(std::move(v));
  }
  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) override {
    for (const Block& b : blocks) {
      EXPECT_EQ(b.worker, ctx.worker);
      ctx.Carried<Visits>(b.id).workers.push_back(ctx.worker);
      ++ctx.State<Counter>().pushes[0];
    }
    return {};
  }
  Update Pull(PullContext&, std::span<const Block>, std::span<const Partial>) override {
    return {};
  }
  void Apply(WorkerContext&, const Update&) override {}
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override {
    return Eigen::VectorXd::Constant(1, static_cast<double>(ctx.held->size()));
  }
  double Objective(const Eigen::VectorXd& t) override { return t[0]; }
  Status GatherWorker(int worker, StateReader& in) override {
    std::vector<std::uint64_t> pushes;
    TESSERA_RETURN_IF_ERROR(in.Get(pushes));
    gathered_pushes.push_back({worker, pushes.at(0)});
    released.push_back(pushes.at(1));
    return Status::Ok();
  }
  Status GatherBlock(std::uint32_t block, StateReader& in) override {
    std::vector<std::int32_t> w;
    TESSERA_RETURN_IF_ERROR(in.Get(w));
    visits[block] = w;
    return Status::Ok();
  }

  int P;
  std::uint64_t limit;
  bool corrupt = false;
  std::atomic<int> loads{0};  // blocks made from bytes
  std::vector<std::pair<int, std::uint64_t>> gathered_pushes;
  std::vector<std::uint64_t> released;  // by the gathered workers, in gather order
  std::map<std::uint32_t, std::vector<std::int32_t>> visits;
};

// An in-process transport that passes messages as bytes would travel (as between processes):
// carried blocks go as what their Save writes.
std::shared_ptr<Transport> BytesOnlyTransport(int n) {
  return std::make_shared<tessera::testing::LookAlikeTransport>(n, true, false);
}

// (pipeline depth, carried blocks as bytes)
class CarriedBlockTest : public ::testing::TestWithParam<std::tuple<int, bool>> {};

TEST_P(CarriedBlockTest, BlocksMoveByMessageToTheWorkerEachRoundAssigns) {
  const int P = 3;
  const std::uint64_t rounds = 7;
  const auto [depth, as_bytes] = GetParam();
  RotatingApp app(P, rounds);
  EngineOptions o;
  o.workers = P;
  o.pipeline_depth = depth;  // deeper: pushes of later rounds wait behind block arrivals
  o.progress = false;
  if (as_bytes) o.transport = BytesOnlyTransport(P + 1);
  auto run = RunModelParallel(app, o);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->objective, P) << "every block held by exactly one worker at the end";
  ASSERT_EQ(app.visits.size(), static_cast<std::size_t>(P));
  for (int b = 0; b < P; ++b) {
    std::vector<std::int32_t> want = {-1 - (b + 1) % P};
    for (std::uint64_t r = 0; r < rounds; ++r) {
      want.push_back(static_cast<int>((b - static_cast<int>(r % P) + P) % P));
    }
    want.push_back(RotatingApp::kReleased);  // once, just before the last gather's Save
    EXPECT_EQ(app.visits[static_cast<std::uint32_t>(b)], want) << "block " << b;
  }
  ASSERT_EQ(app.gathered_pushes.size(), static_cast<std::size_t>(P));
  for (int w = 0; w < P; ++w) {
    EXPECT_EQ(app.gathered_pushes[static_cast<std::size_t>(w)], std::make_pair(w, rounds));
    EXPECT_EQ(app.released[static_cast<std::size_t>(w)], 1u) << "worker " << w;
  }
  if (as_bytes) {
    EXPECT_EQ(app.loads, rounds * P) << "every round hands every block on";
    EXPECT_GT(run->bytes, rounds * P * 8) << "block transfers count as traffic";
  } else {
    EXPECT_EQ(app.loads, 0) << "in one process the state objects themselves move";
  }
}

INSTANTIATE_TEST_SUITE_P(Depths, CarriedBlockTest,
                         ::testing::Combine(::testing::Values(1, 3), ::testing::Bool()));

TEST(EngineTest, ABlockThatCannotBeLoadedStopsTheRunWithTheReason) {
  RotatingApp app(2, 5);
  app.corrupt = true;
  EngineOptions o;
  o.workers = 2;
  o.progress = false;
  o.transport = BytesOnlyTransport(3);
  auto run = RunModelParallel(app, o);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("from worker"), std::string::npos)
      << run.status().ToString();
}

TEST(EngineTest, ACarriedBlockMustGoToOneWorker) {
  struct Shared : RotatingApp {
    Shared() : RotatingApp(2, 3) {}
    RoundSchedule Schedule(ScheduleContext& ctx) override {
      RoundSchedule plan = RotatingApp::Schedule(ctx);
      if (!plan.done) plan.blocks[0].worker = kAllWorkers;
      return plan;
    }
  } app;
  EngineOptions o;
  o.workers = 2;
  o.progress = false;
  auto run = RunModelParallel(app, o);
  ASSERT_FALSE(run.ok());
  EXPECT_NE(run.status().message().find("one worker"), std::string::npos)
      << run.status().ToString();
}

}  // namespace
}  // namespace tessera
