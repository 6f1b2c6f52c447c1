#include "tessera/core/parameter_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <Eigen/QR>
#include <atomic>
#include <chrono>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "tessera/core/data_parallel.h"
#include "tessera/core/fiber_pool.h"
#include "tests/core/test_transport.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<ParameterServer> StartOrDie(std::vector<TableSpec> tables, int servers,
                                            int workers) {
  auto ps = ParameterServer::Start(std::move(tables), servers, workers, nullptr);
  TESSERA_CHECK(ps.ok()) << ps.status().ToString();
  return std::move(*ps);
}

TableSpec Table(std::uint64_t keys, int dim, const std::string& consistency,
                UpdaterPtr updater = AddUpdater(), TableStorage storage = TableStorage::kDense) {
  TableSpec t;
  t.name = "t";
  t.num_keys = keys;
  t.dim = dim;
  t.storage = storage;
  t.updater = std::move(updater);
  auto c = Consistency::Parse(consistency);
  TESSERA_CHECK(c.ok()) << c.status().ToString();
  t.consistency = *c;
  return t;
}

// Runs fn(worker, client) on every worker's fiber and waits; fails the test on any error.
void RunWorkers(ParameterServer& ps, const std::function<Status(int, PsClient&)>& fn) {
  std::vector<Status> status(ps.workers());
  ParallelFor(ps.workers(), [&](int w) { status[w] = fn(w, ps.client(w)); });
  for (int w = 0; w < ps.workers(); ++w) EXPECT_TRUE(status[w].ok()) << status[w].ToString();
}

// A consistency name as a gtest name: "ssp:2" -> "ssp_2".
std::string TestName(std::string name) {
  for (char& ch : name) {
    if (ch == ':') ch = '_';
  }
  return name;
}

Eigen::VectorXd PullOrDie(PsClient& c, TableId t, std::vector<Key> keys) {
  auto v = c.Pull(t, keys).Get();
  TESSERA_CHECK(v.ok()) << v.status().ToString();
  return *v;
}

// ---------------------------------------------------------------------------------------------
// Configuration

TEST(ConsistencyTest, ParsesEveryModel) {
  EXPECT_EQ(Consistency::Parse("bsp")->model, ConsistencyModel::kBsp);
  EXPECT_EQ(Consistency::Parse("asp")->model, ConsistencyModel::kAsp);
  EXPECT_EQ(Consistency::Parse("hogwild")->model, ConsistencyModel::kHogwild);
  auto ssp = Consistency::Parse("ssp:3");
  ASSERT_TRUE(ssp.ok());
  EXPECT_EQ(ssp->model, ConsistencyModel::kSsp);
  EXPECT_EQ(ssp->staleness, 3);
  EXPECT_EQ(ssp->ToString(), "ssp:3");
  EXPECT_EQ(Consistency::Parse("essp:0")->ToString(), "essp:0");
  EXPECT_EQ(ssp->RequiredClock(10), 7u);
  EXPECT_EQ(ssp->RequiredClock(2), 0u);
  EXPECT_EQ(Consistency::Parse("bsp")->RequiredClock(10), 10u);
  EXPECT_EQ(Consistency::Parse("asp")->RequiredClock(10), 0u);
  auto sbp = Consistency::Parse("sbp:2");
  ASSERT_TRUE(sbp.ok());
  EXPECT_EQ(sbp->model, ConsistencyModel::kSbp);
  EXPECT_EQ(sbp->backups, 2);
  EXPECT_EQ(sbp->ToString(), "sbp:2");
  EXPECT_EQ(sbp->RequiredClock(10), 10u);
}

TEST(ConsistencyTest, BadNamesAreClearErrors) {
  EXPECT_THAT(Consistency::Parse("sync").status().message(),
              HasSubstr("unknown consistency model 'sync' (expected bsp, sbp:B, ssp:S"));
  EXPECT_THAT(Consistency::Parse("ssp:-1").status().message(),
              HasSubstr("staleness bound S must be an integer"));
  EXPECT_THAT(Consistency::Parse("ssp:x").status().message(), HasSubstr("'ssp:x'"));
  EXPECT_THAT(Consistency::Parse("essp").status().message(), HasSubstr("needs a staleness"));
  EXPECT_THAT(Consistency::Parse("sbp").status().message(),
              HasSubstr("needs a number of backup workers, e.g. sbp:1"));
  EXPECT_THAT(Consistency::Parse("sbp:x").status().message(),
              HasSubstr("the number of backup workers B must be an integer"));
  EXPECT_THAT(ParameterServer::Start({Table(4, 1, "sbp:2")}, 1, 2, nullptr).status().message(),
              HasSubstr("table 't': sbp:2 needs fewer backup workers than the 2 workers"));
  EXPECT_THAT(UpdateFrequency::Parse("nbatches:0").status().message(),
              HasSubstr("N must be an integer >= 1"));
  EXPECT_THAT(UpdateFrequency::Parse("often").status().message(),
              HasSubstr("expected batch, nbatches:N or epoch"));
  EXPECT_EQ(UpdateFrequency::Parse("nbatches:4")->n, 4);
  EXPECT_THAT(ParsePartitionScheme("random").status().message(), HasSubstr("disjoint_round_robin"));
  EXPECT_THAT(MakeUpdater("rmsprop:0.1").status().message(),
              HasSubstr("unknown update function 'rmsprop:0.1'"));
  EXPECT_THAT(MakeUpdater("sgd:-1").status().message(), HasSubstr("learning rate must be"));
  EXPECT_TRUE(MakeUpdater("adam:0.001").ok());
}

TEST(ParameterServerTest, BadConfigurationNamesTheOption) {
  EXPECT_THAT(ParameterServer::Start({Table(10, 1, "bsp")}, 0, 2, nullptr).status().message(),
              HasSubstr("--servers must be at least 1"));
  EXPECT_THAT(ParameterServer::Start({Table(10, 1, "bsp")}, 1, 0, nullptr).status().message(),
              HasSubstr("--workers must be at least 1"));
  TableSpec zero = Table(0, 1, "bsp");
  EXPECT_THAT(ParameterServer::Start({zero}, 1, 1, nullptr).status().message(),
              HasSubstr("num_keys must be > 0"));
  TableSpec gap = Table(10, 1, "bsp");
  gap.shard_ranges = {{0, 4}, {5, 10}};
  EXPECT_THAT(ParameterServer::Start({gap}, 2, 1, nullptr).status().message(),
              HasSubstr("ranges must be contiguous"));
  TableSpec hog = Table(10, 1, "hogwild", AddUpdater(), TableStorage::kSparse);
  EXPECT_THAT(ParameterServer::Start({hog}, 1, 1, nullptr).status().message(),
              HasSubstr("needs dense storage"));
}

// A hogwild read is from the shards' memory as it is, holding every push made so far: it says
// it was served at the reader's own clock (apps that scale changes by a read's staleness take
// it as fresh).
TEST(ParameterServerTest, HogwildReadsAreServedAtTheReadersClock) {
  auto ps = StartOrDie({Table(4, 1, "hogwild")}, 1, 1);
  RunWorkers(*ps, [](int, PsClient& c) -> Status {
    const std::vector<Key> key = {2};
    for (std::uint64_t clock = 0; clock < 3; ++clock) {
      TESSERA_RETURN_IF_ERROR(c.Push(0, key, std::vector<double>{1.0}));
      PullFuture pull = c.Pull(0, key);
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, pull.Get());
      if (v[0] != static_cast<double>(clock + 1) || pull.served_clock() != c.clock()) {
        return Internal("read " + std::to_string(v[0]) + " served at " +
                        std::to_string(pull.served_clock()) + " at clock " +
                        std::to_string(c.clock()));
      }
      TESSERA_RETURN_IF_ERROR(c.Clock());
    }
    return Status::Ok();
  });
  ps->Shutdown();
}

// A transport that says its endpoints are in other processes.
std::shared_ptr<Transport> RemoteLookingTransport(int n) {
  return std::make_shared<tessera::testing::LookAlikeTransport>(n, false, false);
}

TEST(ParameterServerTest, HogwildOverAnotherProcessIsRefused) {
  auto st = ParameterServer::Start({Table(10, 1, "hogwild")}, 1, 1, RemoteLookingTransport(3));
  EXPECT_THAT(st.status().message(), HasSubstr("in-process only"));
  auto ok = ParameterServer::Start({Table(10, 1, "asp")}, 1, 1, RemoteLookingTransport(3));
  EXPECT_TRUE(ok.ok());
}

TEST(ParameterServerTest, KeysOutsideEveryRangeAreErrors) {
  auto ps = StartOrDie({Table(10, 2, "asp")}, 2, 1);
  PsClient& c = ps->client(0);
  std::vector<Key> bad = {3, 10};
  std::vector<double> v(4, 1.0);
  EXPECT_THAT(c.Push(0, bad, v).message(),
              HasSubstr("key 10 is outside every shard range of table 't' ([0, 10))"));
  EXPECT_THAT(c.Pull(0, bad).Get().status().message(), HasSubstr("key 10 is outside"));
  EXPECT_THAT(c.PullRange(0, {5, 11}).Get().status().message(), HasSubstr("[5, 11)"));
  std::vector<Key> ok = {1};
  EXPECT_THAT(c.Push(0, ok, v).message(), HasSubstr("4 values for 1 keys of dim 2"));
  EXPECT_THAT(c.Pull(3, ok).Get().status().message(), HasSubstr("no table 3"));
}

