// A user's own model-parallel app: ridge regression, min (1/2n)‖y − Xb‖² + (α/2)‖b‖², by
// coordinate descent. Each worker owns a row range and its residual y − Xb (its WorkerState);
// checked against (XᵀX + nαI)⁻¹Xᵀy.   usage: ridge_cd DATA.csv [alpha] [workers]
#include <Eigen/Dense>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "core/dataset.h"
#include "core/model_parallel.h"

using namespace tessera;
struct Residual final : WorkerState {  // worker w's y − Xb over its rows
  explicit Residual(Eigen::VectorXd v) : r(std::move(v)) {}
  Eigen::VectorXd r;
};
int main(int argc, char** argv) {
  auto data = argc > 1 ? ReadCsv(argv[1]) : InvalidArgument("usage: ridge_cd DATA.csv [a] [w]");
  if (!data.ok()) return std::fprintf(stderr, "error: %s\n", data.status().message().c_str()), 1;
  const double alpha = argc > 2 ? std::atof(argv[2]) : 0.01;
  const Eigen::MatrixXd x = Eigen::MatrixXd(data->x);
  const Eigen::VectorXd y = data->y.array() - data->y.mean();  // no intercept: center y
  const Eigen::Index n = x.rows(), p = x.cols();
  EngineOptions options{.workers = argc > 3 ? std::atoi(argv[3]) : 2,
                        .scheduler = "round_robin:block_size=1",  // one coordinate a round,
                        .change_tolerance = 1e-12};               // until a sweep changes nothing
  const auto rows = SplitRange(n, std::max(options.workers, 1));  // worker w's rows
  auto mine = [&](Key j, int w) { return x.col(j).segment(rows[w].begin, rows[w].size()); };
  Eigen::VectorXd beta = Eigen::VectorXd::Zero(p);  // committed by Pull (coordinator only)
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
  auto run = RunModelParallel(app, options);
  if (!run.ok()) return std::fprintf(stderr, "error: %s\n", run.status().message().c_str()), 1;
  const Eigen::MatrixXd a = x.transpose() * x + n * alpha * Eigen::MatrixXd::Identity(p, p);
  const Eigen::VectorXd exact = a.ldlt().solve(x.transpose() * y);
  const double err = (beta - exact).cwiseAbs().maxCoeff();
  std::printf("ridge: %llu rounds, objective %.12g, max |b - closed form| = %.3g (%s)\n",
              (unsigned long long)run->rounds, run->objective, err, run->stop_reason.c_str());
  return err < 1e-6 * std::max(1.0, exact.cwiseAbs().maxCoeff()) ? 0 : 1;
}
