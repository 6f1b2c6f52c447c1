// The `tessera` command and the example app, run as real processes: exit codes and messages.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <pty.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/test_util.h"

namespace tessera {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string output;  // stdout and stderr together
};

Result RunProgram(const std::string& program, const std::string& args) {
  const std::string cmd = program + " " + args + " 2>&1";
  Result r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

Result RunCli(const std::string& args) { return RunProgram(TESSERA_CLI, args); }

std::string Diabetes() {
  return std::string(TESSERA_SOURCE_DIR) + "/datasets/diabetes/lars_diabetes_x.csv.gz";
}

TEST(CliTest, HelpListsTheFlags) {
  auto r = RunCli("lasso --help");
  EXPECT_EQ(r.code, 0);
  for (const char* flag : {"--data", "--format", "--lambda", "--path", "--workers", "--scheduler",
                           "--pipeline-depth", "--trace", "--output"}) {
    EXPECT_THAT(r.output, HasSubstr(flag));
  }
}

TEST(CliTest, FitsDiabetesAndWritesCoefficientsAndTrace) {
  testing::TempDir dir;
  const std::string coef = dir.Path("coef.csv"), trace = dir.Path("trace.csv");
  auto r = RunCli("lasso --data " + Diabetes() +
                  " --lambda 0.214804357553 --workers 2 --scheduler "
                  "dependency --output " +
                  coef + " --trace " + trace);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("objective 1807.16368"));
  std::ifstream in(coef);
  std::string header, intercept, age, sex;
  std::getline(in, header);
  std::getline(in, intercept);
  std::getline(in, age);
  std::getline(in, sex);
  EXPECT_EQ(header, "name,value");
  EXPECT_THAT(intercept, HasSubstr("(intercept),152.13348"));
  EXPECT_EQ(age, "age,0");
  EXPECT_THAT(sex, HasSubstr("sex,-63.75"));
  EXPECT_TRUE(std::filesystem::exists(trace));
  EXPECT_TRUE(dir.NoTempFiles());
}

TEST(CliTest, PathWritesOneRowPerLambda) {
  testing::TempDir dir;
  const std::string out = dir.Path("path.csv");
  auto r = RunCli("lasso --data " + Diabetes() + " --path 5 --quiet --output " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  std::ifstream in(out);
  int lines = 0;
  for (std::string l; std::getline(in, l);) ++lines;
  EXPECT_EQ(lines, 6);
  // Without --quiet: a line per λ and which ones took longest.
  r = RunCli("lasso --data " + Diabetes() + " --path 5");
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("path: 5 lambdas, "));
  EXPECT_THAT(r.output, HasSubstr("; the hardest at "));
}

// A damaged newest checkpoint is named and skipped; the run goes on from the one before it.
// Checkpoints of another problem or λ sequence, and bad checkpoint flags, are clear errors.
TEST(CliTest, ResumeSkipsADamagedCheckpointAndRefusesAnotherProblems) {
  testing::TempDir dir;
  const std::string ck = dir.Path("ck"), full = dir.Path("full.csv"), out = dir.Path("out.csv");
  const std::string path = "lasso --data " + Diabetes() + " --path 6 ";
  auto r = RunCli(path + "--checkpoint-dir " + ck + " --quiet --output " + full);
  ASSERT_EQ(r.code, 0) << r.output;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(ck)) {
    if (e.path().filename() != "LOCK") files.push_back(e.path());  // the writer's lock file
  }
  std::sort(files.begin(), files.end());
  ASSERT_EQ(files.size(), 3u);  // the newest three of six (one after each λ)
  {
    std::fstream f(files.back(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('!');
  }
  r = RunCli(path + "--resume " + ck + " --output " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr("skipped a damaged checkpoint: " + files.back() + ": checksum mismatch"));
  EXPECT_THAT(r.output, HasSubstr("resumed from " + files[1] + ": 5 of 6 lambdas done"));
  std::ifstream a(full), b(out);
  std::stringstream sa, sb;
  sa << a.rdbuf();
  sb << b.rdbuf();
  EXPECT_EQ(sa.str(), sb.str());  // the last λ again from the fifth's coefficients: the same

  r = RunCli(path + "--standardize --resume " + ck);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("written for another problem"));
  r = RunCli("lasso --data " + Diabetes() + " --path 4 --resume " + ck);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("written for another λ sequence"));
  r = RunCli(path + "--resume " + dir.Path("empty"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.output, HasSubstr("empty: no checkpoint"));
  r = RunCli(path + "--checkpoint-every 10 --quiet");
  EXPECT_THAT(r.output, HasSubstr("--checkpoint-every needs --checkpoint-dir or --resume"));
  r = RunCli(path + "--checkpoint-dir " + ck + " --checkpoint-every soon");
  EXPECT_THAT(r.output, HasSubstr("--checkpoint-every 'soon': expected a positive duration"));
}

TEST(CliTest, DataParallelModeFitsDiabetes) {
  testing::TempDir dir;
  const std::string coef = dir.Path("coef.csv"), trace = dir.Path("trace.csv");
  auto r = RunCli("lasso --data " + Diabetes() +
                  " --lambda 0.214804357553 --mode data-parallel --servers 2 --workers 3 "
                  "--consistency ssp:2 --partition disjoint_random --output " +
                  coef + " --trace " + trace);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("data-parallel: 2 servers, 3 workers"));
  EXPECT_THAT(r.output, HasSubstr("consistency ssp:2"));
  EXPECT_THAT(r.output, HasSubstr("objective 1807.16"));
  std::ifstream in(coef);
  std::string header, intercept;
  std::getline(in, header);
  std::getline(in, intercept);
  EXPECT_THAT(intercept, HasSubstr("(intercept),152.13"));
  EXPECT_TRUE(std::filesystem::exists(trace));
}

// The main use of `compare`: both modes on the same data and λ, a table, a CSV and a PNG.
TEST(CliTest, CompareRunsBothModesAndWritesTableCsvAndPlot) {
  testing::TempDir dir;
  const std::string out = dir.Path("cmp");
  auto r = RunCli("compare lasso --data " + Diabetes() +
                  " --lambda-ratio 0.01 --workers 2 --consistency bsp --out " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("model-parallel  1482.109"));
  EXPECT_THAT(r.output, HasSubstr("data-parallel   1482.109"));
  EXPECT_TRUE(std::filesystem::exists(out + ".csv"));
  std::ifstream summary(out + "-summary.csv");
  int rows = 0;
  for (std::string l; std::getline(summary, l);) ++rows;
  EXPECT_EQ(rows, 3);
  if (r.output.find("PNG skipped") == std::string::npos) {
    EXPECT_GT(std::filesystem::file_size(out + ".png"), 1000u);
  }
  // The output prefix is a file name, never gnuplot script: one with quotes and a system()
  // call names the files and runs nothing.
  // (The marker is relative: gnuplot would make it in the working directory.)
  const std::string marker = "tessera-injected-" + std::to_string(getpid());
  const std::string odd = dir.Path("q'\nsystem('touch " + marker + "')\n'");
  auto quoted = RunCli("compare lasso --data " + Diabetes() +
                       " --lambda-ratio 0.1 --budget-rounds 5 --out \"" + odd + "\"");
  ASSERT_EQ(quoted.code, 0) << quoted.output;
  EXPECT_TRUE(std::filesystem::exists(odd + ".csv"));
  if (quoted.output.find("PNG skipped") == std::string::npos) {
    EXPECT_TRUE(std::filesystem::exists(odd + ".png"));
  }
  EXPECT_FALSE(std::filesystem::exists(marker));
  std::filesystem::remove(marker);
  // A run that fails says why, and compare writes nothing.
  const std::string bad = dir.File("bad.csv", "a,y\n1,2\n3\n");
  auto failed = RunCli("compare lasso --data " + bad + " --out " + dir.Path("none"));
  EXPECT_EQ(failed.code, 1);
  EXPECT_THAT(failed.output, HasSubstr("bad.csv:3: expected 2 fields"));
  EXPECT_THAT(failed.output, HasSubstr("the model-parallel run failed (exit 1)"));
  EXPECT_FALSE(std::filesystem::exists(dir.Path("none.csv")));
  // An equal round budget stops both runs early.
  auto budget = RunCli("compare lasso --data " + Diabetes() +
                       " --lambda-ratio 0.001 --budget-rounds 5 --out " + out);
  ASSERT_EQ(budget.code, 0) << budget.output;
  EXPECT_THAT(budget.output, HasSubstr("max rounds"));
  EXPECT_THAT(budget.output, HasSubstr("max epochs"));
}