// A shard checks every field a peer controls before using it: crafted messages sent straight
// to it (as a relay or a broken peer would) stop the run with what was wrong, instead of
// writing or reading outside its tables, or aborting the process.
TEST(ParameterServerTest, AShardRefusesMessagesThatDoNotFitItsTables) {
  struct Case {
    const char* name;
    std::function<void(Message&)> craft;
    const char* error;
  };
  const auto push = [](Message& m) -> msg::PsPush& { return *m.get<msg::PsPush>(); };
  const std::vector<Case> cases = {
      {"table", [&](Message& m) { push(m).table = 7; }, "names table 7 of 1"},
      {"key",
       [&](Message& m) {
         push(m).keys = {1, 1u << 30};
       },
       "key 1073741824 is not in the shard's [0, 5)"},
      {"range",
       [&](Message& m) {
         push(m).keys.clear();
         push(m).range = {3, 9};
       },
       "range [3, 9) is not within the shard's [0, 5)"},
      {"wrapped range",
       [&](Message& m) {
         push(m).keys.clear();
         push(m).range = {4, 2};
       },
       "range [4, 2)"},
      {"values", [&](Message& m) { push(m).values.resize(3); },
       "3 values for 2 keys of dimension 2"},
      {"sparse positions",
       [&](Message& m) {
         push(m).packed = {false, true, {2, 1}, 4, 0, 0, {}};
         push(m).values.resize(2);
       },
       "sparse value position 1 is out of order or beyond 4"},
      {"sparse size",
       [&](Message& m) {
         push(m).packed = {false, true, {0}, 1u << 30, 0, 0, {}};
         push(m).values.resize(1);
       },
       "sparse values of 1073741824 where 4 were expected"},
      {"compressed garbage",
       [&](Message& m) {
         push(m).packed = {false, false, {}, 0, 2, 4, "not zstd"};
         push(m).values.resize(0);
       },
       "zstd-compressed values that do not decompress"},
      {"unknown key list",
       [&](Message& m) {
         push(m).keys.clear();
         push(m).key_list = 12345;
       },
       "key list 12345 was never sent or has been forgotten"},
      {"key list with keys", [&](Message& m) { push(m).key_list = 12345; },
       "a key-list hash together with keys or a range"},
      {"sender", [](Message& m) { m.from = 0; }, "ps-push message from rank 0, which is no worker"},
      {"kind", [](Message& m) { m.body = msg::Partials{}; },
       "partials message from rank 3, which a shard does not take"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto ps = StartOrDie({Table(10, 2, "asp")}, 2, 1);  // shard 0 holds keys [0, 5)
    msg::PsPush body;
    body.table = 0;
    body.keys = {1, 2};
    body.values = Eigen::VectorXd::Ones(4);
    Message m(ps->WorkerRank(0), std::move(body));
    c.craft(m);
    ASSERT_TRUE(ps->transport().Send(ps->ShardRank(0), std::move(m)).ok());
    // The shard closes the transport: the worker's next pull fails instead of waiting forever.
    EXPECT_FALSE(ps->client(0).Pull(0, std::vector<Key>{1}).Get().ok());
    ps->Shutdown();
    EXPECT_THAT(ps->shard_status().message(), HasSubstr(c.error));
    EXPECT_THAT(ps->shard_status().message(), HasSubstr("shard 0: a "));
  }
  // Found by fuzz_shard: an empty range whose first key lies below the shard's range passes the
  // check (it names no key) and must apply nothing, without an offset computed from that key
  // (UBSan: pointer overflow in the updater's state).
  {
    auto ps = StartOrDie({Table(10, 2, "asp", AdagradUpdater(0.1))}, 2, 1);  // shard 1: [5, 10)
    msg::PsPush empty;
    empty.range = {0, 0};
    ASSERT_TRUE(
        ps->transport().Send(ps->ShardRank(1), Message(ps->WorkerRank(0), std::move(empty))).ok());
    EXPECT_EQ(PullOrDie(ps->client(0), 0, {6})[0], 0.0);
    EXPECT_TRUE(ps->shard_status().ok()) << ps->shard_status().message();
  }
  // A well-formed push of the same shape is taken.
  auto ps = StartOrDie({Table(10, 2, "asp")}, 2, 1);
  EXPECT_TRUE(ps->client(0).Push(0, std::vector<Key>{1, 2}, std::vector<double>(4, 1.0)).ok());
  EXPECT_EQ(PullOrDie(ps->client(0), 0, {1})[0], 1.0);
  EXPECT_TRUE(ps->shard_status().ok());
}

// A worker checks the replies it is sent the same way: one that answers no pull of its, names
// another table, carries more values than were asked or sparse values at impossible positions,
// or comes from a rank that is no shard fails the pull with what was wrong, and nothing is
// written outside the pull's buffer. (A reply's keys are the ones asked for, whatever it names.)
TEST(ParameterServerTest, AWorkerRefusesRepliesThatAnswerNoPullOfIts) {
  struct Case {
    const char* name;
    std::function<void(Message&, const ParameterServer&)> craft;
    const char* error;
  };
  const auto values = [](Message& m) -> msg::PsValues& { return *m.get<msg::PsValues>(); };
  const std::vector<Case> cases = {
      {"request", [&](Message& m, const ParameterServer&) { values(m).request = 99; },
       "answered request 99, which is no pending pull"},
      {"values",
       [&](Message& m, const ParameterServer&) {
         values(m).keys.clear();
         values(m).range = {0, 10};
         values(m).values = Eigen::VectorXd::Ones(20);
       },
       "sent 20 values of table 't' for 1 keys"},
      {"table", [&](Message& m, const ParameterServer&) { values(m).table = 5; },
       "with table 5, not the one asked for"},
      {"sparse positions",
       [&](Message& m, const ParameterServer&) {
         values(m).packed.sparse = true;
         values(m).packed.size = 2;
         values(m).packed.nonzero = {7};
         values(m).values = Eigen::VectorXd::Ones(1);
       },
       "sparse value position 7 is out of order or beyond 2"},
      {"sparse count",
       [&](Message& m, const ParameterServer&) {
         values(m).packed.sparse = true;
         values(m).packed.size = 1 << 30;
         values(m).packed.nonzero = {0};
         values(m).values = Eigen::VectorXd::Ones(1);
       },
       "sent 1073741824 values of table 't' for 1 keys"},
      {"sender", [](Message& m, const ParameterServer& ps) { m.from = ps.WorkerRank(0); },
       "sent a ps-values, but it is no server shard"},
      {"pong for a pull",
       [](Message& m, const ParameterServer&) {
         m.body = msg::PsPong{1, 0};
       },
       "answered request 1, which is no pending ping"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto ps = StartOrDie({Table(10, 2, "asp")}, 2, 1);  // shard 0 holds keys [0, 5)
    msg::PsValues body;
    body.table = 0;
    body.request = 1;  // the worker's first pull
    body.keys = {1};
    body.values = Eigen::VectorXd::Ones(2);
    Message m(ps->ShardRank(0), std::move(body));
    c.craft(m, *ps);
    ASSERT_TRUE(ps->transport().Send(ps->WorkerRank(0), std::move(m)).ok());
    auto got = ps->client(0).Pull(0, std::vector<Key>{1}).Get();
    ASSERT_FALSE(got.ok());
    EXPECT_THAT(got.status().message(), HasSubstr(c.error));
  }
}

// ---------------------------------------------------------------------------------------------
// Values and update functions

TEST(ParameterServerTest, DenseAndSparseRoundTripAcrossShards) {
  for (auto storage : {TableStorage::kDense, TableStorage::kSparse}) {
    TableSpec t = Table(1000, 3, "asp", AddUpdater(), storage);
    t.initial = 0.5;
    auto ps = StartOrDie({t}, 3, 1);
    PsClient& c = ps->client(0);
    std::vector<Key> keys = {999, 0, 500, 334, 333};
    std::vector<double> v;
    for (std::size_t i = 0; i < keys.size() * 3; ++i) v.push_back(static_cast<double>(i));
    ASSERT_TRUE(c.Push(0, keys, v).ok());
    Eigen::VectorXd got = PullOrDie(c, 0, keys);
    for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(got[i], v[i] + 0.5);
    std::vector<double> ones(600 * 3, 1.0);
    ASSERT_TRUE(c.PushRange(0, {200, 800}, ones).ok());
    auto range = c.PullRange(0, {300, 700}).Get();
    ASSERT_TRUE(range.ok());
    EXPECT_EQ(range->size(), 400 * 3);
    EXPECT_EQ((*range)[0], 1.5);                         // key 300
    EXPECT_EQ((*range)[(334 - 300) * 3 + 1], 1.5 + 10);  // key 334, element 1
    EXPECT_EQ((*range)[(500 - 300) * 3 + 2], 1.5 + 8);   // key 500, element 2
    ps->Shutdown();
    Eigen::VectorXd all = ps->Snapshot(0);
    EXPECT_EQ(all[999 * 3], 0.5);
    EXPECT_EQ(all[100 * 3], 0.5);
    EXPECT_EQ(all[200 * 3], 1.5);
  }
}

TEST(ParameterServerTest, BuiltinUpdatersMatchTheirFormulas) {
  const double g = 0.5;
  struct Case {
    const char* spec;
    double expected_after_two;  // value after two pushes of g from 1.0
  };
  const double ada1 = 1.0 - 0.1 * g / (std::sqrt(g * g) + 1e-8);
  const double ada2 = ada1 - 0.1 * g / (std::sqrt(2 * g * g) + 1e-8);
  // Adam with constant gradient: the bias-corrected step is lr * g / (|g| + eps) each time.
  const double adam2 = 1.0 - 2 * 0.1 * g / (g + 1e-8);
  for (const Case& k : {Case{"add", 2.0}, Case{"sgd:0.1", 0.9}, Case{"adagrad:0.1", ada2},
                        Case{"adam:0.1", adam2}}) {
    auto updater = MakeUpdater(k.spec);
    ASSERT_TRUE(updater.ok());
    TableSpec t = Table(4, 1, "asp", *updater);
    t.initial = 1.0;
    auto ps = StartOrDie({t}, 1, 1);
    PsClient& c = ps->client(0);
    std::vector<Key> key = {2};
    std::vector<double> grad = {g};
    ASSERT_TRUE(c.Push(0, key, grad).ok());
    ASSERT_TRUE(c.Flush().ok());
    ASSERT_TRUE(c.Push(0, key, grad).ok());
    EXPECT_NEAR(PullOrDie(c, 0, key)[0], k.expected_after_two, 1e-12) << k.spec;
  }
}

// Under bsp the updater runs once per clock on the sum of every worker's pushes; under asp once
// per push.
TEST(ParameterServerTest, BspAggregatesAClockBeforeUpdating) {
  for (const char* model : {"bsp", "asp"}) {
    std::atomic<int> calls{0};
    auto counting = FunctionUpdater(
        "count", 0, [&calls](Key, std::size_t n, int dim, double* v, const double* g, double*) {
          ++calls;
          for (std::size_t i = 0; i < n * dim; ++i) v[i] = 10 * v[i] + g[i];
        });
    auto ps = StartOrDie({Table(1, 1, model, counting)}, 1, 3);
    RunWorkers(*ps, [](int w, PsClient& c) -> Status {
      std::vector<Key> key = {0};
      std::vector<double> g = {static_cast<double>(w + 1)};
      TESSERA_RETURN_IF_ERROR(c.Push(0, key, g));
      TESSERA_RETURN_IF_ERROR(c.Clock());
      return c.Pull(0, key).Get().status();
    });
    ps->Shutdown();
    if (std::string(model) == "bsp") {
      EXPECT_EQ(calls.load(), 1);
      EXPECT_EQ(ps->Snapshot(0)[0], 6.0);  // 10 * 0 + (1 + 2 + 3)
    } else {
      EXPECT_EQ(calls.load(), 3);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Consistency semantics, checked with instrumented clocks.
//
// Every worker adds 1 to its own key in every clock. A read made at worker clock c under bsp
// must see every worker's first c increments (value >= c); under ssp:S / essp:S at least c - S.
// The clocks each worker has reached are also published, so a read can check that no other
// worker is further behind than the model allows.

struct ClockProbe {
  explicit ClockProbe(int workers) : clocks(workers) {}
  std::vector<std::atomic<std::uint64_t>> clocks;
  std::atomic<std::uint64_t> worst_lag{0};     // max over reads of (c - value seen)
  std::atomic<std::uint64_t> worst_behind{0};  // max over reads of (c - slowest clock)
  std::atomic<int> violations{0};
};

void UpdateMax(std::atomic<std::uint64_t>& a, std::uint64_t v) {
  std::uint64_t cur = a.load();
  while (v > cur && !a.compare_exchange_weak(cur, v)) {
  }
}

void RunClockProbe(const std::string& model, int staleness, int workers, int clocks,
                   ClockProbe& probe, ParameterServer& ps) {
  RunWorkers(ps, [&](int w, PsClient& c) -> Status {
    std::mt19937 rng(w);
    std::vector<Key> all(workers);
    for (int k = 0; k < workers; ++k) all[k] = k;
    for (int t = 0; t < clocks; ++t) {
      std::vector<Key> mine = {static_cast<Key>(w)};
      std::vector<double> one = {1.0};
      TESSERA_RETURN_IF_ERROR(c.Push(0, mine, one));
      // Published before the shards hear of it, so a read the shards allowed can never see a
      // clock here that is older than the one they acted on.
      probe.clocks[w].store(c.clock() + 1);
      TESSERA_RETURN_IF_ERROR(c.Clock());
      // Worker 0 is slow, the others at random speeds, so the clocks drift apart.
      if (w == 0 || rng() % 4 == 0) SleepFiber(std::chrono::microseconds(200));
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, c.Pull(0, all).Get());
      const std::uint64_t now = c.clock();
      std::uint64_t slowest = now;
      for (int k = 0; k < workers; ++k) slowest = std::min(slowest, probe.clocks[k].load());
      UpdateMax(probe.worst_behind, now - slowest);
      for (int k = 0; k < workers; ++k) {
        const auto seen = static_cast<std::uint64_t>(v[k]);
        UpdateMax(probe.worst_lag, now - std::min(now, seen));
        if (seen + staleness < now) ++probe.violations;
      }
    }
    return Status::Ok();
  });
  (void)model;
}

class StalenessTest : public ::testing::TestWithParam<std::pair<std::string, int>> {};

TEST_P(StalenessTest, NoReadIsStalerThanTheBound) {
  const auto& [name, s] = GetParam();
  const int workers = 4, clocks = 60;
  auto ps = StartOrDie({Table(workers, 1, name)}, 2, workers);
  ClockProbe probe(workers);
  RunClockProbe(name, s, workers, clocks, probe, *ps);
  EXPECT_EQ(probe.violations.load(), 0);
  EXPECT_LE(probe.worst_lag.load(), static_cast<std::uint64_t>(s)) << name;
  // A worker never completes a read while another is more than S clocks behind it.
  EXPECT_LE(probe.worst_behind.load(), static_cast<std::uint64_t>(s)) << name;
  ps->Shutdown();
  Eigen::VectorXd end = ps->Snapshot(0);
  for (int k = 0; k < workers; ++k) EXPECT_EQ(end[k], clocks);
}

INSTANTIATE_TEST_SUITE_P(Models, StalenessTest,
                         ::testing::Values(std::make_pair(std::string("bsp"), 0),
                                           std::make_pair(std::string("ssp:0"), 0),
                                           std::make_pair(std::string("ssp:2"), 2),
                                           std::make_pair(std::string("essp:1"), 1),
                                           std::make_pair(std::string("essp:3"), 3),
                                           std::make_pair(std::string("sspaggr:2"), 2)),
                         [](const auto& info) { return TestName(info.param.first); });

// sbp:1 with one of four workers held back: the other three complete clock after clock without
// it, and every read sees whole clocks only (each fast worker's key holds the same count, at
// least the reader's clock: no push of an unfinished clock is applied). Released, the held
// worker's pushes for clocks already completed are folded into the open one: none is lost.
TEST(SbpTest, AClockCompletesWithoutTheBackupWorkersAndNeverShowsPartOfOne) {
  const int workers = 4, clocks = 20;
  auto ps = StartOrDie({Table(workers, 1, "sbp:1")}, 2, workers);
  std::atomic<bool> release{false};
  std::atomic<int> fast_done{0}, partial_reads{0}, early_reads{0};
  RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
    if (w == 3) {  // the backup: held until the others are done
      while (!release.load()) SleepFiber(std::chrono::microseconds(200));
    }
    std::vector<Key> all = {0, 1, 2, 3};
    for (int t = 0; t < clocks; ++t) {
      const std::vector<Key> mine = {static_cast<Key>(w)};
      const std::vector<double> one = {1.0};
      TESSERA_RETURN_IF_ERROR(c.Push(0, mine, one));
      TESSERA_RETURN_IF_ERROR(c.Clock());
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, c.Pull(0, all).Get());
      if (w == 3) continue;
      if (v[0] != v[1] || v[1] != v[2]) ++partial_reads;
      if (v[0] < static_cast<double>(c.clock())) ++early_reads;
    }
    if (w != 3 && ++fast_done == 3) release.store(true);
    return Status::Ok();
  });
  EXPECT_EQ(fast_done.load(), 3) << "the fast workers waited for the held one";
  EXPECT_EQ(partial_reads.load(), 0);
  EXPECT_EQ(early_reads.load(), 0);
  ps->Shutdown();
  Eigen::VectorXd end = ps->Snapshot(0);
  for (int k = 0; k < workers; ++k) EXPECT_EQ(end[k], clocks) << "key " << k;
}

// Under ssp the bound is used: a fast worker is allowed to read values S clocks old.
TEST(StalenessTest, SspLetsFastWorkersRunAhead) {
  const int workers = 3;
  auto ps = StartOrDie({Table(workers, 1, "ssp:4")}, 1, workers);
  ClockProbe probe(workers);
  RunClockProbe("ssp:4", 4, workers, 40, probe, *ps);
  EXPECT_EQ(probe.violations.load(), 0);
  EXPECT_GT(probe.worst_behind.load(), 0u) << "the fast workers never ran ahead of worker 0";
}

// ESSP: after a worker's first read of a key, the shard pushes fresh values to it whenever its
// clock advances, so later reads are answered without a single request.
TEST(EsspTest, FreshValuesArriveBeforeTheyAreRequested) {
  const int workers = 3, clocks = 30;
  auto ps = StartOrDie({Table(workers, 1, "essp:1")}, 2, workers);
  ClockProbe probe(workers);
  RunClockProbe("essp:1", 1, workers, clocks, probe, *ps);
  EXPECT_EQ(probe.violations.load(), 0);
  for (int w = 0; w < workers; ++w) {
    const PsClientStats& s = ps->client(w).stats();
    EXPECT_EQ(s.pull_requests, 2u) << "worker " << w << ": one request per shard, once";
    EXPECT_GT(s.eager_refreshes, static_cast<std::uint64_t>(clocks)) << "worker " << w;
  }
}

TEST(EsspTest, SspWithoutEagerRefreshAsksTheServer) {
  const int workers = 3, clocks = 30;
  auto ps = StartOrDie({Table(workers, 1, "ssp:1")}, 2, workers);
  ClockProbe probe(workers);
  RunClockProbe("ssp:1", 1, workers, clocks, probe, *ps);
  std::uint64_t requests = 0;
  for (int w = 0; w < workers; ++w) {
    requests += ps->client(w).stats().pull_requests;
    EXPECT_EQ(ps->client(w).stats().eager_refreshes, 0u);
  }
  EXPECT_GT(requests, static_cast<std::uint64_t>(workers * 2 * clocks / 2));
}

// A refresh sends only the keys that changed since the last one; its clock vouches for the rest
// of what a worker has read. 2 workers read all 1,000 keys once, then each adds 1 to one key per
// clock and reads all of them: every read sees at least the pushes the bound promises (the sum of
// the keys), almost none needs a request, and the refreshes carry about one key per push.
TEST(EsspTest, RefreshesSendOnlyTheKeysThatChanged) {
  const int workers = 2, clocks = 200;
  const Key keys = 1000;
  auto ps = StartOrDie({Table(keys, 1, "essp:1")}, 2, workers);
  std::atomic<int> short_reads{0};
  RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
    TESSERA_RETURN_IF_ERROR(c.PullRange(0, {0, keys}).Get().status());
    for (int i = 0; i < clocks; ++i) {
      const std::vector<Key> one = {static_cast<Key>((w * 500 + i * 7) % keys)};
      TESSERA_RETURN_IF_ERROR(c.Push(0, one, std::vector<double>{1.0}));
      TESSERA_RETURN_IF_ERROR(c.Clock());
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, c.PullRange(0, {0, keys}).Get());
      // At clock i + 1 under essp:1 every push of clocks < i is in.
      if (v.sum() < workers * i) ++short_reads;
      if (w == 1 && i % 5 == 0) SleepFiber(std::chrono::microseconds(200));
    }
    return Status::Ok();
  });
  EXPECT_EQ(short_reads.load(), 0) << "reads that missed pushes the bound promises";
  for (int w = 0; w < workers; ++w) {
    const PsClientStats& st = ps->client(w).stats();
    EXPECT_GT(st.eager_refreshes, static_cast<std::uint64_t>(clocks)) << "worker " << w;
    EXPECT_LT(st.refreshed_values, 4u * workers * clocks)
        << "worker " << w << ": refreshes carried unchanged keys";
    EXPECT_LT(st.pull_requests, 20u) << "worker " << w;
  }
  ps->Shutdown();
  EXPECT_EQ(ps->Snapshot(0).sum(), workers * clocks);
}

