// Every registered scheduler gets the same checks; then each built-in its own.
#include "tessera/schedulers/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <set>

namespace tessera {
namespace {

// Keys interfere when they are neighbours (|a - b| == 1) — a chain of dependencies.
double ChainDependency(Key a, Key b) { return (a > b ? a - b : b - a) == 1 ? 1.0 : 0.0; }

SchedulerSetup TestSetup() {
  SchedulerSetup setup;
  setup.num_workers = 3;
  setup.dependency = ChainDependency;
  return setup;
}

// Offered to every scheduler (defaults are never refused), as an app offers its block size.
SchedulerArgs TestArgs() {
  SchedulerArgs args;
  args.SetDefault("block_size", "8");
  args.SetDefault("rho", "0.5");
  return args;
}

// `text` parsed as scheduler arguments.
SchedulerArgs Args(const std::string& text) { return *SchedulerArgs::Parse(text); }

class EveryScheduler : public ::testing::TestWithParam<std::string> {};

TEST_P(EveryScheduler, SchedulesOnlyCandidatesWithoutDuplicatesAndCoversThem) {
  auto s = DefaultSchedulers().Create(GetParam(), TestSetup(), TestArgs());
  ASSERT_TRUE(s.ok()) << s.status().message();
  std::vector<Key> candidates;
  for (Key k = 100; k < 160; ++k) candidates.push_back(k);
  (*s)->Reset(candidates);
  std::mt19937_64 rng(1);
  std::set<Key> covered;
  for (std::uint64_t r = 0; r < 400; ++r) {
    ScheduleContext ctx;
    ctx.round = r;
    ctx.num_workers = 3;
    ctx.rng = &rng;
    auto blocks = (*s)->Next(ctx);
    ASSERT_FALSE(blocks.empty()) << "round " << r;
    std::set<Key> in_round;
    std::set<std::uint32_t> ids;
    for (const auto& b : blocks) {
      EXPECT_TRUE(ids.insert(b.id).second) << "duplicate block id";
      EXPECT_TRUE(b.worker == kAllWorkers || (b.worker >= 0 && b.worker < 3));
      for (Key k : b.keys) {
        EXPECT_GE(k, 100u);
        EXPECT_LT(k, 160u);
        EXPECT_TRUE(in_round.insert(k).second) << "key " << k << " twice in round " << r;
        covered.insert(k);
      }
    }
    Eigen::VectorXd delta =
        Eigen::VectorXd::Constant(static_cast<Eigen::Index>(in_round.size()), 0.1);
    std::vector<Key> keys(in_round.begin(), in_round.end());
    (*s)->Observe(keys, delta);
  }
  EXPECT_EQ(covered.size(), candidates.size()) << "some candidate was never scheduled";
  // A new candidate set replaces the old one.
  (*s)->Reset(std::vector<Key>{5, 6});
  ScheduleContext ctx;
  ctx.rng = &rng;
  for (const auto& b : (*s)->Next(ctx)) {
    for (Key k : b.keys) EXPECT_TRUE(k == 5 || k == 6);
  }
}

INSTANTIATE_TEST_SUITE_P(Registry, EveryScheduler, ::testing::ValuesIn(DefaultSchedulers().Names()),
                         [](const auto& info) { return info.param; });

TEST(SchedulerRegistryTest, BuiltinsAreRegisteredAndUnknownNamesListThem) {
  EXPECT_EQ(DefaultSchedulers().Names(),
            (std::vector<std::string>{"dependency", "priority", "rotation", "round_robin"}));
  auto s = DefaultSchedulers().Create("fifo", TestSetup(), TestArgs());
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message(),
            "--scheduler: unknown scheduler 'fifo' (valid: dependency, priority, rotation, "
            "round_robin)");
}

TEST(SchedulerArgsTest, EachSchedulerReadsAndChecksItsOwnArguments) {
  const SchedulerRegistry& r = DefaultSchedulers();
  EXPECT_TRUE(r.Create("priority", TestSetup(), Args("block_size=2,eta=0.01")).ok());
  EXPECT_EQ(r.Create("round_robin", TestSetup(), Args("block_size=0")).status().message(),
            "--scheduler round_robin: scheduler argument block_size=0: expected an integer >= 1 "
            "(it takes: block_size=16)");
  EXPECT_EQ(r.Create("round_robin", TestSetup(), Args("rho=0.3")).status().message(),
            "--scheduler: scheduler round_robin takes no argument 'rho' (it takes: "
            "block_size=16)");
  EXPECT_EQ(r.Create("priority", TestSetup(), Args("eta=-1")).status().message(),
            "--scheduler priority: scheduler argument eta=-1: expected a number > 0 (it takes: "
            "block_size=16, eta=1e-6)");
  EXPECT_EQ(r.Create("dependency", SchedulerSetup{}, {}).status().message(),
            "--scheduler dependency: this app supplies no dependency function (it takes: "
            "block_size=16, rho=0.1, candidate_factor=4)");
  EXPECT_THAT(r.Create("rotation", TestSetup(), Args("partitions=x")).status().message(),
              ::testing::HasSubstr("partitions=x: expected an integer >= 0"));
  EXPECT_EQ(SchedulerArgs::Parse("a=1,a=2").status().message(),
            "scheduler argument 'a' is given twice");
  EXPECT_EQ(SchedulerArgs::Parse("a").status().message(),
            "scheduler argument 'a' is not key=value");
  auto spec = SchedulerSpec::Parse("dependency:rho=0.3,block_size=4");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->name, "dependency");
  EXPECT_EQ(spec->args.ToString(), "block_size=4,rho=0.3");
  EXPECT_FALSE(SchedulerSpec::Parse(":rho=1").ok());
  EXPECT_NE(r.Describe().find("dependency (block_size=16, rho=0.1, candidate_factor=4)\n"),
            std::string::npos);
}

