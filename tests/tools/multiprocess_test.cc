// Multi-process runs with real processes on loopback: `tessera launch` and mpirun give the
// in-process coefficients bit for bit; data-parallel Lasso, MF and LDA agree with their
// in-process runs (and their saved models are whole); a process killed or stopped mid-run
// makes the others exit non-zero naming it, within the silence timeout; bad input in every
// process is a clean error, not a hang.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "tessera/net/tcp_transport.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

using testing::Slurp;

using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

std::string Diabetes() {
  return std::string(TESSERA_SOURCE_DIR) + "/datasets/diabetes/lars_diabetes_x.csv.gz";
}

// Runs `cmd` through the shell, stdout and stderr into `log`; returns the exit code.
int Shell(const std::string& cmd, const std::string& log) {
  const int status = std::system((cmd + " > " + log + " 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// A child process running `args` (argv[0] a path), output into `log`.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    FILE* out = std::fopen(log.c_str(), "w");
    dup2(fileno(out), 1);
    dup2(fileno(out), 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Waits up to `timeout` for `pid`; returns its exit code (128 + signal), or -1 on timeout.
int WaitFor(pid_t pid, std::chrono::seconds timeout) {
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

// The child of `parent` started with TESSERA_RANK=rank, or -1.
pid_t ChildWithRank(pid_t parent, int rank) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string line;
    std::getline(stat, line);
    const auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid != parent) continue;
    const std::string env = Slurp((entry.path() / "environ").string());
    if (env.find(std::string("TESSERA_RANK=") + std::to_string(rank) + '\0') != std::string::npos) {
      return static_cast<pid_t>(std::stoi(name));
    }
  }
  return -1;
}

const std::string kCli = TESSERA_CLI;

// The word after `name` in `text`, or "(no NAME)".
std::string Field(const std::string& text, const std::string& name) {
  std::istringstream in(text.substr(std::min(text.size(), text.find(name + " "))));
  std::string key, value;
  if (!(in >> key >> value) || key != name) return "(no " + name + ")";
  return value;
}

// The error line of process `p`, or "".
std::string ErrorOf(const std::string& out, int p) {
  const std::string tag = "tessera: process " + std::to_string(p) + ": error: ";
  const auto at = out.find(tag);
  return at == std::string::npos ? "" : out.substr(at, out.find('\n', at) - at);
}

// A Lasso path on diabetes (10 λ, warm starts, strong rules and active sets deciding on the
// coordinator's coefficients) with a seeded randomized scheduler and two rounds in flight:
// everything the worker processes must follow exactly.
std::string LassoArgs(const std::string& out) {
  return "lasso --data " + Diabetes() +
         " --path 10 --workers 2 --scheduler priority --pipeline-depth 2 --block-size 3 "
         "--standardize --quiet --output " +
         out;
}

TEST(MultiProcessTest, LaunchGivesTheInProcessCoefficientsBitForBit) {
  testing::TempDir dir;
  const std::string one = dir.Path("one.csv"), log = dir.Path("log");
  ASSERT_EQ(Shell(kCli + " " + LassoArgs(one), log), 0) << Slurp(log);
  for (int n : {2, 3}) {
    const std::string many = dir.Path("launch" + std::to_string(n) + ".csv");
    ASSERT_EQ(
        Shell(kCli + " launch -n " + std::to_string(n) + " -- " + kCli + " " + LassoArgs(many),
              log),
        0)
        << Slurp(log);
    EXPECT_EQ(Slurp(many), Slurp(one)) << n << " processes";
    EXPECT_EQ(Slurp(log), "") << "only process 0 speaks, and --quiet silences it";
  }
  // A single fit reports the same bytes moved and rounds as in-process.
  const std::string fit = " lasso --data " + Diabetes() + " --lambda-ratio 0.01 --workers 2";
  ASSERT_EQ(Shell(kCli + fit, log), 0);
  const std::string in_process = Slurp(log);
  ASSERT_EQ(Shell(kCli + " launch -n 3 -- tessera" + fit, log), 0) << Slurp(log);
  const std::string launched = Slurp(log);
  for (const char* field : {"objective", "kkt", "nonzeros", "rounds", "intercept", "moved"}) {
    EXPECT_EQ(Field(launched, field), Field(in_process, field)) << field << "\n" << launched;
  }
}

// mpirun is a test dependency: missing in CI it fails the test, elsewhere it skips it.
#define TESSERA_REQUIRE_MPIRUN()                                                             \
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) {                              \
    if (testing::InCi()) FAIL() << "mpirun is missing: scripts/install-deps.sh installs it"; \
    GTEST_SKIP() << "mpirun not installed (apt-get install openmpi-bin)";                    \
  }

TEST(MultiProcessTest, MpirunGivesTheInProcessCoefficientsBitForBit) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_MPIRUN();
  testing::TempDir dir;
  const std::string one = dir.Path("one.csv"), many = dir.Path("mpi.csv"), log = dir.Path("log");
  ASSERT_EQ(Shell(kCli + " " + LassoArgs(one), log), 0) << Slurp(log);
  const auto port = net::FreePort();
  ASSERT_TRUE(port.ok()) << port.status().ToString();
  const std::string env = "TESSERA_RENDEZVOUS=127.0.0.1:" + std::to_string(*port) +
                          " TESSERA_SECRET=mpirun-test-secret-0123456789";
  ASSERT_EQ(Shell(env +
                      " mpirun --oversubscribe --allow-run-as-root -n 3 -x TESSERA_RENDEZVOUS "
                      "-x TESSERA_SECRET " +
                      kCli + " " + LassoArgs(many),
                  log),
            0)
      << Slurp(log);
  EXPECT_EQ(Slurp(many), Slurp(one));
}

