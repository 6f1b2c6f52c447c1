// `tessera lasso`: fit a Lasso, or a path of them, in either mode.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "tessera/algorithms/lasso/lasso.h"
#include "tessera/algorithms/lasso/lasso_cv.h"
#include "tessera/algorithms/lasso/lasso_dp.h"
#include "tessera/algorithms/lasso/lasso_model.h"
#include "tessera/core/dataset.h"
#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"
#include "tessera/tools/builtin_commands.h"
#include "tessera/tools/command.h"
#include "tessera/tools/data_parallel_flags.h"

namespace tessera {
namespace {

struct DataFlags {
  std::string path;
  std::string format;  // libsvm | csv | "" (guess from the name)
  std::string response;
  std::string index_base = "auto";
  int skip_rows = 0;
};

void AddDataFlags(CLI::App& cmd, DataFlags& f) {
  cmd.add_option("--data", f.path, "Data file (LIBSVM or CSV; .gz read transparently)");
  cmd.add_option("--format", f.format, "libsvm | csv (default: from the file name)");
  cmd.add_option("--response", f.response,
                 "CSV response column: name or #N (default: 'y' if present, else the last)");
  cmd.add_option("--skip-rows", f.skip_rows, "CSV lines to skip before the header");
  cmd.add_option("--index-base", f.index_base, "LIBSVM feature index base: auto | 0 | 1");
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

StatusOr<Dataset> LoadData(const DataFlags& f, std::int64_t num_features = 0) {
  if (f.path.empty()) return InvalidArgument("--data is required");
  std::string format = f.format;
  if (format.empty())
    format = EndsWith(f.path, ".csv") || EndsWith(f.path, ".csv.gz") ? "csv" : "libsvm";
  if (format == "csv") {
    CsvOptions o;
    o.response = f.response;
    o.skip_rows = f.skip_rows;
    return ReadCsv(f.path, o);
  }
  if (format == "libsvm") {
    LibsvmOptions o;
    if (f.index_base == "0")
      o.base = IndexBase::kZero;
    else if (f.index_base == "1")
      o.base = IndexBase::kOne;
    else if (f.index_base != "auto")
      return InvalidArgument("--index-base must be auto, 0 or 1");
    o.num_features = num_features;
    return ReadLibsvm(f.path, o);
  }
  return InvalidArgument("--format must be 'libsvm' or 'csv', got '" + format + "'");
}

struct LassoFlags {
  DataFlags data;
  LassoOptions opts;
  double lambda = 0;
  double lambda_ratio = 0;
  int path = 0;
  double path_ratio = 0;
  bool no_strong = false, no_active = false, no_gap_safe = false;
  DataParallelFlags data_parallel;  // parsed into opts.data_parallel
  bool no_accelerate = false, no_kkt_filter = false;
  int cv = 0;                    // folds; 0: no cross-validation
  std::string foldid;            // a file of fold ids, one per row
  std::string cv_refit = "min";  // the λ --output keeps after --cv: min | 1se | path
  std::string cv_output;         // lambda,cv_error,cv_sd,nonzeros CSV
};

void AddLassoFlags(CLI::App& cmd, LassoFlags& f) {
  AddDataFlags(cmd, f.data);
  cmd.add_option("--lambda", f.lambda, "L1 weight (default: lambda_max / 10)");
  cmd.add_option("--lambda-ratio", f.lambda_ratio, "L1 weight as a fraction of lambda_max");
  cmd.add_option("--path", f.path, "Fit a path of N lambdas from lambda_max down (warm starts)");
  cmd.add_option("--path-ratio", f.path_ratio,
                 "Smallest lambda of the path / lambda_max (default 1e-4, 1e-2 if p > n)");
  cmd.add_option("--mode", f.opts.mode,
                 "model-parallel (coordinate descent, STRADS) | data-parallel (proximal "
                 "gradient on a parameter server)")
      ->capture_default_str();
  cmd.add_option("--workers", f.opts.engine.workers, "Worker fibers, each owning a row partition")
      ->capture_default_str();
  cmd.add_option("--scheduler", f.opts.scheduler,
                 "NAME[:key=value,...], one of (with its arguments and their defaults):\n" +
                     DefaultSchedulers().Describe())
      ->capture_default_str();
  cmd.add_option("--block-size", f.opts.block_size,
                 "Coordinates per round (the scheduler's block_size unless it is given)")
      ->capture_default_str();
  cmd.add_option("--block-update", f.opts.block_update,
                 "sequential (exact, Gram-corrected) | parallel (Shotgun)")
      ->capture_default_str();
  cmd.add_option("--solve-keys", f.opts.solve_keys,
                 "Working sets are solved at the coordinator from their Gram entries in chunks "
                 "of up to N features per round (more when the columns are sparse); 0: "
                 "coordinate descent in scheduled blocks of --block-size")
      ->capture_default_str();
  cmd.add_option("--pipeline-depth", f.opts.engine.pipeline_depth, "Rounds in flight")
      ->capture_default_str();
  cmd.add_option("--max-rounds", f.opts.engine.max_rounds, "Stop after this many rounds per lambda")
      ->capture_default_str();
  cmd.add_option("--max-seconds", f.opts.engine.max_seconds,
                 "Stop after this many seconds per lambda");
  cmd.add_option("--stop", f.opts.stop,
                 "Model-parallel stopping rule: gap (duality gap <= tolerance x the objective "
                 "at 0) or kkt (every KKT violation <= tolerance x lambda_max)")
      ->capture_default_str();
  cmd.add_flag("--no-gap-safe", f.no_gap_safe, "No Gap Safe screening");
  cmd.add_option("--tolerance", f.opts.tolerance, "Convergence threshold (see --stop)")
      ->capture_default_str();
  cmd.add_option("--seed", f.opts.engine.seed, "Seed of randomized schedulers")
      ->capture_default_str();
  const std::string cv = "Cross-validation";
  cmd.add_option("--cv", f.cv,
                 "K-fold cross-validation along the path (glmnet's cv.glmnet): prints the CV "
                 "error per lambda, lambda.min and lambda.1se; folds seeded by --seed")
      ->group(cv);
  cmd.add_option("--foldid", f.foldid,
                 "Cross-validate with these folds: a file of one fold number (1..K) per row, "
                 "as glmnet's foldid")
      ->group(cv);
  cmd.add_option("--cv-refit", f.cv_refit,
                 "What --output keeps after cross-validation: the full-data fit at lambda.min "
                 "| 1se, or the whole path")
      ->capture_default_str()
      ->group(cv);
  cmd.add_option("--cv-output", f.cv_output, "Write lambda,cv_error,cv_sd,nonzeros CSV here")
      ->group(cv);
  cmd.add_flag("--standardize", f.opts.standardize, "Penalize by column standard deviation");
  cmd.add_flag("--no-strong-rules", f.no_strong, "Do not screen with the strong rule");
  cmd.add_flag("--no-active-set", f.no_active, "Always sweep every candidate");
  auto& dp = f.opts.data_parallel;
  const std::string g = "Data-parallel mode";
  AddDataParallelFlags(cmd, dp, f.data_parallel, "Rows per batch (0: the whole partition)");
  cmd.add_option("--max-epochs", dp.max_epochs, "Passes over the data per lambda")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--evaluate-every", dp.evaluate_every, "Clocks between objective evaluations")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--objective-tolerance", dp.objective_tolerance,
                 "Stop when the objective changes by less than this (relative) between "
                 "evaluations")
      ->capture_default_str()
      ->group(g);
  cmd.add_flag("--no-accelerate", f.no_accelerate, "Plain proximal gradient (no FISTA momentum)")
      ->group(g);
  cmd.add_option("--dp-method", f.opts.dp_method,
                 "block (delayed block proximal gradient, one block of features per clock), "
                 "gradient (full proximal gradient steps; FISTA under bsp) or auto (block under "
                 "ssp, essp, sparsessp, sspaggr and asp without mini-batches)")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--feature-blocks", f.opts.feature_blocks,
                 "The block method's blocks of features (0: from the data's size)")
      ->capture_default_str()
      ->group(g);
  cmd.add_flag("--no-kkt-filter", f.no_kkt_filter,
               "The block method steps every feature in every pass (by default passes between "
               "full ones step only the features that are nonzero)")
      ->group(g);
}

// Parses the data-parallel names and copies the flags both modes share.
Status FinishDataParallelFlags(LassoFlags& f) {
  auto& dp = f.opts.data_parallel;
  TESSERA_RETURN_IF_ERROR(ParseDataParallelFlags(f.data_parallel, dp));
  CopyRunOptions(f.opts.engine, dp);
  dp.seed = f.opts.engine.seed;
  f.opts.accelerate = !f.no_accelerate;
  f.opts.kkt_filter = !f.no_kkt_filter;
  return Status::Ok();
}

// One row: what `tessera compare` tabulates.
Status WriteSummary(const std::string& path, const LassoOptions& o, const LassoSolution& r,
                    double setup_seconds) {
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(
      out.Open(path,
               "mode,lambda,objective,gap,kkt,nonzeros,rounds,seconds,setup_seconds,bytes,"
               "peak_rss,stop" +
                   StalenessColumns()));
  out.Row(o.mode + "," + FormatDouble(r.lambda) + "," + FormatDouble(r.objective) + "," +
          FormatDouble(r.gap) + "," + FormatDouble(r.kkt_violation) + "," +
          std::to_string(r.nonzeros()) + "," + std::to_string(r.rounds) + "," +
          FormatDouble(r.seconds) + "," + FormatDouble(setup_seconds) + "," +
          std::to_string(r.bytes) + "," + std::to_string(PeakRssBytes()) + "," + r.stop_reason +
          StalenessValues(r.staleness));
  return out.Finish();
}

// The path's smallest λ / λ_max: --path-ratio, or glmnet's default, 1e-4 (1e-2 when p > n).
double PathRatio(const LassoFlags& f, const Dataset& d) {
  return f.path_ratio > 0 ? f.path_ratio : (d.cols() > d.rows() ? 1e-2 : 1e-4);
}

// --cv / --foldid: the full-data path, then each fold's along the same λ; the table, λ.min and
// λ.1se; --output keeps the full-data fit at the chosen λ (or the path).
int CrossValidate(LassoFlags& f, const CommonFlags& c, const Dataset& d, LassoSolver& s) {
  LassoCvOptions cv;
  cv.folds = f.cv;
  cv.seed = f.opts.engine.seed;
  if (!f.foldid.empty()) {
    auto ids = ReadFoldIds(f.foldid);
    if (!ids.ok()) return Fail(ids.status());
    cv.foldid = std::move(*ids);
  }
  auto path = s.PathLambdas(f.path > 0 ? f.path : 100, PathRatio(f, d));
  if (!path.ok()) return Fail(path.status());
  const std::vector<double>& lambdas = *path;
  auto full = s.FitLambdas(lambdas);
  if (!full.ok()) return Fail(full.status());
  if (!c.quiet) {
    std::printf("fitted the path of %zu lambdas on all %lld rows; cross-validating ...\n",
                lambdas.size(), static_cast<long long>(d.rows()));
    std::fflush(stdout);
  }
  auto result = CrossValidateLasso(d, f.opts, lambdas, cv);
  if (!result.ok()) return Fail(result.status());
  if (!result->holds_result) return 0;
  const LassoCvResult& r = *result;
  const int folds = *std::max_element(r.foldid.begin(), r.foldid.end());
  if (!c.quiet) {
    std::printf("%-14s %-16s %-12s %s\n", "lambda", "cv error (mse)", "std. error", "nonzeros");
    for (std::size_t l = 0; l < lambdas.size(); ++l) {
      std::printf("%-14.6g %-16.10g %-12.4g %d%s\n", lambdas[l], r.cv_error[Eigen::Index(l)],
                  r.cv_sd[Eigen::Index(l)], (*full)[l].nonzeros(),
                  l == r.index_min ? "  lambda.min" : (l == r.index_1se ? "  lambda.1se" : ""));
    }
  }
  for (const auto& [name, index] : {std::pair<const char*, std::size_t>{"lambda.min", r.index_min},
                                    {"lambda.1se", r.index_1se}}) {
    std::printf("%s %.9g: cv error %.10g (std. error %.4g), %d nonzeros, %d folds\n", name,
                lambdas[index], r.cv_error[Eigen::Index(index)], r.cv_sd[Eigen::Index(index)],
                (*full)[index].nonzeros(), folds);
  }
  if (!f.cv_output.empty()) {
    CsvWriter out;
    if (auto st = out.Open(f.cv_output, "lambda,cv_error,cv_sd,nonzeros"); !st.ok())
      return Fail(st);
    for (std::size_t l = 0; l < lambdas.size(); ++l) {
      out.Row(FormatDouble(lambdas[l]) + "," + FormatDouble(r.cv_error[Eigen::Index(l)]) + "," +
              FormatDouble(r.cv_sd[Eigen::Index(l)]) + "," + std::to_string((*full)[l].nonzeros()));
    }
    if (auto st = out.Finish(); !st.ok()) return Fail(st);
  }
  if (!c.output.empty()) {
    Status st = f.cv_refit == "path"
                    ? WritePath(c.output, d, *full)
                    : WriteCoefficients(c.output, d,
                                        (*full)[f.cv_refit == "1se" ? r.index_1se : r.index_min]);
    if (!st.ok()) return Fail(st);
  }
  return 0;
}

// In every process of the run: the fit, reported (at process 0) as `c` says.
// After a path: its fit time and rounds, and the λ that took longest, with their share.
void PrintHardest(const std::vector<LassoSolution>& path) {
  double seconds = 0;
  std::uint64_t rounds = 0;
  for (const auto& r : path) {
    seconds += r.seconds;
    rounds += r.rounds;
  }
  std::vector<const LassoSolution*> order;
  for (const auto& r : path) order.push_back(&r);
  const std::size_t shown = std::min<std::size_t>(3, order.size());
  std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(shown), order.end(),
                    [](const auto* a, const auto* b) { return a->seconds > b->seconds; });
  std::printf("path: %zu lambdas, %llu rounds, %.3f s of fits; the hardest at", path.size(),
              static_cast<unsigned long long>(rounds), seconds);
  for (std::size_t k = 0; k < shown; ++k) {
    const LassoSolution& r = *order[k];
    std::printf("%s %.6g (%.3f s, %.0f%%, %llu rounds, %d nonzeros)", k ? ";" : "", r.lambda,
                r.seconds, seconds > 0 ? 100 * r.seconds / seconds : 0.0,
                static_cast<unsigned long long>(r.rounds), r.nonzeros());
  }
  std::printf("\n");
}

