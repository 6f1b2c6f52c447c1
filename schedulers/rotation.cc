// rotation: the candidates are cut into P contiguous partitions; in round r worker w gets
// partition (w + r) mod P, so no two workers hold the same partition in a round and after P
// rounds every worker has seen every partition (DSGD strata, STRADS word rotation for LDA).
#include "tessera/schedulers/scheduler.h"

namespace tessera {
namespace {

class RotationScheduler final : public Scheduler {
 public:
  explicit RotationScheduler(int partitions) : partitions_(partitions) {}

  void Reset(std::span<const Key> candidates) override {
    keys_.assign(candidates.begin(), candidates.end());
    built_for_ = 0;
  }

  std::vector<Block> Next(ScheduleContext& ctx) override {
    if (keys_.empty()) return {};
    const int p = partitions_ > 0 ? partitions_ : ctx.num_workers;
    if (built_for_ != p) Build(p);
    std::vector<Block> out;
    const int active = std::min(p, ctx.num_workers);
    for (int w = 0; w < active; ++w) {
      const auto part = static_cast<std::uint32_t>((w + ctx.round) % parts_.size());
      if (parts_[part].empty()) continue;
      out.push_back({part, parts_[part], w});
    }
    return out;
  }

 private:
  void Build(int p) {
    parts_.assign(p, {});
    const auto ranges = SplitRange(keys_.size(), p);
    for (int i = 0; i < p; ++i) {
      parts_[i].assign(keys_.begin() + ranges[i].begin, keys_.begin() + ranges[i].end);
    }
    built_for_ = p;
  }

  int partitions_;
  int built_for_ = 0;
  std::vector<Key> keys_;
  std::vector<std::vector<Key>> parts_;
};

}  // namespace

std::unique_ptr<Scheduler> MakeRotation(int partitions) {
  return std::make_unique<RotationScheduler>(partitions);
}

StatusOr<std::unique_ptr<Scheduler>> MakeRotationScheduler(const SchedulerSetup&,
                                                           const SchedulerArgs& args) {
  TESSERA_ASSIGN_OR_RETURN(const int partitions, args.Int("partitions", 0, 0));
  return MakeRotation(partitions);
}

}  // namespace tessera