// Processes started with different options (mpirun's MPMD form: process 0 with one server,
// the others with two, which would lay out different ranks) refuse each other at the handshake
// and the run fails at once, naming why, instead of waiting for messages that never come.
TEST(MultiProcessTest, ProcessesWithDifferentCommandLinesRefuseEachOther) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_MPIRUN();
  testing::TempDir dir;
  const std::string log = dir.Path("log");
  const std::string fit = kCli + " lasso --data " + Diabetes() +
                          " --mode data-parallel --workers 1 --quiet --connect-timeout 20";
  const auto start = std::chrono::steady_clock::now();
  const int code = Shell("mpirun --oversubscribe --allow-run-as-root -n 1 " + fit +
                             " --servers 1 : -n 2 " + fit + " --servers 2",
                         log);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_NE(code, 0) << Slurp(log);
  EXPECT_LT(seconds, 15) << "the processes waited for each other";
  EXPECT_THAT(Slurp(log), HasSubstr("or another command line"));
}

// On one host mpirun needs nothing exported: the rendezvous comes from the job (127.0.0.1 and
// a port from its id), the secret from the user's secret file, which the first process makes.
TEST(MultiProcessTest, MpirunOnOneHostNeedsNothingExported) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_MPIRUN();
  testing::TempDir dir;
  const std::string one = dir.Path("one.csv"), many = dir.Path("mpi.csv"), log = dir.Path("log");
  const std::string home = dir.Path("home");
  std::filesystem::create_directories(home);
  ASSERT_EQ(Shell(kCli + " " + LassoArgs(one), log), 0) << Slurp(log);
  ASSERT_EQ(Shell("env -u TESSERA_RENDEZVOUS -u TESSERA_SECRET -u TESSERA_SECRET_FILE "
                  "-u TESSERA_SECRET_DIR HOME=" +
                      home + " mpirun --oversubscribe --allow-run-as-root -n 3 " + kCli + " " +
                      LassoArgs(many),
                  log),
            0)
      << Slurp(log);
  EXPECT_EQ(Slurp(many), Slurp(one));
  EXPECT_TRUE(std::filesystem::exists(home + "/.tessera/secret"));
}

// The numbers of a CSV file, row by row (the header skipped), but for the staleness columns
// (how stale the reads were depends on timing).
std::vector<double> Numbers(const std::string& path) {
  std::vector<double> out;
  std::istringstream in(Slurp(path));
  std::string line;
  std::getline(in, line);
  std::vector<bool> timing;
  {
    std::istringstream names(line);
    for (std::string name; std::getline(names, name, ',');) {
      timing.push_back(name.rfind("staleness", 0) == 0);
    }
  }
  while (std::getline(in, line)) {
    std::istringstream cells(line);
    std::size_t column = 0;
    for (std::string cell; std::getline(cells, cell, ','); ++column) {
      if (column < timing.size() && timing[column]) continue;
      if (!cell.empty() && (std::isdigit(cell.back()) != 0)) out.push_back(std::stod(cell));
    }
  }
  return out;
}

// Model-parallel MF (CCD++ and rotation SGD) and LDA (word rotation, both samplers) with
// every worker in a process of its own (3 processes: the coordinator and 2 workers), under
// `tessera launch` and mpirun: the factor and vocabulary blocks move between the processes
// by message, and the result is the one-process run's bit for bit (the model files are equal
// byte for byte, the summaries in every value but time, memory and bytes moved: in one process
// the blocks' state objects are handed over, between processes their bytes travel).
TEST(MultiProcessTest, ModelParallelMfAndLdaAcrossProcessesGiveTheOneProcessResult) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  const bool mpirun = std::system("command -v mpirun > /dev/null 2>&1") == 0;
  if (!mpirun && testing::InCi())
    FAIL() << "mpirun is missing: scripts/install-deps.sh installs it";
  struct Case {
    std::string name, args;
    std::vector<int> same;  // summary values that must agree exactly
  };
  const std::string mf = " mf --train " + base + " --test " + test + " --rank 10 --workers 2";
  const std::string lda = " lda --corpus " + docword + " --topics 20 --workers 2";
  const std::vector<Case> cases = {
      // objective, train RMSE, test RMSE, epochs
      {"ccd++", mf + " --algorithm ccd++ --epochs 3", {0, 1, 2, 3}},
      {"sgd", mf + " --algorithm sgd --epochs 5", {0, 1, 2, 3}},
      // objective, LL per token, sweeps (the perplexity is nan, not a number)
      {"lda mh", lda + " --iterations 8 --evaluate-every 4", {0, 1, 2}},
      {"lda gibbs", lda + " --sampler gibbs --iterations 2", {0, 1, 2}}};
  testing::TempDir dir;
  const std::string log = dir.Path("log");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto run = [&](const std::string& launch, const std::string& tag) {
      const std::string summary = dir.Path(tag + ".csv"), model = dir.Path(tag + ".model");
      const std::string topics =
          c.name.rfind("lda", 0) == 0 ? " --topics-out " + dir.Path(tag + ".topics") : "";
      EXPECT_EQ(Shell(launch + kCli + c.args + topics + " --quiet --summary " + summary +
                          " --output " + model,
                      log),
                0)
          << Slurp(log);
      return std::make_pair(Numbers(summary), Slurp(model));
    };
    const auto one = run("", "one");
    ASSERT_FALSE(one.second.empty());
    std::vector<std::pair<std::string, std::string>> launchers = {
        {"launch", kCli + " launch -n 3 -- "}};
    if (mpirun) {
      const auto port = net::FreePort();
      ASSERT_TRUE(port.ok()) << port.status().ToString();
      launchers.push_back(
          {"mpirun", "TESSERA_RENDEZVOUS=127.0.0.1:" + std::to_string(*port) +
                         " TESSERA_SECRET=mpirun-test-secret-0123456789 mpirun --oversubscribe "
                         "--allow-run-as-root -n 3 -x TESSERA_RENDEZVOUS -x TESSERA_SECRET "});
    }
    for (const auto& [tag, launch] : launchers) {
      const auto many = run(launch, tag);
      ASSERT_EQ(many.first.size(), one.first.size()) << tag;
      for (int i : c.same) EXPECT_EQ(many.first[i], one.first[i]) << tag << ": value " << i;
      if (c.name == "sgd") {  // bytes moved: the item blocks travel between processes
        EXPECT_GT(many.first[6], one.first[6]) << tag;
      }
      EXPECT_TRUE(many.second == one.second) << tag << ": the model files differ";
    }
  }
}

