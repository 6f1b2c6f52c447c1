// dependency: STRADS's dependency-aware schedule. Candidates come in round-robin order
// (keys turned away earlier first); a key is kept when its dependency with every key already
// kept this round is below rho, up to block_size keys out of at most candidate_factor *
// block_size examined. Turned-away keys wait for the next round, so every key is scheduled.
#include <deque>

#include "tessera/schedulers/scheduler.h"

namespace tessera {
namespace {

class DependencyScheduler final : public Scheduler {
 public:
  DependencyScheduler(int block_size, int factor, double rho, DependencyFn dependency)
      : block_size_(block_size), factor_(factor), rho_(rho), dependency_(std::move(dependency)) {}

  void Reset(std::span<const Key> candidates) override {
    keys_.assign(candidates.begin(), candidates.end());
    deferred_.clear();
    next_ = 0;
  }

  std::vector<Block> Next(ScheduleContext&) override {
    if (keys_.empty()) return {};
    Block b;
    std::deque<Key> rejected;
    const std::size_t limit =
        std::min<std::size_t>(static_cast<std::size_t>(factor_) * block_size_, keys_.size());
    for (std::size_t examined = 0;
         examined < limit && b.keys.size() < static_cast<std::size_t>(block_size_); ++examined) {
      Key k;
      if (!deferred_.empty()) {
        k = deferred_.front();
        deferred_.pop_front();
      } else {
        k = keys_[next_];
        next_ = next_ + 1 == keys_.size() ? 0 : next_ + 1;
      }
      bool independent = true;
      for (Key kept : b.keys) {
        if (kept == k || dependency_(kept, k) >= rho_) {
          independent = false;
          break;
        }
      }
      (independent ? b.keys.push_back(k) : rejected.push_back(k));
    }
    deferred_.insert(deferred_.begin(), rejected.begin(), rejected.end());
    return {std::move(b)};
  }

 private:
  int block_size_, factor_;
  double rho_;
  DependencyFn dependency_;
  std::vector<Key> keys_;
  std::deque<Key> deferred_;
  std::size_t next_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<Scheduler>> MakeDependencyScheduler(const SchedulerSetup& setup,
                                                             const SchedulerArgs& args) {
  TESSERA_ASSIGN_OR_RETURN(const int block_size, BlockSizeArg(args));
  TESSERA_ASSIGN_OR_RETURN(const double rho, args.PositiveDouble("rho", 0.1));
  TESSERA_ASSIGN_OR_RETURN(const int factor, args.Int("candidate_factor", 4, 1));
  if (!setup.dependency) return InvalidArgument("this app supplies no dependency function");
  return std::unique_ptr<Scheduler>(
      std::make_unique<DependencyScheduler>(block_size, factor, rho, setup.dependency));
}

}  // namespace tessera