// A small ratings file: 30 users x 20 items of a rank-2 matrix, every third entry.
std::string SmallRatings(const testing::TempDir& dir) {
  std::string text;
  for (int u = 0; u < 30; ++u) {
    for (int i = 0; i < 20; ++i) {
      if ((u + i) % 3 != 0) continue;
      const double r = 3 + std::sin(u) * std::cos(i) + 0.5 * std::cos(u * 0.7) * std::sin(i * 1.3);
      text += "user" + std::to_string(u) + "\titem" + std::to_string(i) + "\t" + std::to_string(r) +
              "\t881250949\n";
    }
  }
  return dir.File("ratings.tsv", text);
}

// `tessera mf --cv 5` on MovieLens-100K: every rating is held out exactly once (each fold's
// training, held-out and skipped counts add up to the 100,000), the per-fold and pooled test
// RMSE are near what the u1 split's test set gives (0.92), and the same in 3 processes.
TEST(CliTest, MfCrossValidationHoldsOutEveryRatingOnce) {
  TESSERA_REQUIRE_DATA(data, "movielens-100k/u.data.gz");
  const std::string fit = "mf --train " + data +
                          " --cv 5 --rank 20 --epochs 20 --algorithm sgd "
                          "--workers 2";
  auto r = RunCli(fit);
  ASSERT_EQ(r.code, 0) << r.output;
  std::istringstream lines(r.output);
  int folds = 0;
  std::size_t held_out_total = 0;
  for (std::string line; std::getline(lines, line);) {
    std::size_t train = 0, held = 0, skipped = 0;
    double train_rmse = 0, test_rmse = 0;
    int k = 0, of = 0;
    if (std::sscanf(line.c_str(),
                    "fold %d/%d train %zu held out %zu (%zu with an unseen user or item skipped) "
                    "train RMSE %lf test RMSE %lf",
                    &k, &of, &train, &held, &skipped, &train_rmse, &test_rmse) != 7) {
      continue;
    }
    ++folds;
    EXPECT_EQ(train + held + skipped, 100000u) << line;
    held_out_total += held + skipped;
    EXPECT_GT(test_rmse, 0.85) << line;
    EXPECT_LT(test_rmse, 0.97) << line;
    EXPECT_LT(train_rmse, test_rmse) << line;
  }
  EXPECT_EQ(folds, 5) << r.output;
  EXPECT_EQ(held_out_total, 100000u);
  const auto at = r.output.find("cross-validation: test RMSE ");
  ASSERT_NE(at, std::string::npos);
  const std::string pooled = r.output.substr(at, 40);
  auto three = RunCli("launch -n 3 -- " + std::string(TESSERA_CLI) + " " + fit + " --quiet");
  ASSERT_EQ(three.code, 0) << three.output;
  EXPECT_THAT(three.output, HasSubstr(pooled));
  auto bad = RunCli(fit + " --test " + data);
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.output, HasSubstr("--cv holds out folds of --train itself"));
}