// A user's app with carried blocks (examples/rotation_mf.cc), each worker in a process of its
// own: its item blocks move between processes and the result is the one-process run's.
TEST(MultiProcessTest, AUsersAppWithCarriedBlocksRunsAcrossProcesses) {
  testing::TempDir dir;
  const std::string log = dir.Path("log"), example = TESSERA_ROTATION_EXAMPLE;
  for (int workers : {2, 3}) {
    const std::string args = " " + std::to_string(workers) + " 20";
    ASSERT_EQ(Shell(example + args, log), 0) << Slurp(log);
    const std::string one = Slurp(log);
    EXPECT_THAT(one, HasSubstr("training RMSE 0.09"));
    ASSERT_EQ(
        Shell(kCli + " launch -n " + std::to_string(workers + 1) + " -- " + example + args, log), 0)
        << Slurp(log);
    EXPECT_EQ(Slurp(log), one) << workers << " workers";
  }
}

TEST(MultiProcessTest, DataParallelLassoAcrossProcessesMatchesTheInProcessRun) {
  TESSERA_SKIP_UNDER_TSAN();
  // The shards add a clock's pushes in the order they arrive (in one process too, so no two
  // runs are bitwise equal), and across processes each computes the setup statistics from
  // the whole data: both runs converge to the optimum, not along the same path. Run to
  // convergence (no objective tolerance; 300 epochs reach 1e-13 on this path, which ends at
  // λmax / 10) and they agree within 1e-9. Four λ runs share each transport, so a process
  // that begins the next run early must not disturb one still finishing the last.
  testing::TempDir dir;
  const std::string args = " lasso --data " + Diabetes() +
                           " --path 3 --path-ratio 0.1 --mode data-parallel --servers 2 "
                           "--workers 3 --quiet --objective-tolerance 0 --max-epochs 300 "
                           "--output ";
  const std::string one = dir.Path("one.csv"), log = dir.Path("log");
  ASSERT_EQ(Shell(kCli + args + one, log), 0) << Slurp(log);
  const std::vector<double> expected = Numbers(one);
  ASSERT_EQ(expected.size(), 3u * 15);  // λ, intercept, 10 coefficients, objective, kkt, gap
  for (int n : {2, 4}) {
    const std::string many = dir.Path("dp" + std::to_string(n) + ".csv");
    ASSERT_EQ(Shell(kCli + " launch -n " + std::to_string(n) + " -- tessera" + args + many, log), 0)
        << Slurp(log);
    const std::vector<double> got = Numbers(many);
    ASSERT_EQ(got.size(), expected.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      if (i % 14 == 13) continue;  // the KKT violation: a difference of near-equal numbers
      EXPECT_NEAR(got[i], expected[i], 1e-9 * std::max(1.0, std::abs(expected[i])))
          << n << " processes, value " << i;
    }
  }
}

// Data-parallel MF across processes: H on the shards, each worker's W rows with it; the
// workers send their rows to the driver's process at the end, so the saved model predicts
// the test ratings with the RMSE the run reported. Under sbp:0 every read sees exactly the
// clocks before its own (under bsp the `add` updater's pushes land as they arrive, and a pull
// may see a faster worker's pushes of the current clock), so runs agree to the order in which
// a clock's pushes are summed.
TEST(MultiProcessTest, DataParallelMfAcrossProcessesMatchesTheInProcessRun) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  testing::TempDir dir;
  const std::string log = dir.Path("log");
  // Summary numbers: objective, train RMSE, test RMSE, epochs, seconds, setup seconds, bytes,
  // peak RSS.
  auto train = [&](const std::string& launch, const std::string& name) {
    const std::string model = dir.Path(name + ".model"), summary = dir.Path(name + ".csv");
    EXPECT_EQ(Shell(launch + kCli + " mf --mode data-parallel --train " + base + " --test " + test +
                        " --epochs 3 --servers 2 --workers 3 --consistency sbp:0 --quiet "
                        "--output " +
                        model + " --summary " + summary,
                    log),
              0)
        << Slurp(log);
    const std::vector<double> got = Numbers(summary);
    EXPECT_EQ(got.size(), 8u) << Slurp(summary);
    EXPECT_EQ(Shell(kCli + " mf predict --model " + model + " --pairs " + test, log), 0)
        << Slurp(log);
    const double rmse = std::stod(Field(Slurp(log), "RMSE"));
    // The run evaluates in single precision, `predict` in double: a few 1e-9 apart.
    EXPECT_NEAR(rmse, got.size() > 2 ? got[2] : 0, 1e-8) << name << ": the saved model";
    return got;
  };
  const std::vector<double> one = train("", "one");
  ASSERT_EQ(one.size(), 8u);
  for (int n : {2, 4}) {
    const std::string name = "mf" + std::to_string(n);
    const std::vector<double> many = train(kCli + " launch -n " + std::to_string(n) + " -- ", name);
    ASSERT_EQ(many.size(), one.size()) << n << " processes";
    for (int i : {0, 1, 2}) EXPECT_NEAR(many[i], one[i], 1e-9 * one[i]) << n << " processes";
    EXPECT_EQ(many[3], one[3]) << "epochs";
    // The same messages, except that between processes a pull asks in pieces of 16 Ki values,
    // each with a request's fixed fields.
    EXPECT_GE(many[6], one[6]) << "bytes moved";
    EXPECT_LT(many[6], one[6] * 1.001) << "bytes moved";
  }
}

