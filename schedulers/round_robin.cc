// round_robin: the candidates in their given order, block_size keys per round, cyclically.
#include "tessera/schedulers/scheduler.h"

namespace tessera {
namespace {

class RoundRobinScheduler final : public Scheduler {
 public:
  explicit RoundRobinScheduler(int block_size) : block_size_(block_size) {}

  void Reset(std::span<const Key> candidates) override {
    keys_.assign(candidates.begin(), candidates.end());
    next_ = 0;
  }

  std::vector<Block> Next(ScheduleContext&) override {
    Block b;
    const std::size_t n = std::min<std::size_t>(block_size_, keys_.size());
    b.keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      b.keys.push_back(keys_[next_]);
      next_ = next_ + 1 == keys_.size() ? 0 : next_ + 1;
    }
    if (b.keys.empty()) return {};
    return {std::move(b)};
  }

 private:
  int block_size_;
  std::vector<Key> keys_;
  std::size_t next_ = 0;
};

}  // namespace

StatusOr<std::unique_ptr<Scheduler>> MakeRoundRobinScheduler(const SchedulerSetup&,
                                                             const SchedulerArgs& args) {
  TESSERA_ASSIGN_OR_RETURN(const int block_size, BlockSizeArg(args));
  return std::unique_ptr<Scheduler>(std::make_unique<RoundRobinScheduler>(block_size));
}

}  // namespace tessera