TEST(CliTest, MfTrainsWritesAModelAndAnswersQueries) {
  testing::TempDir dir;
  const std::string ratings = SmallRatings(dir), model = dir.Path("model.txt");
  // The normal start: the training mean plus biases (the uniform start's model is below).
  auto r =
      RunCli("mf --train " + ratings + " --test " + ratings +
             " --rank 4 --lambda 0.01 --epochs 10 --workers 2 --init normal --output " + model);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("200 ratings, 30 users x 20 items"));
  EXPECT_THAT(r.output, HasSubstr("epoch  10  train RMSE"));
  auto one = RunCli("mf predict --model " + model + " --user user3 --item item0");
  ASSERT_EQ(one.code, 0) << one.output;
  EXPECT_GT(std::stod(one.output), 1.0);
  auto top = RunCli("mf predict --model " + model + " --user user3 --top-n 3 --exclude " + ratings);
  ASSERT_EQ(top.code, 0) << top.output;
  EXPECT_THAT(top.output, ::testing::Not(HasSubstr("item0\t")));  // rated by user3: excluded
  auto pairs = RunCli("mf predict --model " + model + " --pairs " + ratings + " --predictions " +
                      dir.Path("p.csv"));
  ASSERT_EQ(pairs.code, 0) << pairs.output;
  EXPECT_THAT(pairs.output, HasSubstr("200 pairs predicted; RMSE"));
  {  // On the training ratings: the training RMSE the fit printed after its last epoch.
    const auto fitted = r.output.find("epoch  10  train RMSE ");
    const auto predicted = pairs.output.find("; RMSE ");
    ASSERT_NE(fitted, std::string::npos);
    ASSERT_NE(predicted, std::string::npos);
    EXPECT_NEAR(std::stod(pairs.output.substr(predicted + 7)),
                std::stod(r.output.substr(fitted + 22)), 0.5e-4 + 1e-12);
  }
  // One line out per line in, unseen ids included: the mean, plus the known side's bias.
  const std::string query = dir.File("query.tsv",
                                     "user3\titem0\t4\nnobody\titem0\t3\nuser3\tnothing\t3\n"
                                     "nobody\tnothing\t3\n");
  auto unseen = RunCli("mf predict --model " + model + " --pairs " + query + " --predictions " +
                       dir.Path("q.csv"));
  ASSERT_EQ(unseen.code, 0) << unseen.output;
  EXPECT_THAT(unseen.output,
              HasSubstr("4 pairs predicted (3 with a user or item the model has not seen: the "
                        "mean rating plus the known side's bias); RMSE "));
  EXPECT_THAT(unseen.output, HasSubstr(" over the 1 it knows, "));
  std::vector<std::vector<std::string>> rows;
  {
    std::istringstream in(testing::Slurp(dir.Path("q.csv")));
    for (std::string line; std::getline(in, line);) {
      std::vector<std::string> cells;
      std::istringstream cs(line);
      for (std::string c; std::getline(cs, c, ',');) cells.push_back(c);
      rows.push_back(cells);
    }
  }
  ASSERT_EQ(rows.size(), 5u);  // the header and one row per query line
  EXPECT_EQ(rows[1][0] + "," + rows[1][1], "user3,item0");
  EXPECT_EQ(rows[2][0] + "," + rows[2][1], "nobody,item0");
  EXPECT_EQ(rows[4][0] + "," + rows[4][1], "nobody,nothing");
  EXPECT_DOUBLE_EQ(std::stod(rows[1][2]), std::stod(one.output));
  // The model file: `mean M` on its third line, then the factor rows; with biases an item's
  // bias is its last column and a user's the one before its last.
  std::istringstream model_in(testing::Slurp(model));
  std::string line, mean_line, user3, item0;
  while (std::getline(model_in, line)) {
    if (line.rfind("mean ", 0) == 0) mean_line = line.substr(5);
    if (line.rfind("u user3 ", 0) == 0) user3 = line;
    if (line.rfind("i item0 ", 0) == 0) item0 = line;
  }
  const auto last = [](const std::string& l, int from_end) {
    std::vector<std::string> w;
    std::istringstream ws(l);
    for (std::string x; ws >> x;) w.push_back(x);
    return std::stod(w[w.size() - 1 - static_cast<std::size_t>(from_end)]);
  };
  const double mean = std::stod(mean_line);
  EXPECT_NEAR(std::stod(rows[2][2]), mean + last(item0, 0), 1e-12);
  EXPECT_NEAR(std::stod(rows[3][2]), mean + last(user3, 1), 1e-12);
  EXPECT_NEAR(std::stod(rows[4][2]), mean, 1e-12);
  // From the uniform start (SGD's default, LIBMF's) the model has no global mean (μ 0, no
  // biases): an unseen id gets the training ratings' average, which the file keeps.
  const std::string plain = dir.Path("plain.txt");
  auto u = RunCli("mf --train " + ratings + " --rank 4 --epochs 3 --quiet --output " + plain);
  ASSERT_EQ(u.code, 0) << u.output;
  std::string average;
  {
    std::istringstream in(testing::Slurp(plain));
    for (std::string l; std::getline(in, l);) {
      if (l.rfind("mean ", 0) == 0) {
        EXPECT_EQ(l, "mean 0");
      } else if (l.rfind("biases ", 0) == 0) {
        EXPECT_EQ(l, "biases 0");
      } else if (l.rfind("average ", 0) == 0) {
        average = l.substr(8);
      }
    }
  }
  ASSERT_FALSE(average.empty());
  EXPECT_NEAR(std::stod(average), mean, 1e-12);  // the normal start's μ: the same mean
  auto plain_unseen = RunCli("mf predict --model " + plain + " --pairs " + query +
                             " --predictions " + dir.Path("u.csv"));
  ASSERT_EQ(plain_unseen.code, 0) << plain_unseen.output;
  EXPECT_THAT(plain_unseen.output, HasSubstr("the model has not seen: the mean rating of the "
                                             "training set); RMSE "));
  const std::string predicted = testing::Slurp(dir.Path("u.csv"));
  for (const char* id : {"nobody,item0,", "user3,nothing,", "nobody,nothing,"}) {
    const auto at = predicted.find(id);
    ASSERT_NE(at, std::string::npos) << id;
    EXPECT_NEAR(std::stod(predicted.substr(at + std::strlen(id))), std::stod(average), 1e-12) << id;
  }
  auto unknown = RunCli("mf predict --model " + model + " --user nobody --item item0");
  EXPECT_EQ(unknown.code, 1);
  EXPECT_THAT(unknown.output, HasSubstr("user 'nobody' is not in the model"));
  auto bad = RunCli("mf --train " + dir.File("bad.tsv", "1 2 5\n1 2\n"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.output, HasSubstr("bad.tsv:2: expected 'user item rating [timestamp]'"));
  auto dp = RunCli("mf --train " + ratings +
                   " --rank 4 --epochs 3 --mode data-parallel "
                   "--consistency essp:1 --servers 2 --workers 2 --batch-size 4");
  ASSERT_EQ(dp.code, 0) << dp.output;
  EXPECT_THAT(dp.output, HasSubstr("data-parallel SGD rank 4"));
  EXPECT_THAT(dp.output, HasSubstr("consistency essp:1"));
  auto dsgd = RunCli("mf --train " + ratings + " --rank 4 --epochs 3 --algorithm sgd --workers 3");
  ASSERT_EQ(dsgd.code, 0) << dsgd.output;
  EXPECT_THAT(dsgd.output, HasSubstr("model-parallel rotation SGD rank 4"));
  auto bad_algorithm = RunCli("mf --train " + ratings + " --algorithm als");
  EXPECT_EQ(bad_algorithm.code, 1);
  EXPECT_THAT(bad_algorithm.output, HasSubstr("--algorithm must be 'ccd++' or 'sgd', got 'als'"));
  auto bad_consistency = RunCli("mf --train " + ratings + " --mode data-parallel --consistency x");
  EXPECT_EQ(bad_consistency.code, 1);
  EXPECT_THAT(bad_consistency.output, HasSubstr("--consistency: unknown consistency model 'x'"));
  const std::string cmp = dir.Path("cmp");
  auto compare = RunCli("compare mf --train " + ratings + " --test " + ratings +
                        " --rank 4 --workers 2 --budget-rounds 5 --out " + cmp);
  ASSERT_EQ(compare.code, 0) << compare.output;
  EXPECT_THAT(compare.output, HasSubstr("train_rmse test_rmse"));
  EXPECT_THAT(compare.output, HasSubstr("model-parallel"));
  EXPECT_THAT(compare.output, HasSubstr("data-parallel"));
  EXPECT_TRUE(std::filesystem::exists(cmp + ".csv"));
  auto no_train = RunCli("mf --rank 4");
  EXPECT_EQ(no_train.code, 1);
  EXPECT_THAT(no_train.output, HasSubstr("--train is required"));
}