// sum_per_clock: under ssp, essp and asp too the updater runs once per clock on the sum of
// every worker's pushes, and it is told how stale the reads behind them were: never under bsp,
// at most S clocks under ssp:S, and some under ssp:2 when one worker is slower.
TEST(ParameterServerTest, SumPerClockStepsOncePerClockAndKnowsTheStaleness) {
  for (const char* model : {"bsp", "ssp:2", "essp:2", "asp"}) {
    SCOPED_TRACE(model);
    struct Call {
      double sum;
      std::uint64_t staleness;
    };
    auto calls = std::make_shared<std::vector<Call>>();  // written by the one shard's fiber
    TableSpec t =
        Table(1, 1, model,
              StalenessAwareUpdater("record", 0,
                                    [calls](Key, std::size_t, int, double* value,
                                            const double* grad, double*, std::uint64_t staleness) {
                                      calls->push_back({grad[0], staleness});
                                      value[0] += grad[0];
                                    }));
    t.sum_per_clock = true;
    const int workers = 2, clocks = 40;
    auto ps = StartOrDie({t}, 1, workers);
    RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
      const std::vector<Key> zero = {0};
      for (int i = 0; i < clocks; ++i) {
        TESSERA_RETURN_IF_ERROR(c.Pull(0, zero).Get().status());
        TESSERA_RETURN_IF_ERROR(c.Push(0, zero, std::vector<double>{1.0}));
        TESSERA_RETURN_IF_ERROR(c.Clock());
        if (w == 1) SleepFiber(std::chrono::microseconds(300));
      }
      return Status::Ok();
    });
    ps->Shutdown();
    ASSERT_EQ(calls->size(), static_cast<std::size_t>(clocks));
    std::uint64_t most = 0;
    for (const Call& call : *calls) {
      EXPECT_EQ(call.sum, workers);
      most = std::max(most, call.staleness);
    }
    EXPECT_EQ(ps->Snapshot(0)[0], workers * clocks);
    const std::string m = model;
    if (m == "bsp") {
      EXPECT_EQ(most, 0u);
    } else if (m == "asp") {
      EXPECT_GT(most, 0u);
    } else {
      EXPECT_GT(most, 0u);
      EXPECT_LE(most, 2u);
    }
  }
}

// A user's consistency model is one ConsistencyPolicy and a RegisterConsistency call: here
// "everyk:K", reads that catch up with every worker only at clocks that are multiples of K (a
// read at clock c needs shard clock c - c mod K). It parses, names itself, is listed in the
// error for an unknown model, and the shards and clients follow it: no read misses a push the
// rule promises, some are stale, no push is lost.
class EveryK final : public ConsistencyPolicy {
 public:
  explicit EveryK(int k) : k_(k) {}
  std::string name() const override { return "everyk:" + std::to_string(k_); }
  std::uint64_t RequiredClock(std::uint64_t clock) const override { return clock - clock % k_; }

 private:
  std::uint64_t k_;
};

TEST(ConsistencyRegistryTest, AUsersModelIsOneClassAndARegistration) {
  const auto make = [](std::optional<int> k) -> StatusOr<std::shared_ptr<const ConsistencyPolicy>> {
    if (*k < 1) return InvalidArgument("everyk:K needs K >= 1");
    return std::shared_ptr<const ConsistencyPolicy>(std::make_shared<EveryK>(*k));
  };
  RegisterConsistency("everyk", "a period K", make);  // false when another test registered it
  EXPECT_FALSE(RegisterConsistency("ssp", "a staleness bound S", make)) << "taken";
  auto c = Consistency::Parse("everyk:3");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model, ConsistencyModel::kCustom);
  EXPECT_EQ(c->ToString(), "everyk:3");
  EXPECT_EQ(c->RequiredClock(7), 6u);
  EXPECT_THAT(Consistency::Parse("everyk:0").status().message(), HasSubstr("K >= 1"));
  EXPECT_THAT(Consistency::Parse("everyk").status().message(), HasSubstr("needs a period"));
  EXPECT_THAT(Consistency::Parse("nope").status().message(), HasSubstr("everyk:K"));

  const int workers = 3, clocks = 60;
  TableSpec t = Table(workers, 1, "bsp");
  t.consistency = *c;
  auto ps = StartOrDie({t}, 2, workers);
  std::atomic<int> violations{0}, stale{0};
  RunWorkers(*ps, [&](int w, PsClient& client) -> Status {
    std::vector<Key> all(workers);
    for (int k = 0; k < workers; ++k) all[k] = k;
    const std::vector<Key> mine = {static_cast<Key>(w)};
    for (int i = 0; i < clocks; ++i) {
      TESSERA_RETURN_IF_ERROR(client.Push(0, mine, std::vector<double>{1.0}));
      TESSERA_RETURN_IF_ERROR(client.Clock());
      if (w == 0) SleepFiber(std::chrono::microseconds(200));
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, client.Pull(0, all).Get());
      const std::uint64_t now = client.clock(), promised = now - now % 3;
      for (int k = 0; k < workers; ++k) {
        if (static_cast<std::uint64_t>(v[k]) < promised) ++violations;
        if (static_cast<std::uint64_t>(v[k]) < now) ++stale;
      }
    }
    return Status::Ok();
  });
  EXPECT_EQ(violations.load(), 0);
  EXPECT_GT(stale.load(), 0);
  ps->Shutdown();
  for (int k = 0; k < workers; ++k) EXPECT_EQ(ps->Snapshot(0)[k], clocks);
}

// sparsessp:1 (FlexPS's sparse SSP), 3 workers, worker 2 held back at clock 0 after pushing
// keys 100..199: worker 0, which reads and pushes keys 0..99 only, runs 20 clocks past the bound;
// worker 1, which reads key 150, stops at clock 2 (its read there needs worker 2's clock 0) until
// worker 2 is let go. Under ssp:1 worker 0 stops at clock 2 as well. No push is lost.
TEST(SparseSspTest, ADisjointWorkerPassesTheBoundAndAnOverlappingOneWaits) {
  for (const char* model : {"sparsessp:1", "ssp:1"}) {
    SCOPED_TRACE(model);
    const bool sparse = std::string(model) == "sparsessp:1";
    auto ps = StartOrDie({Table(200, 1, model)}, 2, 3);
    std::atomic<bool> release{false};
    std::atomic<std::uint64_t> clock0{0}, clock1{0};
    std::atomic<std::uint64_t> clock1_when_0_done{0};
    std::atomic<bool> w2_pushed{false}, w2_went_on{false}, w2_held_when_0_done{false};
    const int clocks = 20;
    // Worker 1 gets to clock 2 (however slow the build), where it is held.
    auto reaches_2 = [&clock1] {
      for (int i = 0; i < 10000 && clock1.load() < 2; ++i) {
        SleepFiber(std::chrono::microseconds(500));
      }
      return clock1.load() >= 2;
    };
    RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
      if (w == 2) {
        std::vector<Key> keys;
        for (Key k = 100; k < 200; ++k) keys.push_back(k);
        TESSERA_RETURN_IF_ERROR(c.Push(0, keys, std::vector<double>(keys.size(), 1.0)));
        // A read answered after the push: the shard knows worker 2's keys before the others
        // start.
        TESSERA_RETURN_IF_ERROR(c.Pull(0, std::vector<Key>{150}).Get().status());
        w2_pushed = true;
        // Held back until worker 0 is done (sparse) or has seen worker 1 wait (ssp).
        for (int i = 0; i < 20000 && !release.load(); ++i) {
          SleepFiber(std::chrono::microseconds(500));
        }
        w2_went_on = true;
        for (int i = 0; i < clocks; ++i) TESSERA_RETURN_IF_ERROR(c.Clock());
        return Status::Ok();
      }
      for (int i = 0; i < 20000 && !w2_pushed.load(); ++i) {
        SleepFiber(std::chrono::microseconds(500));
      }
      const std::vector<Key> read = w == 0 ? std::vector<Key>{0, 50, 99} : std::vector<Key>{150};
      const std::vector<Key> own = {static_cast<Key>(w == 0 ? 7 : 150)};
      for (int i = 0; i < clocks; ++i) {
        TESSERA_RETURN_IF_ERROR(c.Pull(0, read).Get().status());
        TESSERA_RETURN_IF_ERROR(c.Push(0, own, std::vector<double>{1.0}));
        TESSERA_RETURN_IF_ERROR(c.Clock());
        (w == 0 ? clock0 : clock1).store(c.clock());
        if (w == 0 && !sparse && i == 1) {
          // Under ssp worker 0's next read waits for worker 2: let it go once worker 1 has
          // been held at clock 2 for a while.
          EXPECT_TRUE(reaches_2());
          SleepFiber(std::chrono::milliseconds(20));
          EXPECT_EQ(clock1.load(), 2u);
          release = true;
        }
      }
      if (w == 0) {
        EXPECT_TRUE(reaches_2());
        SleepFiber(std::chrono::milliseconds(20));
        clock1_when_0_done = clock1.load();
        w2_held_when_0_done = !w2_went_on.load();
        release = true;
      }
      return Status::Ok();
    });
    if (sparse) {
      EXPECT_TRUE(w2_held_when_0_done.load())
          << "worker 0 passed the bound while worker 2 was held";
      EXPECT_EQ(clock1_when_0_done.load(), 2u) << "worker 1 overlaps worker 2's keys: it waits";
    }
    EXPECT_EQ(clock0.load(), static_cast<std::uint64_t>(clocks));
    EXPECT_EQ(clock1.load(), static_cast<std::uint64_t>(clocks));
    ps->Shutdown();
    const Eigen::VectorXd end = ps->Snapshot(0);
    EXPECT_EQ(end[7], clocks);
    EXPECT_EQ(end[150], clocks + 1);
    EXPECT_EQ(end.sum(), 100 + 2 * clocks);
  }
}

