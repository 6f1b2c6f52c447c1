#include "schedulers/scheduler.h"

#include <mutex>

namespace tessera {

Status SchedulerOptions::Validate() const {
  if (block_size < 1) {
    return InvalidArgument("--block-size must be at least 1, got " + std::to_string(block_size));
  }
  if (!(eta > 0)) return InvalidArgument("--eta must be > 0 (keeps every key alive)");
  if (!(rho > 0)) return InvalidArgument("--rho must be > 0");
  if (candidate_factor < 1) return InvalidArgument("--candidate-factor must be at least 1");
  if (partitions < 0) return InvalidArgument("--partitions must be >= 0");
  return Status::Ok();
}

Status SchedulerRegistry::Register(const std::string& name, SchedulerFactory factory) {
  if (!factories_.emplace(name, std::move(factory)).second) {
    return InvalidArgument("scheduler '" + name + "' is already registered");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Scheduler>> SchedulerRegistry::Create(
    const std::string& name, const SchedulerOptions& options) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string names;
    for (const auto& n : Names()) names += (names.empty() ? "" : ", ") + n;
    return InvalidArgument("--scheduler: unknown scheduler '" + name + "' (valid: " + names + ")");
  }
  TESSERA_RETURN_IF_ERROR(options.Validate());
  return it->second(options);
}

std::vector<std::string> SchedulerRegistry::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, f] : factories_) out.push_back(name);
  return out;
}

void RegisterBuiltinSchedulers(SchedulerRegistry& registry) {
  auto wrap = [](std::unique_ptr<Scheduler> (*make)(const SchedulerOptions&)) {
    return [make](const SchedulerOptions& o) -> StatusOr<std::unique_ptr<Scheduler>> {
      return make(o);
    };
  };
  TESSERA_CHECK(registry.Register("round_robin", wrap(MakeRoundRobinScheduler)).ok());
  TESSERA_CHECK(registry.Register("priority", wrap(MakePriorityScheduler)).ok());
  TESSERA_CHECK(
      registry
          .Register("dependency",
                    [](const SchedulerOptions& o) -> StatusOr<std::unique_ptr<Scheduler>> {
                      if (!o.dependency) {
                        return InvalidArgument(
                            "--scheduler dependency: this app supplies no dependency "
                            "function");
                      }
                      return MakeDependencyScheduler(o);
                    })
          .ok());
  TESSERA_CHECK(registry.Register("rotation", wrap(MakeRotationScheduler)).ok());
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