int FitLasso(LassoFlags& f, const CommonFlags& c, Cluster& cluster) {
  const bool data_parallel = f.opts.mode == "data-parallel";
  f.opts.engine.transport = cluster.transport();
  f.opts.engine.progress = f.opts.data_parallel.progress = !c.quiet;
  f.opts.engine.trace_path = f.opts.data_parallel.trace_path = c.trace;
  auto data = LoadData(f.data);
  if (!data.ok()) return Fail(data.status());
  // The model-parallel workers walk columns: the data is read into them as well, before the
  // setup and the fit are timed (as a column-major solver is handed its matrix).
  if (!data_parallel) data->BuildColumns();
  const Dataset& d = *data;
  const std::string trace = f.opts.engine.trace_path;
  if (f.path > 0) {  // the path trace is written below
    f.opts.engine.trace_path.clear();
    f.opts.data_parallel.trace_path.clear();
  }
  // A line per λ as soon as it is fitted.
  auto print = [&](const LassoSolution& r) {
    if (c.quiet) return;
    ClearProgressLine();
    std::printf(
        "lambda %-12.6g objective %-16.12g gap %-9.2e kkt %-9.2e nonzeros %-6d rounds %-7llu "
        "%.3f s  (%s)\n",
        r.lambda, r.objective, r.gap, r.kkt_violation, r.nonzeros(),
        static_cast<unsigned long long>(r.rounds), r.seconds, r.stop_reason.c_str());
    std::fflush(stdout);
  };
  const bool cross_validate = f.cv > 0 || !f.foldid.empty();
  if (f.path > 0 && !cross_validate) f.opts.on_lambda = print;
  Stopwatch setup_clock;
  auto solver = LassoSolver::Create(d, f.opts);
  const double setup_seconds = setup_clock.Seconds();
  if (!solver.ok()) return Fail(solver.status());
  LassoSolver& s = **solver;
  const double lmax = s.LambdaMax();
  if (!c.quiet) {
    std::printf("tessera lasso: %s: %lld rows x %lld features, %lld nonzeros; lambda_max %.9g\n",
                d.source.c_str(), static_cast<long long>(d.rows()),
                static_cast<long long>(d.cols()), static_cast<long long>(d.x.nonZeros()), lmax);
    if (data_parallel) {
      const auto& dp = f.opts.data_parallel;
      std::printf(
          "  data-parallel: %d servers, %d workers on %d threads, consistency %s, update "
          "frequency %s, partition %s, %s; setup %.3f s\n",
          dp.servers, dp.workers, FiberPool::Global().threads(), dp.consistency.ToString().c_str(),
          UsesBlockMethod(f.opts) ? "batch (one block per clock)" : dp.frequency.ToString().c_str(),
          ToString(dp.partition).c_str(), s.DataParallelMethod().c_str(), setup_seconds);
    } else {
      std::printf(
          "  model-parallel: %d workers on %d threads, scheduler %s (block %d), %s updates, "
          "pipeline depth %d; setup %.3f s\n",
          f.opts.engine.workers, FiberPool::Global().threads(), f.opts.scheduler.c_str(),
          f.opts.block_size, f.opts.block_update.c_str(), f.opts.engine.pipeline_depth,
          setup_seconds);
    }
  }

  if (cross_validate) return CrossValidate(f, c, d, s);
  if (f.path > 0) {
    auto sols = s.FitPath(f.path, PathRatio(f, d));
    if (!sols.ok()) return Fail(sols.status());
    if (!c.quiet && !s.resumed().empty()) std::printf("resumed from %s\n", s.resumed().c_str());
    if (!c.quiet) PrintHardest(*sols);
    if (!c.output.empty()) {
      if (auto st = WritePath(c.output, d, *sols); !st.ok()) return Fail(st);
    }
    if (!trace.empty()) {
      CsvWriter out;
      if (auto st = out.Open(trace, "lambda,round,seconds,objective,updates,bytes"); !st.ok())
        return Fail(st);
      for (const auto& r : *sols) {
        for (const auto& e : r.evaluations) {
          out.Row(FormatDouble(r.lambda) + "," + std::to_string(e.round) + "," +
                  FormatDouble(e.seconds) + "," + FormatDouble(e.objective) + "," +
                  std::to_string(e.updates) + "," + std::to_string(e.bytes));
        }
      }
      if (auto st = out.Finish(); !st.ok()) return Fail(st);
    }
  } else {
    const double lambda =
        f.lambda > 0 ? f.lambda : lmax * (f.lambda_ratio > 0 ? f.lambda_ratio : 0.1);
    auto fits = s.FitLambdas({lambda});
    if (!fits.ok()) return Fail(fits.status());
    const LassoSolution* r = &fits->front();
    if (!c.quiet && !s.resumed().empty()) std::printf("resumed from %s\n", s.resumed().c_str());
    print(*r);
    if (!c.quiet) {
      std::printf("intercept %.12g; bytes moved %llu; peak RSS %.1f MiB\n", r->intercept,
                  static_cast<unsigned long long>(r->bytes), PeakRssBytes() / 1048576.0);
      PrintStaleness(r->staleness);
    }
    if (!c.output.empty()) {
      if (auto st = WriteCoefficients(c.output, d, *r); !st.ok()) return Fail(st);
    }
    if (!c.summary.empty()) {
      if (auto st = WriteSummary(c.summary, f.opts, *r, setup_seconds); !st.ok()) return Fail(st);
    }
  }
  return 0;
}