// sparsessp:1, 2 workers, worker 1 held back at clock 0 after pushing key 150. Worker 0 runs
// to clock 3 on keys disjoint from worker 1's. There a read of key 50, which worker 1 has not
// pushed so far, is served at once (a laggard's first push to a key can be missed: the model
// assumes a worker's keys recur), but the same read made exact (an evaluation's, a gather's)
// waits until worker 1 has ended clock 2, and holds its 3 pushes to key 50 of clocks 0-2.
TEST(SparseSspTest, AnExactReadWaitsForTheClockWhateverKeysItReads) {
  for (const TableStorage storage : {TableStorage::kDense, TableStorage::kSparseElements}) {
    SCOPED_TRACE(storage == TableStorage::kDense ? "dense" : "sparse elements");
    TableSpec table = Table(200, 1, "sparsessp:1", AddUpdater(), storage);
    table.cache_reads = storage == TableStorage::kDense;
    auto ps = StartOrDie({table}, 1, 2);
    std::atomic<bool> w1_pushed{false}, release{false};
    double loose = -1, exact = -1;
    RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
      if (w == 1) {
        TESSERA_RETURN_IF_ERROR(c.Push(0, std::vector<Key>{150}, std::vector<double>{1.0}));
        TESSERA_RETURN_IF_ERROR(c.Pull(0, std::vector<Key>{150}).Get().status());
        w1_pushed = true;
        for (int i = 0; i < 20000 && !release.load(); ++i) {
          SleepFiber(std::chrono::microseconds(500));
        }
        for (int i = 0; i < 3; ++i) {
          TESSERA_RETURN_IF_ERROR(c.Push(0, std::vector<Key>{50}, std::vector<double>{1.0}));
          TESSERA_RETURN_IF_ERROR(c.Clock());
        }
        return Status::Ok();
      }
      for (int i = 0; i < 20000 && !w1_pushed.load(); ++i) {
        SleepFiber(std::chrono::microseconds(500));
      }
      for (int i = 0; i < 3; ++i) {
        TESSERA_RETURN_IF_ERROR(c.Pull(0, std::vector<Key>{0, 99}).Get().status());
        TESSERA_RETURN_IF_ERROR(c.Push(0, std::vector<Key>{7}, std::vector<double>{1.0}));
        TESSERA_RETURN_IF_ERROR(c.Clock());
      }
      auto got = c.Pull(0, std::vector<Key>{50}).Get();
      TESSERA_RETURN_IF_ERROR(got.status());
      loose = (*got)[0];
      // The exact read goes out first; worker 1 is let go 20 ms later. Answered before worker
      // 1 pushed, it would hold 0.
      c.set_exact_reads(true);
      auto future = c.Pull(0, std::vector<Key>{50});
      SleepFiber(std::chrono::milliseconds(20));
      release = true;
      got = future.Get();
      c.set_exact_reads(false);
      TESSERA_RETURN_IF_ERROR(got.status());
      exact = (*got)[0];
      return Status::Ok();
    });
    EXPECT_EQ(loose, 0) << "the disjoint read passed the bound at once";
    EXPECT_EQ(exact, 3) << "the exact read was answered before worker 1 ended clock 2";
    ps->Shutdown();
  }
}

// Read-my-writes: a read served from the cache includes the worker's own pushes when the table
// asks for it (the LDA counts), and does not otherwise (the documented default).
// Under essp the shards refresh a worker's cached rows whenever their clock advances, with
// values that may lack the worker's latest pushes (still buffered, or on their way): its reads
// still include every one of its own pushes. Worker 0 adds 1 to key 0 each clock (it alone
// writes key 0) and must read at least its count; worker 1 reads key 0 and writes key 1.
TEST(ReadMyWritesTest, EagerRefreshesKeepAWorkersOwnPushes) {
  for (const char* model : {"essp:1", "ssp:1", "bsp"}) {
    SCOPED_TRACE(model);
    TableSpec t = Table(2, 1, model);
    t.read_my_writes = true;
    auto ps = StartOrDie({t}, 1, 2);
    std::atomic<int> lost{0};
    const int clocks = 300;
    RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
      const std::vector<Key> own = {static_cast<Key>(w)}, zero = {0};
      for (int i = 0; i < clocks; ++i) {
        TESSERA_RETURN_IF_ERROR(c.Push(0, own, std::vector<double>{1.0}));
        // Read before and after the clock: a buffered push and one in flight.
        TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd a, c.Pull(0, zero).Get());
        TESSERA_RETURN_IF_ERROR(c.Clock());
        TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd b, c.Pull(0, zero).Get());
        if (w == 0 && (a[0] < i + 1 || b[0] < i + 1)) ++lost;
        if (w == 1 && i % 7 == 0) SleepFiber(std::chrono::microseconds(100));
      }
      return Status::Ok();
    });
    EXPECT_EQ(lost.load(), 0) << "reads that missed the worker's own pushes";
    ps->Shutdown();
    EXPECT_EQ(ps->Snapshot(0)[0], clocks);
  }
}

TEST(ReadMyWritesTest, CachedReadsIncludeOwnPushesOnlyWhenAsked) {
  for (bool rmw : {false, true}) {
    TableSpec t = Table(4, 2, "ssp:3");
    t.read_my_writes = rmw;
    auto ps = StartOrDie({t}, 2, 1);
    PsClient& c = ps->client(0);
    const std::vector<Key> keys = {1, 3};
    EXPECT_EQ(PullOrDie(c, 0, keys), Eigen::VectorXd::Zero(4));
    ASSERT_TRUE(c.Push(0, keys, std::vector<double>{1, 2, 3, 4}).ok());
    ASSERT_TRUE(c.PushRange(0, {3, 4}, std::vector<double>{10, 20}).ok());
    ASSERT_TRUE(c.Clock().ok());
    const std::uint64_t requests = c.stats().pull_requests;
    const Eigen::VectorXd got = PullOrDie(c, 0, keys);  // clock 1, ssp:3: from the cache
    EXPECT_EQ(c.stats().pull_requests, requests) << "served from the cache";
    const Eigen::VectorXd own = (Eigen::VectorXd(4) << 1, 2, 13, 24).finished();
    EXPECT_EQ(got, rmw ? own : Eigen::VectorXd::Zero(4)) << "read_my_writes " << rmw;
    ps->Shutdown();
    EXPECT_EQ(ps->Snapshot(0).segment(2, 2), own.head(2));
    EXPECT_EQ(ps->Snapshot(0).segment(6, 2), own.tail(2));
  }
  TableSpec bad = Table(4, 1, "ssp:1", SgdUpdater(0.1));
  bad.read_my_writes = true;
  EXPECT_THAT(ParameterServer::Start({bad}, 1, 1, nullptr).status().message(),
              HasSubstr("read_my_writes needs the 'add' updater"));
  bad = Table(4, 1, "asp");
  bad.read_my_writes = true;
  EXPECT_THAT(ParameterServer::Start({bad}, 1, 1, nullptr).status().message(),
              HasSubstr("read_my_writes needs"));
}

// A table whose workers do not cache their reads asks a shard for every read, also one the
// cache could serve (twice in one clock under bsp), and still reads every applied push; what
// needs the cache is refused.
TEST(CacheReadsTest, WithoutACacheEveryReadAsksAndSeesEveryPush) {
  for (bool cache : {true, false}) {
    SCOPED_TRACE(cache ? "cached" : "not cached");
    TableSpec t = Table(4, 2, "bsp");
    t.cache_reads = cache;
    auto ps = StartOrDie({t}, 2, 1);
    PsClient& c = ps->client(0);
    const std::vector<Key> keys = {0, 3};
    for (int clock = 0; clock < 3; ++clock) {
      const std::uint64_t requests = c.stats().pull_requests;
      const Eigen::VectorXd first = PullOrDie(c, 0, keys);
      const Eigen::VectorXd again = PullOrDie(c, 0, keys);  // the same clock
      EXPECT_EQ(c.stats().pull_requests - requests, cache ? 2u : 4u) << "clock " << clock;
      EXPECT_EQ(first, again);
      EXPECT_EQ(first, Eigen::VectorXd::Constant(4, clock));
      ASSERT_TRUE(c.Push(0, keys, std::vector<double>{1, 1, 1, 1}).ok());
      ASSERT_TRUE(c.Clock().ok());
    }
    EXPECT_EQ(c.stats().cache_hits, cache ? 6u : 0u);  // the second read of each clock
    ps->Shutdown();
  }
  for (const char* model : {"essp:1", "sspaggr:1"}) {
    TableSpec bad = Table(4, 1, model);
    bad.cache_reads = false;
    EXPECT_THAT(ParameterServer::Start({bad}, 1, 1, nullptr).status().message(),
                HasSubstr("do not cache their reads"))
        << model;
  }
  TableSpec bad = Table(4, 1, "ssp:1");
  bad.cache_reads = false;
  bad.read_my_writes = true;
  EXPECT_THAT(ParameterServer::Start({bad}, 1, 1, nullptr).status().message(),
              HasSubstr("do not cache their reads"));
}

// ---------------------------------------------------------------------------------------------
// No update is lost: 8 workers x 1,000,000 pushes to overlapping keys.
//
// hogwild is exact here too because its `add` is an atomic add per element; with a stateful
// update function (sgd, adagrad, adam, user) hogwild reads, updates and writes back without a
// lock, so concurrent updates of one key may be lost. That is its documented guarantee.

class NoLostUpdateTest : public ::testing::TestWithParam<std::string> {};

TEST_P(NoLostUpdateTest, EightWorkersMillionPushesExactSums) {
  const int workers = 8;
  const std::uint64_t pushes = 1000000, keys = 1000;
  auto ps = StartOrDie({Table(keys, 1, GetParam())}, 2, workers);
  RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
    std::vector<Key> key(1);
    std::vector<double> v(1);
    for (std::uint64_t i = 0; i < pushes; ++i) {
      key[0] = (i * 7 + w) % keys;  // every worker touches every key
      v[0] = static_cast<double>(w + 1);
      TESSERA_RETURN_IF_ERROR(c.Push(0, key, v));
      if (i % 20000 == 19999) TESSERA_RETURN_IF_ERROR(c.Clock());
    }
    return c.Clock();
  });
  ps->Shutdown();
  Eigen::VectorXd got = ps->Snapshot(0);
  // Worker w adds w+1 to key (i*7 + w) % 1000 for i < 1e6: each key gets 1000 pushes from each
  // worker (7 is coprime to 1000), so every key sums to 1000 * (1 + ... + 8) = 36000.
  for (std::uint64_t k = 0; k < keys; ++k) ASSERT_EQ(got[k], 36000.0) << "key " << k;
}

INSTANTIATE_TEST_SUITE_P(Models, NoLostUpdateTest,
                         ::testing::Values("bsp", "sbp:1", "ssp:3", "essp:3", "sparsessp:3",
                                           "sspaggr:3", "asp", "hogwild"),
                         [](const auto& info) { return TestName(info.param); });

// ---------------------------------------------------------------------------------------------
// Convergence of asynchronous models on a convex problem: least squares by data-parallel SGD.

