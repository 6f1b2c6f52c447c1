// The model-parallel engine (STRADS semantics): rounds of schedule -> push -> pull.
//
//   coordinator (rank 0)                          workers (ranks 1..P, one fiber each)
//                                                 MakeWorker, MakeBlock (once)
//   Schedule(ctx) -> blocks  ---- msg::Push ---->   carried blocks move: worker -BlockState->
//   worker
//                                                   Push(ctx, blocks) -> partials
//   Aggregate + Pull -> Update <- msg::Partials --
//   ---------------------------- msg::Apply ---->   Apply(ctx, update)
//   GatherWorker/GatherBlock  <- msg::WorkerState -- (msg::Gather: at the end, before checkpoints)
//
// (The messages are the typed bodies of core/message.h; a committed update also rides on the
// next Push, Evaluate or Gather instead of an Apply of its own.)
//
// Up to `pipeline_depth` rounds are in flight: with depth D a worker may push round r+D-1
// before it has applied round r's update. Pull is told exactly which updates the worker had not
// seen (PullContext::stale_updates) so an app can correct for them; depth 1 is serial semantics.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "tessera/core/checkpoint.h"
#include "tessera/core/keys.h"
#include "tessera/core/message.h"
#include "tessera/core/scheduler.h"
#include "tessera/core/state_bytes.h"
#include "tessera/core/status.h"
#include "tessera/core/transport.h"

namespace tessera {

// The plan for one round.
struct RoundSchedule {
  std::vector<Block> blocks;  // empty and !done: wait until every in-flight round is pulled
  bool done = false;          // no more rounds: finish the ones in flight and stop
  std::string done_reason = "converged";  // RunResult::stop_reason when `done`
  bool evaluate_after = false;            // evaluate the objective after this round is applied
  // With evaluate_after: first gather the workers' and carried blocks' state into the app at
  // the coordinator (GatherWorker, GatherBlock), for an objective that needs the whole model.
  bool gather_after = false;
  // A checkpoint boundary (an epoch's end): with EngineOptions::checkpoint_at_marked_rounds the
  // coordinator plans nothing more until this round is pulled and evaluated, then checkpoints
  // if one is due.
  bool checkpoint_after = false;
  // Set only by ModelParallelApp's own Schedule: the app plans no rounds itself, so a run
  // without EngineOptions::scheduler is refused.
  bool undefined = false;
};

// A worker's own state, built by ModelParallelApp::MakeWorker in the process that hosts the
// worker and owned by the engine: its data partition, its share of the model, its scratch and
// random streams. Only the worker's own fiber touches it.
class WorkerState {
 public:
  virtual ~WorkerState() = default;
  // What the coordinator needs of this worker at the end of the run and before a checkpoint
  // (ModelParallelApp::GatherWorker reads it). Default: nothing.
  virtual void Save(StateWriter& out) const { (void)out; }
  // Called once, just before the Save of the run's last gather, after which the state is
  // freed (unless EngineOptions::kept_workers keeps it): let go of what Save does not write
  // (scratch, indexes), so that the copy Save makes does not raise the process's peak memory.
  virtual void ReleaseForLastSave() {}
};

// The state of a carried block (e.g. MF's H rows of an item block, the topics of a vocabulary
// block's tokens in LDA): held by one worker at a time, moved by the engine, as the bytes Save
// writes, to the worker a round assigns the block to next (within one process over a transport
// that passes messages as objects, the state object itself moves, and Save and LoadBlock are
// not called for the move).
class BlockState {
 public:
  virtual ~BlockState() = default;
  virtual void Save(StateWriter& out) const = 0;
  // As WorkerState::ReleaseForLastSave, for the block's last Save (blocks are never kept).
  virtual void ReleaseForLastSave() {}
};

// The carried blocks a worker holds, by block id.
using HeldBlocks = std::map<std::uint32_t, std::shared_ptr<BlockState>>;

// What MakeWorker is told.
struct WorkerSetup {
  int worker = 0;  // 0..num_workers-1
  int num_workers = 1;
};

// What a worker knows while it computes.
struct WorkerContext {
  int worker = 0;  // 0..num_workers-1
  int num_workers = 1;
  std::uint64_t round = 0;
  std::span<const Key> stale_keys;   // keys updated by earlier rounds this worker has not applied
  WorkerState* state = nullptr;      // MakeWorker's (null when the app makes none)
  const HeldBlocks* held = nullptr;  // the carried blocks this worker holds now

