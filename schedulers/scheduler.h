// Schedulers choose which parameter keys are updated in each model-parallel round.
// Built-ins: round_robin, priority (STRADS dynamic), dependency (STRADS), rotation (DSGD/LDA).
#pragma once

#include <Eigen/Core>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/keys.h"
#include "core/model_parallel.h"
#include "core/status.h"

namespace tessera {

// How strongly updating keys a and b in the same round interferes; for Lasso |x_a'x_b| on
// normalized columns. Supplied by the app; called on the coordinator only.
using DependencyFn = std::function<double(Key a, Key b)>;

struct SchedulerOptions {
  int block_size = 16;       // keys per round (rotation: ignored; each partition is a block)
  double eta = 1e-6;         // priority: floor weight, relative to the largest (Δ)² seen
  double rho = 0.1;          // dependency: keep keys whose dependency with each kept key < rho
  int candidate_factor = 4;  // dependency: examine up to factor * block_size candidates
  int partitions = 0;        // rotation: number of partitions P; 0 = number of workers
  DependencyFn dependency;   // dependency: required
  Status Validate() const;
};

class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Sets the keys to choose from until the next Reset (all keys, an active set, a strong set).
  // Coordinator only.
  virtual void Reset(std::span<const Key> candidates) = 0;
  // The blocks of one round, each with a round-unique id. Never empty while candidates exist.
  virtual std::vector<Block> Next(ScheduleContext& ctx) = 0;
  // Feedback after a commit: the change of each updated key.
  virtual void Observe(std::span<const Key> keys, const Eigen::VectorXd& delta) {
    (void)keys;
    (void)delta;
  }
};

using SchedulerFactory =
    std::function<StatusOr<std::unique_ptr<Scheduler>>(const SchedulerOptions&)>;

// Schedulers by name. Unknown names fail with the list of valid ones.
class SchedulerRegistry {
 public:
  Status Register(const std::string& name, SchedulerFactory factory);
  StatusOr<std::unique_ptr<Scheduler>> Create(const std::string& name,
                                              const SchedulerOptions& options) const;
  std::vector<std::string> Names() const;

 private:
  std::map<std::string, SchedulerFactory> factories_;
};

// Adds round_robin, priority, dependency and rotation to `registry`.
void RegisterBuiltinSchedulers(SchedulerRegistry& registry);

// A process-wide registry holding the built-ins; apps and users may Register more.
SchedulerRegistry& DefaultSchedulers();

// Factories of the built-ins (also usable directly).
std::unique_ptr<Scheduler> MakeRoundRobinScheduler(const SchedulerOptions& options);
std::unique_ptr<Scheduler> MakePriorityScheduler(const SchedulerOptions& options);
std::unique_ptr<Scheduler> MakeDependencyScheduler(const SchedulerOptions& options);
std::unique_ptr<Scheduler> MakeRotationScheduler(const SchedulerOptions& options);

}  // namespace tessera
