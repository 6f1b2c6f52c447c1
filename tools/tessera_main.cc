// The `tessera` command line: tessera lasso ... (more apps arrive with their issues).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include "algorithms/lasso/lasso.h"
#include "core/dataset.h"
#include "core/fiber_pool.h"
#include "core/metrics.h"
#include "tools/checkpoint_flags.h"
#include "tools/cluster.h"
#include "tools/compare.h"
#include "tools/data_parallel_flags.h"
#include "tools/launch.h"
#include "tools/lda_command.h"
#include "tools/mf_command.h"

namespace tessera {
namespace {

struct DataFlags {
  std::string path;
  std::string format;  // libsvm | csv | "" (guess from the name)
  std::string response;
  std::string index_base = "auto";
  int skip_rows = 0;
};

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

StatusOr<Dataset> LoadData(const DataFlags& f) {
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
  std::string output;
  bool quiet = false;
  bool no_strong = false, no_active = false;
  int threads = 0;
  DataParallelFlags data_parallel;  // parsed into opts.data_parallel
  bool no_accelerate = false;
  std::string summary;  // one-row CSV of the result, for `tessera compare`
  ClusterFlags cluster;
  CheckpointFlags checkpoint;
};

void AddLassoFlags(CLI::App& cmd, LassoFlags& f) {
  cmd.add_option("--data", f.data.path, "Data file (LIBSVM or CSV; .gz read transparently)")
      ->required();
  cmd.add_option("--format", f.data.format, "libsvm | csv (default: from the file name)");
  cmd.add_option("--response", f.data.response,
                 "CSV response column: name or #N (default: 'y' if present, else the last)");
  cmd.add_option("--skip-rows", f.data.skip_rows, "CSV lines to skip before the header");
  cmd.add_option("--index-base", f.data.index_base, "LIBSVM feature index base: auto | 0 | 1");
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
  cmd.add_option("--threads", f.threads, "OS threads running the fibers (default: all cores)");
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
  cmd.add_option("--pipeline-depth", f.opts.engine.pipeline_depth, "Rounds in flight")
      ->capture_default_str();
  cmd.add_option("--max-rounds", f.opts.engine.max_rounds, "Stop after this many rounds per lambda")
      ->capture_default_str();
  cmd.add_option("--max-seconds", f.opts.engine.max_seconds,
                 "Stop after this many seconds per lambda");
  cmd.add_option("--tolerance", f.opts.tolerance, "Convergence threshold (see README)")
      ->capture_default_str();
  cmd.add_option("--seed", f.opts.engine.seed, "Seed of randomized schedulers")
      ->capture_default_str();
  cmd.add_flag("--standardize", f.opts.standardize, "Penalize by column standard deviation");
  cmd.add_flag("--no-strong-rules", f.no_strong, "Do not screen with the strong rule");
  cmd.add_flag("--no-active-set", f.no_active, "Always sweep every candidate");
  cmd.add_option("--trace", f.opts.engine.trace_path, "Per-round metrics CSV");
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
  cmd.add_option("--summary", f.summary, "Write a one-row CSV summary of the fit");
  cmd.add_option("--output", f.output, "Coefficients CSV (a path: one row per lambda)");
  cmd.add_flag("--quiet", f.quiet, "No progress line or summary");
  AddCheckpointFlags(cmd, f.checkpoint,
                     "after every lambda, and (model-parallel) within a fit every "
                     "--checkpoint-every");
  AddClusterFlags(cmd, f.cluster);
}

// Parses the data-parallel names and copies the flags both modes share.
Status FinishDataParallelFlags(LassoFlags& f) {
  auto& dp = f.opts.data_parallel;
  TESSERA_RETURN_IF_ERROR(ParseDataParallelFlags(f.data_parallel, dp));
  CopyRunOptions(f.opts.engine, dp);
  dp.seed = f.opts.engine.seed;
  f.opts.accelerate = !f.no_accelerate;
  return Status::Ok();
}

// One row: what `tessera compare` tabulates.
Status WriteSummary(const std::string& path, const LassoOptions& o, const LassoSolution& r,
                    double setup_seconds) {
  CsvWriter out;
  TESSERA_RETURN_IF_ERROR(out.Open(
      path, "mode,lambda,objective,kkt,nonzeros,rounds,seconds,setup_seconds,bytes,peak_rss,stop"));
  out.Row(o.mode + "," + FormatDouble(r.lambda) + "," + FormatDouble(r.objective) + "," +
          FormatDouble(r.kkt_violation) + "," + std::to_string(r.nonzeros()) + "," +
          std::to_string(r.rounds) + "," + FormatDouble(r.seconds) + "," +
          FormatDouble(setup_seconds) + "," + std::to_string(r.bytes) + "," +
          std::to_string(PeakRssBytes()) + "," + r.stop_reason);
  return out.Finish();
}

int RunLassoIn(LassoFlags& f, Cluster& cluster);

int RunLasso(LassoFlags& f) {
  if (f.threads < 0 || f.threads > 1024) {
    return Fail(InvalidArgument("--threads must be between 0 (all cores) and 1024, got " +
                                std::to_string(f.threads)));
  }
  if (f.lambda != 0 && f.lambda_ratio != 0) {
    return Fail(InvalidArgument("give --lambda or --lambda-ratio, not both"));
  }
  if (f.lambda < 0 || !std::isfinite(f.lambda)) {
    return Fail(InvalidArgument("--lambda must be positive"));
  }
  if (f.lambda_ratio < 0 || f.lambda_ratio > 1) {
    return Fail(InvalidArgument("--lambda-ratio must be in (0, 1]"));
  }
  if (f.path < 0) return Fail(InvalidArgument("--path must be >= 1"));
  if (f.path > 0 && !f.summary.empty()) {
    return Fail(InvalidArgument("--summary describes one fit; drop it or --path"));
  }
  if (f.path > 0 && (f.lambda != 0 || f.lambda_ratio != 0)) {
    return Fail(InvalidArgument("--path computes its own lambdas; drop --lambda/--lambda-ratio"));
  }
  f.opts.strong_rules = !f.no_strong;
  f.opts.active_set = !f.no_active;
  f.opts.engine.progress = !f.quiet;
  f.opts.engine.label = "lasso";
  if (auto st = FinishDataParallelFlags(f); !st.ok()) return Fail(st);
  auto checkpoints = ResolveCheckpointFlags(f.checkpoint);
  if (!checkpoints.ok()) return Fail(checkpoints.status());
  f.opts.checkpoint_dir = checkpoints->dir;
  f.opts.checkpoint_every = checkpoints->every;
  f.opts.resume = checkpoints->resume;
  if (auto st = f.opts.Validate(); !st.ok()) return Fail(st);
  // Join the other processes (if any) before reading the data, so that an error here reaches
  // them as this process's goodbye instead of a connect timeout.
  const bool data_parallel = f.opts.mode == "data-parallel";
  const auto& dpo = f.opts.data_parallel;
  auto cluster = data_parallel
                     ? Cluster::Join(f.cluster, 1 + dpo.servers + dpo.workers, CoordinatorAlone,
                                     "--servers " + std::to_string(dpo.servers) + " --workers " +
                                         std::to_string(dpo.workers))
                     : Cluster::Join(f.cluster, f.opts.engine.workers + 1, CoordinatorAlone,
                                     "--workers " + std::to_string(f.opts.engine.workers));
  if (!cluster.ok()) return Fail(cluster.status());
  Cluster& c = **cluster;
  FiberPool::Global(c.Threads(f.threads));
  return c.Finish(RunLassoIn(f, c), LastError());
}

int RunLassoIn(LassoFlags& f, Cluster& cluster) {
  const bool data_parallel = f.opts.mode == "data-parallel";
  f.opts.engine.transport = cluster.transport();
  if (!cluster.leader()) {  // process 0 reports and writes
    f.quiet = true;
    f.opts.engine.progress = f.opts.data_parallel.progress = false;
    f.output.clear();
    f.summary.clear();
    f.opts.engine.trace_path.clear();
    f.opts.data_parallel.trace_path.clear();
  }
  auto data = LoadData(f.data);
  if (!data.ok()) return Fail(data.status());
  const Dataset& d = *data;
  const std::string trace = f.opts.engine.trace_path;
  if (f.path > 0) {  // the path trace is written below
    f.opts.engine.trace_path.clear();
    f.opts.data_parallel.trace_path.clear();
  }
  Stopwatch setup_clock;
  auto solver = LassoSolver::Create(d, f.opts);
  const double setup_seconds = setup_clock.Seconds();
  if (!solver.ok()) return Fail(solver.status());
  LassoSolver& s = **solver;
  const double lmax = s.LambdaMax();
  if (!f.quiet) {
    std::printf("tessera lasso: %s: %lld rows x %lld features, %lld nonzeros; lambda_max %.9g\n",
                d.source.c_str(), static_cast<long long>(d.rows()),
                static_cast<long long>(d.cols()), static_cast<long long>(d.x.nonZeros()), lmax);
    if (data_parallel) {
      const auto& dp = f.opts.data_parallel;
      std::printf(
          "  data-parallel: %d servers, %d workers on %d threads, consistency %s, update "
          "frequency %s, partition %s, %s; setup %.3f s\n",
          dp.servers, dp.workers, FiberPool::Global().threads(), dp.consistency.ToString().c_str(),
          dp.frequency.ToString().c_str(), ToString(dp.partition).c_str(),
          f.opts.accelerate && dp.consistency.model == ConsistencyModel::kBsp ? "FISTA"
                                                                              : "proximal gradient",
          setup_seconds);
    } else {
      std::printf(
          "  model-parallel: %d workers on %d threads, scheduler %s (block %d), %s updates, "
          "pipeline depth %d; setup %.3f s\n",
          f.opts.engine.workers, FiberPool::Global().threads(), f.opts.scheduler.c_str(),
          f.opts.block_size, f.opts.block_update.c_str(), f.opts.engine.pipeline_depth,
          setup_seconds);
    }
  }
  auto print = [&](const LassoSolution& r) {
    if (f.quiet) return;
    std::printf(
        "lambda %-12.6g objective %-16.12g kkt %-9.2e nonzeros %-6d rounds %-7llu %.3f s  (%s)\n",
        r.lambda, r.objective, r.kkt_violation, r.nonzeros(),
        static_cast<unsigned long long>(r.rounds), r.seconds, r.stop_reason.c_str());
  };
  if (f.path > 0) {
    double ratio = f.path_ratio > 0 ? f.path_ratio : (d.cols() > d.rows() ? 1e-2 : 1e-4);
    auto sols = s.FitPath(f.path, ratio);
    if (!sols.ok()) return Fail(sols.status());
    if (!f.quiet && !s.resumed().empty()) std::printf("resumed from %s\n", s.resumed().c_str());
    for (const auto& r : *sols) print(r);
    if (!f.output.empty()) {
      if (auto st = WritePath(f.output, d, *sols); !st.ok()) return Fail(st);
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
    if (!f.quiet && !s.resumed().empty()) std::printf("resumed from %s\n", s.resumed().c_str());
    print(*r);
    if (!f.quiet) {
      std::printf("intercept %.12g; bytes moved %llu; peak RSS %.1f MiB\n", r->intercept,
                  static_cast<unsigned long long>(r->bytes), PeakRssBytes() / 1048576.0);
    }
    if (!f.output.empty()) {
      if (auto st = WriteCoefficients(f.output, d, *r); !st.ok()) return Fail(st);
    }
    if (!f.summary.empty()) {
      if (auto st = WriteSummary(f.summary, f.opts, *r, setup_seconds); !st.ok()) return Fail(st);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  using namespace tessera;
  CLI::App app{"Tessera: distributed machine learning, model-parallel and data-parallel"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tessera 0.1.0");
  LassoFlags lasso;
  // Data-parallel Lasso runs full-gradient epochs: many more, and cheaper, than CD rounds.
  lasso.opts.data_parallel.max_epochs = 10000;
  lasso.opts.data_parallel.evaluate_every = 10;
  lasso.opts.data_parallel.objective_tolerance = 1e-10;
  CLI::App* lasso_cmd = app.add_subcommand(
      "lasso",
      "Fit a Lasso (model-parallel coordinate descent or data-parallel proximal gradient)");
  AddLassoFlags(*lasso_cmd, lasso);
  CompareFlags compare;
  CLI::App* compare_cmd = app.add_subcommand(
      "compare",
      "Run an app in model-parallel and data-parallel mode under the same budget and show "
      "both: table, CSV, PNG. Other flags go to both runs, e.g. tessera compare lasso --data F "
      "--lambda-ratio 0.1 --workers 2 --consistency ssp:2 --budget-seconds 30");
  compare_cmd->add_option("app", compare.app, "lasso | mf | lda")->required();
  compare_cmd
      ->add_option("--out", compare.out,
                   "Output prefix: PREFIX.csv, PREFIX-summary.csv, "
                   "PREFIX.png")
      ->capture_default_str();
  compare_cmd->add_option("--budget-seconds", compare.budget_seconds,
                          "Wall-time limit of each run (setup excluded)");
  compare_cmd->add_option("--budget-rounds", compare.budget_rounds,
                          "Round limit of each run (model-parallel rounds, data-parallel clocks)");
  compare_cmd->allow_extras();
  MfFlags mf;
  const MfCommands mf_cmds = AddMfCommands(app, mf);
  LdaFlags lda;
  CLI::App* lda_cmd = AddLdaCommand(app, lda);
  LaunchFlags launch;
  CLI::App* launch_cmd = AddLaunchCommand(app, launch);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string cmd = "lasso";
    for (CLI::App* sub = &app; !sub->get_subcommands().empty();) {
      sub = sub->get_subcommands()[0];
      cmd = (sub->get_parent() == &app ? "" : cmd + " ") + sub->get_name();
    }
    std::cerr << "tessera: error: " << e.what() << "\n(run 'tessera --help' or 'tessera " << cmd
              << " --help')" << std::endl;
    return 2;
  }
  if (lasso_cmd->parsed()) return RunLasso(lasso);
  if (mf_cmds.predict->parsed()) return RunMfPredict(mf);
  if (mf_cmds.train->parsed()) return RunMfTrain(mf);
  if (lda_cmd->parsed()) return RunLda(lda);
  if (launch_cmd->parsed()) return RunLaunch(launch);
  if (compare_cmd->parsed()) {
    compare.forwarded = compare_cmd->remaining();
    return RunCompare(compare);
  }
  return 2;
}
