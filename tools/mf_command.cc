#include "tessera/tools/mf_command.h"

#include <cmath>
#include <cstdio>
#include <iostream>

#include "tessera/algorithms/mf/mf_cv.h"
#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"
#include "tessera/tools/builtin_commands.h"
#include "tessera/tools/cluster.h"

namespace tessera {
namespace {

StatusOr<std::uint32_t> Lookup(const IdMap& ids, const std::string& id, const char* what) {
  auto index = ids.Find(id);
  if (!index) return NotFound(std::string(what) + " '" + id + "' is not in the model");
  return *index;
}

}  // namespace

void AddMfTrainFlags(CLI::App& t, MfFlags& f) {
  t.add_option("--train", f.train,
               "Training ratings: 'user item rating [timestamp]' lines or MatrixMarket");
  t.add_option("--test", f.test, "Test ratings (RMSE after every epoch)");
  t.add_option("--rank", f.opts.rank, "Latent dimension")->capture_default_str();
  t.add_option("--lambda", f.opts.lambda, "L2 weight per rating")->capture_default_str();
  t.add_option("--epochs", f.opts.epochs, "Passes over every component")->capture_default_str();
  t.add_option("--inner-iterations", f.opts.inner_iterations,
               "CCD++ alternations per component per epoch")
      ->capture_default_str();
  t.add_option("--init", f.opts.init,
               "The start: uniform (LIBMF's: no global mean, factors U[0,1) scaled by "
               "sqrt(std dev / rank)), normal (the training mean plus factors "
               "N(0, 0.01 / rank)), or auto: uniform for SGD with adagrad steps, else normal")
      ->capture_default_str();
  t.add_flag("--biases", f.biases,
             "Fit a bias per user and per item (the default with the normal start)");
  t.add_flag("--no-biases", f.no_biases, "Do not fit user and item biases");
  t.add_option("--cv", f.cv,
               "K-fold cross-validation (LIBMF's -v): train K times, each fold held out once, "
               "and print each fold's test RMSE and their pooled RMSE; folds seeded by --seed");
  t.add_option("--workers", f.opts.engine.workers, "Worker fibers, each owning users and items")
      ->capture_default_str();
  t.add_option("--seed", f.opts.seed, "Seed of the initial factors")->capture_default_str();
  t.add_option("--max-seconds", f.opts.engine.max_seconds, "Stop after this many seconds");
  t.add_option("--algorithm", f.opts.algorithm,
               "Model-parallel algorithm: ccd++ | sgd (rotation-scheduled DSGD)")
      ->capture_default_str();
  t.add_option("--mode", f.opts.mode,
               "model-parallel (--algorithm) | data-parallel (SGD, H on a parameter server)")
      ->capture_default_str();
  t.add_option("--sgd-step", f.opts.sgd_step,
               "SGD's steps (rotation and data-parallel): adagrad (LIBMF's per-row adaptive "
               "steps) or decay (--learning-rate / (1 + --decay * epoch))")
      ->capture_default_str();
  t.add_option("--adagrad-rate", f.opts.adagrad_rate,
               "SGD with adagrad steps: the rate (LIBMF's -r)")
      ->capture_default_str();
  t.add_option("--learning-rate", f.opts.learning_rate,
               "SGD with decaying steps: the step, relative to the ratings' variance")
      ->capture_default_str();
  t.add_option("--decay", f.opts.decay, "SGD with decaying steps: lr / (1 + decay * epoch)")
      ->capture_default_str();
  AddDataParallelFlags(
      t, f.opts.data_parallel, f.data_parallel,
      "Users per batch, cut to equal numbers of ratings (0: the worker's whole partition)");
  const std::string g = "Data-parallel mode";
  t.add_flag("--model-averaging", f.opts.data_parallel.model_averaging,
             "Workers update their own copy of H and the servers average them at each clock")
      ->group(g);
}

CLI::App* AddMfPredictCommand(CLI::App& t, MfFlags& f) {
  CLI::App* predict =
      t.add_subcommand("predict", "Predict ratings or the top-N items from a saved model");
  CLI::App& p = *predict;
  p.add_option("--model", f.model, "Model written by 'tessera mf --output'")->required();
  p.add_option("--user", f.user, "User id as in the training file");
  p.add_option("--item", f.item, "Item id: print the predicted rating of --user for it");
  p.add_option("--top-n", f.top_n, "Print the N items with the highest predicted rating");
  p.add_option("--exclude", f.exclude, "Ratings file whose items of --user are left out of top-N");
  p.add_option("--pairs", f.pairs,
               "File of 'user item [rating]' lines: predict each (and the RMSE if rated)");
  p.add_option("--predictions", f.predictions, "With --pairs: write user,item,prediction CSV");
  return predict;
}

Status PrepareMfTrain(MfFlags& f, const CheckpointSettings& checkpoints) {
  if (f.train.empty()) return InvalidArgument("--train is required");
  if (f.biases && f.no_biases)
    return InvalidArgument("--biases and --no-biases exclude each other");
  if (f.biases || f.no_biases) f.opts.biases = f.biases;
  f.opts.engine.label = "mf";
  TESSERA_RETURN_IF_ERROR(ParseDataParallelFlags(f.data_parallel, f.opts.data_parallel));
  SetCheckpointOptions(checkpoints, f.opts);
  return f.opts.Validate();
}

// --cv K: each fold held out once; a line per fold, then the pooled RMSE.
int CrossValidateMf(MfFlags& f, const CommonFlags& c) {
  if (!c.quiet) {
    std::printf("tessera mf: %d-fold cross-validation of %s, rank %d, lambda %g, %d epochs\n", f.cv,
                f.train.c_str(), f.opts.rank, f.opts.lambda, f.opts.epochs);
    std::fflush(stdout);
  }
  auto print = [&](int fold, const MfFoldResult& r) {
    ClearProgressLine();
    std::printf(
        "fold %2d/%d  train %zu  held out %zu (%zu with an unseen user or item skipped)  "
        "train RMSE %.4f  test RMSE %.4f  %.2f s\n",
        fold, f.cv, r.train_count, r.test_count, r.skipped_unknown, r.train_rmse, r.test_rmse,
        r.seconds);
    std::fflush(stdout);
  };
  auto result = CrossValidateMf(f.train, f.opts, f.cv, f.opts.seed,
                                c.quiet ? std::function<void(int, const MfFoldResult&)>() : print);
  if (!result.ok()) return Fail(result.status());
  if (!result->holds_result) return 0;
  std::printf("cross-validation: test RMSE %.4f (pooled over %d folds; folds' RMSE sd %.4f)\n",
              result->mean_test_rmse, f.cv, result->sd_test_rmse);
  return 0;
}

int FitMf(MfFlags& f, const CommonFlags& c, Cluster& cluster) {
  f.opts.engine.transport = cluster.transport();
  f.opts.engine.progress = !c.quiet;
  if (f.cv > 0) return CrossValidateMf(f, c);
  // In a multi-process run each process keeps only the ratings its workers need.
  RatingsOptions train_options;
  train_options.keep = MfRatingsToKeep(f.opts);
  auto train = ReadRatings(f.train, train_options);
  if (!train.ok()) return Fail(train.status());
  std::optional<Ratings> test;
  if (!f.test.empty()) {
    RatingsOptions o;
    o.keep = train_options.keep;
    o.users = train->users;
    o.items = train->items;
    auto t = ReadRatings(f.test, o);
    if (!t.ok()) return Fail(t.status());
    test = std::move(*t);
  }
  ReturnFreedMemory();  // what the readers freed, before the fit allocates
  if (!c.quiet) {
    std::printf("tessera mf: %s: %zu ratings, %zu users x %zu items", train->source.c_str(),
                train->census.count, train->num_users(), train->num_items());
    if (test) {
      std::printf("; test %s: %zu ratings (%zu with an unseen user or item skipped)",
                  test->source.c_str(), test->census.count, test->skipped_unknown);
    }
    const auto& dp = f.opts.data_parallel;
    std::printf("\n  %s rank %d%s, lambda %g, %d workers on %d threads",
                f.opts.mode == "data-parallel" ? "data-parallel SGD"
                : f.opts.algorithm == "sgd"    ? "model-parallel rotation SGD"
                                               : "model-parallel CCD++",
                f.opts.rank, f.opts.FitsBiases() ? " + biases" : "", f.opts.lambda,
                f.opts.engine.workers, FiberPool::Global().threads());
    if (f.opts.mode == "data-parallel") {
      std::printf(", %d servers, consistency %s, update frequency %s, batch %zu users%s",
                  dp.servers, dp.consistency.ToString().c_str(), dp.frequency.ToString().c_str(),
                  dp.batch_size, dp.model_averaging ? ", model averaging" : "");
    }
    std::printf("\n");
  }
  const double n = static_cast<double>(train->census.count);
  auto print = [&](const MfEpoch& e) {
    if (c.quiet) return;
    ClearProgressLine();
    std::printf("epoch %3d  train RMSE %.4f", e.epoch, e.train_rmse);
    if (!std::isnan(e.test_rmse)) std::printf("  test RMSE %.4f", e.test_rmse);
    std::printf("  %.3f s  %.3g ratings x epochs / s\n", e.seconds,
                n * e.epoch / std::max(e.seconds, 1e-9));
    std::fflush(stdout);
  };
  Stopwatch total;
  auto result = TrainMf(std::move(*train), test ? &*test : nullptr, f.opts, print);
  const double setup_seconds = total.Seconds() - (result.ok() ? result->run.seconds : 0);
  if (!result.ok()) return Fail(result.status());
  if (!result->run.holds_result) return 0;
  if (!c.quiet && !result->resumed.empty()) {
    std::printf("resumed from %s\n", result->resumed.c_str());
  }
  if (!c.quiet) {
    std::printf("%s after %zu epochs, %.3f s; bytes moved %llu; peak RSS %.1f MiB\n",
                result->run.stop_reason.c_str(), result->epochs.size(), result->run.seconds,
                static_cast<unsigned long long>(result->run.bytes), PeakRssBytes() / 1048576.0);
    PrintStaleness(result->run.staleness);
  }
  if (!c.output.empty()) {
    if (auto st = WriteMfModel(c.output, result->model); !st.ok()) return Fail(st);
  }
  if (!c.trace.empty()) {
    CsvWriter out;
    if (auto st = out.Open(c.trace, "round,seconds,objective,train_rmse,test_rmse,bytes");
        !st.ok()) {
      return Fail(st);
    }
    // Bytes per epoch are known only in total: spread evenly.
    const double per_epoch = static_cast<double>(result->run.bytes) /
                             static_cast<double>(std::max<std::size_t>(result->epochs.size(), 1));
    for (const MfEpoch& e : result->epochs) {
      out.Row(std::to_string(e.epoch) + "," + FormatDouble(e.seconds) + "," +
              FormatDouble(e.objective) + "," + FormatDouble(e.train_rmse) + "," +
              FormatDouble(e.test_rmse) + "," +
              std::to_string(static_cast<std::uint64_t>(per_epoch * e.epoch)));
    }
    if (auto st = out.Finish(); !st.ok()) return Fail(st);
  }
  if (!c.summary.empty()) {
    const MfEpoch last = result->epochs.empty() ? MfEpoch{} : result->epochs.back();
    CsvWriter out;
    if (auto st = out.Open(c.summary,
                           "mode,objective,train_rmse,test_rmse,rounds,seconds,setup_seconds,"
                           "bytes,peak_rss,stop" +
                               StalenessColumns());
        !st.ok()) {
      return Fail(st);
    }
    out.Row(f.opts.mode + "," + FormatDouble(last.objective) + "," + FormatDouble(last.train_rmse) +
            "," + FormatDouble(last.test_rmse) + "," + std::to_string(result->epochs.size()) + "," +
            FormatDouble(result->run.seconds) + "," + FormatDouble(setup_seconds) + "," +
            std::to_string(result->run.bytes) + "," + std::to_string(PeakRssBytes()) + "," +
            result->run.stop_reason + StalenessValues(result->run.staleness));
    if (auto st = out.Finish(); !st.ok()) return Fail(st);
  }
  return 0;
}

int RunMfPredict(MfFlags& f) {
  auto model = ReadMfModel(f.model);
  if (!model.ok()) return Fail(model.status());
  const MfModel& m = *model;
  const int modes = (!f.item.empty()) + (f.top_n > 0) + (!f.pairs.empty());
  if (modes != 1) {
    return Fail(InvalidArgument("give exactly one of --item, --top-n or --pairs"));
  }
  if (!f.pairs.empty()) {
    // Every line is answered: ids the model has not seen join copies of its maps, past its
    // rows, and get the fallback prediction.
    RatingsOptions o;
    o.users = std::make_shared<IdMap>(*m.users);
    o.items = std::make_shared<IdMap>(*m.items);
    o.add_unknown = true;
    auto pairs = ReadRatings(f.pairs, o);
    if (!pairs.ok()) return Fail(pairs.status());
    CsvWriter out;
    if (!f.predictions.empty()) {
      if (auto st = out.Open(f.predictions, "user,item,prediction"); !st.ok()) return Fail(st);
    }
    std::size_t unseen = 0;
    double sse = 0, sse_known = 0;
    for (const Rating& r : pairs->entries) {
      const double p = m.PredictOrFallBack(r.user, r.item);
      const double e2 = (p - r.value) * (p - r.value);
      sse += e2;
      if (m.Knows(r.user, r.item)) {
        sse_known += e2;
      } else {
        ++unseen;
      }
      out.Row(pairs->users->Name(r.user) + "," + pairs->items->Name(r.item) + "," +
              FormatDouble(p));
    }
    if (auto st = out.Finish(); !st.ok()) return Fail(st);
    const std::size_t n = pairs->entries.size(), known = n - unseen;
    const auto rmse = [](double e, std::size_t count) {
      return count == 0 ? 0.0 : std::sqrt(e / static_cast<double>(count));
    };
    std::printf("%zu pairs predicted", n);
    if (unseen == 0) {
      std::printf("; RMSE %.10g\n", rmse(sse, n));
      return 0;
    }
    // The RMSE over the pairs the model knows is what training reports for a test set.
    std::printf(
        " (%zu with a user or item the model has not seen: the mean rating%s); RMSE %.10g over "
        "the %zu it knows, %.10g over all\n",
        unseen,
        m.FallsBackToAverage() ? " of the training set"
        : m.biases             ? " plus the known side's bias"
                               : "",
        rmse(sse_known, known), known, rmse(sse, n));
    return 0;
  }
  if (f.user.empty()) return Fail(InvalidArgument("--user is required with --item or --top-n"));
  auto user = Lookup(*m.users, f.user, "user");
  if (!user.ok()) return Fail(user.status());
  if (!f.item.empty()) {
    auto item = Lookup(*m.items, f.item, "item");
    if (!item.ok()) return Fail(item.status());
    std::printf("%s\n", FormatDouble(m.Predict(*user, *item)).c_str());
    return 0;
  }
  std::vector<char> exclude;
  if (!f.exclude.empty()) {
    RatingsOptions o;
    o.users = m.users;
    o.items = m.items;
    auto rated = ReadRatings(f.exclude, o);
    if (!rated.ok()) return Fail(rated.status());
    exclude.assign(m.items->size(), 0);
    for (const Rating& r : rated->entries) {
      if (r.user == *user) exclude[r.item] = 1;
    }
  }
  for (const auto& [item, score] : m.TopN(*user, f.top_n, exclude)) {
    std::printf("%s\t%.4f\n", m.items->Name(item).c_str(), score);
  }
  return 0;
}

namespace {

class MfCommand final : public AppCommand {
 public:
  MfCommand() {
    // SGD wants fresh item factors: small batches, a clock after each. Batches of 96 users
    // (of equal ratings: MF weighs its users) reached the model-parallel run's test RMSE
    // soonest over ML-100K and Jester (of 16 to 128).
    f_.opts.data_parallel.batch_size = 96;
    f_.data_parallel.frequency = "batch";
  }
  std::string name() const override { return "mf"; }
  CLI::App* Add(CLI::App& app) override {
    CLI::App* cmd = AppCommand::Add(app);
    predict_ = AddMfPredictCommand(*cmd, f_);
    return cmd;
  }
  int Run(CLI::App& cmd) override {
    return predict_->parsed() ? RunMfPredict(f_) : AppCommand::Run(cmd);
  }
  const CompareSpec* compare() const override {
    static const CompareSpec spec = [] {
      CompareSpec s;
      s.own = {"--max-seconds", "--epochs"};
      s.seconds_flag = "--max-seconds";
      s.rounds_flag[0] = "--epochs";
      s.rounds_flag[1] = "--epochs";
      s.extra = {"train_rmse", "test_rmse"};
      s.curve = "test_rmse";
      s.curve_label = "test RMSE";
      return s;
    }();
    return &spec;
  }