// LDA on the tiny Reuters corpus: progress, top words, the topics and model files, held-out
// perplexity, both modes, compare; bad input is a file:line error.
TEST(CliTest, LdaFitsWritesTopicsAndModelAndCompares) {
  TESSERA_REQUIRE_DATA(docword, "reuters21578-tm/docword.reuters_crude_acq.txt.gz");
  const std::string vocab = testing::DataDir() + "/reuters21578-tm/vocab.reuters_crude_acq.txt.gz";
  testing::TempDir dir;
  const std::string topics = dir.Path("topics.txt"), model = dir.Path("model.txt");
  auto r = RunCli("lda --corpus " + docword + " --vocab " + vocab +
                  " --topics 5 --iterations 30 --workers 2 --evaluate-every 10 --heldout 0.2 "
                  "--topics-out " +
                  topics + " --output " + model);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("2171 words"));
  EXPECT_THAT(r.output, HasSubstr("model-parallel, mh sampler, K 5"));
  EXPECT_THAT(r.output, HasSubstr("iteration   30  log-likelihood/token"));
  EXPECT_THAT(r.output, HasSubstr("held-out perplexity"));
  EXPECT_THAT(r.output, HasSubstr("topic   4:"));
  std::ifstream t(topics);
  std::string header, line;
  std::getline(t, header);
  int lines = 0;
  while (std::getline(t, line)) {
    EXPECT_THAT(line, ::testing::StartsWith("topic " + std::to_string(lines) + " "));
    ++lines;
  }
  EXPECT_EQ(lines, 5);
  std::ifstream m(model);
  std::getline(m, line);
  EXPECT_EQ(line, "tessera-lda 1");
  auto dp = RunCli("lda --corpus " + docword + " --vocab " + vocab +
                   " --topics 5 --iterations 5 --workers 2 --mode data-parallel --servers 2 "
                   "--consistency essp:1 --batch-size 10 --no-files");
  ASSERT_EQ(dp.code, 0) << dp.output;
  EXPECT_THAT(dp.output, HasSubstr("consistency essp:1, update frequency batch, batch 10"));
  EXPECT_THAT(dp.output, ::testing::Not(HasSubstr("wrote")));
  const std::string cmp = dir.Path("cmp");
  auto compare = RunCli("compare lda --corpus " + docword + " --vocab " + vocab +
                        " --topics 5 --workers 2 --budget-rounds 10 --out " + cmp);
  ASSERT_EQ(compare.code, 0) << compare.output;
  EXPECT_THAT(compare.output, HasSubstr("ll_per_token"));
  EXPECT_TRUE(std::filesystem::exists(cmp + "-summary.csv"));
  auto bad =
      RunCli("lda --corpus " + dir.File("docword.bad.txt", "2\n3\n3\n1 1 2\n1 9 1\n2 2 1\n") +
             " --output " + dir.Path("never.txt"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.output, HasSubstr("docword.bad.txt:5:"));
  EXPECT_FALSE(std::filesystem::exists(dir.Path("never.txt")));
  auto sampler = RunCli("lda --corpus " + docword + " --sampler fast");
  EXPECT_EQ(sampler.code, 1);
  EXPECT_THAT(sampler.output, HasSubstr("unknown LDA sampler 'fast' (expected mh or gibbs)"));
  auto overlap = RunCli("lda --corpus " + docword +
                        " --mode data-parallel --partition "
                        "overlap_reshuffle");
  EXPECT_EQ(overlap.code, 1);
  EXPECT_THAT(overlap.output, HasSubstr("disjoint document partitions"));
}

// The numbers of a CSV file's rows after its header.
std::vector<std::vector<double>> CsvNumbers(const std::string& path,
                                            std::vector<std::string>* header = nullptr) {
  std::istringstream in(testing::Slurp(path));
  std::vector<std::vector<double>> rows;
  std::string line;
  std::getline(in, line);
  if (header) {
    std::istringstream h(line);
    for (std::string c; std::getline(h, c, ',');) header->push_back(c);
  }
  while (std::getline(in, line)) {
    std::vector<double> row;
    std::istringstream cells(line);
    for (std::string c; std::getline(cells, c, ',');) row.push_back(std::stod(c));
    rows.push_back(row);
  }
  return rows;
}

// A text corpus (docs.txt in `dir`) of `docs` documents of two clear topics, alternating.
std::string TwoTopicCorpus(const testing::TempDir& dir, int docs) {
  std::string text;
  for (int d = 0; d < docs; ++d) {
    text += d % 2 ? "apple banana cherry grape lemon apple banana melon\n"
                  : "rocket planet orbit comet rocket launch moon orbit\n";
  }
  return dir.File("docs.txt", text);
}

// True when this machine can open a pseudo-terminal (a container without /dev/pts cannot).
bool HasPseudoTerminals() {
  int master = -1, slave = -1;
  if (openpty(&master, &slave, nullptr, nullptr, nullptr) != 0) return false;
  close(master);
  close(slave);
  return true;
}

