// The built-in schedulers (core/scheduler.h has the interface and the registry). Each reads its
// own arguments:
//   round_robin  block_size=16
//   priority     block_size=16 eta=1e-6
//   dependency   block_size=16 rho=0.1 candidate_factor=4 (needs the app's dependency function)
//   rotation     partitions=0 (0: one per worker)
#pragma once

#include "tessera/core/scheduler.h"

namespace tessera {

// Adds round_robin, priority, dependency and rotation to `registry`.
void RegisterBuiltinSchedulers(SchedulerRegistry& registry);

// Factories of the built-ins (also usable directly; DefaultSchedulers() holds them).
StatusOr<std::unique_ptr<Scheduler>> MakeRoundRobinScheduler(const SchedulerSetup& setup,
                                                             const SchedulerArgs& args);
StatusOr<std::unique_ptr<Scheduler>> MakePriorityScheduler(const SchedulerSetup& setup,
                                                           const SchedulerArgs& args);
StatusOr<std::unique_ptr<Scheduler>> MakeDependencyScheduler(const SchedulerSetup& setup,
                                                             const SchedulerArgs& args);
StatusOr<std::unique_ptr<Scheduler>> MakeRotationScheduler(const SchedulerSetup& setup,
                                                           const SchedulerArgs& args);

// A rotation scheduler over `partitions` partitions (an app's own rotation).
std::unique_ptr<Scheduler> MakeRotation(int partitions);

// The block size argument every built-in but rotation reads.
inline StatusOr<int> BlockSizeArg(const SchedulerArgs& args) {
  return args.Int("block_size", 16, 1);
}

}  // namespace tessera