  // This worker's state as the app's type.
  template <class T>
  T& State() const {
    TESSERA_CHECK(state != nullptr) << "worker " << worker << " has no state (MakeWorker)";
    return static_cast<T&>(*state);
  }
  // The state of carried block `block`, which this worker holds (every block of a round assigned
  // to it is held when Push runs).
  template <class T>
  T& Carried(std::uint32_t block) const {
    auto it = held->find(block);
    TESSERA_CHECK(it != held->end()) << "worker " << worker << " does not hold block " << block;
    return static_cast<T&>(*it->second);
  }
};

struct PullContext {
  std::uint64_t round = 0;
  // Updates committed by earlier rounds after this round's push was issued, oldest first:
  // the workers' partials do not reflect them.
  std::span<const Update> stale_updates;
};

// A model-parallel application. Thread model: Schedule, Aggregate, Pull, Objective and the
// Gather calls run on the coordinator, one call at a time. MakeWorker, MakeBlock, LoadBlock,
// Push, Apply and EvaluateTerms run on worker w's own fiber and may touch only the state worker
// w owns (its WorkerState, the blocks it holds) and what the app object holds read-only;
// different workers run concurrently, possibly in other processes, each with its own copy of
// the app object. Nothing a worker writes reaches the coordinator or another worker except
// through a Partial, its saved state or a carried block.
class ModelParallelApp {
 public:
  virtual ~ModelParallelApp() = default;

  // Worker side, once before the first round, on the fiber of each worker this process hosts:
  // the worker's state (WorkerContext::state). Default: none.
  virtual std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup& setup) {
    (void)setup;
    return nullptr;
  }
  // Carried blocks: block ids 0..n-1 whose state moves with them (rotation of MF's item blocks
  // or LDA's vocabulary blocks). Called once before the run in every process; element b is the
  // worker that holds block b first. Every round must assign a carried block to one worker
  // (not kAllWorkers). Default: none.
  virtual std::vector<int> CarriedBlockHolders(int num_workers) {
    (void)num_workers;
    return {};
  }
  // Worker side, instead of MakeWorker, when EngineOptions::kept_workers holds this worker's
  // state from an earlier run in this process (a path of fits): readies it for this run.
  virtual void ReuseWorker(WorkerState& state, const WorkerSetup& setup) {
    (void)state;
    (void)setup;
  }
  // Worker side, before the first round, on the worker that holds `block` first: its state.
  virtual std::unique_ptr<BlockState> MakeBlock(std::uint32_t block, WorkerContext& ctx) {
    (void)block;
    (void)ctx;
    return nullptr;
  }
  // Worker side, when `block` arrives from its previous holder: the state from the bytes its
  // Save wrote. A malformed state is an error that stops the run.
  virtual StatusOr<std::unique_ptr<BlockState>> LoadBlock(std::uint32_t block, StateReader& in,
                                                          WorkerContext& ctx) {
    (void)in;
    (void)ctx;
    return Internal("block " + std::to_string(block) + " carries state but LoadBlock is missing");
  }
  // Coordinator, at the end of the run and before every checkpoint, with no round in flight:
  // each worker's saved state (in worker order), then each carried block's (in block order).
  // The reader must be read to its end.
  virtual Status GatherWorker(int worker, StateReader& in) {
    (void)worker;
    (void)in;
    return Status::Ok();
  }
  virtual Status GatherBlock(std::uint32_t block, StateReader& in) {
    (void)block;
    (void)in;
    return Status::Ok();
  }