// `tessera lasso predict`: predictions of a saved model for the rows of a data file.
struct LassoPredictFlags {
  std::string model;
  DataFlags data;
  std::vector<double> lambdas;  // empty: every λ of the model
  std::string predictions;      // CSV: row,y,<one column per λ>
};

CLI::App* AddLassoPredictCommand(CLI::App& lasso, LassoPredictFlags& f) {
  CLI::App* cmd = lasso.add_subcommand(
      "predict",
      "Predict the response of each row of a data file from a model that 'tessera lasso "
      "--output' wrote, and print the mean squared error against the file's response");
  cmd->add_option("--model", f.model, "The coefficients file (one lambda, or a path)")->required();
  AddDataFlags(*cmd, f.data);
  cmd->add_option("--lambda", f.lambdas,
                  "Lambdas to predict at (a path's own, or between two of them: interpolated); "
                  "default: every lambda of the model");
  cmd->add_option("--predictions", f.predictions,
                  "Write row,y,<a column per lambda> CSV here (written atomically)");
  return cmd;
}

int RunLassoPredict(const LassoPredictFlags& f) {
  auto model = ReadLassoModel(f.model);
  if (!model.ok()) return Fail(model.status());
  if (!f.predictions.empty()) {
    if (Status s = CheckWritable(f.predictions); !s.ok()) return Fail(s);
  }
  auto data = LoadData(f.data, static_cast<std::int64_t>(model->features.size()));
  if (!data.ok()) return Fail(data.status());
  if (Status s = CheckFeatures(*model, *data); !s.ok()) return Fail(s);
  std::vector<double> lambdas = f.lambdas.empty() ? model->lambdas : f.lambdas;
  std::vector<Eigen::VectorXd> predicted;
  std::string header = "row,y";
  for (double lambda : lambdas) {
    double intercept = 0;
    Eigen::VectorXd beta;
    if (Status s = model->At(lambda, intercept, beta); !s.ok()) return Fail(s);
    predicted.push_back(PredictLasso(*data, intercept, beta));
    const double mse = (predicted.back() - data->y).squaredNorm() /
                       static_cast<double>(std::max<std::int64_t>(1, data->rows()));
    const std::string name = std::isnan(lambda) ? "prediction" : FormatDouble(lambda);
    header += "," + name;
    std::printf("lambda %s: %lld rows, mean squared error %.10g\n",
                std::isnan(lambda) ? "(of the model)" : name.c_str(),
                static_cast<long long>(data->rows()), mse);
  }
  if (!f.predictions.empty()) {
    CsvWriter out;
    if (Status s = out.Open(f.predictions, header); !s.ok()) return Fail(s);
    for (std::int64_t i = 0; i < data->rows(); ++i) {
      std::string row = std::to_string(i + 1) + "," + FormatDouble(data->y[i]);
      for (const Eigen::VectorXd& p : predicted) row += "," + FormatDouble(p[i]);
      out.Row(row);
    }
    if (Status s = out.Finish(); !s.ok()) return Fail(s);
  }
  return 0;
}