// Per-topic token totals of an LDA model file, from its word lines and from its document
// lines: equal when the documents' topics are those the word-topic counts were made of.
std::pair<std::vector<long>, std::vector<long>> TopicTotals(const std::string& model, int k) {
  std::vector<long> words(static_cast<std::size_t>(k)), docs(static_cast<std::size_t>(k));
  std::istringstream in(Slurp(model));
  for (std::string line; std::getline(in, line);) {
    std::istringstream cells(line);
    std::string tag, id, cell;
    if (!(cells >> tag >> id) || (tag != "w" && tag != "d")) continue;
    while (cells >> cell) {
      const auto colon = cell.find(':');
      const auto topic = static_cast<std::size_t>(std::stoi(cell.substr(0, colon)));
      if (topic >= words.size()) return {};
      (tag == "w" ? words : docs)[topic] += std::stol(cell.substr(colon + 1));
    }
  }
  return {words, docs};
}

// Data-parallel LDA across processes: the word-topic counts on the shards, each worker's
// token topics with it; the workers send their topics to the driver's process at the end, so
// the model file's document-topic counts add up to its word-topic counts. Under ssp the
// samplers see counts as they arrive: runs (in one process too) agree within noise.
TEST(MultiProcessTest, DataParallelLdaAcrossProcessesMatchesTheInProcessRun) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  TESSERA_REQUIRE_DATA(vocab, "uci-bow-kos/vocab.kos.txt.gz");
  testing::TempDir dir;
  const std::string log = dir.Path("log");
  // Summary numbers: objective, ll/token, perplexity, iterations, seconds, setup seconds,
  // tokens/s, bytes, peak RSS.
  auto train = [&](const std::string& launch, const std::string& name) {
    const std::string model = dir.Path(name + ".model"), summary = dir.Path(name + ".csv");
    EXPECT_EQ(Shell(launch + kCli + " lda --mode data-parallel --corpus " + docword + " --vocab " +
                        vocab + " --topics 20 --iterations 5 --heldout 0.1 --servers 2 " +
                        "--workers 3 --quiet --output " + model + " --topics-out " +
                        dir.Path(name + ".topics") + " --summary " + summary,
                    log),
              0)
        << Slurp(log);
    const auto [words, docs] = TopicTotals(model, 20);
    EXPECT_EQ(words.size(), 20u) << name;
    EXPECT_EQ(words, docs) << name << ": document topics that are not the sampler's";
    return Numbers(summary);
  };
  const std::vector<double> one = train("", "one");
  ASSERT_EQ(one.size(), 9u);
  for (int n : {2, 3}) {
    const std::vector<double> many =
        train(kCli + " launch -n " + std::to_string(n) + " -- ", "lda" + std::to_string(n));
    ASSERT_EQ(many.size(), one.size()) << n << " processes";
    // After 5 sweeps the held-out perplexity still moves by a few percent from run to run
    // (in one process too); the joint likelihood by well under 1%.
    for (int i : {0, 1}) {
      EXPECT_NEAR(many[i], one[i], 0.02 * std::abs(one[i])) << n << " processes, value " << i;
    }
    EXPECT_NEAR(many[2], one[2], 0.08 * one[2]) << n << " processes, perplexity";
    EXPECT_EQ(many[3], one[3]) << "iterations";
  }
}

// A run that goes on for a minute unless stopped: a tolerance no fit reaches, 60 s per λ.
std::vector<std::string> LongRun(const testing::TempDir& dir) {
  std::mt19937_64 rng(7);
  std::normal_distribution<double> g;
  std::ostringstream data;
  for (int i = 0; i < 2000; ++i) {
    data << g(rng);
    for (int j = 1; j <= 200; ++j) data << ' ' << j << ':' << g(rng);
    data << '\n';
  }
  const std::string file = dir.File("long.svm", data.str());
  return {kCli,      "launch",
          "-n",      "3",
          "--grace", "2",
          "--",      kCli,
          "lasso",   "--data",
          file,      "--workers",
          "2",       "--lambda-ratio",
          "0.001",   "--stop",
          "kkt",     "--tolerance",
          "1e-300",  "--block-size",
          "1",       "--max-seconds",
          "60",      "--silence-timeout",
          "3"};
}

