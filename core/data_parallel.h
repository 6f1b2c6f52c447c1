// The data-parallel engine: workers each hold a partition of the rows and push/pull the model
// through a parameter server (core/parameter_server.h).
//
//   driver (rank 0)              shards (1..S)               workers (S+1..S+P)
//                                tables by key range  <-- pull/push/clock --  for each epoch:
//                                                                               for each batch:
//                                                                                 ProcessBatch
//   sums objective terms  <---- DpArrived, DpTerms (barrier every N clocks) -      Clock (per
//   continue / stop  ---------- DpContinue / Stop ------------------------->       frequency)
//
// The options follow SystemDS paramserv: update frequency `batch`, `nbatches:N` or `epoch` says
// after how many batches a worker ends a clock (its pushes reach the servers at the latest
// then); the partition scheme says which rows each worker owns.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tessera/core/checkpoint.h"
#include "tessera/core/model_parallel.h"
#include "tessera/core/parameter_server.h"

namespace tessera {

struct UpdateFrequency {
  enum class Kind { kBatch, kNBatches, kEpoch };
  Kind kind = Kind::kEpoch;
  int n = 1;  // batches per clock for kNBatches
  // Accepts "batch", "nbatches:N" (N >= 1), "epoch".
  static StatusOr<UpdateFrequency> Parse(std::string_view text);
  std::string ToString() const;
};

enum class PartitionScheme {
  kDisjointContiguous,  // worker w: the w-th contiguous slice of rows
  kDisjointRoundRobin,  // row i to worker i mod P
  kDisjointRandom,      // a seeded random permutation, then contiguous slices
  kOverlapReshuffle,    // every worker holds every row, in its own order, reshuffled each epoch
};
// Accepts the SystemDS names: disjoint_contiguous, disjoint_round_robin, disjoint_random,
// overlap_reshuffle.
StatusOr<PartitionScheme> ParsePartitionScheme(std::string_view text);
std::string ToString(PartitionScheme scheme);
// Row ids of each worker's partition. With `weights` (one per row: its work, e.g. its
// nonzeros) the contiguous and random schemes cut their order into slices of equal weight
// instead of equal length; round robin and overlap_reshuffle ignore them.
std::vector<std::vector<std::uint32_t>> PartitionRows(std::size_t rows, int workers,
                                                      PartitionScheme scheme, std::uint64_t seed,
                                                      std::span<const double> weights = {});
// Boundaries of `pieces` consecutive slices of `rows` (pieces + 1 positions, 0 first, the
// length last) of about equal weight (`weights` has one per row id): slice i ends where the
// running weight first reaches (i + 1) / pieces of the total.
std::vector<std::size_t> EqualWeightCuts(std::span<const std::uint32_t> rows,
                                         std::span<const double> weights, std::size_t pieces);

struct DataParallelOptions {
  int servers = 1;            // server shards, each owning a key range of every table
  int workers = 2;            // worker fibers, each owning a partition of the rows
  Consistency consistency;    // default for the app's tables
  UpdateFrequency frequency;  // when a worker ends a clock
  PartitionScheme partition = PartitionScheme::kDisjointContiguous;
  Communication communication;              // every table's (TableSpec::communication)
  std::size_t batch_size = 0;               // rows per batch; 0 = the worker's whole partition
  bool model_averaging = false;             // apps set TableSpec::model_averaging on their model
                                            // tables from this (SystemDS modelAvg)
  std::uint64_t max_epochs = 100;           // stop after this many passes over the data; 0 = run
                                            // Setup, evaluate once and stop
  double max_seconds = 0;                   // stop at the first evaluation after this; 0 = no limit
  double objective_tolerance = 0;           // stop when the relative change between evaluations is
                                            // below this; 0 = off
  std::uint64_t evaluate_every = 1;         // clocks between objective evaluations (barriers);
                                            // 0 = at the end of every epoch
  std::uint64_t evaluate_every_epochs = 0;  // > 0: instead, at the end of every N-th epoch
  std::uint64_t seed = 42;                  // partitions and shuffles
  std::string trace_path;                   // per-evaluation CSV; empty = none
  bool progress = true;                     // one-line progress on a TTY (stderr)
  std::string label = "tessera";
  // Slows worker `worker` down `factor` times (it sleeps factor - 1 times each batch's time),
  // to measure how a consistency model copes with a straggler; worker -1: none.
  struct Straggler {
    int worker = -1;
    double factor = 1;
  } straggler;
  // Driver, when set: called at the first evaluation barrier that ends an epoch (after its
  // Objective) once checkpoint_every seconds (0: at every such barrier) have passed since the
  // start or the last call, not at the last one. Nobody pushes then:
  // `tables` are the servers' values after `epochs_done` epochs, and every worker's saved
  // state has reached the app (GatherWorker), so app state and tables agree. The app saves
  // them; an error stops the run.
  double checkpoint_every = 0;
  std::function<Status(std::uint64_t epochs_done, const std::vector<Eigen::VectorXd>& tables)>
      checkpoint;
  // A resumed run: the epochs already done. The app has put the saved tables in its
  // TableSpec::initial_values and its workers' state back; the run goes on from this epoch.
  std::uint64_t start_epoch = 0;
  // Null: every run makes its workers' state anew (MakeWorker). Set: a run takes worker w's
  // state from an earlier run over the same app in this process (ReuseWorker) and keeps it
  // for the next one.
  std::shared_ptr<KeptWorkers> kept_workers{};
  Status Validate() const;
};

// An app that offers both modes keeps one EngineOptions for the run: this copies its workers,
// time limit, trace, progress display and label into the data-parallel options.
void CopyRunOptions(const EngineOptions& engine, DataParallelOptions& dp);

// What DataParallelApp::MakeWorker is told.
struct DpWorkerSetup {
  int worker = 0;  // 0..num_workers-1
  int num_workers = 1;
  std::span<const std::uint32_t> rows;  // the worker's partition
};

// What a worker knows while it computes.
struct DpWorkerContext {
  int worker = 0;
  int num_workers = 1;
  std::uint64_t epoch = 0;
  PsClient* client = nullptr;           // this worker's handle on the parameter server
  std::span<const std::uint32_t> rows;  // the worker's partition
  WorkerState* state = nullptr;         // MakeWorker's (null when the app makes none)
  int replication = 1;                  // workers holding each row (P under overlap_reshuffle)
  // Rows all workers process in one clock (a gradient summed over one clock's pushes of every
  // worker is an average when each worker scales its sum by 1 / rows_per_clock).
  double rows_per_clock = 1;
  bool ends_clock = false;  // in ProcessBatch: the engine ends a clock after this batch
  int round = 0;            // in ProcessBatch: which of the app's RoundsPerBatch this is