class LeastSquaresApp final : public DataParallelApp {
 public:
  LeastSquaresApp(int rows, int cols, std::uint64_t seed) : x_(rows, cols), y_(rows) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n(0, 1);
    truth_.resize(cols);
    for (int j = 0; j < cols; ++j) truth_[j] = n(rng);
    for (int i = 0; i < rows; ++i) {
      for (int j = 0; j < cols; ++j) x_(i, j) = n(rng);
    }
    y_ = x_ * truth_;
    for (int i = 0; i < rows; ++i) y_[i] += 0.01 * n(rng);
    optimum_ = x_.colPivHouseholderQr().solve(y_);
  }
  std::size_t num_rows() const override { return static_cast<std::size_t>(x_.rows()); }
  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec t;
    t.name = "w";
    t.num_keys = static_cast<std::uint64_t>(x_.cols());
    t.updater = SgdUpdater(step_);
    t.consistency = o.consistency;
    t.model_averaging = averaging_ = o.model_averaging;
    return {t};
  }
  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> batch) override {
    const KeyRange all{0, static_cast<Key>(x_.cols())};
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd w, ctx.client->PullRange(0, all).Get());
    Eigen::VectorXd grad = Eigen::VectorXd::Zero(x_.cols());
    for (auto i : batch) grad += x_.row(i).transpose() * (x_.row(i).dot(w) - y_[i]);
    // Averaged models take local steps on the worker's own batch gradient.
    grad /= averaging_ ? static_cast<double>(batch.size()) : ctx.rows_per_clock;
    return ctx.client->PushRange(0, all, {grad.data(), static_cast<std::size_t>(grad.size())});
  }
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd w,
                             ctx.client->PullRange(0, {0, static_cast<Key>(x_.cols())}).Get());
    double sq = 0;
    for (auto i : ctx.rows) sq += std::pow(x_.row(i).dot(w) - y_[i], 2);
    if (ctx.worker == 0) last_w_ = w;
    return Eigen::VectorXd(Eigen::VectorXd::Constant(1, sq / ctx.replication));
  }
  double Objective(const Eigen::VectorXd& t) override {
    return infinite ? std::numeric_limits<double>::infinity() : 0.5 * t[0] / x_.rows();
  }
  bool infinite = false;  // Objective says infinity
  double OptimalObjective() const { return 0.5 * (x_ * optimum_ - y_).squaredNorm() / x_.rows(); }
  const Eigen::VectorXd& optimum() const { return optimum_; }
  const Eigen::VectorXd& last_w() const { return last_w_; }

 private:
  Eigen::MatrixXd x_;
  Eigen::VectorXd y_, truth_, optimum_, last_w_;
  double step_ = 0.2;
  bool averaging_ = false;
};

class ConvergenceTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ConvergenceTest, SgdReachesTheLeastSquaresOptimum) {
  LeastSquaresApp app(400, 8, 3);
  DataParallelOptions o;
  o.workers = 4;
  o.servers = 2;
  o.consistency = *Consistency::Parse(GetParam());
  o.batch_size = 25;
  o.frequency = *UpdateFrequency::Parse("batch");
  o.max_epochs = 60;
  o.evaluate_every = 4;
  o.progress = false;
  auto r = RunDataParallel(app, o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const double opt = app.OptimalObjective();
  EXPECT_LT(r->run.objective, opt * 1.05 + 1e-6) << GetParam() << " optimum " << opt;
  EXPECT_LT((app.last_w() - app.optimum()).norm(), 0.05);
  // The objective is evaluated along the way and falls.
  ASSERT_GE(r->run.evaluations.size(), 3u);
  EXPECT_GT(r->run.evaluations.front().objective, r->run.objective);
}

INSTANTIATE_TEST_SUITE_P(Models, ConvergenceTest,
                         ::testing::Values("bsp", "sbp:1", "ssp:2", "essp:2", "sparsessp:2",
                                           "sspaggr:2", "asp", "hogwild"),
                         [](const auto& info) { return TestName(info.param); });

// Model averaging: workers update their own replicas; at the clock the table becomes the
// average of the workers' models.
TEST(ModelAveragingTest, TheTableHoldsTheAverageOfTheWorkersModels) {
  TableSpec t = Table(2, 1, "bsp", SgdUpdater(1.0));
  t.model_averaging = true;
  t.initial = 10;
  auto ps = StartOrDie({t}, 2, 2);
  std::vector<std::string> errors(2);
  RunWorkers(*ps, [&errors](int w, PsClient& c) -> Status {
    std::vector<Key> keys = {0, 1};
    // Under bsp every worker starts the clock from the same model, however fast the other is.
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, c.Pull(0, keys).Get());
    if (v[0] != 10) errors[w] += "start " + std::to_string(v[0]) + "; ";
    std::vector<double> g = {w == 0 ? 2.0 : 4.0, 1.0};
    TESSERA_RETURN_IF_ERROR(c.Push(0, keys, g));         // replica: 10 - g
    TESSERA_RETURN_IF_ERROR(c.Push(0, keys, g));         // replica: 10 - 2g
    TESSERA_ASSIGN_OR_RETURN(v, c.Pull(0, keys).Get());  // reads its own replica
    if (v[0] != 10 - 2 * g[0]) errors[w] += "replica " + std::to_string(v[0]) + "; ";
    TESSERA_RETURN_IF_ERROR(c.Clock());
    TESSERA_ASSIGN_OR_RETURN(v, c.Pull(0, keys).Get());
    // (10 - 4 + 10 - 8) / 2 = 4 and (8 + 8) / 2 = 8.
    if (v[0] != 4 || v[1] != 8) {
      errors[w] += "averaged to " + std::to_string(v[0]) + ", " + std::to_string(v[1]);
    }
    return Status::Ok();
  });
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  TableSpec hog = Table(2, 1, "hogwild");
  hog.model_averaging = true;
  EXPECT_THAT(ParameterServer::Start({hog}, 1, 1, nullptr).status().message(),
              HasSubstr("model averaging needs shards"));
}

TEST(ModelAveragingTest, LocalSgdWithAveragingConverges) {
  for (const char* model : {"bsp", "asp"}) {
    LeastSquaresApp app(400, 8, 5);
    DataParallelOptions o;
    o.workers = 4;
    o.consistency = *Consistency::Parse(model);
    o.model_averaging = true;
    o.batch_size = 20;
    o.frequency = *UpdateFrequency::Parse("nbatches:5");
    o.max_epochs = 80;
    o.evaluate_every = 4;
    o.progress = false;
    auto r = RunDataParallel(app, o);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_LT(r->run.objective, app.OptimalObjective() * 1.05 + 1e-6) << model;
  }
}

TEST(DataParallelTest, PartitionSchemesCoverTheRows) {
  for (const char* name :
       {"disjoint_contiguous", "disjoint_round_robin", "disjoint_random", "overlap_reshuffle"}) {
    auto scheme = ParsePartitionScheme(name);
    ASSERT_TRUE(scheme.ok());
    EXPECT_EQ(ToString(*scheme), name);
    auto parts = PartitionRows(103, 4, *scheme, 9);
    std::vector<int> seen(103, 0);
    for (const auto& p : parts) {
      EXPECT_GE(p.size(), 25u);
      for (auto r : p) ++seen[r];
    }
    const int copies = *scheme == PartitionScheme::kOverlapReshuffle ? 4 : 1;
    for (int s : seen) EXPECT_EQ(s, copies) << name;
  }
  auto rr = PartitionRows(10, 3, PartitionScheme::kDisjointRoundRobin, 0);
  EXPECT_EQ(rr[1], (std::vector<std::uint32_t>{1, 4, 7}));
}

// A test app whose runs are about what the engine does, not about a model: zero terms and
// objective.
struct NoObjectiveApp : DataParallelApp {
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext&) override {
    return Eigen::VectorXd(Eigen::VectorXd::Zero(1));
  }
  double Objective(const Eigen::VectorXd&) override { return 0; }
};

// Weighted rows: contiguous and random partitions are cut where the running weight crosses
// each worker's equal share, so the heaviest worker carries at most its share plus one row.
TEST(DataParallelTest, WeightedRowsGivePartitionsOfEqualWeight) {
  std::vector<double> weights(101);
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  for (double& w : weights) w = 1 + 40 * u(rng) * u(rng);  // skewed, as ratings per user are
  const double total = std::accumulate(weights.begin(), weights.end(), 0.0);
  const double heaviest = *std::max_element(weights.begin(), weights.end());
  for (const char* name : {"disjoint_contiguous", "disjoint_random"}) {
    SCOPED_TRACE(name);
    auto parts = PartitionRows(101, 3, *ParsePartitionScheme(name), 4, weights);
    std::vector<int> seen(101, 0);
    for (const auto& p : parts) {
      double sum = 0;
      for (auto r : p) {
        sum += weights[r];
        ++seen[r];
      }
      EXPECT_LE(std::abs(sum - total / 3), heaviest);
    }
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 101);
  }
  // The cuts themselves: slices of {1, 1, 1, 1, 4, 4} into 2 and 3 of about 6 and 4 each.
  const std::vector<double> w = {1, 1, 1, 1, 4, 4};
  const std::vector<std::uint32_t> rows = {0, 1, 2, 3, 4, 5};
  EXPECT_EQ(EqualWeightCuts(rows, w, 2), (std::vector<std::size_t>{0, 5, 6}));
  EXPECT_EQ(EqualWeightCuts(rows, w, 3), (std::vector<std::size_t>{0, 4, 5, 6}));
}

// An app that weighs its rows gets, per worker, the largest partition's number of batches, each
// of about equal weight: with rows of weight 1 and 9 alternating in blocks of 10, no batch is
// more than one row from its worker's share, and every row is processed once an epoch.
TEST(DataParallelTest, WeightedRowsGiveBatchesOfEqualWeight) {
  struct Weighted final : NoObjectiveApp {
    std::vector<double> weights;
    std::mutex mu;
    std::vector<double> batch_weights;
    std::vector<int> processed;
    Weighted() : weights(60), processed(60, 0) {
      for (std::size_t r = 0; r < weights.size(); ++r) weights[r] = (r / 10) % 2 ? 9 : 1;
    }
    std::size_t num_rows() const override { return weights.size(); }
    std::vector<double> RowWeights() const override { return weights; }
    std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
      TableSpec t;
      t.num_keys = 1;
      t.consistency = o.consistency;
      return {t};
    }
    Status ProcessBatch(DpWorkerContext&, std::span<const std::uint32_t> batch) override {
      double sum = 0;
      std::lock_guard lock(mu);
      for (auto r : batch) {
        sum += weights[r];
        ++processed[r];
      }
      batch_weights.push_back(sum);
      return Status::Ok();
    }
  } app;
  DataParallelOptions o;
  o.workers = 2;
  o.batch_size = 5;
  o.max_epochs = 1;
  o.progress = false;
  auto r = RunDataParallel(app, o);
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(std::count(app.processed.begin(), app.processed.end(), 1), 60);
  // 300 in all: worker 0 gets rows 0-34 (weight 155), worker 1 rows 35-59 (145); 35 rows in
  // batches of 5 rows make 7 batches a worker, of about 155 / 7 and 145 / 7.
  const auto parts = PartitionRows(60, 2, o.partition, o.seed, app.weights);
  ASSERT_EQ(parts[0].size(), 35u);
  EXPECT_EQ(app.batch_weights.size(), 14u);
  double largest = 0;
  for (double b : app.batch_weights) largest = std::max(largest, b);
  EXPECT_LE(largest, 155.0 / 7 + 9);
  EXPECT_GE(*std::min_element(app.batch_weights.begin(), app.batch_weights.end()), 145.0 / 7 - 9);
}

TEST(DataParallelTest, EveryFrequencyAndSchemeConverges) {
  for (const char* freq : {"batch", "nbatches:3", "epoch"}) {
    for (const char* scheme : {"disjoint_round_robin", "overlap_reshuffle"}) {
      LeastSquaresApp app(300, 5, 11);
      DataParallelOptions o;
      o.workers = 3;
      o.batch_size = 20;
      o.frequency = *UpdateFrequency::Parse(freq);
      o.partition = *ParsePartitionScheme(scheme);
      o.max_epochs = 150;
      o.evaluate_every = 5;
      o.progress = false;
      auto r = RunDataParallel(app, o);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_LT(r->run.objective, app.OptimalObjective() * 1.05 + 1e-6) << freq << " " << scheme;
    }
  }
}