// Runs `args` under a pseudo-terminal (stdout and stderr both the terminal, as in an
// interactive shell); returns the raw bytes written to it.
std::string RunOnATerminal(const std::string& args) {
  int master = -1;
  winsize size{};
  size.ws_col = 200;
  size.ws_row = 50;
  const pid_t pid = forkpty(&master, nullptr, nullptr, &size);
  if (pid < 0) {
    ADD_FAILURE() << "forkpty failed: " << std::strerror(errno);
    return "";
  }
  if (pid == 0) {
    execl("/bin/sh", "sh", "-c", (std::string(TESSERA_CLI) + " " + args).c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  std::string raw;
  char buf[4096];
  for (;;) {
    const ssize_t n = read(master, buf, sizeof buf);
    if (n > 0) {
      raw.append(buf, static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;  // EIO once the child has exited and the terminal is closed
    }
  }
  close(master);
  int status = 0;
  waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << raw;
  return raw;
}

// What a terminal shows after `raw`: carriage return, newline, erase to the end of the line
// ("\033[K") and printable characters overwriting at the cursor.
std::vector<std::string> Screen(const std::string& raw) {
  std::vector<std::string> lines(1);
  std::size_t col = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    const char ch = raw[i];
    if (ch == '\r') {
      col = 0;
    } else if (ch == '\n') {
      lines.emplace_back();
      col = 0;
    } else if (ch == '\033' && raw.compare(i, 3, "\033[K") == 0) {
      lines.back().resize(std::min(lines.back().size(), col));
      i += 2;
    } else {
      std::string& line = lines.back();
      if (line.size() <= col) line.resize(col + 1, ' ');
      line[col++] = ch;
    }
  }
  return lines;
}

// The progress line (stderr) is cleared before any other line is printed and when the run
// ends: on a terminal no progress text is left, and none shares a line with the Lasso path's
// per-λ lines, MF's epoch lines or LDA's iteration lines. Each run did draw progress lines.
TEST(TerminalTest, ProgressLinesAreClearedBeforeOtherOutput) {
  if (!HasPseudoTerminals()) {
    if (testing::InCi()) FAIL() << "no pseudo-terminals (/dev/pts) on a CI machine";
    GTEST_SKIP() << "this machine cannot open a pseudo-terminal (no /dev/pts)";
  }
  testing::TempDir dir;
  const std::string corpus = TwoTopicCorpus(dir, 200);
  const std::pair<std::string, std::string> runs[] = {
      {"lasso --data " + Diabetes() + " --path 30 --tolerance 1e-9", "lambda "},
      {"lasso --data " + Diabetes() + " --path 5 --mode data-parallel", "lambda "},
      {"mf --train " + SmallRatings(dir) + " --rank 4 --epochs 30 --workers 2", "epoch "},
      {"mf --train " + SmallRatings(dir) + " --rank 4 --epochs 30 --algorithm sgd", "epoch "},
      {"lda --corpus " + corpus + " --format text --topics 2 --iterations 40 --evaluate-every 2",
       "iteration "}};
  for (const auto& [args, line_start] : runs) {
    const std::string raw = RunOnATerminal(args);
    EXPECT_THAT(raw, HasSubstr("rounds/s")) << args << ": no progress line was drawn";
    int lines = 0;
    for (const std::string& line : Screen(raw)) {
      EXPECT_THAT(line, ::testing::Not(HasSubstr("rounds/s"))) << args << "\n" << line;
      if (line.rfind(line_start, 0) == 0) ++lines;
      EXPECT_EQ(line.find(line_start, 1), std::string::npos) << args << ": " << line;
    }
    EXPECT_GE(lines, 5) << args;
  }
}

// A data-parallel run says how stale its reads were (printed, in --summary, and in compare);
// under ssp:2 none is more than 2 clocks stale.
TEST(CliTest, DataParallelRunsReportTheStalenessTheyHad) {
  testing::TempDir dir;
  const std::string summary = dir.Path("s.csv");
  auto r = RunCli("lasso --data " + Diabetes() + " --mode data-parallel --consistency ssp:2 " +
                  "--workers 2 --servers 2 --summary " + summary);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("staleness of reads, table lasso_beta: "));
  const std::string csv = testing::Slurp(summary);
  EXPECT_THAT(csv, HasSubstr(",staleness_mean,staleness_max,staleness\n"));
  const auto at = csv.find("lasso_beta=");
  ASSERT_NE(at, std::string::npos) << csv;
  // Every bin named is 0, 1 or 2 clocks.
  std::istringstream bins(csv.substr(at + 11));
  for (std::string bin; std::getline(bins, bin, ';');) EXPECT_LE(std::stoi(bin), 2) << bin;
  auto cmp = RunCli("compare lasso --data " + Diabetes() + " --consistency ssp:1 --workers 2 " +
                    "--out " + dir.Path("cmp"));
  ASSERT_EQ(cmp.code, 0) << cmp.output;
  EXPECT_THAT(cmp.output, HasSubstr("data-parallel reads: "));
  EXPECT_THAT(cmp.output, ::testing::Not(HasSubstr("model-parallel reads: ")));
}

// --save-config writes the run's flags as resolved; --config reads them back and gives the
// same fit; the command line overrides the file; a misspelt key, flag or command is an error
// that names what was meant.
TEST(CliTest, ConfigFilesRoundTripAndTyposSayWhatWasMeant) {
  testing::TempDir dir;
  const std::string saved = dir.Path("run.toml");
  auto first = RunCli("lasso --data " + Diabetes() + " --workers 3 --standardize " +
                      "--lambda-ratio 0.05 --save-config " + saved);
  ASSERT_EQ(first.code, 0) << first.output;
  const std::string config = testing::Slurp(saved);
  EXPECT_THAT(config, HasSubstr("[lasso]\ndata = \"" + Diabetes() + "\"\n"));
  EXPECT_THAT(config, HasSubstr("lambda-ratio = 0.05\n"));
  EXPECT_THAT(config, HasSubstr("workers = 3\n"));
  EXPECT_THAT(config, HasSubstr("standardize = true\n"));
  EXPECT_THAT(config, HasSubstr("scheduler = \"round_robin\"\n"));  // a default
  auto objective = [](const std::string& out) {
    const auto at = out.find("objective ");
    return at == std::string::npos ? std::string() : out.substr(at, 30);
  };
  auto again = RunCli("lasso --config " + saved);
  ASSERT_EQ(again.code, 0) << again.output;
  EXPECT_EQ(objective(again.output), objective(first.output));
  EXPECT_FALSE(objective(first.output).empty());
  auto other = RunCli("lasso --config " + saved + " --lambda-ratio 0.5");
  ASSERT_EQ(other.code, 0) << other.output;
  EXPECT_NE(objective(other.output), objective(first.output));

  const std::string typo = dir.File("typo.toml", "[lasso]\ndata = \"x.csv\"\nworkerz = 2\n");
  auto e = RunCli("lasso --config " + typo);
  EXPECT_EQ(e.code, 2);
  EXPECT_THAT(e.output, HasSubstr("lasso.workerz; did you mean --workers?"));
  e = RunCli("lasso --data x.csv --worker 2");
  EXPECT_EQ(e.code, 2);
  EXPECT_THAT(e.output, HasSubstr("did you mean --workers?"));
  e = RunCli("lda --corpus x --topcis=3");
  EXPECT_THAT(e.output, HasSubstr("did you mean --topics?"));
  e = RunCli("lass --data x.csv");
  EXPECT_EQ(e.code, 2);
  EXPECT_THAT(e.output, HasSubstr("did you mean 'lasso'?"));
  e = RunCli("lasso --data x.csv --zzzzzzzz 1");
  EXPECT_THAT(e.output, ::testing::Not(HasSubstr("did you mean")));
}

// `tessera lda infer`: a model of two clear topics puts new documents of either kind in the
// right one; the output has a row per document; no file is written unless asked; documents in
// another vocabulary are a clear error.
TEST(CliTest, LdaInferWritesEachDocumentsTopicMixture) {
  testing::TempDir dir;
  const std::string corpus = TwoTopicCorpus(dir, 40), model = dir.Path("model.txt");
  // Run in the directory: nothing but the model asked for appears there.
  auto fit = RunProgram("cd " + dir.Path(".") + " && " + TESSERA_CLI,
                        "lda --corpus " + corpus +
                            " --format text --topics 2 --alpha 0.1 "
                            "--iterations 50 --sampler gibbs --quiet --output " +
                            model);
  ASSERT_EQ(fit.code, 0) << fit.output;
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir.Path(".")),
                          std::filesystem::directory_iterator()),
            2);  // docs.txt and model.txt
  const std::string fresh = dir.File("new.txt",
                                     "banana cherry apple grape\norbit rocket planet moon comet\n"
                                     "apple orbit\n");
  const std::string theta = dir.Path("theta.csv");
  auto r = RunCli("lda infer --model " + model + " --corpus " + fresh + " --format text --output " +
                  theta);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("3 documents, 11 tokens of the model's words sampled"));
  const auto rows = CsvNumbers(theta);  // document,tokens,topic_0,topic_1
  ASSERT_EQ(rows.size(), 3u);
  const int fruit = rows[0][2] > rows[0][3] ? 0 : 1;
  EXPECT_GT(rows[0][2 + fruit], 0.8);
  EXPECT_GT(rows[1][2 + (1 - fruit)], 0.8);
  EXPECT_EQ(rows[1][1], 5);
  EXPECT_NEAR(rows[2][2] + rows[2][3], 1.0, 1e-12);
  // Without --output: the CSV on standard output.
  auto out = RunCli("lda infer --model " + model + " --corpus " + fresh + " --format text");
  EXPECT_EQ(out.code, 0);
  EXPECT_THAT(out.output, HasSubstr("document,tokens,topic_0,topic_1\n1,4,"));
  const std::string other = dir.File("other.txt", "zebra yak\n");
  auto e = RunCli("lda infer --model " + model + " --corpus " + other + " --format text");
  EXPECT_EQ(e.code, 1);
  EXPECT_THAT(e.output, HasSubstr("none of its 2 tokens is a word of the model"));
  auto bad = RunCli("lda infer --model " + corpus + " --corpus " + fresh);
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.output, HasSubstr("docs.txt:1:"));
  auto no_corpus = RunCli("lda --topics 2");
  EXPECT_EQ(no_corpus.code, 2);
  EXPECT_THAT(no_corpus.output, HasSubstr("--corpus is required"));
}