  // Coordinator, once per round (possibly several rounds ahead of Pull with pipelining). An app
  // that names a scheduler in EngineOptions::scheduler need not define it: the engine then
  // plans every round with that scheduler over ScheduleKeys() (and does not call Schedule).
  virtual RoundSchedule Schedule(ScheduleContext& ctx);
  // For EngineOptions::scheduler: the keys it chooses from, and for `dependency` how strongly
  // two interfere. Coordinator, once before the run.
  virtual std::vector<Key> ScheduleKeys() { return {}; }
  virtual DependencyFn Dependency() { return {}; }
  // Worker `ctx.worker`, once per round, with the blocks assigned to it (or to all workers).
  // Returns one Partial per block it computed on, with Partial::block = Block::id.
  virtual std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> blocks) = 0;
  // Coordinator: merges the partials of every worker for one block (in worker order).
  // Default: element-wise sum, refusing partials whose sizes differ. An app whose workers send
  // partials of their own layout (e.g. sparse) merges them here and refuses malformed ones
  // with an error, which stops the run.
  virtual StatusOr<Partial> Aggregate(std::span<const Partial> partials);
  // Coordinator, once per round in round order: commits new parameter values and returns
  // what workers must apply. `merged[i]` belongs to `blocks[i]` (empty when nobody pushed it).
  virtual Update Pull(PullContext& ctx, std::span<const Block> blocks,
                      std::span<const Partial> merged) = 0;
  // Worker, after each committed round, in round order.
  virtual void Apply(WorkerContext& ctx, const Update& update) = 0;
  // Worker: terms of the objective over the data it owns (summed over workers).
  virtual Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) = 0;
  // Coordinator: the objective from the summed terms.
  virtual double Objective(const Eigen::VectorXd& summed_terms) = 0;

  // Checkpoints (UseCheckpoints below). Coordinator, at a checkpoint boundary with no round in
  // flight: the app's committed state after `rounds` rounds. Before the run: puts a checkpoint
  // back and returns the rounds it had done. Apps that do not checkpoint keep the defaults.
  virtual StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t rounds) {
    (void)rounds;
    return FailedPrecondition("this app does not write checkpoints");
  }
  virtual StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) {
    return FailedPrecondition(c.source() + ": this app does not resume from checkpoints");
  }
};

// The same hooks as std::function values, for small apps that do not want to subclass.
struct FunctionalApp final : ModelParallelApp {
  std::function<RoundSchedule(ScheduleContext&)> schedule;  // or EngineOptions::scheduler and:
  std::vector<Key> schedule_keys;
  DependencyFn dependency;
  std::function<std::vector<Partial>(WorkerContext&, std::span<const Block>)> push;
  std::function<StatusOr<Partial>(std::span<const Partial>)> aggregate;  // optional, default sum
  std::function<Update(PullContext&, std::span<const Block>, std::span<const Partial>)> pull;
  std::function<void(WorkerContext&, const Update&)> apply;
  std::function<Eigen::VectorXd(WorkerContext&)> evaluate_terms;
  std::function<double(const Eigen::VectorXd&)> objective;
  // Optional: worker state and carried blocks (the defaults: none).
  std::function<std::unique_ptr<WorkerState>(const WorkerSetup&)> make_worker;
  std::function<std::vector<int>(int num_workers)> carried_block_holders;
  std::function<std::unique_ptr<BlockState>(std::uint32_t, WorkerContext&)> make_block;
  std::function<StatusOr<std::unique_ptr<BlockState>>(std::uint32_t, StateReader&, WorkerContext&)>
      load_block;
  std::function<Status(int worker, StateReader&)> gather_worker;
  std::function<Status(std::uint32_t block, StateReader&)> gather_block;

