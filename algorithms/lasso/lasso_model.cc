#include "tessera/algorithms/lasso/lasso_model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "tessera/core/line_reader.h"

namespace tessera {
namespace {

std::vector<std::string> Fields(std::string_view line) {
  std::vector<std::string> out;
  std::size_t at = 0;
  for (;;) {
    const std::size_t comma = line.find(',', at);
    out.emplace_back(line.substr(at, comma == std::string_view::npos ? comma : comma - at));
    if (comma == std::string_view::npos) return out;
    at = comma + 1;
  }
}

}  // namespace

StatusOr<LassoModel> ReadLassoModel(const std::string& path) {
  LineReader in;
  TESSERA_RETURN_IF_ERROR(in.Open(path));
  std::string_view line;
  if (!in.Next(line)) {
    TESSERA_RETURN_IF_ERROR(in.status());
    return InvalidArgument(path + ": empty, not a Lasso model");
  }
  const std::vector<std::string> header = Fields(line);
  LassoModel m;
  auto number = [&](const std::string& text, const std::string& what, double& v) -> Status {
    if (!ParseDouble(text, v)) {
      return InvalidArgument(in.Where() + what + " '" + text + "' is not a finite number");
    }
    return Status::Ok();
  };
  if (header == std::vector<std::string>{"name", "value"}) {
    double intercept = 0;
    std::vector<double> beta;
    bool have_intercept = false;
    while (in.Next(line)) {
      const std::vector<std::string> f = Fields(line);
      if (f.size() != 2 || f[0].empty()) {
        return InvalidArgument(in.Where() + "expected 'name,value'");
      }
      double v = 0;
      TESSERA_RETURN_IF_ERROR(number(f[1], f[0], v));
      if (!have_intercept) {
        if (f[0] != "(intercept)") {
          return InvalidArgument(in.Where() + "expected the '(intercept)' row first");
        }
        intercept = v;
        have_intercept = true;
        continue;
      }
      m.features.push_back(f[0]);
      beta.push_back(v);
    }
    TESSERA_RETURN_IF_ERROR(in.status());
    if (!have_intercept) return InvalidArgument(path + ": no '(intercept)' row");
    m.lambdas.push_back(std::numeric_limits<double>::quiet_NaN());
    m.intercepts.push_back(intercept);
    m.betas.push_back(
        Eigen::Map<const Eigen::VectorXd>(beta.data(), static_cast<Eigen::Index>(beta.size())));
    return m;
  }
  // The trailing statistics: objective,kkt_max_violation[,duality_gap] (older paths lack the
  // gap).
  const std::size_t stats = !header.empty() && header.back() == "duality_gap" ? 3 : 2;
  if (header.size() < 2 + stats || header[0] != "lambda" || header[1] != "intercept" ||
      header[header.size() - stats] != "objective" ||
      header[header.size() - stats + 1] != "kkt_max_violation") {
    return InvalidArgument(
        in.Where() +
        "not a Lasso model: expected 'name,value' or "
        "'lambda,intercept,<features...>,objective,kkt_max_violation[,duality_gap]'");
  }
  m.features.assign(header.begin() + 2, header.end() - static_cast<std::ptrdiff_t>(stats));
  const auto p = static_cast<Eigen::Index>(m.features.size());
  while (in.Next(line)) {
    const std::vector<std::string> f = Fields(line);
    if (f.size() != header.size()) {
      return InvalidArgument(in.Where() + std::to_string(f.size()) +
                             " fields where the header has " + std::to_string(header.size()));
    }
    double lambda = 0, intercept = 0;
    TESSERA_RETURN_IF_ERROR(number(f[0], "lambda", lambda));
    TESSERA_RETURN_IF_ERROR(number(f[1], "intercept", intercept));
    if (!(lambda > 0) || (!m.lambdas.empty() && !(lambda < m.lambdas.back()))) {
      return InvalidArgument(in.Where() + "lambda must be positive and below the previous row's");
    }
    Eigen::VectorXd beta(p);
    for (Eigen::Index j = 0; j < p; ++j) {
      TESSERA_RETURN_IF_ERROR(number(f[static_cast<std::size_t>(j) + 2],
                                     m.features[static_cast<std::size_t>(j)], beta[j]));
    }
    m.lambdas.push_back(lambda);
    m.intercepts.push_back(intercept);
    m.betas.push_back(std::move(beta));
  }
  TESSERA_RETURN_IF_ERROR(in.status());
  if (m.lambdas.empty()) return InvalidArgument(path + ": a path header but no lambda rows");
  return m;
}

Status LassoModel::At(double lambda, double& intercept, Eigen::VectorXd& beta) const {
  if (lambdas.size() == 1 && std::isnan(lambdas[0])) {
    intercept = intercepts[0];
    beta = betas[0];
    return Status::Ok();
  }
  for (std::size_t i = 0; i < lambdas.size(); ++i) {
    if (std::abs(lambdas[i] - lambda) <= 1e-9 * lambdas[i]) {
      intercept = intercepts[i];
      beta = betas[i];
      return Status::Ok();
    }
  }
  // Decreasing λ: find i with lambdas[i] > lambda > lambdas[i + 1].
  for (std::size_t i = 0; i + 1 < lambdas.size(); ++i) {
    if (lambdas[i] > lambda && lambda > lambdas[i + 1]) {
      const double t = (lambdas[i] - lambda) / (lambdas[i] - lambdas[i + 1]);
      intercept = (1 - t) * intercepts[i] + t * intercepts[i + 1];
      beta = (1 - t) * betas[i] + t * betas[i + 1];
      return Status::Ok();
    }
  }
  return InvalidArgument("lambda " + std::to_string(lambda) + " is outside the model's path [" +
                         std::to_string(lambdas.back()) + ", " + std::to_string(lambdas.front()) +
                         "]");
}

Status CheckFeatures(const LassoModel& model, const Dataset& data) {
  const auto p = static_cast<std::int64_t>(model.features.size());
  if (!data.feature_names.empty()) {
    if (data.feature_names != model.features) {
      std::size_t j = 0;
      while (j < data.feature_names.size() && j < model.features.size() &&
             data.feature_names[j] == model.features[j]) {
        ++j;
      }
      return InvalidArgument(
          data.source + ": its features differ from the model's: " +
          (j < data.feature_names.size() ? "column '" + data.feature_names[j] + "'" : "no column") +
          " where the model has " +
          (j < model.features.size() ? "'" + model.features[j] + "'" : "no more features") +
          " (feature " + std::to_string(j + 1) + ")");
    }
    return Status::Ok();
  }
  if (data.cols() > p) {
    return InvalidArgument(data.source + ": feature " + std::to_string(data.cols()) +
                           " is beyond the model's " + std::to_string(p) + " features");
  }
  return Status::Ok();
}

Eigen::VectorXd PredictLasso(const Dataset& data, double intercept, const Eigen::VectorXd& beta) {
  const Eigen::VectorXd b = beta.head(data.cols());
  Eigen::VectorXd out = data.x * b;
  out.array() += intercept;
  return out;
}

}  // namespace tessera