// Every read is counted by how many clocks stale its value was: under bsp none is stale; under
// ssp:2 with one worker 20x slower the fast one reads values up to 2 clocks old and never older;
// under asp it runs further ahead. The evaluation barrier's reads are not counted.
TEST(DataParallelTest, ReadsAreCountedByTheirObservedStaleness) {
  struct Counter final : NoObjectiveApp {
    std::size_t num_rows() const override { return 40; }
    std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
      TableSpec t;
      t.num_keys = 1;
      t.consistency = o.consistency;
      return {t};
    }
    Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t>) override {
      if (ctx.worker == 1) SleepFiber(std::chrono::milliseconds(2));
      TESSERA_RETURN_IF_ERROR(ctx.client->Pull(0, std::vector<Key>{0}).Get().status());
      const double one = 1;
      return ctx.client->Push(0, std::vector<Key>{0}, {&one, 1});
    }
  } app;
  for (const char* model : {"bsp", "ssp:2", "asp"}) {
    SCOPED_TRACE(model);
    DataParallelOptions o;
    o.workers = 2;
    o.batch_size = 1;
    o.frequency = *UpdateFrequency::Parse("batch");
    o.max_epochs = 1;
    o.evaluate_every = 1000;  // only at the end
    o.progress = false;
    o.consistency = *Consistency::Parse(model);
    auto r = RunDataParallel(app, o);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->run.staleness.size(), 1u);
    const auto& h = r->run.staleness[0].reads;
    ASSERT_EQ(h.size(), kStalenessBuckets);
    std::uint64_t reads = 0, stale = 0, beyond2 = 0;
    for (std::size_t s = 0; s < h.size(); ++s) {
      reads += h[s];
      if (s > 0) stale += h[s];
      if (s > 2) beyond2 += h[s];
    }
    EXPECT_EQ(reads, 40u);  // one per batch of one row; the barrier's reads are not counted
    EXPECT_EQ(r->run.staleness[0].total(), 40u);
    EXPECT_THAT(r->run.staleness[0].Describe(), ::testing::StartsWith("40 reads: 0 clocks "));
    if (std::string(model) == "bsp") {
      EXPECT_EQ(stale, 0u);
    } else if (std::string(model) == "ssp:2") {
      EXPECT_GT(stale, 0u);
      EXPECT_EQ(beyond2, 0u);
    } else {
      EXPECT_GT(beyond2, 0u);
    }
  }
}

TEST(DataParallelTest, WorkerErrorsStopTheRunCleanly) {
  struct Failing final : NoObjectiveApp {
    std::size_t num_rows() const override { return 10; }
    std::vector<TableSpec> Tables(const DataParallelOptions&) override {
      TableSpec t;
      t.num_keys = 4;
      return {t};
    }
    Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t>) override {
      if (ctx.worker == 1 && ctx.epoch == 2) return InvalidArgument("row 7: bad value");
      return ctx.client->PullRange(0, {0, 4}).Get().status();
    }
  } app;
  DataParallelOptions o;
  o.workers = 3;
  o.progress = false;
  auto r = RunDataParallel(app, o);
  EXPECT_THAT(r.status().message(), HasSubstr("row 7: bad value"));
  o.max_seconds = -1;
  EXPECT_THAT(RunDataParallel(app, o).status().message(), HasSubstr("--max-seconds"));
}

// The driver checks what reaches its barrier: a message from a rank that is no worker, of a
// kind the barrier does not take, or for a clock past the run's end fails the run naming it
// (no abort of the driver's process).
// An objective that is not a finite number stops the run at that evaluation, naming it.
TEST(DataParallelTest, ANonFiniteObjectiveStopsTheRunWithAnError) {
  LeastSquaresApp app(40, 4, 3);
  app.infinite = true;
  DataParallelOptions o;
  o.workers = 2;
  o.max_epochs = 50;
  o.progress = false;
  auto r = RunDataParallel(app, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(r.status().message().rfind("the objective is inf after clock 1: ", 0), 0u)
      << r.status().message();
}

TEST(DataParallelTest, TheDriverRefusesBarrierMessagesNoWorkerSent) {
  struct Injecting final : NoObjectiveApp {
    std::shared_ptr<Transport> transport;
    std::function<void(Message&)> craft;
    std::size_t num_rows() const override { return 10; }
    std::vector<TableSpec> Tables(const DataParallelOptions&) override {
      TableSpec t;
      t.num_keys = 4;
      return {t};
    }
    Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t>) override {
      if (ctx.worker == 0 && ctx.epoch == 1) {
        // From the first worker's rank with one server: replaced by the cases.
        Message m(1, msg::DpTerms{0, Eigen::VectorXd::Zero(1)});
        craft(m);
        (void)transport->Send(0, std::move(m));
      }
      return ctx.client->PullRange(0, {0, 4}).Get().status();
    }
  } app;
  struct Case {
    const char* name;
    std::function<void(Message&)> craft;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"sender", [](Message& m) { m.from = 0; }, "a barrier message from rank 0, which is no"},
      {"kind",
       [](Message& m) {
         m.body = msg::PsPush{};
         m.from = 2;
       },
       "driver: unexpected ps-push message from rank 2"},
      {"clock",
       [](Message& m) {
         m.get<msg::DpTerms>()->clock = 1000;
         m.from = 2;
       },
       "for clock 1000 of a run of 5"},
      {"arrival clock",
       [](Message& m) {
         m.body = msg::DpArrived{1001, 0, 0, {}};
         m.from = 2;
       },
       "for clock 1001 of a run of 5"},
      {"staleness bins",
       [](Message& m) {
         m.body = msg::DpArrived{1, 0, 0, {1, 2, 3}};
         m.from = 2;
       },
       "counted its reads in 3 bins, not 17"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    DataParallelOptions o;
    o.workers = 2;
    o.max_epochs = 5;
    o.progress = false;
    app.transport = std::make_shared<InProcessTransport>(1 + o.servers + o.workers);
    app.craft = c.craft;
    auto r = RunDataParallel(app, o, app.transport);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr(c.error));
  }
}

// sspaggr:S sends a worker's summed pushes between clocks, never more than the budget per
// interval, so that another worker's read sees them before the clock ends (under ssp:S they
// wait in the worker's buffer for the clock); at the clock the rest follows and nothing is lost.
TEST(SspAggrTest, SendsWithinTheBudgetBetweenClocksAndLosesNothing) {
  for (const char* model : {"sspaggr:3", "ssp:3"}) {
    SCOPED_TRACE(model);
    TableSpec t = Table(1000, 4, model);
    t.communication.budget_bytes = 2048;
    t.communication.interval_seconds = 0.001;
    auto ps = StartOrDie({t}, 2, 2);
    std::atomic<bool> sent{false};
    double seen = -1;
    RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
      if (w == 1) {  // reads key 7 once worker 0's pushes of clock 0 had the chance to leave
        while (!sent.load()) SleepFiber(std::chrono::microseconds(200));
        TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd v, c.Pull(0, std::vector<Key>{7}).Get());
        seen = v[0];
        return c.Clock();
      }
      std::mt19937_64 rng(1);
      std::vector<double> row(4);
      for (int i = 0; i < 3000; ++i) {
        const Key k = i < 100 ? 7 : 8 + rng() % 992;
        for (double& x : row) x = 1.0;
        TESSERA_RETURN_IF_ERROR(c.Push(0, std::vector<Key>{k}, row));
        if (i % 100 == 99) SleepFiber(std::chrono::microseconds(1500));
        if (i == 1500) sent.store(true);
      }
      return c.Clock();
    });
    const PsClientStats& stats = ps->client(0).stats();
    ps->Shutdown();
    EXPECT_EQ(ps->Snapshot(0).sum(), 3000.0 * 4);  // every push arrived
    EXPECT_EQ(ps->Snapshot(0)[7 * 4], 100.0);
    if (std::string(model) == "ssp:3") {
      EXPECT_EQ(seen, 0.0);  // buffered until the clock
      EXPECT_EQ(stats.budgeted_sends, 0u);
      continue;
    }
    EXPECT_GT(seen, 0.0);  // sent between clocks
    EXPECT_GE(stats.budgeted_sends, 10u);
    EXPECT_GT(stats.budgeted_bytes_max, 0u);
    EXPECT_LE(stats.budgeted_bytes_max, 2048u);
  }
}

// ---------------------------------------------------------------------------------------------
// Managed communication

TEST(CommunicationTest, ParsesFeatureLists) {
  auto all = Communication::Parse("sparse,keys,f32");
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->sparse_values && all->key_lists && all->float_values);
  EXPECT_EQ(all->ToString(), "sparse,keys,f32");
  EXPECT_EQ(Communication::Parse("none")->ToString(), "none");
  EXPECT_EQ(Communication::Parse("f32")->ToString(), "f32");
  EXPECT_EQ(Communication().ToString(), "sparse,keys");  // the default: lossless
  auto big_cache = Communication::Parse("sparse,keys:4000000");
  ASSERT_TRUE(big_cache.ok());
  EXPECT_TRUE(big_cache->key_lists);
  EXPECT_EQ(big_cache->key_cache_keys, 4000000u);
  EXPECT_EQ(big_cache->ToString(), "sparse,keys:4000000");
  EXPECT_EQ(Communication::Parse("keys:524288")->ToString(), "keys");  // the default size
  auto filtered = Communication::Parse("sparse,significant:0.05");
  ASSERT_TRUE(filtered.ok());
  EXPECT_EQ(filtered->significant, 0.05);
  EXPECT_EQ(filtered->ToString(), "sparse,significant:0.05");
  for (const char* bad :
       {"significant:0", "significant:-1", "significant:x", "significant:", "significant:nan"}) {
    EXPECT_THAT(Communication::Parse(bad).status().message(), HasSubstr("needs a threshold"))
        << bad;
  }
  for (const char* bad : {"keys:3", "keys:", "keys:1e6", "keys:-5", "keys:99999999999"}) {
    EXPECT_THAT(Communication::Parse(bad).status().message(), HasSubstr("needs a key count"))
        << bad;
  }
  for (const char* codec : {"lz4", "zstd"}) {
    auto compressed = Communication::Parse(std::string("sparse,keys,") + codec);
    ASSERT_TRUE(compressed.ok()) << codec;
    EXPECT_EQ(compressed->compression,
              codec == std::string("lz4") ? Compression::kLz4 : Compression::kZstd);
    EXPECT_EQ(compressed->ToString(), std::string("sparse,keys,") + codec);
  }
  EXPECT_THAT(Communication::Parse("lz4,zstd").status().message(),
              HasSubstr("cannot both compress"));
  EXPECT_THAT(Communication::Parse("sparse,zip").status().message(),
              HasSubstr("unknown feature 'zip'"));
  EXPECT_FALSE(Communication::Parse("").ok());
}

// Packed values unpack to exactly what was packed (f32: to the nearest floats), and are packed
// sparse only when that is smaller.
TEST(CommunicationTest, PackedValuesRoundTripAndShrink) {
  std::mt19937_64 rng(3);
  for (double density : {0.0, 0.05, 0.5, 0.7, 1.0}) {
    for (const char* features : {"none", "sparse", "f32", "sparse,f32", "lz4", "sparse,zstd",
                                 "sparse,f32,lz4", "f32,zstd"}) {
      SCOPED_TRACE(std::string(features) + " at density " + std::to_string(density));
      const Communication c = *Communication::Parse(features);
      Eigen::VectorXd values = Eigen::VectorXd::Zero(1000);
      for (double& v : values) {
        if (std::uniform_real_distribution<>(0, 1)(rng) < density) {
          v = std::normal_distribution<>(0, 1)(rng);
        }
      }
      msg::PsPush plain;
      plain.values = values;
      msg::PsPush packed = plain;
      PackValues(c, packed.values, packed.packed);
      const std::uint64_t plain_bytes = Message(1, plain).PayloadBytes();
      const std::uint64_t packed_bytes = Message(1, packed).PayloadBytes();
      EXPECT_LE(packed_bytes, plain_bytes);
      if (c.sparse_values && density <= 0.4) {
        EXPECT_TRUE(packed.packed.sparse);
      }
      if (density == 1.0) {
        EXPECT_FALSE(packed.packed.sparse);
      }
      if (c.float_values) {
        EXPECT_LE(packed_bytes, plain_bytes / 2 + 16);
      }
      // Compressed when that shrinks them, as 1000 dense zeros do.
      if (c.compression != Compression::kNone && !c.sparse_values && density == 0) {
        EXPECT_NE(packed.packed.codec, 0);
        EXPECT_TRUE(packed.packed.nonzero.empty());
      }
      // Kept sparse: the nonzeros at ascending positions, whatever the packing.
      msg::PsPush kept = packed;
      ASSERT_TRUE(UnpackSparseValues(kept.values, kept.packed, 1000).ok());
      ASSERT_TRUE(kept.packed.sparse);
      ASSERT_EQ(kept.packed.size, 1000u);
      ASSERT_EQ(kept.packed.nonzero.size(), static_cast<std::size_t>(kept.values.size()));
      Eigen::VectorXd from_kept = Eigen::VectorXd::Zero(1000);
      for (std::size_t e = 0; e < kept.packed.nonzero.size(); ++e) {
        if (e > 0) {
          ASSERT_LT(kept.packed.nonzero[e - 1], kept.packed.nonzero[e]);
        }
        from_kept[kept.packed.nonzero[e]] = kept.values[static_cast<Eigen::Index>(e)];
      }
      ASSERT_TRUE(UnpackValues(packed.values, packed.packed, 1000).ok());
      ASSERT_EQ(packed.values.size(), 1000);
      ASSERT_EQ(from_kept, packed.values);
      for (int i = 0; i < 1000; ++i) {
        const double want = c.float_values ? static_cast<float>(values[i]) : values[i];
        ASSERT_EQ(packed.values[i], want) << i;
      }
      // Sent sparse from the start (PsClient::PushSparse), it comes back the same.
      msg::PsPush sparse;
      sparse.values = kept.values;
      sparse.packed.sparse = true;
      sparse.packed.size = 1000;
      sparse.packed.nonzero = kept.packed.nonzero;
      PackSparseValues(c, sparse.values, sparse.packed);
      ASSERT_TRUE(UnpackValues(sparse.values, sparse.packed, 1000).ok());
      ASSERT_EQ(sparse.values, packed.values);
    }
  }
  // Positions out of order or beyond the values are refused by both receivers.
  for (const std::vector<std::uint32_t>& at :
       {std::vector<std::uint32_t>{3, 2}, std::vector<std::uint32_t>{1, 1000}}) {
    for (bool keep : {false, true}) {
      Eigen::VectorXd v = Eigen::VectorXd::Ones(2);
      PackedValues p;
      p.sparse = true;
      p.size = 1000;
      p.nonzero = at;
      const Status s = keep ? UnpackSparseValues(v, p, 1000) : UnpackValues(v, p, 1000);
      EXPECT_THAT(s.message(), HasSubstr("out of order or beyond")) << keep;
    }
  }
}