// Starts LongRun under `tessera launch`, sends `sig` to process `rank` once the fit is under
// way and waits (30 s at most) for the launcher to exit.
struct Interrupted {
  int code = -1;       // the launcher's exit code, -1 if it did not exit
  double seconds = 0;  // from the signal to its exit
  std::string out;     // everything the processes and the launcher printed
};
Interrupted InterruptMidRun(int rank, int sig) {
  testing::TempDir dir;
  const std::string log = dir.Path("log");
  const pid_t launcher = Spawn(LongRun(dir), log);
  // Mid-run: process 0 has printed its header, the fit is under way.
  for (int i = 0; i < 500 && Slurp(log).find("model-parallel:") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Interrupted r;
  const pid_t victim = ChildWithRank(launcher, rank);
  if (victim <= 0) {
    kill(launcher, SIGTERM);
    WaitFor(launcher, std::chrono::seconds(30));
    r.out = "no process " + std::to_string(rank) + " found\n" + Slurp(log);
    return r;
  }
  const auto sent = Clock::now();
  kill(victim, sig);
  r.code = WaitFor(launcher, std::chrono::seconds(30));
  r.seconds = std::chrono::duration<double>(Clock::now() - sent).count();
  r.out = Slurp(log);
  if (r.code == -1) {
    kill(victim, SIGKILL);
    kill(launcher, SIGKILL);
  }
  return r;
}

TEST(MultiProcessTest, AKilledProcessMakesTheOthersExitNamingIt) {
  const Interrupted r = InterruptMidRun(2, SIGKILL);
  ASSERT_NE(r.code, -1) << "no exit 30 s after the kill\n" << r.out;
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("tessera launch: process 2 was killed by signal 9 (SIGKILL)"));
  // Process 0 names process 2: from its own closed connection, or from process 1's goodbye
  // ("process 1 failed: lost process 2: ...") if that came first.
  EXPECT_THAT(ErrorOf(r.out, 0), HasSubstr("lost process 2")) << r.out;
  EXPECT_LT(r.seconds, 5) << r.out;  // a closed connection is noticed at once
}

// Correlated features (each column 0.95 z + noise): coordinate descent and proximal gradient
// need many rounds, so a path across processes lasts seconds.
std::string CorrelatedData(const testing::TempDir& dir) {
  std::mt19937_64 rng(11);
  std::normal_distribution<double> g;
  std::ostringstream data;
  data.precision(17);
  for (int i = 0; i < 2000; ++i) {
    const double z = g(rng);
    std::vector<double> x(100);
    double y = g(rng);
    for (int j = 0; j < 100; ++j) {
      x[j] = 0.95 * z + 0.3 * g(rng);
      if (j < 5) y += x[j];
    }
    data << y;
    for (int j = 0; j < 100; ++j) data << ' ' << j + 1 << ':' << x[j];
    data << '\n';
  }
  return dir.File("correlated.svm", data.str());
}

// The number of the newest checkpoint in `dir` (ckpt-NNNNNNNN.tck), 0 if none.
std::uint64_t NewestCheckpoint(const std::string& dir) {
  std::uint64_t newest = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename();
    if (name.size() == 17 && name.compare(0, 5, "ckpt-") == 0 && name.substr(13) == ".tck") {
      newest = std::max<std::uint64_t>(newest, std::stoull(name.substr(5, 8)));
    }
  }
  return newest;
}

// Runs `tessera launch -n 3 --grace 2 --restarts R -- tessera <args>` (rank -1: `tessera
// <args>` alone) until `dir` holds a checkpoint numbered past `after`, then kill -9s process
// `rank` (or the one process). Returns the launcher's (or the process's) exit code (-1: no
// exit in time; -2: no checkpoint came) and, in `out`, what all printed.
int KillAfterCheckpoint(const std::vector<std::string>& args, const std::string& dir,
                        std::uint64_t after, int rank, const std::string& log, std::string& out,
                        int restarts = 0) {
  std::vector<std::string> cmd = {kCli};
  if (rank >= 0) {
    cmd.insert(cmd.end(), {"launch", "-n", "3", "--grace", "2", "--restarts",
                           std::to_string(restarts), "--", kCli});
  }
  cmd.insert(cmd.end(), args.begin(), args.end());
  const pid_t launcher = Spawn(cmd, log);
  const auto until = Clock::now() + std::chrono::seconds(60);
  while (NewestCheckpoint(dir) <= after && Clock::now() < until &&
         waitpid(launcher, nullptr, WNOHANG) == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const pid_t victim = rank >= 0 ? ChildWithRank(launcher, rank) : launcher;
  if (NewestCheckpoint(dir) <= after || victim <= 0) {
    kill(launcher, SIGTERM);
    WaitFor(launcher, std::chrono::seconds(30));
    out = "no checkpoint past " + std::to_string(after) + " while process " + std::to_string(rank) +
          " ran\n" + Slurp(log);
    return -2;
  }
  kill(victim, SIGKILL);
  const int code = WaitFor(launcher, std::chrono::seconds(restarts > 0 ? 60 : 30));
  if (code == -1) kill(launcher, SIGKILL);
  out = Slurp(log);
  return code;
}

// " a b c" for {a, b, c}: arguments for a shell command line.
std::string Joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += " " + a;
  return s;
}

// A model-parallel Lasso path over CorrelatedData that checkpoints every 20 ms, by coordinate
// descent in scheduled blocks (--solve-keys 0: many short rounds, long enough a run to be
// killed in the middle of a fit).
std::vector<std::string> CorrelatedPath(const std::string& data) {
  return {"--data",
          data,
          "--path",
          testing::Sized("6", "4"),
          "--path-ratio",
          "0.003",
          "--workers",
          "2",
          "--solve-keys",
          "0",
          "--checkpoint-every",
          "20ms"};
}