TEST(SchedulerRegistryTest, UsersCanRegisterTheirOwn) {
  SchedulerRegistry r;
  RegisterBuiltinSchedulers(r);
  ASSERT_TRUE(r.Register("mine", MakeRoundRobinScheduler, "block_size=16").ok());
  EXPECT_FALSE(r.Register("mine", nullptr).ok());
  EXPECT_FALSE(r.Register("a:b", nullptr).ok());
  EXPECT_TRUE(r.Create("mine", TestSetup(), TestArgs()).ok());
}

TEST(RoundRobinTest, CyclesInOrder) {
  auto s = MakeRoundRobinScheduler({}, Args("block_size=3")).value();
  s->Reset(std::vector<Key>{1, 2, 3, 4});
  ScheduleContext ctx;
  EXPECT_EQ(s->Next(ctx)[0].keys, (std::vector<Key>{1, 2, 3}));
  EXPECT_EQ(s->Next(ctx)[0].keys, (std::vector<Key>{4, 1, 2}));
}

TEST(PriorityTest, SamplesInProportionToSquaredChangePlusEta) {
  auto s = MakePriorityScheduler({}, Args("block_size=1,eta=1e-3")).value();
  std::vector<Key> keys{0, 1, 2, 3};
  s->Reset(keys);
  Eigen::VectorXd delta(4);
  delta << 3, 1, 0, 0;  // weights 9, 1, η·9, η·9
  s->Observe(keys, delta);
  std::mt19937_64 rng(7);
  ScheduleContext ctx;
  ctx.rng = &rng;
  std::vector<int> count(4, 0);
  const int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) count[s->Next(ctx)[0].keys[0]]++;
  const double total = 9 + 1 + 2 * 9e-3;
  // Binomial standard deviation at these sizes is < 0.002; allow 0.01.
  EXPECT_NEAR(count[0] / double(kDraws), 9 / total, 0.01);
  EXPECT_NEAR(count[1] / double(kDraws), 1 / total, 0.01);
  EXPECT_GT(count[2], 0);  // η keeps every key alive
  EXPECT_GT(count[3], 0);
}

TEST(DependencyTest, NoTwoDependentKeysInOneRound) {
  auto s = MakeDependencyScheduler(TestSetup(), TestArgs()).value();
  std::vector<Key> keys;
  for (Key k = 0; k < 40; ++k) keys.push_back(k);
  s->Reset(keys);
  ScheduleContext ctx;
  for (int r = 0; r < 50; ++r) {
    auto b = s->Next(ctx)[0].keys;
    ASSERT_FALSE(b.empty());
    for (std::size_t i = 0; i < b.size(); ++i) {
      for (std::size_t j = i + 1; j < b.size(); ++j) {
        EXPECT_LT(ChainDependency(b[i], b[j]), 0.5) << b[i] << " and " << b[j];
      }
    }
  }
}

TEST(RotationTest, WorkersHoldDisjointPartitionsAndSeeThemAll) {
  auto s = MakeRotationScheduler({}, {}).value();
  std::vector<Key> keys;
  for (Key k = 0; k < 10; ++k) keys.push_back(k);
  s->Reset(keys);
  std::vector<std::set<std::uint32_t>> seen(3);
  for (std::uint64_t r = 0; r < 3; ++r) {
    ScheduleContext ctx;
    ctx.round = r;
    ctx.num_workers = 3;
    auto blocks = s->Next(ctx);
    ASSERT_EQ(blocks.size(), 3u);
    std::set<Key> all;
    for (const auto& b : blocks) {
      seen[b.worker].insert(b.id);
      for (Key k : b.keys) EXPECT_TRUE(all.insert(k).second);
    }
    EXPECT_EQ(all.size(), 10u);
  }
  for (const auto& s : seen) EXPECT_EQ(s.size(), 3u);
}

}  // namespace
}  // namespace tessera