class LassoCommand final : public AppCommand {
 public:
  LassoCommand() {
    // Data-parallel Lasso runs full-gradient epochs: many more, and cheaper, than CD rounds.
    f_.opts.data_parallel.max_epochs = 10000;
    f_.opts.data_parallel.evaluate_every = 10;
    f_.opts.data_parallel.objective_tolerance = 1e-10;
  }
  std::string name() const override { return "lasso"; }
  CLI::App* Add(CLI::App& app) override {
    CLI::App* cmd = AppCommand::Add(app);
    predict_ = AddLassoPredictCommand(*cmd, predict_flags_);
    return cmd;
  }
  int Run(CLI::App& cmd) override {
    if (predict_->parsed()) return RunLassoPredict(predict_flags_);
    // Required of a fit, not of predict.
    if (f_.data.path.empty()) return UsageError("--data is required");
    return AppCommand::Run(cmd);
  }
  const CompareSpec* compare() const override {
    static const CompareSpec spec = [] {
      CompareSpec s;
      s.own = {"--path", "--max-seconds", "--max-rounds", "--max-epochs"};
      s.seconds_flag = "--max-seconds";
      s.rounds_flag[0] = "--max-rounds";
      s.rounds_flag[1] = "--max-epochs";
      s.extra = {"gap", "kkt", "nonzeros"};
      return s;
    }();
    return &spec;
  }

