// A user's own scheduler, selectable from the command line: `shuffled` visits the candidates
// in a fresh random order every pass (random-permutation coordinate descent), block_size keys a
// round. The program registers it, then the built-in commands, so that
//   custom_scheduler lasso --data F --scheduler shuffled:block_size=8
// fits the Lasso with it (and mf, lda, launch and compare are there too; `lasso --help` lists
// it with the built-ins).
#include <algorithm>
#include <memory>
#include <span>
#include <vector>

#include "tessera/schedulers/scheduler.h"
#include "tessera/tools/builtin_commands.h"
#include "tessera/tools/command.h"

namespace {

using namespace tessera;

class ShuffledScheduler final : public Scheduler {
 public:
  explicit ShuffledScheduler(int block_size) : block_size_(block_size) {}

  void Reset(std::span<const Key> candidates) override {
    keys_.assign(candidates.begin(), candidates.end());
    next_ = keys_.size();  // shuffled at the first Next
  }

  std::vector<Block> Next(ScheduleContext& ctx) override {
    if (keys_.empty()) return {};
    Block b;
    while (static_cast<int>(b.keys.size()) < block_size_ && b.keys.size() < keys_.size()) {
      if (next_ == keys_.size()) {  // a new pass in a new order
        std::shuffle(keys_.begin(), keys_.end(), *ctx.rng);
        next_ = 0;
      }
      b.keys.push_back(keys_[next_++]);
    }
    // A block names each key once (a pass boundary inside a block could repeat one).
    std::sort(b.keys.begin(), b.keys.end());
    b.keys.erase(std::unique(b.keys.begin(), b.keys.end()), b.keys.end());
    return {std::move(b)};
  }

 private:
  int block_size_;
  std::vector<Key> keys_;
  std::size_t next_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Status s = DefaultSchedulers().Register(
      "shuffled",
      [](const SchedulerSetup&, const SchedulerArgs& args) -> StatusOr<std::unique_ptr<Scheduler>> {
        TESSERA_ASSIGN_OR_RETURN(const int block_size, BlockSizeArg(args));
        return std::unique_ptr<Scheduler>(std::make_unique<ShuffledScheduler>(block_size));
      },
      "block_size=16 keys per round, in a new random order every pass");
  if (!s.ok()) return Fail(s);
  RegisterBuiltinCommands();
  return RunCommandLine(argc, argv, "Tessera's commands with a user's own scheduler",
                        "custom_scheduler 1.0");
}
