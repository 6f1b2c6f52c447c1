// Schedulers choose which parameter keys are updated in each model-parallel round. The engine
// runs one for an app that does not plan its rounds itself (EngineOptions::scheduler); an app
// that does may create one from the registry and call it from its Schedule.
// Built-ins (schedulers/): round_robin, priority (STRADS dynamic), dependency (STRADS),
// rotation (DSGD, LDA word rotation). A new one is a file in schedulers/ and a Register line.
#pragma once

#include <Eigen/Core>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/keys.h"
#include "tessera/core/status.h"

namespace tessera {

// What the coordinator knows when it plans a round.
struct ScheduleContext {
  std::uint64_t round = 0;  // the round being planned
  int num_workers = 1;
  std::span<const Key> in_flight;  // keys of rounds scheduled but not yet pulled
  std::mt19937_64* rng = nullptr;  // seeded from EngineOptions::seed; coordinator-only
};

// How strongly updating keys a and b in the same round interferes; for Lasso |x_a'x_b| on
// normalized columns. Supplied by the app; called on the coordinator only.
using DependencyFn = std::function<double(Key a, Key b)>;

// A scheduler's own arguments, `key=value` pairs (on the command line:
// `--scheduler NAME:key=value,key=value`). Each scheduler reads the keys it knows, with its own
// defaults and checks; the registry refuses a run whose arguments name a key the scheduler did
// not read. Defaults set by the app (SetDefault) are offered to every scheduler and never
// refused, so an app can pass e.g. its block size to whichever scheduler is chosen.
class SchedulerArgs {
 public:
  // "key=value,key=value" (empty: none). Repeated or malformed pairs are errors.
  static StatusOr<SchedulerArgs> Parse(std::string_view text);
  void Set(const std::string& key, const std::string& value) { given_[key] = value; }
  void SetDefault(const std::string& key, const std::string& value) { defaults_[key] = value; }
  bool empty() const { return given_.empty(); }

  // The value of `key` (given, else the app's default, else `fallback`); errors name the key
  // and the allowed range. Reading a key marks it used.
  StatusOr<int> Int(const std::string& key, int fallback, int min) const;
  StatusOr<double> PositiveDouble(const std::string& key, double fallback) const;
  // An error naming the first given key no scheduler read, and the keys `scheduler` takes.
  Status CheckAllRead(const std::string& scheduler) const;
  std::string ToString() const;  // the given pairs, as Parse reads them

 private:
  const std::string* Find(const std::string& key) const;
  std::map<std::string, std::string> given_, defaults_;
  mutable std::set<std::string> read_;
};

// What a scheduler is built for.
struct SchedulerSetup {
  int num_workers = 1;
  DependencyFn dependency;  // from the app; empty when it has none
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

using SchedulerFactory = std::function<StatusOr<std::unique_ptr<Scheduler>>(
    const SchedulerSetup& setup, const SchedulerArgs& args)>;

// Schedulers by name. Unknown names fail with the list of valid ones.
class SchedulerRegistry {
 public:
  // `arguments` documents what the factory reads ("block_size=16 keys per round"), for --help
  // and error messages.
  Status Register(const std::string& name, SchedulerFactory factory, std::string arguments = "");
  StatusOr<std::unique_ptr<Scheduler>> Create(const std::string& name, const SchedulerSetup& setup,
                                              const SchedulerArgs& args) const;
  std::vector<std::string> Names() const;
  // "name (arguments)" for each scheduler, one per line.
  std::string Describe() const;

 private:
  struct Entry {
    SchedulerFactory factory;
    std::string arguments;
  };
  std::map<std::string, Entry> entries_;
};

// The process-wide registry: the built-ins (schedulers/scheduler.cc registers them); apps and
// users may Register more before a run names them.
SchedulerRegistry& DefaultSchedulers();

// "NAME" or "NAME:key=value,...": the name and its arguments.
struct SchedulerSpec {
  std::string name;
  SchedulerArgs args;
  static StatusOr<SchedulerSpec> Parse(std::string_view text);
};

}  // namespace tessera