TEST(CommunicationTest, ARunOfConsecutiveKeysTravelsAsARange) {
  auto as_range = [](std::vector<Key> keys) {
    TableKeys at;
    at.keys = std::move(keys);
    KeysAsRange(at);
    return at;
  };
  TableKeys run = as_range({5, 6, 7, 8});
  EXPECT_TRUE(run.keys.empty());
  EXPECT_EQ(run.range.begin, 5u);
  EXPECT_EQ(run.range.end, 9u);
  for (const std::vector<Key>& kept : {std::vector<Key>{5, 7, 8}, std::vector<Key>{3, 4},
                                       std::vector<Key>{7, 6, 5}, std::vector<Key>{5, 5, 7}}) {
    EXPECT_EQ(as_range(kept).keys, kept);
  }
  // Through a parameter server: the same values, and the key list left out of the bytes.
  std::map<bool, std::uint64_t> bytes;
  for (bool consecutive : {true, false}) {
    TableSpec t = Table(4000, 2, "bsp");
    t.communication = *Communication::Parse("none");
    auto ps = StartOrDie({t}, 2, 1);
    PsClient& c = ps->client(0);
    std::vector<Key> keys;
    for (Key k = 0; k < 1000; ++k) keys.push_back(consecutive ? 1500 + k : 3 * k);
    std::vector<double> v(2000);
    for (std::size_t i = 0; i < v.size(); ++i) v[i] = static_cast<double>(i) + 0.5;
    ASSERT_TRUE(c.Push(0, keys, v).ok());
    ASSERT_TRUE(c.Clock().ok());
    const Eigen::VectorXd back = PullOrDie(c, 0, keys);
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(back[static_cast<Eigen::Index>(i)], v[i]);
    bytes[consecutive] = c.stats().bytes;
    ps->Shutdown();
  }
  // A push and a pull of 1,000 keys: 16,000 bytes of keys fewer.
  EXPECT_LE(bytes[true] + 15000, bytes[false]);
}

// Compressed values that a peer altered, cut short or mislabelled are refused with a reason,
// never unpacked into the wrong values or beyond what the keys hold.
TEST(CommunicationTest, CompressedValuesThatDoNotFitAreRefused) {
  for (const char* features : {"lz4", "zstd", "sparse,lz4", "sparse,f32,zstd"}) {
    SCOPED_TRACE(features);
    const Communication c = *Communication::Parse(features);
    Eigen::VectorXd values = Eigen::VectorXd::Zero(4000);
    for (int i = 0; i < 4000; i += 7) values[i] = i % 3 + 1;  // compressible, and sparse
    PackedValues p;
    Eigen::VectorXd sent = values;
    PackValues(c, sent, p);
    ASSERT_NE(p.codec, 0);
    auto refused = [&](PackedValues bad, std::size_t expected, const char* why) {
      Eigen::VectorXd v;
      const Status s = UnpackValues(v, bad, expected);
      EXPECT_FALSE(s.ok()) << why;
    };
    PackedValues cut = p;
    cut.compressed.resize(cut.compressed.size() / 2);
    refused(cut, 4000, "cut short");
    PackedValues flipped = p;
    for (std::size_t i = 0; i < flipped.compressed.size(); i += 3) flipped.compressed[i] ^= 0x5a;
    {  // altered: refused, or (a codec without a checksum) values that still fit the packing
      Eigen::VectorXd v;
      const Status s = UnpackValues(v, flipped, 4000);
      if (s.ok()) {
        EXPECT_EQ(v.size(), 4000);
      }
    }
    PackedValues more = p;
    more.count += 1;
    refused(more, 4000, "more values than the bytes hold");
    refused(p, p.count - 1, "more values than the keys");
    PackedValues unknown = p;
    unknown.codec = 9;
    refused(unknown, 4000, "unknown codec");
    Eigen::VectorXd beside = Eigen::VectorXd::Ones(3);
    PackedValues both = p;
    EXPECT_FALSE(UnpackValues(beside, both, 4000).ok()) << "values beside compressed ones";
    Eigen::VectorXd back;
    ASSERT_TRUE(UnpackValues(back, p, 4000).ok());
    const Eigen::VectorXd want = c.float_values ? values.cast<float>().cast<double>() : values;
    EXPECT_EQ(back, want);
  }
}

// The two ends of a key-list cache stay alike under any sequence of lists, including lists
// evicted for space, lists sent again after eviction and lists too short to cache.
TEST(CommunicationTest, KeyListCachesStayAlikeOnBothEnds) {
  std::mt19937_64 rng(7);
  std::vector<std::vector<Key>> pool(40);
  for (auto& list : pool) {
    list.resize(rng() % 300);
    for (Key& k : list) k = rng() % 100000;
  }
  KeyListCache sender(2000), receiver(2000);
  int hashed = 0;
  for (int i = 0; i < 5000; ++i) {
    const auto& list = pool[rng() % (i < 2500 ? 8 : pool.size())];  // a hot set, then all
    TableKeys at;
    at.keys = list;
    sender.Compress(at);
    if (at.key_list != 0) {
      EXPECT_TRUE(at.keys.empty());
      ++hashed;
    }
    ASSERT_TRUE(receiver.Expand(at).ok()) << i;
    ASSERT_EQ(at.keys, list) << i;
    ASSERT_EQ(at.key_list, 0u);
    ASSERT_EQ(sender.keys_held(), receiver.keys_held()) << i;
    ASSERT_LE(sender.keys_held(), 2000u);
  }
  EXPECT_GT(hashed, 2000);
}

// A held list takes about a byte a key when its keys are sorted and near one another, and
// comes back whole whatever its keys (unsorted, far apart, both ends of the key space).
TEST(CommunicationTest, KeyListCachesHoldListsCoded) {
  std::vector<Key> sorted(1000), wild = {0, ~Key{0}, 5, ~Key{0} - 1, Key{1} << 63, 1};
  for (Key k = 0; k < 1000; ++k) sorted[k] = 40000 + 3 * k;
  for (int i = 0; i < 20; ++i) wild.push_back(static_cast<Key>(i * 7919) * 0x9e3779b97f4a7c15ULL);
  KeyListCache sender(5000), receiver(5000);
  for (const auto* list : {&sorted, &wild}) {
    for (int i = 0; i < 2; ++i) {  // the second time it travels as its hash
      TableKeys at;
      at.keys = *list;
      sender.Compress(at);
      EXPECT_EQ(at.key_list != 0, i == 1);
      ASSERT_TRUE(receiver.Expand(at).ok());
      EXPECT_EQ(at.keys, *list);
    }
    if (list == &sorted) {
      EXPECT_LE(sender.bytes_held(), 1003u);
    }
  }
  EXPECT_EQ(sender.bytes_held(), receiver.bytes_held());
}

// The significantly-modified filter holds a key's small changes back, sums them, sends them
// once they are large against the key as the worker read it (keys it never read at once), and
// ReleaseHeld sends whatever is left: the table ends with every change.
TEST(CommunicationTest, TheSignificantFilterHoldsSmallChangesAndLosesNone) {
  TableSpec t = Table(200, 2, "ssp:8");
  t.initial = 1.0;
  t.communication = *Communication::Parse("significant:0.5");
  auto ps = StartOrDie({t}, 2, 1);
  RunWorkers(*ps, [&](int, PsClient& c) -> Status {
    std::vector<Key> read(100), unread(100);
    for (Key k = 0; k < 100; ++k) read[k] = k, unread[k] = 100 + k;
    TESSERA_RETURN_IF_ERROR(c.Pull(0, read).Get().status());  // the rows: 1.0 everywhere
    const std::vector<double> small(200, 0.125);              // dyadic: sums are exact
    const std::uint64_t before = c.stats().push_messages;
    for (int i = 0; i < 4; ++i) {  // 0.5 in all: not more than half of 1.0
      TESSERA_RETURN_IF_ERROR(c.Push(0, read, small));
      TESSERA_RETURN_IF_ERROR(c.Flush());
    }
    if (c.stats().push_messages != before) return Internal("a change under the threshold went");
    TESSERA_RETURN_IF_ERROR(c.Push(0, read, small));  // 0.625 > 0.5: goes
    TESSERA_RETURN_IF_ERROR(c.Flush());
    if (c.stats().push_messages == before) return Internal("a significant change stayed");
    const std::uint64_t sent = c.stats().push_messages;
    TESSERA_RETURN_IF_ERROR(c.Push(0, unread, small));  // never read: goes at once
    TESSERA_RETURN_IF_ERROR(c.Flush());
    if (c.stats().push_messages == sent) return Internal("a change of an unread key stayed");
    TESSERA_RETURN_IF_ERROR(c.Push(0, read, small));  // held again
    TESSERA_RETURN_IF_ERROR(c.ReleaseHeld());
    return c.Clock();
  });
  ps->Shutdown();
  const Eigen::VectorXd table = ps->Snapshot(0);
  for (Key k = 0; k < 200; ++k) {
    const double want = k < 100 ? 1.0 + 6 * 0.125 : 1.0 + 0.125;
    EXPECT_EQ(table[static_cast<Eigen::Index>(2 * k)], want) << k;
    EXPECT_EQ(table[static_cast<Eigen::Index>(2 * k + 1)], want) << k;
  }
  // It compares with the worker's reads: a model without them is refused.
  TableSpec uncached = Table(10, 1, "asp");
  uncached.communication = *Communication::Parse("significant:0.1");
  EXPECT_THAT(ParameterServer::Start({uncached}, 1, 1, nullptr).status().message(),
              HasSubstr("cache their reads"));
}

// A cycle of lists longer than the cache never hits under least-recently-used: both ends then
// rest alike (no hashing, nothing remembered) and try again, their copies equal throughout;
// lists that fit still hit.
TEST(CommunicationTest, KeyListCachesRestAlikeWhenListsNeverComeBack) {
  std::mt19937_64 rng(5);
  std::vector<std::vector<Key>> cycle(30);
  for (auto& list : cycle) {
    list.resize(100);
    for (Key& k : list) k = rng();
  }
  KeyListCache sender(1000), receiver(1000);
  int hashed = 0;
  for (int i = 0; i < 3000; ++i) {
    // 3,000 keys a cycle through a cache of 1,000; then a cycle of 8 lists that fits.
    const auto& list = cycle[i < 2000 ? i % 30 : i % 8];
    TableKeys at;
    at.keys = list;
    sender.Compress(at);
    hashed += at.key_list != 0;
    ASSERT_TRUE(receiver.Expand(at).ok()) << i;
    ASSERT_EQ(at.keys, list) << i;
    ASSERT_EQ(sender.keys_held(), receiver.keys_held()) << i;
    ASSERT_EQ(sender.rests(), receiver.rests()) << i;
    if (i == 1999) {
      EXPECT_GE(sender.rests(), 5u);  // it rested, again and again
      hashed = 0;
    }
  }
  EXPECT_GT(hashed, 700);  // the short cycle hits once the rests are over
}

