// The built-in server-side update functions and the user's (parameter_server.h).
#include <cmath>
#include <string>

#include "tessera/core/parameter_server.h"

namespace tessera {

namespace {

class AddUpdaterImpl final : public Updater {
 public:
  std::string name() const override { return "add"; }
  bool is_add() const override { return true; }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double*) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) value[i] += grad[i];
  }
};

class SgdUpdaterImpl final : public Updater {
 public:
  explicit SgdUpdaterImpl(double lr) : lr_(lr) {}
  std::string name() const override { return "sgd:" + std::to_string(lr_); }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double*) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) value[i] -= lr_ * grad[i];
  }

 private:
  double lr_;
};

class AdagradUpdaterImpl final : public Updater {
 public:
  AdagradUpdaterImpl(double lr, double eps) : lr_(lr), eps_(eps) {}
  std::string name() const override { return "adagrad:" + std::to_string(lr_); }
  int state_per_element() const override { return 1; }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) {
      state[i] += grad[i] * grad[i];
      value[i] -= lr_ * grad[i] / (std::sqrt(state[i]) + eps_);
    }
  }

 private:
  double lr_, eps_;
};

// State per element: first moment, second moment, step count (for bias correction; a key's
// step counts the updates it received).
class AdamUpdaterImpl final : public Updater {
 public:
  AdamUpdaterImpl(double lr, double b1, double b2, double eps)
      : lr_(lr), b1_(b1), b2_(b2), eps_(eps) {}
  std::string name() const override { return "adam:" + std::to_string(lr_); }
  int state_per_element() const override { return 3; }
  void Update(Key, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    const std::size_t n = count * dim;
    for (std::size_t i = 0; i < n; ++i) {
      double* s = state + 3 * i;
      s[0] = b1_ * s[0] + (1 - b1_) * grad[i];
      s[1] = b2_ * s[1] + (1 - b2_) * grad[i] * grad[i];
      s[2] += 1;
      const double m_hat = s[0] / (1 - std::pow(b1_, s[2]));
      const double v_hat = s[1] / (1 - std::pow(b2_, s[2]));
      value[i] -= lr_ * m_hat / (std::sqrt(v_hat) + eps_);
    }
  }

 private:
  double lr_, b1_, b2_, eps_;
};

// A user's update function (FunctionUpdater ignores the staleness).
class StalenessAwareUpdaterImpl final : public Updater {
 public:
  StalenessAwareUpdaterImpl(std::string name, int spe, StaleUpdateFunction fn)
      : name_(std::move(name)), spe_(spe), fn_(std::move(fn)) {}
  std::string name() const override { return name_; }
  int state_per_element() const override { return spe_; }
  void Update(Key first, std::size_t count, int dim, double* value, const double* grad,
              double* state) const override {
    fn_(first, count, dim, value, grad, state, 0);
  }
  void StaleUpdate(Key first, std::size_t count, int dim, double* value, const double* grad,
                   double* state, std::uint64_t staleness) const override {
    fn_(first, count, dim, value, grad, state, staleness);
  }

 private:
  std::string name_;
  int spe_;
  StaleUpdateFunction fn_;
};

}  // namespace

UpdaterPtr AddUpdater() { return std::make_shared<AddUpdaterImpl>(); }
UpdaterPtr SgdUpdater(double lr) { return std::make_shared<SgdUpdaterImpl>(lr); }
UpdaterPtr AdagradUpdater(double lr, double eps) {
  return std::make_shared<AdagradUpdaterImpl>(lr, eps);
}
UpdaterPtr AdamUpdater(double lr, double b1, double b2, double eps) {
  return std::make_shared<AdamUpdaterImpl>(lr, b1, b2, eps);
}
UpdaterPtr FunctionUpdater(std::string name, int state_per_element, UpdateFunction fn) {
  TESSERA_CHECK(fn);
  return StalenessAwareUpdater(
      std::move(name), state_per_element,
      [fn = std::move(fn)](Key first, std::size_t count, int dim, double* value, const double* grad,
                           double* state,
                           std::uint64_t) { fn(first, count, dim, value, grad, state); });
}
UpdaterPtr StalenessAwareUpdater(std::string name, int state_per_element, StaleUpdateFunction fn) {
  TESSERA_CHECK(state_per_element >= 0 && fn);
  return std::make_shared<StalenessAwareUpdaterImpl>(std::move(name), state_per_element,
                                                     std::move(fn));
}

StatusOr<UpdaterPtr> MakeUpdater(std::string_view spec) {
  const std::string quoted = "'" + std::string(spec) + "'";
  if (spec == "add") return AddUpdater();
  const auto colon = spec.find(':');
  const std::string_view name = spec.substr(0, colon);
  if (name != "sgd" && name != "adagrad" && name != "adam") {
    return InvalidArgument("unknown update function " + quoted +
                           " (expected add, sgd:LR, adagrad:LR or adam:LR)");
  }
  double lr = 0;
  if (colon == std::string_view::npos) {
    return InvalidArgument("update function " + quoted + " needs a learning rate, e.g. " +
                           std::string(name) + ":0.01");
  }
  const std::string rate(spec.substr(colon + 1));
  char* end = nullptr;
  lr = std::strtod(rate.c_str(), &end);
  if (rate.empty() || *end != '\0' || !(lr > 0) || !std::isfinite(lr)) {
    return InvalidArgument("update function " + quoted +
                           ": the learning rate must be a number > 0");
  }
  if (name == "sgd") return SgdUpdater(lr);
  if (name == "adagrad") return AdagradUpdater(lr);
  return AdamUpdater(lr);
}

}  // namespace tessera