  // This worker's state as the app's type.
  template <class T>
  T& State() const {
    TESSERA_CHECK(state != nullptr) << "worker " << worker << " has no state (MakeWorker)";
    return static_cast<T&>(*state);
  }
};

// A data-parallel application. Thread model: Tables, Objective, GatherWorker and the
// checkpoint calls run on the driver; MakeWorker, ReuseWorker, Setup, ProcessBatch and
// EvaluateTerms on worker w's fiber, touching only worker w's state (ctx.State), what the app
// object holds read-only, and the parameter server through ctx.client. Workers run
// concurrently, possibly in other processes, each with its own copy of the app object: nothing
// a worker writes reaches the driver except through the tables, its objective terms and its
// saved state.
class DataParallelApp {
 public:
  virtual ~DataParallelApp() = default;
  // Rows of the data set (for partitioning).
  virtual std::size_t num_rows() const = 0;
  // Driver and every process, before the run: each row's work (e.g. its nonzeros), the same in
  // every process. Workers then get partitions (contiguous and random schemes) and batches of
  // about equal work, so under bsp no worker waits for one with heavier rows. Empty (the
  // default): every row alike, batches of DataParallelOptions::batch_size rows.
  virtual std::vector<double> RowWeights() const { return {}; }
  // Driver, once, before the servers start: the tables (TableId = index).
  virtual std::vector<TableSpec> Tables(const DataParallelOptions& options) = 0;
  // Worker, once, on its own fiber in the process that hosts it, before Setup: the worker's
  // state (its rows' data, its share of the model, scratch, random streams), owned by the
  // engine. Default: none.
  virtual std::unique_ptr<WorkerState> MakeWorker(const DpWorkerSetup& setup) {
    (void)setup;
    return nullptr;
  }
  // Worker, instead of MakeWorker, when DataParallelOptions::kept_workers holds this worker's
  // state from an earlier run in this process (a path of fits): readies it for this run.
  virtual void ReuseWorker(WorkerState& state, const DpWorkerSetup& setup) {
    (void)state;
    (void)setup;
  }
  // Driver's process, at the end of the run and before every checkpoint, in worker order: a
  // worker's state as its WorkerState::Save wrote it, which travels by message from wherever
  // the worker runs. The reader must be read to its end. Default: nothing to gather.
  virtual Status GatherWorker(int worker, std::span<const std::uint32_t> rows, StateReader& in) {
    (void)worker;
    (void)rows;
    (void)in;
    return Status::Ok();
  }
  // Worker, once, before the first batch. May pull, push and clock (e.g. to share statistics),
  // but every worker must call Clock() the same number of times here.
  virtual Status Setup(DpWorkerContext& ctx) {
    (void)ctx;
    return Status::Ok();
  }
  // Driver and every worker, before the run: how many times ProcessBatch runs on each batch
  // (ctx.round 0, 1, ...). Each round counts as a batch for the update frequency, so under
  // `batch` every round ends a clock: a block-coordinate method updates one block per clock.
  virtual int RoundsPerBatch(const DataParallelOptions& options) const {
    (void)options;
    return 1;
  }
  // Worker, once per batch of its rows (and round): pull what it needs, compute, push.
  virtual Status ProcessBatch(DpWorkerContext& ctx, std::span<const std::uint32_t> batch) = 0;
  // Worker, at an evaluation barrier (every worker has ended the same clock and nobody pushes
  // until all have answered; reads see every push so far): objective terms over its rows.
  virtual StatusOr<Eigen::VectorXd> EvaluateTerms(DpWorkerContext& ctx) = 0;
  // Driver: the run's clock starts (the servers are up, the workers are starting). An app that
  // stamps its evaluations with a clock of its own restarts it here, so that they count what
  // the run's seconds count and not the setup before.
  virtual void RunStarted() {}
  // Driver: the objective from the terms summed over workers.
  virtual double Objective(const Eigen::VectorXd& summed_terms) = 0;
  // Driver, after Objective: whether the objective tolerance may end the run at this
  // evaluation (an app whose cheap passes skip part of the model lets it stop only after a
  // pass that checked all of it).
  virtual bool MayStop(const Eigen::VectorXd& summed_terms) {
    (void)summed_terms;
    return true;
  }
  // Checkpoints (UseCheckpoints). Driver, at a checkpoint barrier: the app's state after
  // `epochs` epochs with the servers' `tables`. Every process, before the run: puts a
  // checkpoint back (tables into TableSpec::initial_values, workers' state) and returns the
  // epochs it had done. Apps that do not checkpoint keep the defaults.
  virtual StatusOr<Checkpoint> SaveCheckpoint(std::uint64_t epochs,
                                              const std::vector<Eigen::VectorXd>& tables) {
    (void)epochs;
    (void)tables;
    return FailedPrecondition("this app does not write checkpoints");
  }
  virtual StatusOr<std::uint64_t> RestoreCheckpoint(const Checkpoint& c) {
    return FailedPrecondition(c.source() + ": this app does not resume from checkpoints");
  }
};

struct DataParallelResult {
  RunResult run;  // rounds: the workers' clock at the last evaluation
  // Every table's final values, key-major. In a process of a multi-process run without the
  // driver (!run.holds_result): the key ranges of the shards this process hosts,
  // every other key at its initial value (enough to start the next run's shards from).
  std::vector<Eigen::VectorXd> tables;
};

// Sets up `options` for `plan` before RunDataParallel: with `resume`, every process reads the
// newest whole checkpoint and the app restores it (options.start_epoch); the process of the
// driver (rank 0 of `transport`; null: this one) writes them. Returns "file: N of M epochs
// done" after a resume, "" otherwise. `dir` is kept for the run's checkpoints and must outlive it.
StatusOr<std::string> UseCheckpoints(DataParallelApp& app, const CheckpointPlan& plan,
                                     const std::shared_ptr<Transport>& transport,
                                     DataParallelOptions& options,
                                     std::optional<CheckpointDir>& dir);

// Runs `app` for max_epochs (or until a limit or the tolerance stops it at an evaluation).
// Always evaluates at the end. `transport` must have 1 + servers + workers endpoints; null: an
// in-process one.
StatusOr<DataParallelResult> RunDataParallel(DataParallelApp& app,
                                             const DataParallelOptions& options,
                                             std::shared_ptr<Transport> transport = nullptr);

}  // namespace tessera