// `tessera lasso --cv` / `--foldid`: the table, lambda.min and lambda.1se as the library's
// cross-validation (checked against cv.glmnet in LassoCvTest) gives them; --output keeps the
// full-data fit at the chosen λ, which predict reads; the CV table is written; bad fold files
// and flag combinations are named.
TEST(CliTest, LassoCrossValidationPrintsLambdaMinAnd1seAndKeepsTheChosenFit) {
  testing::TempDir dir;
  std::string ids = "fold\n";
  for (int i = 0; i < 442; ++i) ids += std::to_string((7 * i) % 10 + 1) + "\n";
  const std::string foldid = dir.File("folds.csv", ids), model = dir.Path("min.csv"),
                    table = dir.Path("cv.csv");
  auto r = RunCli("lasso --data " + Diabetes() + " --foldid " + foldid + " --path 30 --output " +
                  model + " --cv-output " + table);
  ASSERT_EQ(r.code, 0) << r.output;
  // cv.glmnet's choices on these folds and λ (tests/data/diabetes_cv_glmnet.csv).
  EXPECT_THAT(r.output, HasSubstr("lambda.min 0.0475193699: cv error 2977.06"));
  EXPECT_THAT(r.output, HasSubstr("lambda.1se 0.319489714: cv error 3153.63"));
  EXPECT_EQ(CsvNumbers(table).size(), 30u);
  // name,value rows: one λ's coefficients, the intercept first.
  EXPECT_EQ(testing::Slurp(model).rfind("name,value\n(intercept),", 0), 0u);
  auto p = RunCli("lasso predict --model " + model + " --data " + Diabetes());
  EXPECT_EQ(p.code, 0) << p.output;

  auto k = RunCli("lasso --data " + Diabetes() + " --cv 5 --path 10 --quiet");
  EXPECT_EQ(k.code, 0) << k.output;
  EXPECT_THAT(k.output, HasSubstr("5 folds"));

  const std::string bad = dir.File("bad.csv", "fold\n1\n2\nx\n");
  auto e = RunCli("lasso --data " + Diabetes() + " --foldid " + bad);
  EXPECT_EQ(e.code, 1);
  EXPECT_THAT(e.output, HasSubstr("bad.csv:4: a fold id must be a whole number >= 1, not 'x'"));
  const std::string short_ids = dir.File("short.csv", "1\n2\n");
  e = RunCli("lasso --data " + Diabetes() + " --foldid " + short_ids);
  EXPECT_EQ(e.code, 1);
  EXPECT_THAT(e.output, HasSubstr("the fold ids number 2, the data has 442 rows"));
  e = RunCli("lasso --data " + Diabetes() + " --cv 5 --lambda 0.1");
  EXPECT_NE(e.code, 0);
  EXPECT_THAT(e.output, HasSubstr("--cv cross-validates a path of its own"));
}

// `tessera lasso predict`: on held-out rows its predictions are intercept + x'b computed here
// from the coefficient file, for every λ of a path and between two of them; on the training
// rows its mean squared error completes the path's objectives (objective = MSE / 2 + λ‖b‖₁);
// a one-λ file works the same; mismatched data and bad model files are named.
TEST(CliTest, LassoPredictMatchesTheCoefficientFile) {
  testing::TempDir dir;
  const std::string train = dir.Path("train.csv"), held = dir.Path("held.csv"),
                    path = dir.Path("path.csv"), out = dir.Path("p.csv");
  ASSERT_EQ(
      testing::Sh("zcat " + Diabetes() + " | head -401 > " + train + " && (zcat " + Diabetes() +
                  " | head -1; zcat " + Diabetes() + " | tail -n +402) > " + held),
      0);
  auto fit = RunCli("lasso --data " + train + " --path 6 --quiet --output " + path);
  ASSERT_EQ(fit.code, 0) << fit.output;
  std::vector<std::string> names;
  // lambda,intercept,<10 features>,objective,kkt,gap
  const auto coef = CsvNumbers(path, &names);
  ASSERT_EQ(coef.size(), 6u);
  ASSERT_EQ(names.size(), 15u);

  auto r = RunCli("lasso predict --model " + path + " --data " + held + " --predictions " + out);
  ASSERT_EQ(r.code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("42 rows, mean squared error"));
  std::vector<std::string> data_names;
  const auto x = CsvNumbers(held, &data_names);  // the features, then y
  ASSERT_EQ(x.size(), 42u);
  const auto pred = CsvNumbers(out);  // row, y, a column per λ
  ASSERT_EQ(pred.size(), 42u);
  for (std::size_t i = 0; i < x.size(); ++i) {
    ASSERT_EQ(pred[i].size(), 2u + coef.size());
    EXPECT_EQ(pred[i][1], x[i][10]);
    for (std::size_t k = 0; k < coef.size(); ++k) {
      double direct = coef[k][1];
      for (int j = 0; j < 10; ++j) direct += coef[k][2 + j] * x[i][j];
      EXPECT_NEAR(pred[i][2 + k], direct, 1e-9 * (1 + std::abs(direct))) << "row " << i;
    }
  }
  // Between the path's third and fourth λ: the interpolated coefficients.
  const double mid = 0.5 * (coef[2][0] + coef[3][0]);
  std::ostringstream mid_text;
  mid_text.precision(17);
  mid_text << mid;
  auto between = RunCli("lasso predict --model " + path + " --data " + held + " --lambda " +
                        mid_text.str() + " --predictions " + out);
  ASSERT_EQ(between.code, 0) << between.output;
  const auto p_mid = CsvNumbers(out);
  const double t = (coef[2][0] - mid) / (coef[2][0] - coef[3][0]);
  double direct = (1 - t) * coef[2][1] + t * coef[3][1];
  for (int j = 0; j < 10; ++j) direct += ((1 - t) * coef[2][2 + j] + t * coef[3][2 + j]) * x[0][j];
  EXPECT_NEAR(p_mid[0][2], direct, 1e-9 * (1 + std::abs(direct)));

  // On the training rows: objective = MSE / 2 + λ‖b‖₁ for every λ.
  auto on_train = RunCli("lasso predict --model " + path + " --data " + train);
  ASSERT_EQ(on_train.code, 0) << on_train.output;
  std::istringstream lines(on_train.output);
  std::size_t k = 0;
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("mean squared error ");
    if (at == std::string::npos) continue;
    ASSERT_LT(k, coef.size());
    const double mse = std::stod(line.substr(at + 19));
    double l1 = 0;
    for (int j = 0; j < 10; ++j) l1 += std::abs(coef[k][2 + j]);
    EXPECT_NEAR(mse / 2 + coef[k][0] * l1, coef[k][12], 1e-9 * coef[k][12]) << line;
    ++k;
  }
  EXPECT_EQ(k, coef.size());

  // A one-λ file.
  const std::string one = dir.Path("one.csv");
  ASSERT_EQ(RunCli("lasso --data " + train + " --quiet --output " + one).code, 0);
  auto single = RunCli("lasso predict --model " + one + " --data " + held);
  EXPECT_EQ(single.code, 0) << single.output;
  EXPECT_THAT(single.output, HasSubstr("lambda (of the model): 42 rows, mean squared error"));

  // Errors.
  auto outside = RunCli("lasso predict --model " + path + " --data " + held + " --lambda 1e9");
  EXPECT_EQ(outside.code, 1);
  EXPECT_THAT(outside.output, HasSubstr("is outside the model's path"));
  ASSERT_EQ(testing::Sh("sed '1s/bmi/BMI/' " + held + " > " + dir.Path("renamed.csv")), 0);
  auto renamed = RunCli("lasso predict --model " + path + " --data " + dir.Path("renamed.csv"));
  EXPECT_EQ(renamed.code, 1);
  EXPECT_THAT(renamed.output, HasSubstr("column 'BMI' where the model has 'bmi' (feature 3)"));
  auto bad = RunCli("lasso predict --data " + held + " --model " +
                    dir.File("bad.csv", "name,value\n(intercept),1\nage,x\n"));
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.output, HasSubstr("bad.csv:3: age 'x' is not a finite number"));
  auto other = RunCli("lasso predict --data " + held + " --model " + dir.File("o.csv", "a,b\n"));
  EXPECT_EQ(other.code, 1);
  EXPECT_THAT(other.output, HasSubstr("o.csv:1: not a Lasso model"));
  EXPECT_TRUE(dir.NoTempFiles());
}

