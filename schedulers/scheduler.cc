#include "tessera/schedulers/scheduler.h"

namespace tessera {

void RegisterBuiltinSchedulers(SchedulerRegistry& registry) {
  TESSERA_CHECK(registry.Register("round_robin", MakeRoundRobinScheduler, "block_size=16").ok());
  TESSERA_CHECK(
      registry.Register("priority", MakePriorityScheduler, "block_size=16, eta=1e-6").ok());
  TESSERA_CHECK(registry
                    .Register("dependency", MakeDependencyScheduler,
                              "block_size=16, rho=0.1, candidate_factor=4")
                    .ok());
  TESSERA_CHECK(registry.Register("rotation", MakeRotationScheduler, "partitions=0").ok());
}

SchedulerRegistry& DefaultSchedulers() {
  static SchedulerRegistry* registry = [] {
    auto* r = new SchedulerRegistry;
    RegisterBuiltinSchedulers(*r);
    return r;
  }();
  return *registry;
}

}  // namespace tessera