  RoundSchedule Schedule(ScheduleContext& ctx) override {
    return schedule ? schedule(ctx) : ModelParallelApp::Schedule(ctx);
  }
  std::vector<Key> ScheduleKeys() override { return schedule_keys; }
  DependencyFn Dependency() override { return dependency; }
  std::vector<Partial> Push(WorkerContext& ctx, std::span<const Block> b) override {
    return push(ctx, b);
  }
  StatusOr<Partial> Aggregate(std::span<const Partial> p) override {
    return aggregate ? aggregate(p) : ModelParallelApp::Aggregate(p);
  }
  Update Pull(PullContext& ctx, std::span<const Block> b, std::span<const Partial> m) override {
    return pull(ctx, b, m);
  }
  void Apply(WorkerContext& ctx, const Update& u) override { apply(ctx, u); }
  Eigen::VectorXd EvaluateTerms(WorkerContext& ctx) override { return evaluate_terms(ctx); }
  double Objective(const Eigen::VectorXd& t) override { return objective(t); }
  std::unique_ptr<WorkerState> MakeWorker(const WorkerSetup& s) override {
    return make_worker ? make_worker(s) : nullptr;
  }
  std::vector<int> CarriedBlockHolders(int n) override {
    return carried_block_holders ? carried_block_holders(n) : std::vector<int>{};
  }
  std::unique_ptr<BlockState> MakeBlock(std::uint32_t b, WorkerContext& ctx) override {
    return make_block ? make_block(b, ctx) : nullptr;
  }
  StatusOr<std::unique_ptr<BlockState>> LoadBlock(std::uint32_t b, StateReader& in,
                                                  WorkerContext& ctx) override {
    return load_block ? load_block(b, in, ctx) : ModelParallelApp::LoadBlock(b, in, ctx);
  }
  Status GatherWorker(int w, StateReader& in) override {
    return gather_worker ? gather_worker(w, in) : Status::Ok();
  }
  Status GatherBlock(std::uint32_t b, StateReader& in) override {
    return gather_block ? gather_block(b, in) : Status::Ok();
  }
};

// Worker states kept in this process from one run to the next over the same app (a Lasso path
// is a run per λ): a run takes worker w's state from states[w] when there (ReuseWorker) and puts
// it back when the worker stops. Each worker fiber touches only its own element.
struct KeptWorkers {
  std::vector<std::unique_ptr<WorkerState>> states;
};

// Every member has a default, so `EngineOptions{.workers = 4, .scheduler = "rotation"}` names
// only what it changes.
struct EngineOptions {
  int workers = 2;                     // worker fibers, each owning one data/model partition
  int pipeline_depth = 1;              // rounds in flight; 1 = serial semantics
  std::uint64_t max_rounds = 1000000;  // stop after this many rounds
  double max_seconds = 0;              // stop after this much wall time; 0 = no limit
  double objective_tolerance = 0;      // stop when the relative objective change between two
                                       // evaluations is below this; 0 = off
  std::uint64_t objective_every = 0;   // also evaluate every N rounds; 0 = only when asked
  std::uint64_t seed = 42;             // for randomized schedulers
  std::string trace_path{};            // per-round metrics CSV; empty = none
  bool progress = true;                // one-line progress on a TTY (stderr); never otherwise
  std::string label = "tessera";       // prefix of the progress line
  // The scheduler that plans the rounds, "NAME[:key=value,...]" (a name in DefaultSchedulers()
  // and its own arguments, SchedulerSpec); empty: the app's Schedule. The engine resets it to
  // the app's ScheduleKeys(), asks it for the blocks of every round, tells it every committed
  // update (Observe), and ends the run ("converged") after a pass over as many keys as there
  // are whose largest change was at most change_tolerance (0: only the limits end it).
  std::string scheduler{};
  double change_tolerance = 0;
  // Null: an in-process transport. Otherwise one with workers + 1 endpoints (rank 0 the
  // coordinator, 1..P the workers), possibly spanning processes (net/tcp_transport.h): this
  // process runs the ranks the transport hosts, and every process runs the same app.
  std::shared_ptr<Transport> transport{};
  // Coordinator: called at a round boundary with no round in flight (the pipeline is drained
  // first), with the rounds pulled so far; the app's committed state is then whole and may be
  // saved. An error stops the run with it. When: every `checkpoint_every` seconds (0: never)
  // at any round boundary; with `checkpoint_at_marked_rounds` only after rounds whose plan says
  // checkpoint_after, at every such round (checkpoint_every 0) or once checkpoint_every seconds
  // have passed since the last checkpoint.
  double checkpoint_every = 0;
  bool checkpoint_at_marked_rounds = false;
  std::function<Status(std::uint64_t rounds)> checkpoint{};
  // A resumed run: the rounds done before it. Rounds are numbered on from here (Schedule, Push
  // and the trace see the same numbers as in the uninterrupted run) and max_rounds counts them.
  std::uint64_t first_round = 0;
  // Null: every run makes its workers' state anew (MakeWorker).
  std::shared_ptr<KeptWorkers> kept_workers{};
  Status Validate() const;
};