// An output that cannot be written fails before the data are read or the fit starts, for every
// output an app writes; nothing is left behind.
TEST(CliTest, UnwritableOutputsFailBeforeTheFit) {
  testing::TempDir dir;
  const std::string ratings = SmallRatings(dir);
  TESSERA_REQUIRE_DATA(kos, "uci-bow-kos/docword.kos.txt.gz");
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"lasso --data " + Diabetes() + " --path 50 --output /no/dir/c.csv",
       "/no/dir/c.csv: cannot write: No such file or directory"},
      {"mf --train " + ratings + " --epochs 50 --output " + dir.Path(""),
       ": cannot write: is a directory"},
      {"mf --train " + ratings + " --summary /no/dir/s.csv", "/no/dir/s.csv: cannot write"},
      {"lda --corpus " + kos + " --topics 50 --iterations 100 --topics-out /no/dir/t.txt",
       "/no/dir/t.txt: cannot write"},
      {"lda --corpus " + kos + " --topics 50 --iterations 100 --output /no/dir/m.txt",
       "/no/dir/m.txt: cannot write"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const auto start = std::chrono::steady_clock::now();
    auto r = RunCli(c.args);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message));
    EXPECT_THAT(r.output, ::testing::Not(HasSubstr("epoch")));
    EXPECT_THAT(r.output, ::testing::Not(HasSubstr("iteration")));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  }
  EXPECT_TRUE(dir.NoTempFiles());
  // With --no-files LDA writes nothing, so an unwritable model path is no error.
  auto none = RunCli("lda --corpus " + kos +
                     " --topics 5 --iterations 1 --no-files --quiet --output /no/dir/m.txt");
  EXPECT_EQ(none.code, 0) << none.output;
}

// A hostfile is read before anything starts: a bad line is named, too few slots are said.
TEST(CliTest, LaunchHostfileErrorsNameTheLineAndStartNothing) {
  testing::TempDir dir;
  const std::string fit = " -- tessera lasso --data " + Diabetes() + " --quiet";
  struct Case {
    std::string hosts, flags, message;
  };
  const std::vector<Case> cases = {
      {"# two\nnode1 slots=2\nnode2 slots=x\n", "", "hosts:3: slots must be a whole number"},
      {"node1 cores=2\n", "", "hosts:1: expected `host [slots=N]`, not 'cores=2'"},
      {"# nobody\n\n", "", "names no host"},
      {"node1 slots=2\nnode2\n", " -n 4", "-n 4 needs more slots than"},
      {"node1\n", " --bind 0.0.0.0", "--bind is for a run on this machine"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    auto r = RunCli("launch --hostfile " + dir.File("hosts", c.hosts) + c.flags + fit);
    EXPECT_EQ(r.code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message));
  }
  auto missing = RunCli("launch --hostfile " + dir.Path("none") + fit);
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.output, HasSubstr(dir.Path("none")));
}

struct BadRun {
  const char* name;
  std::string args;
  int code;
  const char* message;
};
void PrintTo(const BadRun& r, std::ostream* os) { *os << r.name; }

class CliBadInputTest : public ::testing::TestWithParam<BadRun> {};

TEST_P(CliBadInputTest, ExitsNonZeroWithAClearMessageAndNoOutputFile) {
  testing::TempDir dir;
  const std::string out = dir.Path("out.csv");
  std::string args = GetParam().args;
  for (std::size_t at; (at = args.find("BAD")) != std::string::npos;) {
    args.replace(at, 3, dir.File("bad.csv", "a,y\n1,2\n3\n"));
  }
  auto r = RunCli(args + " --output " + out);
  EXPECT_EQ(r.code, GetParam().code) << r.output;
  EXPECT_THAT(r.output, HasSubstr(GetParam().message));
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_TRUE(dir.NoTempFiles());
}

INSTANTIATE_TEST_SUITE_P(
    Cases, CliBadInputTest,
    ::testing::Values(
        BadRun{"missing_file", "lasso --data /no/such.csv", 1, "/no/such.csv: No such file"},
        BadRun{"ragged_csv", "lasso --data BAD", 1, "bad.csv:3: expected 2 fields"},
        BadRun{"no_data_flag", "lasso --lambda 1", 2, "--data is required"},
        BadRun{"non_numeric_flag", "lasso --data BAD --workers two", 2, "--workers"},
        BadRun{"zero_workers", "lasso --data " + Diabetes() + " --workers 0", 1,
               "--workers must be in [1, 1024], got 0"},
        BadRun{"unknown_scheduler", "lasso --data " + Diabetes() + " --scheduler fifo", 1,
               "unknown scheduler 'fifo' (valid: dependency, priority, rotation, round_robin)"},
        BadRun{"bad_format", "lasso --data " + Diabetes() + " --format xml", 1, "--format must be"},
        BadRun{"negative_lambda", "lasso --data " + Diabetes() + " --lambda -1", 1,
               "--lambda must be positive"},
        BadRun{"too_many_threads", "lasso --data " + Diabetes() + " --threads 100000", 1,
               "--threads must be between 0 (all cores) and 1024"},
        BadRun{"bad_depth", "lasso --data " + Diabetes() + " --pipeline-depth 0", 1,
               "--pipeline-depth"},
        BadRun{"no_subcommand", "", 2, "subcommand"},
        BadRun{"unknown_mode", "lasso --data " + Diabetes() + " --mode hybrid", 1,
               "--mode must be 'model-parallel' or 'data-parallel', got 'hybrid'"},
        BadRun{"unknown_consistency",
               "lasso --data " + Diabetes() + " --mode data-parallel --consistency eventual", 1,
               "--consistency: unknown consistency model 'eventual' (expected bsp, sbp:B, ssp:S"},
        BadRun{"negative_staleness",
               "lasso --data " + Diabetes() + " --mode data-parallel --consistency ssp:-1", 1,
               "--consistency: consistency 'ssp:-1': the staleness bound S must be an integer"},
        BadRun{"zero_servers", "lasso --data " + Diabetes() + " --mode data-parallel --servers 0",
               1, "--servers must be in [1, 1024], got 0"},
        BadRun{"unknown_partition",
               "lasso --data " + Diabetes() + " --mode data-parallel --partition blocks", 1,
               "--partition: unknown partition scheme 'blocks'"},
        BadRun{"bad_frequency",
               "lasso --data " + Diabetes() + " --mode data-parallel --update-frequency nbatches:0",
               1, "--update-frequency: update frequency 'nbatches:0': N must be an integer >= 1"},
        BadRun{"compare_unknown_app", "compare svm --data " + Diabetes(), 1,
               "unknown app 'svm' (expected lasso, lda, mf)"},
        BadRun{"compare_mode_flag", "compare lasso --data " + Diabetes() + " --mode asp", 1,
               "--mode is set by compare itself"},
        BadRun{"unwritable_output", "lasso --data " + Diabetes() + " --quiet --trace /no/dir/t.csv",
               1, "/no/dir/t.csv: cannot write"}),
    [](const auto& info) { return std::string(info.param.name); });

