// Micro-benchmarks of the model-parallel engine (Google Benchmark): the cost of one round
// (schedule -> push -> pull -> apply) with a trivial app, by workers and pipeline depth, and
// the in-process transport's message rate. Run: build/release/bench/engine_micro
#include <benchmark/benchmark.h>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/model_parallel.h"
#include "tessera/core/transport.h"

namespace tessera {
namespace {

// Every round updates one key by one; workers only count. Measures pure engine overhead.
struct NoopApp final : ModelParallelApp {
  std::uint64_t rounds = 0;
  RoundSchedule Schedule(ScheduleContext& ctx) override {
    RoundSchedule plan;
    plan.done = ctx.round >= rounds;
    if (!plan.done) plan.blocks.push_back({0, {ctx.round % 8}, kAllWorkers});
    return plan;
  }
  std::vector<Partial> Push(WorkerContext&, std::span<const Block> blocks) override {
    return {Partial{blocks[0].id, 0, Eigen::VectorXd::Ones(1)}};
  }
  Update Pull(PullContext&, std::span<const Block> blocks, std::span<const Partial> m) override {
    return Update{{blocks[0].keys[0]}, m[0].values};
  }
  void Apply(WorkerContext&, const Update&) override {}
  Eigen::VectorXd EvaluateTerms(WorkerContext&) override { return Eigen::VectorXd::Zero(1); }
  double Objective(const Eigen::VectorXd&) override { return 0; }
};

void BM_Round(benchmark::State& state) {
  FiberPool::Global();
  NoopApp app;
  app.rounds = 2000;
  EngineOptions o;
  o.workers = static_cast<int>(state.range(0));
  o.pipeline_depth = static_cast<int>(state.range(1));
  o.progress = false;
  for (auto _ : state) {
    auto run = RunModelParallel(app, o);
    if (!run.ok()) state.SkipWithError(run.status().message().c_str());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(app.rounds));
  state.counters["us_per_round"] = benchmark::Counter(
      static_cast<double>(state.iterations() * app.rounds),
      benchmark::Counter::kIsRate | benchmark::Counter::kInvert, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Round)
    ->ArgsProduct({{1, 2, 4}, {1, 2}})
    ->ArgNames({"workers", "depth"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_InProcessMessages(benchmark::State& state) {
  InProcessTransport t(2);
  const int n = 10000;
  for (auto _ : state) {
    ParallelFor(2, [&](int i) {
      for (int k = 0; k < n; ++k) {
        if (i == 0) {
          (void)t.Send(1, Message(0, msg::PsClock{static_cast<std::uint64_t>(k)}));
        } else {
          benchmark::DoNotOptimize(t.Receive(1));
        }
      }
    });
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_InProcessMessages)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace tessera

BENCHMARK_MAIN();