// True where a run over `transport` writes its outputs and checkpoints: in the process that
// hosts rank 0 (the coordinator, or the driver of a data-parallel run); true without one.
inline bool WritesResults(const std::shared_ptr<Transport>& transport) {
  return !transport || transport->hosts(0);
}

// True where a run with `options` builds worker `worker`'s state (MakeWorker): in the process
// whose transport hosts it; always without a transport. An app whose workers need only part of
// the input reads only what the workers built here need.
bool BuildsWorker(const EngineOptions& options, int worker);

// One row of the trace.
struct RoundMetrics {
  std::uint64_t round = 0;
  double seconds = 0;         // since the start of the run
  double objective = 0;       // NaN when not evaluated after this round
  std::uint64_t updates = 0;  // keys changed by this round
  std::uint64_t bytes = 0;    // payload bytes moved so far
};

// How stale a parameter-server table's reads were: reads[s] of them got a value s clocks
// stale (the last bin: that many or more); see PsClientStats::staleness.
struct TableStaleness {
  std::string table;
  std::vector<std::uint64_t> reads;
  std::uint64_t total() const;
  double mean() const;      // clocks (the last bin counted at its lower bound)
  std::size_t max() const;  // the largest bin with a read
  // "4012 reads: 0 clocks 91.2%, 1: 7.9%, 2: 0.9%; mean 0.10" (bins under 0.05% left out).
  std::string Describe() const;
  // "0:3660;1:320;2:32", for CSV files.
  std::string Counts() const;
};

// The mean staleness of every table's reads together (0 without reads).
double MeanStaleness(const std::vector<TableStaleness>& tables);

struct RunResult {
  std::uint64_t rounds = 0;
  double seconds = 0;
  double objective = 0;  // last evaluated objective
  std::uint64_t bytes = 0;
  std::uint64_t updates = 0;
  std::string stop_reason;  // the app's done_reason (converged, max epochs, ...) | objective
                            // tolerance | max rounds | time limit
  std::vector<RoundMetrics> evaluations;  // the rounds after which the objective was evaluated
  // Data-parallel runs: per table, the workers' reads by how many clocks stale they were
  // (PsClientStats::staleness), up to the last evaluation; empty otherwise.
  std::vector<TableStaleness> staleness;
  // False where the run's result is not: in a multi-process run, every process but the
  // coordinator's (or the driver's) gets a RunResult without one once the run has stopped, and
  // writes nothing.
  bool holds_result = true;
};

// Runs `app` until it says done or a limit is reached; always evaluates the objective at the
// end. In a multi-process run only the coordinator's process gets the result; the others
// return one with !holds_result once the coordinator stops them. The coordinator and
// the workers run as fibers on FiberPool::Global(); the calling thread (or fiber) waits.
StatusOr<RunResult> RunModelParallel(ModelParallelApp& app, const EngineOptions& options);

// Sets up `options` for `plan` before RunModelParallel: with `resume`, puts the newest whole
// checkpoint in plan.dir back into `app` and numbers the rounds on from it; with a directory,
// the coordinator's process checkpoints at the app's marked rounds into `dir` (which must
// outlive the run). Returns the checkpoint resumed from ("" if none).
StatusOr<std::string> UseCheckpoints(ModelParallelApp& app, const CheckpointPlan& plan,
                                     EngineOptions& options, std::optional<CheckpointDir>& dir);

}  // namespace tessera