 protected:
  std::string description() const override {
    return "Factorize a ratings matrix (model-parallel rotation SGD or CCD++, or data-parallel "
           "SGD); 'tessera mf predict' queries a model";
  }
  void AddFlags(CLI::App& cmd) override { AddMfTrainFlags(cmd, f_); }
  std::string trace_help() const override {
    return "Per-epoch CSV: round,seconds,objective,train_rmse,test_rmse,bytes";
  }
  std::string output_help() const override { return "Write the model (factors and id maps) here"; }
  std::string checkpoint_help() const override {
    return "at the end of an epoch, every --checkpoint-every (default: every epoch)";
  }
  StatusOr<Topology> Prepare() override {
    TESSERA_RETURN_IF_ERROR(PrepareMfTrain(f_, checkpoints()));
    if (f_.cv < 0 || f_.cv == 1) return InvalidArgument("--cv must be >= 2 folds");
    if (f_.cv > 0 && (!f_.test.empty() || !common().output.empty() || !common().trace.empty() ||
                      !common().summary.empty() || !checkpoints().dir.empty())) {
      return InvalidArgument(
          "--cv holds out folds of --train itself and keeps no model: drop --test, --output, "
          "--trace, --summary and checkpoints");
    }
    const bool dp = f_.opts.mode == "data-parallel";
    return Topology{dp, f_.opts.data_parallel.servers, f_.opts.engine.workers};
  }
  int Fit(Cluster& cluster) override { return FitMf(f_, common(), cluster); }

 private:
  MfFlags f_;
  CLI::App* predict_ = nullptr;
};

}  // namespace

void RegisterMfCommand() { Commands().Add(std::make_unique<MfCommand>()); }
}  // namespace tessera