// The objective of each λ of a path file (lambda, intercept, coefficients, objective, kkt).
std::vector<double> PathObjectives(const std::string& path, std::size_t features) {
  const std::vector<double> v = Numbers(path);
  std::vector<double> out;
  for (std::size_t at = features + 2; at < v.size(); at += features + 4) out.push_back(v[at]);
  return out;
}

void ExpectSameObjectives(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (std::size_t k = 0; k < got.size(); ++k) {
    EXPECT_NEAR(got[k], want[k], 1e-6 * std::abs(want[k])) << "lambda " << k;
  }
}

// Model-parallel, checkpoints within each fit: a worker process is killed mid-path; --resume
// goes on from the last checkpoint (the finished λ are not fitted again) to the objectives of
// an uninterrupted run.
TEST(MultiProcessTest, AKilledWorkerProcessResumesFromItsCheckpoint) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  testing::TempDir dir;
  const std::string data = CorrelatedData(dir), log = dir.Path("log"), ck = dir.Path("ck");
  const std::vector<std::string> fit = CorrelatedPath(data);
  auto joined = Joined;
  const std::string full = dir.Path("full.csv");
  ASSERT_EQ(Shell(kCli + " lasso" + joined(fit) + " --checkpoint-dir " + dir.Path("ck0") +
                      " --quiet --output " + full,
                  log),
            0)
      << Slurp(log);
  std::string out;
  const std::string killed = dir.Path("killed.csv");
  std::vector<std::string> run = {"lasso"};
  run.insert(run.end(), fit.begin(), fit.end());
  run.insert(run.end(), {"--checkpoint-dir", ck, "--quiet", "--output", killed});
  // Past the fifth checkpoint: the first λ are done, the current one is under way.
  const int code = KillAfterCheckpoint(run, ck, 5, 2, log, out);
  ASSERT_GT(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("process 2 was killed by signal 9"));
  EXPECT_FALSE(std::filesystem::exists(killed)) << "a failed run left its output";
  const std::string resumed = dir.Path("resumed.csv");
  ASSERT_EQ(Shell(kCli + " launch -n 3 -- " + kCli + " lasso" + joined(fit) + " --resume " + ck +
                      " --output " + resumed,
                  log),
            0)
      << Slurp(log);
  EXPECT_THAT(Slurp(log), HasSubstr("resumed from " + ck + "/ckpt-"));
  ExpectSameObjectives(PathObjectives(resumed, 100), PathObjectives(full, 100));
}

// `tessera launch --restarts 1`: after the kill it starts all three again, and the command,
// seeing TESSERA_RESTART and its checkpoint directory, resumes on its own.
TEST(MultiProcessTest, TheLauncherRestartsAKilledRunWhichResumes) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  testing::TempDir dir;
  const std::string data = CorrelatedData(dir), log = dir.Path("log"), ck = dir.Path("ck");
  const std::vector<std::string> fit = CorrelatedPath(data);
  const std::string joined = Joined(fit);
  const std::string full = dir.Path("full.csv"), out_csv = dir.Path("out.csv");
  ASSERT_EQ(Shell(kCli + " lasso" + joined + " --checkpoint-dir " + dir.Path("ck0") +
                      " --quiet --output " + full,
                  log),
            0)
      << Slurp(log);
  std::vector<std::string> run = {"lasso"};
  run.insert(run.end(), fit.begin(), fit.end());
  run.insert(run.end(), {"--checkpoint-dir", ck, "--output", out_csv});
  std::string out;
  ASSERT_EQ(KillAfterCheckpoint(run, ck, 5, 2, log, out, /*restarts=*/1), 0) << out;
  EXPECT_THAT(out, HasSubstr("starting all 3 processes again (restart 1 of 1)"));
  EXPECT_THAT(out, HasSubstr("resumed from " + ck + "/ckpt-"));
  ExpectSameObjectives(PathObjectives(out_csv, 100), PathObjectives(full, 100));
}

// Data-parallel, checkpoints after each λ: kill -9 the process of a worker, resume, kill the
// process of the server shard, resume again: the path ends at the uninterrupted objectives.
// Placement (3 processes, 1 shard, 2 workers): driver and worker 1 on process 0, the shard on
// process 1, worker 0 on process 2.
TEST(MultiProcessTest, KilledWorkerAndShardProcessesResumeFromTheirCheckpoints) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  testing::TempDir dir;
  const std::string data = CorrelatedData(dir), log = dir.Path("log"), ck = dir.Path("ck");
  const std::vector<std::string> fit = {
      "lasso",  "--data",        data,        "--path", testing::Sized("8", "5"),
      "--mode", "data-parallel", "--servers", "1",      "--workers",
      "2"};
  const std::string joined = Joined(fit);
  const std::string full = dir.Path("full.csv");
  ASSERT_EQ(Shell(kCli + joined + " --quiet --output " + full, log), 0) << Slurp(log);
  std::string out;
  std::vector<std::string> first = fit, second = fit;
  first.insert(first.end(), {"--checkpoint-dir", ck, "--quiet", "--output", dir.Path("x.csv")});
  ASSERT_GT(KillAfterCheckpoint(first, ck, 0, 2, log, out), 0) << out;  // a worker
  const std::uint64_t after_first = NewestCheckpoint(ck);
  second.insert(second.end(), {"--resume", ck, "--quiet", "--output", dir.Path("x.csv")});
  ASSERT_GT(KillAfterCheckpoint(second, ck, after_first, 1, log, out), 0) << out;  // the shard
  EXPECT_THAT(out, HasSubstr("process 1 was killed by signal 9"));
  const std::string resumed = dir.Path("resumed.csv");
  ASSERT_EQ(
      Shell(kCli + " launch -n 3 -- " + kCli + joined + " --resume " + ck + " --output " + resumed,
            log),
      0)
      << Slurp(log);
  EXPECT_THAT(Slurp(log), HasSubstr("resumed from " + ck + "/ckpt-"));
  ExpectSameObjectives(PathObjectives(resumed, 100), PathObjectives(full, 100));
}

