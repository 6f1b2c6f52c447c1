// priority: STRADS's dynamic schedule. Each round samples block_size distinct candidates with
// probability proportional to (Δ_j)² + η, where Δ_j is the key's last observed change and
// η = eta * max (Δ)² keeps every key alive. Keys never updated get the largest weight, so a
// fresh candidate set is explored first. Sampling is O(block_size log n) with a Fenwick tree.
#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_map>

#include "tessera/schedulers/scheduler.h"

namespace tessera {
namespace {

class FenwickTree {
 public:
  void Assign(const std::vector<double>& w) {
    n_ = w.size();
    tree_.assign(n_ + 1, 0.0);
    for (std::size_t i = 0; i < n_; ++i) {
      tree_[i + 1] += w[i];
      const std::size_t parent = (i + 1) + ((i + 1) & (~(i + 1) + 1));
      if (parent <= n_) tree_[parent] += tree_[i + 1];
    }
  }
  void Add(std::size_t i, double d) {
    for (std::size_t k = i + 1; k <= n_; k += k & (~k + 1)) tree_[k] += d;
  }
  double Total() const {
    double s = 0;
    for (std::size_t k = n_; k > 0; k -= k & (~k + 1)) s += tree_[k];
    return s;
  }
  // Smallest index whose prefix sum exceeds u.
  std::size_t Find(double u) const {
    std::size_t pos = 0;
    std::size_t step = 1;
    while (step * 2 <= n_) step *= 2;
    for (; step > 0; step /= 2) {
      if (pos + step <= n_ && tree_[pos + step] <= u) {
        pos += step;
        u -= tree_[pos];
      }
    }
    return std::min(pos, n_ - 1);
  }

 private:
  std::size_t n_ = 0;
  std::vector<double> tree_;
};

class PriorityScheduler final : public Scheduler {
 public:
  PriorityScheduler(int block_size, double eta) : block_size_(block_size), eta_(eta) {}

  void Reset(std::span<const Key> candidates) override {
    keys_.assign(candidates.begin(), candidates.end());
    position_.clear();
    for (std::size_t i = 0; i < keys_.size(); ++i) position_[keys_[i]] = i;
    Rebuild();
  }

  std::vector<Block> Next(ScheduleContext& ctx) override {
    if (keys_.empty()) return {};
    Block b;
    const std::size_t n = std::min<std::size_t>(block_size_, keys_.size());
    std::vector<std::pair<std::size_t, double>> taken;
    for (std::size_t i = 0; i < n; ++i) {
      const double total = tree_.Total();
      if (!(total > 0)) break;
      std::uniform_real_distribution<double> u(0.0, total);
      const std::size_t at = tree_.Find(u(*ctx.rng));
      if (weights_[at] <= 0) break;  // numerical edge: nothing left with weight
      taken.emplace_back(at, weights_[at]);
      b.keys.push_back(keys_[at]);
      tree_.Add(at, -weights_[at]);
      weights_[at] = 0;
    }
    for (auto [at, w] : taken) {  // sampled without replacement within the round only
      weights_[at] = w;
      tree_.Add(at, w);
    }
    if (b.keys.empty()) return {};
    return {std::move(b)};
  }

  void Observe(std::span<const Key> keys, const Eigen::VectorXd& delta) override {
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const double d2 = delta[static_cast<Eigen::Index>(i)] * delta[static_cast<Eigen::Index>(i)];
      last_change_[keys[i]] = d2;
      max_change_ = std::max(max_change_, d2);
      auto it = position_.find(keys[i]);
      if (it == position_.end()) continue;
      const double w = d2 + Floor();
      tree_.Add(it->second, w - weights_[it->second]);
      weights_[it->second] = w;
    }
  }

 private:
  double Floor() const { return eta_ * (max_change_ > 0 ? max_change_ : 1.0); }

  void Rebuild() {
    weights_.assign(keys_.size(), 0.0);
    const double fresh = max_change_ > 0 ? max_change_ : 1.0;
    for (std::size_t i = 0; i < keys_.size(); ++i) {
      auto it = last_change_.find(keys_[i]);
      weights_[i] = (it == last_change_.end() ? fresh : it->second) + Floor();
    }
    tree_.Assign(weights_);
  }

  int block_size_;
  double eta_;
  std::vector<Key> keys_;
  std::unordered_map<Key, std::size_t> position_;
  std::unordered_map<Key, double> last_change_;
  double max_change_ = 0;
  std::vector<double> weights_;
  FenwickTree tree_;
};

}  // namespace

StatusOr<std::unique_ptr<Scheduler>> MakePriorityScheduler(const SchedulerSetup&,
                                                           const SchedulerArgs& args) {
  TESSERA_ASSIGN_OR_RETURN(const int block_size, BlockSizeArg(args));
  TESSERA_ASSIGN_OR_RETURN(const double eta, args.PositiveDouble("eta", 1e-6));
  return std::unique_ptr<Scheduler>(std::make_unique<PriorityScheduler>(block_size, eta));
}

}  // namespace tessera
