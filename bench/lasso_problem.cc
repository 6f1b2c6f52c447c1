// Prepares a Lasso benchmark problem for Tessera and for glmnet: reads a data set (or makes
// the synthetic one), optionally turns a class label into a 0/1 response, and writes
//   PREFIX.libsvm  (Tessera's input)   PREFIX.mtx + PREFIX.y  (read by bench/glmnet_fit.R)
// and prints lambda_max of the unstandardized problem with intercept.
//   lasso_problem --in news20.libsvm.gz --class 1 --out /tmp/news20
//   lasso_problem --synthetic 10000x100000 --density 0.001 --support 100 --seed 1 --out /tmp/syn
#include <CLI/CLI.hpp>
#include <cstdio>
#include <random>

#include "tessera/core/dataset.h"

using namespace tessera;

int main(int argc, char** argv) {
  CLI::App app{"Prepare a Lasso benchmark problem"};
  std::string in, format, response, synthetic, out;
  double klass = -1, density = 0.001, noise = 0.1;
  int support = 100;
  std::uint64_t seed = 1;
  app.add_option("--in", in, "LIBSVM or CSV file");
  app.add_option("--format", format, "libsvm | csv (default: from the name)");
  app.add_option("--response", response, "CSV response column");
  app.add_option("--class", klass, "Response = 1 where label == class, else 0");
  app.add_option("--synthetic", synthetic, "NxP sparse Gaussian design with a known support");
  app.add_option("--density", density, "Synthetic: fraction of nonzeros");
  app.add_option("--support", support, "Synthetic: true nonzero coefficients");
  app.add_option("--noise", noise, "Synthetic: noise standard deviation");
  app.add_option("--seed", seed, "Synthetic: seed");
  app.add_option("--out", out, "Output prefix")->required();
  CLI11_PARSE(app, argc, argv);

  Dataset d;
  if (!synthetic.empty()) {
    long long n = 0, p = 0;
    if (std::sscanf(synthetic.c_str(), "%lldx%lld", &n, &p) != 2 || n < 2 || p < 1) {
      std::fprintf(stderr, "--synthetic must look like 10000x100000\n");
      return 2;
    }
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> normal;
    std::geometric_distribution<long long> gap(density);
    std::vector<Eigen::Triplet<double, std::int64_t>> t;
    for (long long i = 0; i < n; ++i) {
      for (long long j = gap(rng); j < p; j += 1 + gap(rng)) t.emplace_back(i, j, normal(rng));
    }
    d.x.resize(n, p);
    d.x.setFromTriplets(t.begin(), t.end());
    Eigen::VectorXd beta = Eigen::VectorXd::Zero(p);
    std::uniform_int_distribution<long long> pick(0, p - 1);
    for (int k = 0; k < support; ++k)
      beta[pick(rng)] = (k % 2 ? -1.0 : 1.0) * (1 + normal(rng) * 0.2);
    d.y = d.x * beta;
    for (long long i = 0; i < n; ++i) d.y[i] += noise * normal(rng);
  } else {
    const bool csv = format == "csv" || (format.empty() && in.find(".csv") != std::string::npos);
    StatusOr<Dataset> r = csv ? ReadCsv(in, CsvOptions{response, 0, ','}) : ReadLibsvm(in);
    if (!r.ok()) {
      std::fprintf(stderr, "%s\n", r.status().message().c_str());
      return 1;
    }
    d = std::move(*r);
    if (klass >= 0) d.y = (d.y.array() == klass).cast<double>();
  }
  FILE* svm = std::fopen((out + ".libsvm").c_str(), "w");
  FILE* mtx = std::fopen((out + ".mtx").c_str(), "w");
  FILE* ys = std::fopen((out + ".y").c_str(), "w");
  if (!svm || !mtx || !ys) {
    std::fprintf(stderr, "%s: cannot write\n", out.c_str());
    return 1;
  }
  std::fprintf(mtx, "%%%%MatrixMarket matrix coordinate real general\n%lld %lld %lld\n",
               static_cast<long long>(d.rows()), static_cast<long long>(d.cols()),
               static_cast<long long>(d.x.nonZeros()));
  for (Eigen::Index i = 0; i < d.rows(); ++i) {
    std::fprintf(svm, "%.17g", d.y[i]);
    std::fprintf(ys, "%.17g\n", d.y[i]);
    for (SparseRowMatrix::InnerIterator it(d.x, i); it; ++it) {
      std::fprintf(svm, " %lld:%.17g", static_cast<long long>(it.index() + 1), it.value());
      std::fprintf(mtx, "%lld %lld %.17g\n", static_cast<long long>(i + 1),
                   static_cast<long long>(it.index() + 1), it.value());
    }
    std::fprintf(svm, "\n");
  }
  std::fclose(svm);
  std::fclose(mtx);
  std::fclose(ys);
  // lambda_max = max_j |x_jᵀ(y − ȳ)| / n.
  const Eigen::VectorXd yc = d.y.array() - d.y.mean();
  const Eigen::VectorXd g = (SparseColMatrix(d.x).transpose() * yc).cwiseAbs() / d.rows();
  std::printf("rows %lld cols %lld nnz %lld lambda_max %.17g\n", static_cast<long long>(d.rows()),
              static_cast<long long>(d.cols()), static_cast<long long>(d.x.nonZeros()),
              g.maxCoeff());
  return 0;
}