// Tiny inputs and options that would need unbounded memory or time end at once with our
// message (in release builds under a 1 GB address-space limit where prlimit exists), never
// with an abort.
TEST(CliTest, TinyInputsThatWouldNeedHugeMemoryFailFastWithAMessage) {
  testing::TempDir dir;
  const std::string far = dir.File("far.svm", "1 1:1 2000000000:1\n0 1:1\n");
  const std::string counts = dir.File("docword.tiny", "1\n2\n1\n1 1 4294967295\n");
  const std::string tiny = dir.File("docword.ok", "2\n2\n2\n1 1 3\n2 2 1\n");
  const std::string wide = dir.File("wide.svm", "1 1:1 100000:1\n0 1:1\n");
  const std::string ratings = dir.File("small.ratings", "1 1 5\n1 2 3\n2 1 4\n2 2 1\n");
  // (Not under the sanitizers, which reserve terabytes of address space for their shadow.)
  const std::string limit =
      !testing::kSanitized && std::system("command -v prlimit >/dev/null") == 0
          ? "prlimit --as=1000000000 "
          : "";
  struct Case {
    std::string args, message;
  };
  const std::vector<Case> cases = {
      {"lasso --data " + far, "far.svm: feature index 2000000000 in a file of 3 nonzeros"},
      {"lasso --data /dev/zero --format libsvm", "/dev/zero:1: a line longer than"},
      {"lda --no-files --corpus " + counts, "4294967295 tokens from 21 bytes"},
      {"lda --no-files --corpus " + tiny + " --workers 100000",
       "--workers must be in [1, 1024], got 100000"},
      {"lda --no-files --corpus " + tiny + " --mode data-parallel --servers 100000",
       "--servers must be in [1, 1024], got 100000"},
      // What the options would make a model need, against --max-memory (default: 3/4 of RAM).
      {"lda --no-files --corpus " + tiny + " --topics 100000 --max-memory 1M",
       "100000 topics over 2 words and 4 tokens would need 2.3 MiB, more than the memory limit "
       "of 1.0 MiB (--max-memory)"},
      {"mf --train " + ratings + " --rank 10000 --max-memory 512K",
       "factors of rank 10000 for 2 users and 2 items would need"},
      {"lasso --data " + wide + " --max-memory 1M",
       "wide.svm: a model of 100000 features would need 6.1 MiB"},
      {"lasso --data " + wide + " --max-line-bytes 8", "wide.svm:1: a line longer than 8 bytes"},
      {"lasso --data " + wide + " --max-memory 12Q", "--max-memory: '12Q' is not a size"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    const auto start = std::chrono::steady_clock::now();
    const std::string cmd = limit + std::string(TESSERA_CLI) + " " + c.args + " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    ASSERT_NE(p, nullptr);
    std::string output;
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) output.append(buf, n);
    const int status = pclose(p);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << output;
    EXPECT_THAT(output, HasSubstr(c.message));
    EXPECT_THAT(output, ::testing::Not(HasSubstr("terminate called")));
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  }
}

// A fit whose error becomes NaN is an error naming where it appeared, exit 1, and no model.
TEST(CliTest, ANonFiniteFitIsAnErrorAndWritesNoModel) {
  testing::TempDir dir;
  const std::string ratings = dir.File("huge.ratings", "1 1 3e38\n1 2 -3e38\n2 1 3e38\n2 2 5\n");
  const std::string model = dir.Path("mf.model");
  auto r = RunCli("mf --quiet --epochs 2 --train " + ratings + " --output " + model);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("the objective is nan after round "));
  EXPECT_FALSE(std::filesystem::exists(model));
  EXPECT_TRUE(dir.NoTempFiles());
  // Ratings are kept in single precision: one beyond its range is refused as it is read.
  const std::string beyond = dir.File("beyond.ratings", "1 1 5\n1 2 1e308\n");
  r = RunCli("mf --quiet --epochs 2 --train " + beyond + " --output " + model);
  EXPECT_EQ(r.code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("beyond.ratings:2: rating '1e308' is not a finite "
                                  "single-precision number"));
  EXPECT_FALSE(std::filesystem::exists(model));
}

// A user's scheduler (examples/custom_scheduler.cc) chosen from the command line of the
// built-in lasso command: it is listed, and it reaches the optimum tessera lasso reaches.
TEST(ExampleTest, AUsersSchedulerIsSelectableFromTheCommandLine) {
  auto objective = [](const std::string& out) {
    const auto at = out.find("objective ");
    return at == std::string::npos ? -1.0 : std::stod(out.substr(at + 10));
  };
  const std::string fit = "lasso --data " + Diabetes() + " --lambda-ratio 0.01 --tolerance 1e-9";
  auto ours = RunProgram(TESSERA_CUSTOM_SCHEDULER, fit + " --scheduler shuffled:block_size=4");
  ASSERT_EQ(ours.code, 0) << ours.output;
  EXPECT_THAT(ours.output, HasSubstr("scheduler shuffled:block_size=4"));
  auto builtin = RunCli(fit);
  ASSERT_EQ(builtin.code, 0) << builtin.output;
  EXPECT_GT(objective(ours.output), 0);
  EXPECT_NEAR(objective(ours.output), objective(builtin.output), 1e-8 * objective(builtin.output));
  auto help = RunProgram(TESSERA_CUSTOM_SCHEDULER, "lasso --help");
  EXPECT_THAT(help.output, HasSubstr("shuffled (block_size=16 keys per round"));
  auto bad = RunProgram(TESSERA_CUSTOM_SCHEDULER, fit + " --scheduler shuffled:rho=2");
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.output, HasSubstr("rho"));
}

// A user's own app command (examples/ridge_app.cc) in both modes against the closed form.
TEST(ExampleTest, RidgeAppMatchesClosedFormInBothModes) {
  const std::string fit = "ridge --data " + Diabetes() + " --alpha 0.001 ";
  const std::string sgd =
      "--mode data-parallel --workers 3 --batch-size 32 "
      "--update-frequency batch --partition disjoint_random "
      "--max-epochs 400 --evaluate-every 20 --consistency ";
  // Hogwild runs the stateful update without a lock, so concurrent updates of a coefficient
  // (and its velocity) may be lost: it gets within 1e-3, SGD under the others within 1e-4;
  // coordinate descent converges.
  const std::pair<std::string, double> cases[] = {{"--workers 1", 1e-9}, {"--workers 3", 1e-9},
                                                  {sgd + "bsp", 1e-4},   {sgd + "ssp:1", 1e-4},
                                                  {sgd + "asp", 1e-4},   {sgd + "hogwild", 1e-3}};
  for (const auto& [flags, tolerance] : cases) {
    auto r = RunProgram(TESSERA_RIDGE_APP, fit + flags);
    ASSERT_EQ(r.code, 0) << flags << "\n" << r.output;
    const auto at = r.output.find("relative gap ");
    ASSERT_NE(at, std::string::npos) << r.output;
    const double gap = std::stod(r.output.substr(at + 13));
    EXPECT_GE(gap, -1e-12) << flags;  // the closed form is the minimum
    EXPECT_LT(gap, tolerance) << flags << "\n" << r.output;
  }
}

}  // namespace
}  // namespace tessera