// A run killed and resumed: `fit` runs whole into `full` (its --output or --summary file,
// `out_flag`), then with `checkpointing` flags until `dir`/ck holds a checkpoint past `after`,
// when process `rank` is killed with -9 (-1: `fit` runs alone, not under `tessera launch -n
// 3`); the run must fail without leaving its file. Then `--resume` writes `resumed`; `log` is
// what the resumed run printed.
struct KilledAndResumed {
  std::string full, resumed, log;
};
void KillAndResume(const testing::TempDir& dir, const std::vector<std::string>& fit,
                   const std::vector<std::string>& checkpointing, const std::string& out_flag,
                   std::uint64_t after, int rank, KilledAndResumed& r) {
  const std::string log = dir.Path("log"), ck = dir.Path("ck"), killed = dir.Path("killed.csv");
  const std::string joined = Joined(fit);
  r.full = dir.Path("full.csv");
  r.resumed = dir.Path("resumed.csv");
  ASSERT_EQ(Shell(kCli + joined + " --quiet " + out_flag + " " + r.full, log), 0) << Slurp(log);
  std::vector<std::string> run = fit;
  run.insert(run.end(), {"--checkpoint-dir", ck});
  run.insert(run.end(), checkpointing.begin(), checkpointing.end());
  run.insert(run.end(), {"--quiet", out_flag, killed});
  std::string out;
  const int code = KillAfterCheckpoint(run, ck, after, rank, log, out);
  if (rank < 0) {
    ASSERT_EQ(code, 128 + SIGKILL) << out;
  } else {
    ASSERT_GT(code, 0) << out;
  }
  EXPECT_FALSE(std::filesystem::exists(killed)) << "a killed run left its file";
  const std::string launch = rank < 0 ? "" : " launch -n 3 -- " + kCli;
  ASSERT_EQ(
      Shell(kCli + launch + joined + " --resume " + ck + " " + out_flag + " " + r.resumed, log), 0)
      << Slurp(log);
  r.log = Slurp(log);
  EXPECT_THAT(r.log, HasSubstr("resumed from " + ck + "/ckpt-"));
}

// Data-parallel Lasso, checkpoints within a fit (at epoch-end barriers every 5 ms): the
// process of worker 0 is killed in the middle of the second λ's fit; the resumed run goes on
// from the part-fitted coefficients and ends at the uninterrupted objectives.
TEST(MultiProcessTest, AKilledDataParallelFitResumesFromACheckpointWithinIt) {
  TESSERA_SKIP_UNDER_TSAN();
  testing::TempDir dir;
  const std::vector<std::string> fit = {
      "lasso", "--data", CorrelatedData(dir), "--path",    "2", "--path-ratio",
      "0.005", "--mode", "data-parallel",     "--servers", "1", "--workers",
      "2"};
  KilledAndResumed r;
  KillAndResume(dir, fit, {"--checkpoint-every", "5ms"}, "--output", 3, 2, r);
  if (HasFatalFailure()) return;
  EXPECT_THAT(r.log, HasSubstr("1 of 2 lambdas done, the next one part-fitted"));
  ExpectSameObjectives(PathObjectives(r.resumed, 100), PathObjectives(r.full, 100));
}

// Data-parallel MF, checkpoints after every epoch: the process of worker 0 (process 2, with
// 3 processes, 1 shard and 2 workers) is killed; the resumed run ends at the uninterrupted
// objective and RMSEs within noise (each worker's shuffle is seeded per epoch, so only the
// order in which the shard adds pushes differs, and SGD carries that last-bit difference on:
// a resumed and an uninterrupted run once differed by 1.04e-3 of the training RMSE after 25
// epochs). In one process a resumed run ends bit for bit where the uninterrupted one does
// (MfTest.DataParallelSgdResumesWithItsStepState).
TEST(MultiProcessTest, AKilledMfRunResumesFromItsCheckpoint) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  testing::TempDir dir;
  const std::string epochs = testing::Sized("25", "10");
  const std::vector<std::string> fit = {
      "mf",       "--mode",        "data-parallel", "--train", base,        "--test", test,
      "--epochs", epochs,          "--rank",        "20",      "--servers", "1",      "--workers",
      "2",        "--consistency", "sbp:0"};
  KilledAndResumed r;
  KillAndResume(dir, fit, {}, "--summary", 3, 2, r);
  if (HasFatalFailure()) return;
  // Under sbp:0 a read sees exactly the clocks before its own (under bsp also a faster
  // worker's pushes of its clock, which made two uninterrupted runs differ by more than 0.3%
  // from LIBMF's start), so the resumed run differs from the whole one only where the
  // checkpoint rounded.
  const std::vector<double> want = Numbers(r.full), got = Numbers(r.resumed);
  ASSERT_EQ(got.size(), want.size());
  for (int i : {0, 1, 2}) EXPECT_NEAR(got[i], want[i], 3e-3 * want[i]) << "value " << i;
  EXPECT_EQ(got[3], std::stod(epochs)) << "epochs";
}