 protected:
  std::string description() const override {
    return "Fit a Lasso (model-parallel coordinate descent or data-parallel proximal gradient)";
  }
  void AddFlags(CLI::App& cmd) override { AddLassoFlags(cmd, f_); }
  std::string trace_help() const override {
    return "Per-round metrics CSV (a path: lambda,round,seconds,objective,updates,bytes)";
  }
  std::string output_help() const override {
    return "Coefficients CSV (a path: one row per lambda)";
  }
  std::string checkpoint_help() const override {
    return "after every lambda, and (model-parallel) within a fit every --checkpoint-every";
  }

  StatusOr<Topology> Prepare() override {
    LassoFlags& f = f_;
    if (f.lambda != 0 && f.lambda_ratio != 0) {
      return InvalidArgument("give --lambda or --lambda-ratio, not both");
    }
    if (f.lambda < 0 || !std::isfinite(f.lambda)) {
      return InvalidArgument("--lambda must be positive");
    }
    if (f.lambda_ratio < 0 || f.lambda_ratio > 1) {
      return InvalidArgument("--lambda-ratio must be in (0, 1]");
    }
    if (f.path < 0) return InvalidArgument("--path must be >= 1");
    if (f.path > 0 && !common().summary.empty()) {
      return InvalidArgument("--summary describes one fit; drop it or --path");
    }
    if (f.cv < 0 || f.cv == 1) return InvalidArgument("--cv must be >= 2 folds");
    if (f.cv > 0 && !f.foldid.empty()) {
      return InvalidArgument("give --cv K or --foldid FILE, not both");
    }
    const bool cross_validate = f.cv > 0 || !f.foldid.empty();
    if (f.cv_refit != "min" && f.cv_refit != "1se" && f.cv_refit != "path") {
      return InvalidArgument("--cv-refit must be min, 1se or path, got '" + f.cv_refit + "'");
    }
    if (!cross_validate && !f.cv_output.empty()) {
      return InvalidArgument("--cv-output needs --cv or --foldid");
    }
    if (cross_validate && (f.lambda != 0 || f.lambda_ratio != 0 || !common().summary.empty() ||
                           !common().checkpoint.dir.empty() || !common().trace.empty())) {
      return InvalidArgument(
          "--cv cross-validates a path of its own: drop --lambda/--lambda-ratio, --summary, "
          "--trace and checkpoints (--path and --path-ratio set the path)");
    }
    if (f.path > 0 && (f.lambda != 0 || f.lambda_ratio != 0)) {
      return InvalidArgument("--path computes its own lambdas; drop --lambda/--lambda-ratio");
    }
    f.opts.strong_rules = !f.no_strong;
    f.opts.active_set = !f.no_active;
    f.opts.gap_safe = !f.no_gap_safe;
    f.opts.engine.label = "lasso";
    TESSERA_RETURN_IF_ERROR(FinishDataParallelFlags(f));
    SetCheckpointOptions(checkpoints(), f.opts);
    TESSERA_RETURN_IF_ERROR(f.opts.Validate());
    // The processes join before the data is read, so that an error there reaches the others
    // as this process's goodbye instead of a connect timeout.
    const bool dp = f.opts.mode == "data-parallel";
    return Topology{dp, f.opts.data_parallel.servers, f.opts.engine.workers};
  }
  int Fit(Cluster& cluster) override { return FitLasso(f_, common(), cluster); }

 private:
  LassoFlags f_;
  LassoPredictFlags predict_flags_;
  CLI::App* predict_ = nullptr;
};

}  // namespace

void RegisterLassoCommand() { Commands().Add(std::make_unique<LassoCommand>()); }
}  // namespace tessera
