// A user's own app, with everything the built-in apps get: ridge regression,
//   min (1/2n)‖y − Xb‖² + (α/2)‖b‖²,
// as a `ridge` command of the user's own program, fitted either
//  - model-parallel: coordinate descent written as a FunctionalApp; each worker owns a row
//    range and its residual y − Xb (its WorkerState), a registered scheduler plans the
//    rounds; or
//  - data-parallel: mini-batch SGD with the coefficients on the parameter server and the
//    user's own server-side update function (heavy-ball momentum with a decaying step, its
//    state kept on the shard).
// The command derives from AppCommand, so it has the flags every app shares (--workers'
// processes, --trace, --summary, --output, --quiet, checkpoint and cluster flags), runs across
// processes under `launch`, mpirun or srun, and `compare ridge` runs it in both modes. Each
// fit prints its objective next to the closed form's, (XᵀX + nαI)⁻¹Xᵀy.
//   ridge_app ridge --data diabetes.csv --alpha 0.001 --workers 3
//   ridge_app ridge --data diabetes.csv --mode data-parallel --consistency ssp:1
//   ridge_app launch -n 3 -- ridge_app ridge --data diabetes.csv --workers 2
//   ridge_app compare ridge --data diabetes.csv
#include <CLI/CLI.hpp>
#include <Eigen/Dense>
#include <cmath>
#include <cstdio>
#include <string>
#include <utility>

#include "tessera/core/data_parallel.h"
#include "tessera/core/dataset.h"
#include "tessera/core/metrics.h"
#include "tessera/core/model_parallel.h"
#include "tessera/tools/command.h"
#include "tessera/tools/data_parallel_flags.h"

namespace {

using namespace tessera;

struct Residual final : WorkerState {  // worker w's y − Xb over its rows
  explicit Residual(Eigen::VectorXd v) : r(std::move(v)) {}
  Eigen::VectorXd r;
};

// Coordinate descent, one coordinate a round, until a sweep changes nothing; `beta` is
// committed by Pull, in the coordinator's process.
StatusOr<RunResult> FitByCoordinateDescent(const Eigen::MatrixXd& x, const Eigen::VectorXd& y,
                                           double alpha, EngineOptions options,
                                           Eigen::VectorXd& beta) {
  const Eigen::Index n = x.rows(), p = x.cols();
  options.scheduler = "round_robin:block_size=1";
  options.change_tolerance = 1e-12;
  options.objective_every = static_cast<std::uint64_t>(p);        // a trace point per sweep
  const auto rows = SplitRange(n, std::max(options.workers, 1));  // worker w's rows
  auto mine = [&](Key j, int w) { return x.col(j).segment(rows[w].begin, rows[w].size()); };
  beta = Eigen::VectorXd::Zero(p);
  FunctionalApp app;
  for (Key j = 0; j < Key(p); ++j) app.schedule_keys.push_back(j);
  app.make_worker = [&](const WorkerSetup& s) {
    return std::make_unique<Residual>(y.segment(rows[s.worker].begin, rows[s.worker].size()));
  };
  app.push = [&](WorkerContext& ctx, std::span<const Block> b) {  // x_jᵀr, ‖x_j‖² over my rows
    const auto xj = mine(b[0].keys[0], ctx.worker);
    const Eigen::Vector2d sums(xj.dot(ctx.State<Residual>().r), xj.squaredNorm());
    return std::vector<Partial>{{0, 0, sums}};
  };
  app.pull = [&](PullContext&, std::span<const Block> b, std::span<const Partial> s) {
    const Key j = b[0].keys[0];  // b_j's exact minimizer from s = (x_jᵀr, ‖x_j‖²):
    const double d = s[0].values[1], updated = (s[0].values[0] + d * beta[j]) / (d + n * alpha);
    return Update{{j}, Eigen::VectorXd::Constant(1, updated - std::exchange(beta[j], updated))};
  };
  app.apply = [&](WorkerContext& ctx, const Update& u) {
    ctx.State<Residual>().r -= u.delta[0] * mine(u.keys[0], ctx.worker);
  };
  app.evaluate_terms = [](WorkerContext& ctx) {
    return Eigen::VectorXd::Constant(1, ctx.State<Residual>().r.squaredNorm());
  };
  app.objective = [&](auto& t) { return t[0] / (2. * n) + alpha / 2 * beta.squaredNorm(); };
  return RunModelParallel(app, options);
}

// Mini-batch SGD on a parameter server table of the p coefficients.
class RidgeSgd final : public DataParallelApp {
 public:
  RidgeSgd(const Eigen::MatrixXd& x, const Eigen::VectorXd& y, double alpha, double step)
      : x_(x), y_(y), alpha_(alpha), step_(step) {}
  std::size_t num_rows() const override { return static_cast<std::size_t>(x_.rows()); }