// The same deterministic run (bsp, sparse row deltas to repeated key lists, as an LDA worker
// pushes) ends in bit-identical tables under every lossless feature set, within float rounding
// under f32, and each feature moves fewer bytes than none.
TEST(CommunicationTest, EveryFeatureKeepsTheResultAndMovesFewerBytes) {
  std::map<std::string, std::pair<Eigen::VectorXd, std::uint64_t>> runs;
  for (const char* features :
       {"none", "sparse", "keys", "f32", "sparse,keys,f32", "zstd", "sparse,keys,lz4"}) {
    TableSpec t = Table(2000, 16, "bsp");
    // Summed per clock, a read at clock c holds exactly the pushes of clocks < c (an `add`
    // table under bsp may already hold a faster worker's pushes of clock c): every run pushes
    // the same values.
    t.sum_per_clock = true;
    t.communication = *Communication::Parse(features);
    auto ps = StartOrDie({t}, 2, 2);
    RunWorkers(*ps, [&](int w, PsClient& c) -> Status {
      std::mt19937_64 rng(w);
      std::vector<std::vector<Key>> batches(3);
      for (auto& b : batches) {
        for (int i = 0; i < 200; ++i) b.push_back(rng() % 2000);
        std::sort(b.begin(), b.end());
        b.erase(std::unique(b.begin(), b.end()), b.end());
      }
      for (int clock = 0; clock < 12; ++clock) {
        const auto& keys = batches[clock % 3];
        TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd rows, c.Pull(0, keys).Get());
        std::vector<double> delta(keys.size() * 16, 0.0);
        // Two topics of sixteen change; dyadic values sum exactly in any order.
        for (std::size_t i = 0; i < keys.size(); ++i) {
          delta[i * 16 + rng() % 16] += 0.25 + rows[static_cast<Eigen::Index>(i * 16)] / 8;
          delta[i * 16 + rng() % 16] -= 1.0;
        }
        TESSERA_RETURN_IF_ERROR(c.Push(0, keys, delta));
        TESSERA_RETURN_IF_ERROR(c.Clock());
      }
      return Status::Ok();
    });
    const std::uint64_t bytes = ps->client(0).stats().bytes + ps->client(1).stats().bytes;
    ps->Shutdown();
    runs[features] = {ps->Snapshot(0), bytes};
  }
  const auto& [none, none_bytes] = runs["none"];
  for (const char* lossless : {"sparse", "keys", "zstd", "sparse,keys,lz4"}) {
    EXPECT_EQ(runs[lossless].first, none) << lossless;
    EXPECT_LT(runs[lossless].second, none_bytes) << lossless;
  }
  EXPECT_LT(runs["sparse"].second * 3, none_bytes);  // two nonzeros of sixteen per row
  for (const char* lossy : {"f32", "sparse,keys,f32"}) {
    EXPECT_LT((runs[lossy].first - none).cwiseAbs().maxCoeff(), 1e-4) << lossy;
    EXPECT_LT(runs[lossy].second, none_bytes) << lossy;
  }
  EXPECT_LT(runs["sparse,keys,f32"].second * 5, none_bytes);
  EXPECT_LT(runs["zstd"].second * 3, none_bytes);  // fourteen zeros of sixteen compress well
  EXPECT_LT(runs["sparse,keys,lz4"].second, runs["keys"].second);
}

// ---------------------------------------------------------------------------------------------
// Tables of nonzero elements (TableStorage::kSparseElements)

// Worker w's pushes in round r: sparse rows of small integers over a few keys, some of which
// cancel what another push added (elements go back to zero and must leave the row); rows of
// keys below 8 fill up and turn dense.
SparseRows ElementPush(int w, int r, int dim, std::vector<Key>& keys) {
  std::mt19937_64 rng(static_cast<std::uint64_t>(100 * w + r));
  keys.clear();
  SparseRows rows;
  for (Key k = static_cast<Key>(rng() % 7); k < 300; k += 1 + rng() % 13) {
    keys.push_back(k);
    for (int d = 0; d < dim; ++d) {
      const bool many = k < 8;
      if (!many && rng() % 5 != 0) continue;
      const double v = static_cast<double>(static_cast<int>(rng() % 5) - 2);  // -2 .. 2
      if (v == 0) continue;
      rows.index.push_back(static_cast<std::uint32_t>(d));
      rows.value.push_back(v);
    }
    rows.ptr.push_back(rows.index.size());
  }
  return rows;
}

class SparseElementsTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SparseElementsTest, HoldsWhatADenseTableHolds) {
  const int dim = 16, workers = 3, rounds = 6;
  std::vector<double> truth(300 * dim, 0.0);
  for (int w = 0; w < workers; ++w) {
    for (int r = 0; r < rounds; ++r) {
      std::vector<Key> keys;
      const SparseRows rows = ElementPush(w, r, dim, keys);
      for (std::size_t i = 0; i < keys.size(); ++i) {
        for (std::uint64_t j = rows.ptr[i]; j < rows.ptr[i + 1]; ++j) {
          truth[keys[i] * dim + rows.index[j]] += rows.value[j];
        }
      }
    }
  }
  // In one process (one request per pull) and as between processes (pulls in pieces).
  for (bool remote : {false, true}) {
    SCOPED_TRACE(remote ? "pieces" : "one request");
    TableSpec t = Table(300, dim, GetParam(), AddUpdater(), TableStorage::kSparseElements);
    t.cache_reads = false;
    std::shared_ptr<Transport> transport =
        remote
            ? std::make_shared<tessera::testing::LookAlikeTransport>(1 + 2 + workers, true, false)
            : nullptr;
    auto st = ParameterServer::Start({t}, 2, workers, transport);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    auto& ps = **st;
    RunWorkers(ps, [&](int w, PsClient& c) -> Status {
      for (int r = 0; r < rounds; ++r) {
        std::vector<Key> keys;
        const SparseRows rows = ElementPush(w, r, dim, keys);
        if (r % 2 == 0) {
          TESSERA_RETURN_IF_ERROR(c.PushSparse(0, keys, rows));
        } else {  // dense pushes are kept sparse by the shard
          std::vector<double> dense(keys.size() * dim, 0.0);
          for (std::size_t i = 0; i < keys.size(); ++i) {
            for (std::uint64_t j = rows.ptr[i]; j < rows.ptr[i + 1]; ++j) {
              dense[i * dim + rows.index[j]] = rows.value[j];
            }
          }
          TESSERA_RETURN_IF_ERROR(c.Push(0, keys, dense));
        }
        TESSERA_RETURN_IF_ERROR(c.Pull(0, keys).GetSparse().status());
        TESSERA_RETURN_IF_ERROR(c.Clock());
      }
      TESSERA_RETURN_IF_ERROR(c.Clock());
      if (w != 0) return Status::Ok();
      c.set_exact_reads(true);  // every worker's pushes of the clocks before this one
      // Explicit keys out of order, alternating between the two shards' ranges.
      std::vector<Key> mixed(300);
      std::vector<std::size_t> place(300);
      for (Key i = 0; i < 300; ++i) {
        mixed[i] = i % 2 == 0 ? 299 - i / 2 : i / 2;
        place[mixed[i]] = i;
      }
      TESSERA_ASSIGN_OR_RETURN(SparseRows all, c.PullRange(0, {0, 300}).GetSparse());
      TESSERA_ASSIGN_OR_RETURN(SparseRows back, c.Pull(0, mixed).GetSparse());
      TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd dense, c.PullRange(0, {0, 300}).Get());
      EXPECT_EQ(all.rows(), 300u);
      EXPECT_EQ(back.rows(), 300u);
      for (Key k = 0; k < 300; ++k) {
        std::vector<std::pair<std::uint32_t, double>> want;
        for (int d = 0; d < dim; ++d) {
          if (truth[k * dim + d] != 0) want.emplace_back(d, truth[k * dim + d]);
          EXPECT_EQ(dense[static_cast<Eigen::Index>(k * dim + d)], truth[k * dim + d]);
        }
        for (const SparseRows* rows : {&all, &back}) {
          const std::size_t i = rows == &all ? k : place[k];
          std::vector<std::pair<std::uint32_t, double>> got;
          for (std::uint64_t j = rows->ptr[i]; j < rows->ptr[i + 1]; ++j) {
            got.emplace_back(rows->index[j], rows->value[j]);
          }
          EXPECT_EQ(got, want) << "key " << k;
        }
      }
      return Status::Ok();
    });
    ps.Shutdown();
    EXPECT_EQ(ps.Snapshot(0).size(), 0);  // left out of snapshots
  }
}

INSTANTIATE_TEST_SUITE_P(Models, SparseElementsTest,
                         ::testing::Values("bsp", "ssp:2", "sparsessp:2", "asp"),
                         [](const auto& info) { return TestName(info.param); });

TEST(SparseElementsTest, StartFromInitialRowsAndPushToDenseTables) {
  TableSpec t = Table(4, 8, "bsp", AddUpdater(), TableStorage::kSparseElements);
  t.cache_reads = false;
  t.initial_rows.ptr = {0, 2, 2, 3, 3};  // key 0: {1: 5, 6: -1}, key 2: {7: 2}
  t.initial_rows.index = {1, 6, 7};
  t.initial_rows.value = {5, -1, 2};
  TableSpec dense = Table(4, 8, "bsp");
  auto ps = StartOrDie({t, dense}, 2, 1);
  PsClient& c = ps->client(0);
  SparseRows change;
  change.ptr = {0, 1, 2};  // key 0: {1: -5}, key 3: {0: 4}
  change.index = {1, 0};
  change.value = {-5, 4};
  const std::vector<Key> keys = {0, 3};
  ASSERT_TRUE(c.PushSparse(0, keys, change).ok());
  ASSERT_TRUE(c.PushSparse(1, keys, change).ok());  // a dense table takes the rows expanded
  ASSERT_TRUE(c.Clock().ok());
  auto rows = c.PullRange(0, {0, 4}).GetSparse();
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->ptr, (std::vector<std::uint64_t>{0, 1, 1, 2, 3}));
  EXPECT_EQ(rows->index, (std::vector<std::uint32_t>{6, 7, 0}));
  EXPECT_EQ(rows->value, (std::vector<double>{-1, 2, 4}));
  const Eigen::VectorXd d = PullOrDie(c, 1, {0, 3});
  EXPECT_EQ(d[1], -5);
  EXPECT_EQ(d[8], 4);
  EXPECT_EQ(d.sum(), -1);
  SparseRows bad = change;
  bad.index = {8, 0};  // beyond dim
  EXPECT_THAT(c.PushSparse(0, keys, bad).message(), HasSubstr("ascending element indexes"));
  ps->Shutdown();
}

// Rows hold their nonzeros as floats while floats hold them exactly: a value no float holds
// (a fraction, an integer beyond 2^24) comes back exactly as the sum of what was pushed, and so
// do the row's other values.
TEST(SparseElementsTest, KeepsValuesFloatsDoNotHold) {
  TableSpec t = Table(3, 64, "bsp", AddUpdater(), TableStorage::kSparseElements);
  t.cache_reads = false;
  auto ps = StartOrDie({t}, 1, 1);
  PsClient& c = ps->client(0);
  const std::vector<Key> keys = {0, 1, 2};
  SparseRows first;  // key 0: {3: 7, 9: 0.1}; key 1: {5: 2^24}; key 2: {60: -3}
  first.ptr = {0, 2, 3, 4};
  first.index = {3, 9, 5, 60};
  first.value = {7, 0.1, 16777216, -3};
  SparseRows second;  // key 0: {3: 1}; key 1: {5: 1, 6: 2}; key 2: {60: 3} (back to zero)
  second.ptr = {0, 1, 3, 4};
  second.index = {3, 5, 6, 60};
  second.value = {1, 1, 2, 3};
  for (const SparseRows* rows : {&first, &second}) {
    ASSERT_TRUE(c.PushSparse(0, keys, *rows).ok());
    ASSERT_TRUE(c.Clock().ok());
  }
  auto rows = c.PullRange(0, {0, 3}).GetSparse();
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(rows->ptr, (std::vector<std::uint64_t>{0, 2, 4, 4}));
  EXPECT_EQ(rows->index, (std::vector<std::uint32_t>{3, 9, 5, 6}));
  EXPECT_EQ(rows->value, (std::vector<double>{8, 0.1, 16777217, 2}));
  ps->Shutdown();
}

TEST(SparseElementsTest, OnlyForModelsWithoutAWorkerCache) {
  auto start = [](TableSpec t) {
    return ParameterServer::Start({std::move(t)}, 1, 1, nullptr).status().message();
  };
  for (const char* model : {"essp:1", "sbp:1", "sspaggr:1", "hogwild"}) {
    TableSpec t = Table(4, 2, model, AddUpdater(), TableStorage::kSparseElements);
    t.cache_reads = false;
    EXPECT_THAT(start(t), HasSubstr("kSparseElements storage needs")) << model;
  }
  TableSpec cached = Table(4, 2, "ssp:1", AddUpdater(), TableStorage::kSparseElements);
  EXPECT_THAT(start(cached), HasSubstr("kSparseElements storage needs"));
  TableSpec sgd = Table(4, 2, "asp", SgdUpdater(0.1), TableStorage::kSparseElements);
  sgd.cache_reads = false;
  EXPECT_THAT(start(sgd), HasSubstr("kSparseElements storage needs"));
  TableSpec rows = Table(4, 2, "asp", AddUpdater(), TableStorage::kSparseElements);
  rows.cache_reads = false;
  rows.initial_rows.ptr = {0, 1};  // one row for four keys
  rows.initial_rows.index = {0};
  rows.initial_rows.value = {1};
  EXPECT_THAT(start(rows), HasSubstr("initial_rows need num_keys rows"));
  TableSpec dense = Table(4, 2, "asp");
  dense.initial_rows = rows.initial_rows;
  EXPECT_THAT(start(dense), HasSubstr("initial_rows need kSparseElements storage"));
}

}  // namespace
}  // namespace tessera