// Data-parallel LDA, checkpoints after every sweep: the process of worker 0 is killed; the
// resumed run (topics restored, the servers' counts rebuilt from them) ends within the
// run-to-run noise of the sampler.
TEST(MultiProcessTest, AKilledLdaRunResumesFromItsCheckpoint) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  TESSERA_REQUIRE_DATA(vocab, "uci-bow-kos/vocab.kos.txt.gz");
  testing::TempDir dir;
  const std::string sweeps = testing::Sized("20", "8");
  const std::vector<std::string> fit = {
      "lda",       "--mode", "data-parallel", "--corpus", docword,     "--vocab", vocab,
      "--topics",  "20",     "--iterations",  sweeps,     "--heldout", "0.1",     "--no-files",
      "--workers", "2",      "--servers",     "1"};
  KilledAndResumed r;
  KillAndResume(dir, fit, {}, "--summary", 3, 2, r);
  if (HasFatalFailure()) return;
  // objective, ll/token, perplexity, iterations, ...
  const std::vector<double> want = Numbers(r.full), got = Numbers(r.resumed);
  ASSERT_EQ(got.size(), want.size());
  EXPECT_NEAR(got[1], want[1], 0.02 * std::abs(want[1])) << "log-likelihood per token";
  EXPECT_NEAR(got[2], want[2], 0.08 * want[2]) << "held-out perplexity";
  EXPECT_EQ(got[3], std::stod(sweeps)) << "sweeps";
}

// Model-parallel MF (CCD++ and rotation SGD) and LDA across 3 processes, checkpoints at every
// epoch's or sweep's end: the process of worker 0 is killed with -9; --resume ends where the
// uninterrupted run does (CCD++ to rounding: its state is the factors) or within the sampler's
// noise (SGD, LDA).
TEST(MultiProcessTest, KilledModelParallelMfAndLdaRunsResumeFromTheirCheckpoints) {
  TESSERA_SKIP_UNDER_TSAN();
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  struct Case {
    std::vector<std::string> fit;
    double tolerance;  // relative, on the first two summary values
    std::size_t steps_at;
    double steps;  // epochs or sweeps
  };
  const std::string epochs = testing::Sized("60", "15"), sweeps = testing::Sized("40", "12");
  const std::vector<Case> cases = {
      {{"mf", "--algorithm", "ccd++", "--train", base, "--test", test, "--epochs", epochs, "--rank",
        "20", "--workers", "2"},
       1e-9,
       3,
       std::stod(epochs)},
      // Rotation SGD: a resumed run shuffles from a stream seeded by the rounds done, so it
      // ends within SGD's noise of the uninterrupted run, not on it.
      {{"mf", "--algorithm", "sgd", "--train", base, "--test", test, "--epochs", epochs, "--rank",
        "20", "--workers", "2"},
       0.01,
       3,
       std::stod(epochs)},
      {{"lda", "--corpus", docword, "--topics", "20", "--iterations", sweeps, "--evaluate-every",
        testing::Sized("10", "4"), "--no-files", "--workers", "2"},
       0.02,
       2,  // no perplexity before it
       std::stod(sweeps)}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.fit[0] + " " + c.fit[2]);
    testing::TempDir dir;
    KilledAndResumed r;
    // Worker 0's process of three (each worker in a process of its own) is killed.
    KillAndResume(dir, c.fit, {}, "--summary", testing::kSanitized ? 3 : 5, 1, r);
    if (HasFatalFailure()) return;
    const std::vector<double> want = Numbers(r.full), got = Numbers(r.resumed);
    ASSERT_EQ(got.size(), want.size());
    std::printf("%s: resumed %.6f %.6f, uninterrupted %.6f %.6f\n", c.fit[0].c_str(), got[0],
                got[1], want[0], want[1]);
    for (int i : {0, 1}) {
      EXPECT_NEAR(got[i], want[i], c.tolerance * std::abs(want[i])) << "value " << i;
    }
    EXPECT_EQ(got[c.steps_at], c.steps);
  }
}

TEST(MultiProcessTest, AStoppedProcessIsLostAfterTheSilenceTimeout) {
  const Interrupted r = InterruptMidRun(1, SIGSTOP);  // alive, connections open, silent
  ASSERT_NE(r.code, -1) << "no exit 30 s after the stop\n" << r.out;
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("lost process 1: silent for 3000 ms"));
  // 3 s of silence, then --grace 2 for the stopped one before it is terminated.
  EXPECT_GT(r.seconds, 2.5) << r.out;
  EXPECT_LT(r.seconds, 12) << r.out;
}

TEST(MultiProcessTest, BadInputIsACleanErrorInEveryProcess) {
  testing::TempDir dir;
  const std::string bad = dir.File("bad.csv", "a,y\n1,2\n3\n"), log = dir.Path("log"),
                    out = dir.Path("out.csv");
  const auto start = Clock::now();
  const int code = Shell(
      kCli + " launch -n 3 -- tessera lasso --data " + bad + " --workers 2 --output " + out, log);
  EXPECT_EQ(code, 1) << Slurp(log);
  EXPECT_THAT(Slurp(log), HasSubstr("bad.csv:3: expected 2 fields"));
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(20));
  // Flags that leave a process without work, and a launch without a command.
  EXPECT_EQ(
      Shell(kCli + " launch -n 3 -- tessera lasso --data " + Diabetes() + " --workers 1", log), 1);
  EXPECT_THAT(Slurp(log), HasSubstr("leaves process 2 without work"));
  EXPECT_NE(Shell(kCli + " launch -n 2", log), 0);
  EXPECT_NE(Shell(kCli + " launch -n 0 -- tessera lasso", log), 0);
  EXPECT_THAT(Slurp(log), HasSubstr("-n must be between 1 and 4096"));
}

}  // namespace
}  // namespace tessera