  std::vector<TableSpec> Tables(const DataParallelOptions& o) override {
    TableSpec b;
    b.name = "ridge_b";
    b.num_keys = static_cast<std::uint64_t>(x_.cols());
    b.consistency = o.consistency;
    const double step = step_;
    b.updater = FunctionUpdater(  // state per coefficient: velocity, steps taken
        "momentum_sgd", 2,
        [step](Key, std::size_t count, int, double* value, const double* grad, double* state) {
          for (std::size_t i = 0; i < count; ++i) {
            double* s = state + 2 * i;
            s[1] += 1;
            s[0] = 0.9 * s[0] + grad[i];
            value[i] -= step / std::sqrt(1 + s[1] / 50) * s[0];
          }
        });
    return {b};
  }

  // Gradient of the batch's share of the objective, averaged over a clock's rows.
  Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> batch) override {
    const KeyRange all{0, static_cast<Key>(x_.cols())};
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd b, ctx.client->PullRange(0, all).Get());
    Eigen::VectorXd g = Eigen::VectorXd::Zero(x_.cols());
    for (auto i : batch) g += x_.row(i).transpose() * (x_.row(i).dot(b) - y_[i]);
    g = g / ctx.rows_per_clock + alpha_ * b / ctx.num_workers;
    return ctx.client->PushRange(0, all, {g.data(), static_cast<std::size_t>(g.size())});
  }

  // Every worker reads the same b here (an evaluation barrier); worker 0 adds the penalty.
  StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) override {
    TESSERA_ASSIGN_OR_RETURN(Eigen::VectorXd b,
                             ctx.client->PullRange(0, {0, static_cast<Key>(x_.cols())}).Get());
    Eigen::VectorXd t = Eigen::VectorXd::Zero(2);
    for (auto i : ctx.rows) t[0] += std::pow(x_.row(i).dot(b) - y_[i], 2) / ctx.replication;
    if (ctx.worker == 0) t[1] = b.squaredNorm();
    return t;
  }
  double Objective(const Eigen::VectorXd& t) override {
    return t[0] / (2.0 * x_.rows()) + 0.5 * alpha_ * t[1];
  }

 private:
  const Eigen::MatrixXd& x_;
  const Eigen::VectorXd& y_;
  double alpha_, step_;
};

class RidgeCommand final : public AppCommand {
 public:
  RidgeCommand() {  // SGD's defaults: batches of 32 rows, a clock per batch
    dp_.batch_size = 32;
    dp_flags_.frequency = "batch";
    dp_flags_.partition = "disjoint_random";
    dp_.max_epochs = 400;
    dp_.evaluate_every = 20;
  }
  std::string name() const override { return "ridge"; }
  const CompareSpec* compare() const override {
    static const CompareSpec spec = [] {
      CompareSpec s;
      s.own = {"--max-seconds", "--max-rounds", "--max-epochs"};
      s.seconds_flag = "--max-seconds";
      s.rounds_flag[0] = "--max-rounds";
      s.rounds_flag[1] = "--max-epochs";
      s.extra = {"closed_form_gap"};
      return s;
    }();
    return &spec;
  }

 protected:
  std::string description() const override {
    return "Fit a ridge regression (model-parallel coordinate descent or data-parallel SGD)";
  }
  void AddFlags(CLI::App& cmd) override {
    cmd.add_option("--data", data_, "CSV with a header; the response is 'y' or the last column")
        ->required();
    cmd.add_option("--alpha", alpha_, "L2 weight")->capture_default_str();
    cmd.add_option("--mode", mode_, "model-parallel | data-parallel")->capture_default_str();
    cmd.add_option("--workers", engine_.workers, "Worker fibers")->capture_default_str();
    cmd.add_option("--max-rounds", engine_.max_rounds, "Model-parallel: stop after N rounds")
        ->capture_default_str();
    cmd.add_option("--max-seconds", engine_.max_seconds, "Stop after this many seconds");
    AddDataParallelFlags(cmd, dp_, dp_flags_, "Rows per batch (0: the whole partition)");
    cmd.add_option("--max-epochs", dp_.max_epochs, "Data-parallel: passes over the data")
        ->capture_default_str();
    cmd.add_option("--evaluate-every", dp_.evaluate_every,
                   "Data-parallel: clocks between objective evaluations")
        ->capture_default_str();
    cmd.add_option("--step", step_, "Data-parallel: the update function's step")
        ->capture_default_str();
  }
  std::string output_help() const override { return "Coefficients CSV (feature,value)"; }
  std::string checkpoint_help() const override { return "(not used by this app)"; }

  StatusOr<Topology> Prepare() override {
    if (mode_ != "model-parallel" && mode_ != "data-parallel") {
      return InvalidArgument("--mode must be model-parallel or data-parallel, got '" + mode_ + "'");
    }
    if (!(alpha_ > 0)) return InvalidArgument("--alpha must be positive");
    TESSERA_RETURN_IF_ERROR(ParseDataParallelFlags(dp_flags_, dp_));
    engine_.label = "ridge";
    CopyRunOptions(engine_, dp_);
    TESSERA_RETURN_IF_ERROR(dp_.Validate());
    return Topology{mode_ == "data-parallel", dp_.servers, engine_.workers};
  }

  int Fit(Cluster& cluster) override {
    const CommonFlags& c = common();
    auto data = ReadCsv(data_);
    if (!data.ok()) return Fail(data.status());
    const Eigen::MatrixXd x = Eigen::MatrixXd(data->x);
    const Eigen::VectorXd y = data->y.array() - data->y.mean();  // no intercept: center y
    engine_.transport = cluster.transport();
    engine_.trace_path = dp_.trace_path = c.trace;
    engine_.progress = dp_.progress = !c.quiet;
    Eigen::VectorXd beta;
    RunResult run;
    if (mode_ == "model-parallel") {
      auto r = FitByCoordinateDescent(x, y, alpha_, engine_, beta);
      if (!r.ok()) return Fail(r.status());
      run = std::move(*r);
    } else {
      RidgeSgd app(x, y, alpha_, step_);
      auto r = RunDataParallel(app, dp_, cluster.transport());
      if (!r.ok()) return Fail(r.status());
      run = std::move(r->run);
      beta = r->tables[0];
    }
    if (!run.holds_result) return 0;  // another process reports
    const Eigen::Index n = x.rows(), p = x.cols();
    const Eigen::MatrixXd a = x.transpose() * x + n * alpha_ * Eigen::MatrixXd::Identity(p, p);
    const Eigen::VectorXd exact = a.ldlt().solve(x.transpose() * y);
    const double best = (x * exact - y).squaredNorm() / (2. * n) + alpha_ / 2 * exact.squaredNorm();
    const double gap = (run.objective - best) / best;
    if (!c.quiet) {
      std::printf(
          "ridge (%s): %llu rounds, objective %.12g, closed form %.12g, relative gap %.2e "
          "(%s)\n",
          mode_.c_str(), static_cast<unsigned long long>(run.rounds), run.objective, best, gap,
          run.stop_reason.c_str());
    }
    if (!c.output.empty()) {
      CsvWriter out;
      if (Status s = out.Open(c.output, "feature,value"); !s.ok()) return Fail(s);
      for (Eigen::Index j = 0; j < p; ++j)
        out.Row(data->feature_names[j] + "," + FormatDouble(beta[j]));
      if (Status s = out.Finish(); !s.ok()) return Fail(s);
    }
    if (!c.summary.empty()) {
      Status s = WriteRunSummary(c.summary, mode_, run, 0, {{"closed_form_gap", gap}});
      if (!s.ok()) return Fail(s);
    }
    return 0;
  }

 private:
  std::string data_, mode_ = "model-parallel";
  double alpha_ = 0.01, step_ = 4.0;  // diabetes' columns have unit norm: curvature about 1/n
  EngineOptions engine_;
  DataParallelOptions dp_;
  DataParallelFlags dp_flags_;
};

TESSERA_REGISTER_COMMAND(RidgeCommand);

}  // namespace

int main(int argc, char** argv) {
  return tessera::RunCommandLine(argc, argv, "A user's program with its own Tessera app",
                                 "ridge_app 1.0");
}
