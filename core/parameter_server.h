// The data-parallel engine's storage: a parameter server (Petuum Bösen / ps-lite semantics).
//
// A table maps uint64 keys to fixed-length value vectors. Each table is cut into contiguous key
// ranges, one per server shard; a shard is a fiber that owns its ranges and nobody else writes
// them. Workers reach shards only by messages through a Transport (msg::PsPull, PsPush, PsClock,
// PsPing; answered by PsValues, PsRefresh, PsPong), so the same code runs over TCP. The one
// exception is a `hogwild` table: lock-free shared memory, which exists only when every endpoint is
// in one process.
//
// Clocks. Every worker starts at clock 0; PsClient::Clock() ends its current clock. A shard's
// clock is the minimum over workers of the clocks it has been told, so shard clock c means
// "every push every worker made in clocks < c has reached me". A read at worker clock c under
//   bsp      is served at shard clock >= c       (sees every earlier clock of every worker)
//   ssp:S    is served at shard clock >= c - S   (never more than S clocks stale)
//   essp:S   the same bound, and whenever their clock advances shards push a worker the keys
//            it has read that changed since the last such refresh (the refresh's clock vouches
//            for the others), so reads are usually served without a request
//   sparsessp:S  the same bound, except that a read whose keys no worker behind the bound has
//            pushed so far is served at once (FlexPS's sparse SSP: a worker whose keys are
//            disjoint from the slowest's keeps going; it assumes a worker's keys recur, and
//            a worker that has pushed nothing yet counts as disjoint)
//   sspaggr:S  ssp's bound; between clocks a worker sends its summed pushes within a bandwidth
//            budget per interval, largest relative change first, so reads see them before the
//            clock ends (Bösen's SSPAggr; the rest leave at the clock)
//   asp      is served at once with whatever the shard has
//   hogwild  reads and writes shared memory with no coordination (see TableSpec)
// bsp, ssp, essp and sparsessp keep a per-worker cache; a read is served from it when the cached
// copy is fresh enough. Reads never include the worker's own pushes unless they went through a
// shard (a pull flushes the worker's pushes first, so a request is always answered after them).
#pragma once

#include <Eigen/Core>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tessera/core/keys.h"
#include "tessera/core/message.h"
#include "tessera/core/ps_wire.h"
#include "tessera/core/status.h"
#include "tessera/core/transport.h"

namespace tessera {

// kCustom: a model registered with RegisterConsistency.
enum class ConsistencyModel {
  kBsp,
  kSsp,
  kEssp,
  kAsp,
  kHogwild,
  kSbp,
  kSparseSsp,
  kSspAggr,
  kCustom
};

struct TableSpec;

// What a consistency model decides, asked by the shards and the workers' clients. Each model is
// one class (ps_consistency.cc); a new one is a subclass and a RegisterConsistency call. The
// defaults are ssp's.
class ConsistencyPolicy {
 public:
  virtual ~ConsistencyPolicy() = default;
  // As parsed, e.g. "ssp:2".
  virtual std::string name() const = 0;
  // Lowest shard clock that may serve a read made at worker clock `clock` (0: any).
  virtual std::uint64_t RequiredClock(std::uint64_t clock) const = 0;
  // Whether a worker keeps the rows it read and serves a read from them when they were served
  // at a clock >= RequiredClock.
  virtual bool cached() const { return true; }
  // Whether a shard sums each clock's pushes and runs `spec`'s updater once on the sum when
  // the clock completes (else on each push as it arrives; TableSpec::sum_per_clock forces it).
  virtual bool SumsPerClock(const TableSpec& spec) const {
    (void)spec;
    return false;
  }
  // The clock a table has completed (every push of earlier clocks applied) given every
  // worker's clock: by default the slowest worker's.
  virtual std::uint64_t CompletedClock(std::span<const std::uint64_t> worker_clocks) const;
  // Whether, when their clock advances, shards push each worker the keys it has read that
  // changed since the last such refresh (ESSP).
  virtual bool refreshes() const { return false; }
  // Whether a read that needs a clock the table has not completed is served at once when no
  // worker short of that clock has pushed any of its keys (sparse SSP).
  virtual bool serves_disjoint_reads() const { return false; }
  // Tables in shared memory that workers update themselves, in-process only (hogwild).
  virtual bool shared_memory() const { return false; }
  // Whether a worker sums its pushes per key and sends them between clocks within the table's
  // bandwidth budget (Communication::budget_bytes per interval_seconds), the rows whose sum
  // changed their cached value the most, relatively, first; the rest when it ends the clock
  // (Bösen's SSPAggr).
  virtual bool bandwidth_managed() const { return false; }
  // Refuses a table this model cannot run with `workers` workers (e.g. sbp:B with B >= workers).
  virtual Status Check(const TableSpec& spec, int workers) const;
};

struct Consistency {
  ConsistencyModel model = ConsistencyModel::kBsp;
  int staleness = 0;  // S of ssp:S, essp:S and sparsessp:S (a custom model's N); 0 otherwise
  int backups = 0;    // B of sbp:B: a clock completes without the B slowest workers
  // Accepts "bsp", "sbp:B", "ssp:S", "essp:S", "sparsessp:S", "sspaggr:S", "asp", "hogwild" (S >=
  // 0; ssp:0 is bsp) and the registered models.
  static StatusOr<Consistency> Parse(std::string_view text);
  std::string ToString() const { return policy().name(); }
  // The model's behaviour (a default-constructed Consistency is bsp; any other comes from Parse).
  const ConsistencyPolicy& policy() const;
  // Lowest shard clock that may serve a read made at worker clock `clock` (0: any).
  std::uint64_t RequiredClock(std::uint64_t clock) const { return policy().RequiredClock(clock); }
  bool cached() const { return policy().cached(); }

  std::shared_ptr<const ConsistencyPolicy> impl;  // set by Parse; null: bsp
};

// A model's policy for "NAME" (parameter absent) or "NAME:N" (0 <= N <= 1000000), or why not.
using ConsistencyFactory =
    std::function<StatusOr<std::shared_ptr<const ConsistencyPolicy>>(std::optional<int> parameter)>;
// Makes `name` a consistency model for Consistency::Parse (and so for --consistency).
// `parameter` names its N for error messages ("a staleness bound"), empty when it takes none.
// False when the name is taken.
bool RegisterConsistency(std::string name, std::string parameter, ConsistencyFactory make);

// A server-side update function: how a shard folds pushed values into a table.
//
// Under bsp a shard sums the pushes of one clock from every worker and runs the updater once on
// the sum when its clock passes that clock (synchronous SGD). Under every other model it runs
// the updater on each push as it arrives (asynchronous SGD). For `add` the two are the same.
class Updater {
 public:
  virtual ~Updater() = default;
  virtual std::string name() const = 0;
  // Doubles of optimizer state the shard keeps per value element (Adagrad 1, Adam 3).
  virtual int state_per_element() const { return 0; }
  // Plain addition: hogwild tables then use atomic adds, so no update is lost.
  virtual bool is_add() const { return false; }
  // Runs on the shard that owns keys [first, first + count), once per contiguous run of pushed
  // keys. `value` and `grad` hold count * dim doubles, key-major; `state` count * dim *
  // state_per_element() doubles, element-major within a key. Must touch nothing else.
  virtual void Update(Key first, std::size_t count, int dim, double* value, const double* grad,
                      double* state) const = 0;
  // What the shard calls: Update, told how many clocks stale the values the update was
  // computed from may have been (the most stale read of the table by the pushing worker in
  // that clock; under sum_per_clock and bsp, the most over the workers whose pushes `grad`
  // sums). A delay-adaptive step overrides this (e.g. divides its step by 1 + staleness).
  virtual void StaleUpdate(Key first, std::size_t count, int dim, double* value, const double* grad,
                           double* state, std::uint64_t staleness) const {
    (void)staleness;
    Update(first, count, dim, value, grad, state);
  }
};

using UpdaterPtr = std::shared_ptr<const Updater>;
UpdaterPtr AddUpdater();                      // value += grad
UpdaterPtr SgdUpdater(double learning_rate);  // value -= lr * grad
UpdaterPtr AdagradUpdater(double learning_rate, double epsilon = 1e-8);
UpdaterPtr AdamUpdater(double learning_rate, double beta1 = 0.9, double beta2 = 0.999,
                       double epsilon = 1e-8);
// "add", "sgd:LR", "adagrad:LR", "adam:LR".
StatusOr<UpdaterPtr> MakeUpdater(std::string_view spec);
// A user's update function, with the arguments of Updater::Update.
using UpdateFunction = std::function<void(Key first, std::size_t count, int dim, double* value,
                                          const double* grad, double* state)>;
UpdaterPtr FunctionUpdater(std::string name, int state_per_element, UpdateFunction fn);
// The same with the staleness of Updater::StaleUpdate as the last argument.
using StaleUpdateFunction =
    std::function<void(Key first, std::size_t count, int dim, double* value, const double* grad,
                       double* state, std::uint64_t staleness)>;
UpdaterPtr StalenessAwareUpdater(std::string name, int state_per_element, StaleUpdateFunction fn);

enum class TableStorage {
  kDense,   // every key of the shard's range stored in one array
  kSparse,  // rows created on first push; a row never pushed reads as `initial`
  // Each key's nonzero elements (index and value, indexes ascending), a row turned dense once
  // more than a quarter of its elements are nonzero: memory in proportion to the nonzeros (8
  // bytes each while floats hold the row's values exactly, as they do counts below 2^24; a row
  // with a value no float holds turns dense and keeps it exactly), as for count tables (LDA's
  // word-topic counts). Replies carry the nonzeros (PullFuture::GetSparse), pushes may
  // (PsClient::PushSparse). For `add` tables whose workers do not cache their reads, under bsp,
  // ssp:S, sparsessp:S or asp, with `initial` 0; initial_rows sets starting values. Snapshots
  // and checkpoints leave such a table out (an empty vector): the app keeps what it needs to
  // rebuild it.
  kSparseElements,
};

// Rows of nonzero elements: row i's are index[j], value[j] for j in [ptr[i], ptr[i + 1]),
// indexes ascending.
struct SparseRows {
  std::vector<std::uint64_t> ptr = {0};
  std::vector<std::uint32_t> index;
  std::vector<double> value;
  std::size_t rows() const { return ptr.size() - 1; }
  // `rows` rows whose pointers and arrays agree, each row's indexes ascending and below `dim`.
  bool WellFormed(std::size_t rows, std::uint64_t dim) const;
};

struct TableSpec {
  std::string name = "table";  // used in error messages
  std::uint64_t num_keys = 0;  // keys are [0, num_keys)
  int dim = 1;                 // values per key
  TableStorage storage = TableStorage::kDense;
  double initial = 0;  // every element's value before any push
  // Dense tables: num_keys * dim starting values (warm starts); empty = `initial` everywhere.
  Eigen::VectorXd initial_values;
  // kSparseElements tables: every key's starting nonzeros (num_keys rows), or no rows (zeros).
  SparseRows initial_rows;
  UpdaterPtr updater = AddUpdater();
  Consistency consistency;  // per table
  // What its messages leave out or shrink on the way (core/ps_wire.h); the same in every
  // process of a run.
  Communication communication;
  // Model averaging (SystemDS paramserv modelAvg): each worker applies the updater to its own
  // replica of the rows it reads and, when it ends a clock, pushes (replica − as read) / P,
  // which the shard adds as is. Under bsp the table then holds the average of the workers'
  // models after every clock. Not with hogwild.
  bool model_averaging = false;
  // Read-my-writes (Bösen's process cache): a worker adds its own pushes to its cached rows at
  // once, so its reads include them even when served from the cache. For `add` tables under
  // bsp, ssp or essp. A cached row is replaced whenever a newer copy arrives from the shard; a
  // pull's reply always includes the pushes made before it, but an ESSP refresh the shard sent
  // before one of them arrived lacks it until the next refresh.
  bool read_my_writes = false;
  // Whether workers keep the rows they read, when the consistency model lets a read be served
  // from them (every model but asp and hogwild). An app whose workers read each row at most once
  // per clock under bsp, which can serve only a read of the clock the row was read in, gains
  // nothing from it and saves a copy of every row read. Read-my-writes, ESSP's refreshes and the
  // significantly-modified filter need it.
  bool cache_reads = true;
  // The app's rows and changes are dense (about every value read or pushed is nonzero, as in
  // factor rows): the data-parallel engine turns sparse packing (Communication::sparse_values) off
  // for the table, which would count every value of every message only to find it does not pay.
  bool dense_rows = false;
  // Under ssp, essp and asp too, as under bsp: the shard sums the pushes of each clock and runs
  // the updater once on the sum when every worker has ended that clock; reads keep the model's
  // bound (ssp:S reads may miss the last S clocks' steps). A method that needs every worker's
  // share of a gradient before it steps (a delayed block proximal gradient) sets it. Not with
  // hogwild.
  bool sum_per_clock = false;
  // Optional contiguous key range per shard, in shard order, covering [0, num_keys) exactly.
  // Empty: [0, num_keys) split evenly.
  std::vector<KeyRange> shard_ranges;
  // Says which field is wrong and why.
  Status Validate(int servers, bool in_process) const;
};

using TableId = std::uint32_t;  // index into the specs given to ParameterServer::Start

// Reads are counted by how many clocks stale the value they got was: 0 .. kStalenessBuckets-2,
// and kStalenessBuckets-1 for that many or more.
inline constexpr std::size_t kStalenessBuckets = 17;

struct PsClientStats {
  std::uint64_t pull_requests = 0;     // kPsPull messages sent
  std::uint64_t cache_hits = 0;        // keys served from the cache without a request
  std::uint64_t eager_refreshes = 0;   // ESSP refresh messages received
  std::uint64_t refreshed_values = 0;  // values they carried
  std::uint64_t push_messages = 0;
  std::uint64_t pushed_values = 0;
  std::uint64_t pulled_values = 0;  // values returned to the caller
  std::uint64_t bytes = 0;          // payload bytes this client sent and received
  // Bandwidth-managed tables: sends between clocks, and the most payload bytes one of them
  // (one interval's) took.
  std::uint64_t budgeted_sends = 0;
  std::uint64_t budgeted_bytes_max = 0;
  // [table * kStalenessBuckets + s]: the worker's reads (not the evaluation barrier's) whose
  // oldest value was s clocks stale: at the worker's clock c, a value the shards served at
  // clock v (every update of clocks < v in it) is c - v clocks stale; 0 is the freshest a
  // worker can read without waiting for the others' current clock.
  std::vector<std::uint64_t> staleness;
};

class PsClient;

// Index of the range holding `key` in contiguous ranges that cover it.
int ShardIn(const std::vector<KeyRange>& ranges, Key key);

// The answer to a Pull. Get() waits (parking the fiber) and may be called once.
class PullFuture {
 public:
  PullFuture() = default;
  // The values, key-major (key i's element d at i * dim + d), in the order asked for.
  StatusOr<Eigen::VectorXd> Get();
  // The same as rows of nonzero elements, one per key asked for: without a dense copy when the
  // table stores kSparseElements. Either Get or GetSparse, once.
  StatusOr<SparseRows> GetSparse();
  // After Get(): the oldest shard clock among the values served (each holds every push of the
  // clocks before it that its shard applies); 0 when nothing was read; a hogwild read, from the
  // shards' memory as it is, the reader's own clock.
  std::uint64_t served_clock() const;

 private:
  friend class PsClient;
  struct State;
  std::shared_ptr<State> state_;
  PsClient* client_ = nullptr;
};

class ParameterServer;

// A worker's handle on the parameter server. One fiber uses a client at a time (its worker's).
// Pushes are buffered per shard and sent when the buffer is large, on Clock(), Flush(), and
// before any pull to that shard.
class PsClient {
 public:
  ~PsClient();
  int worker() const { return worker_; }
  std::uint64_t clock() const { return clock_; }
  const PsClientStats& stats() const { return stats_; }

  PullFuture Pull(TableId table, std::span<const Key> keys);
  PullFuture PullRange(TableId table, KeyRange range);
  // values: keys.size() * dim doubles, key-major.
  Status Push(TableId table, std::span<const Key> keys, std::span<const double> values);
  Status PushRange(TableId table, KeyRange range, std::span<const double> values);
  // A push of each key's nonzero changes (rows.rows() == keys.size()): to a kSparseElements
  // table they travel as they are; another table takes them as dense rows (Push).
  Status PushSparse(TableId table, std::span<const Key> keys, const SparseRows& rows);
  // Sends buffered pushes.
  Status Flush();
  // Ends the current clock: flushes, then tells every shard.
  Status Clock();
  // Sends every change the significantly-modified filter (Communication::significant) holds,
  // then flushes. The data-parallel engine calls it before the clock of each evaluation.
  Status ReleaseHeld();
  // Waits for the next message that is not parameter-server traffic (engine control), handling
  // replies and refreshes that arrive meanwhile.
  StatusOr<Message> ReceiveControl();
  // Sends an engine control message to the driver (rank 0).
  template <typename Body>
  Status SendToDriver(Body body) {
    return SendCounted(0, Message(rank_, std::move(body)));
  }
  // While set, every read waits for shard clock >= this worker's clock whatever the table's
  // model: the engine's evaluation barrier uses it so all workers read the same model.
  void set_exact_reads(bool exact) { exact_reads_ = exact; }

 private:
  friend class ParameterServer;
  friend class PullFuture;
  struct Cache;
  struct PendingReply;
  struct Asked;
  struct Replica;
  void OverlayReplica(PullFuture::State& st);
  Status PushToReplica(TableId table, std::span<const Key> keys, std::span<const double> values);
  void AddToCache(TableId table, Key key, const double* values);
  Status SendAveragedModel(TableId table);
  PsClient(ParameterServer* ps, int worker);
  PullFuture StartPull(TableId table, std::span<const Key> keys, const KeyRange* range);
  Status SendPushes(TableId table, int shard);
  // Appends keys and their values (dim each) to the shard's push buffer, sending it when full.
  Status Buffer(TableId table, int shard, std::span<const Key> keys, const double* values);
  // The significantly-modified filter: whether `change` of `key` is large against the key's row
  // as this worker last read it (true when it has not read it).
  bool Significant(TableId table, Key key, const double* change) const;
  // Bandwidth-managed tables: once per interval, the summed pushes that fit the budget, most
  // changed first; everything when `all`.
  Status SendAggregated(TableId table, bool all);
  // `m.packed` already holds sparse values when `sparse`: only rounded and compressed.
  Status SendPush(int shard, msg::PsPush m, bool sparse = false);
  // The transport's Send and Receive (for this client's rank), counted in stats().bytes.
  Status SendCounted(Rank to, Message m);
  StatusOr<Message> ReceiveCounted();
  // A message for this worker: a reply is checked (sender, table, keys, value count) and stored;
  // anything else is queued for ReceiveControl.
  Status Handle(Message& m);
  // A reply to a pull of a kSparseElements table: its nonzeros kept as they are.
  Status HandleSparse(Rank from, msg::PsValues& m,
                      std::unordered_map<std::uint64_t, PendingReply>::iterator it);
  Status Wait(PullFuture::State& st);
  // Stores served values (a reply or an ESSP refresh from shard `shard`, which had applied
  // `applied` of this worker's push messages) in the table's cache; with read_my_writes, adds
  // this worker's pushes the shard had not yet applied.
  void StoreInCache(const TableKeys& at, const Eigen::VectorXd& values, std::uint64_t clock,
                    int shard, std::uint64_t applied);
  // Read my writes: `values` of `key` pushed, not yet confirmed by a served value.
  void AddUnconfirmed(TableId table, Key key, const double* values);
  void HogwildPush(TableId table, int shard, Key first, std::size_t count, const double* grad);

  ParameterServer* ps_;
  const int worker_;
  const Rank rank_;
  std::uint64_t clock_ = 0;
  std::uint64_t next_request_ = 1;
  bool exact_reads_ = false;
  PsClientStats stats_;
  struct Outgoing {
    std::vector<Key> keys;
    Eigen::VectorXd values;  // the first `used` hold the buffered values
    std::size_t used = 0;
  };
  std::vector<std::vector<Outgoing>> outgoing_;  // [table][shard]
  // [table][shard]: the key lists sent to each shard, for tables that cache them.
  std::vector<std::vector<KeyListCache>> key_lists_;
  std::vector<std::uint64_t> pushes_sent_;     // [shard]: push messages sent
  std::vector<std::uint64_t> read_staleness_;  // [table]: the most stale read this clock
  // read_my_writes tables: this worker's pushes no served value has confirmed yet (the shard
  // had not applied them): per shard the messages sent, by number, and per key their sum.
  struct MyWrites;
  std::vector<std::unique_ptr<MyWrites>> my_writes_;  // [table]; null without read_my_writes
  std::vector<std::unique_ptr<Cache>> caches_;        // [table]; null when not cached
  std::vector<std::unique_ptr<Replica>> replicas_;    // [table]; null without model averaging
  struct Aggregate;
  std::vector<std::unique_ptr<Aggregate>> aggregates_;  // [table]; null unless bandwidth-managed
  // [table]: changes the significantly-modified filter holds back; null without the filter.
  std::vector<std::unique_ptr<Aggregate>> held_;
  std::uint64_t push_bytes_ = 0;  // payload of every push sent
  std::unordered_map<std::uint64_t, PendingReply> pending_;
  std::vector<Message> control_;  // control messages that arrived while waiting for a reply
  std::vector<double> hogwild_value_, hogwild_state_;  // scratch for hogwild updates
  struct Window {
    std::uint64_t bytes = 0;                  // pushed since the last ping
    std::shared_ptr<PullFuture::State> ping;  // the last ping, answered or not
  };
  std::vector<Window> windows_;  // per shard
};

// The shards plus one client per worker. Endpoints on the transport: 0 the driver,
// 1..servers the shards, servers+1..servers+workers the workers.
class ParameterServer {
 public:
  // Validates the specs (errors name the table and field), allocates every shard's storage and
  // starts one fiber per shard on FiberPool::Global(). `transport` must have
  // 1 + servers + workers endpoints; null: an in-process transport is created.
  static StatusOr<std::unique_ptr<ParameterServer>> Start(std::vector<TableSpec> tables,
                                                          int servers, int workers,
                                                          std::shared_ptr<Transport> transport);
  ~ParameterServer();

  PsClient& client(int worker) { return *clients_[worker]; }
  Transport& transport() { return *transport_; }
  int servers() const { return servers_; }
  int workers() const { return workers_; }
  const TableSpec& table(TableId id) const { return specs_[id]; }
  std::size_t num_tables() const { return specs_.size(); }
  Rank ShardRank(int shard) const { return 1 + shard; }
  Rank WorkerRank(int worker) const { return 1 + servers_ + worker; }
  // Shard owning `key` of `table`, or an error naming the key and the table's range.
  StatusOr<int> ShardOf(TableId table, Key key) const;
  const std::vector<KeyRange>& ranges(TableId table) const { return ranges_[table]; }

  // Stops the shards and waits for them. Idempotent. Only the driver's process (rank 0) sends
  // the stops; a shard stops at the driver's (after StopAfterWorkers: and every worker's), and
  // one that runs in another process then sends its tables to the driver's, where Shutdown
  // collects them for Snapshot; any other message reaching rank 0 meanwhile goes to `other`.
  void Shutdown(const std::function<void(Message&)>& other = nullptr);
  // Ok, or why the tables of another process's shard did not arrive.
  Status final_status() const;
  // Ok, or why a shard of this process stopped early: a message it refused (a sender that is
  // not a worker, a table, key or range outside the shard, a value count that does not fit),
  // which also closed the transport so that the run fails with it.
  Status shard_status() const;
  // RunDataParallel across processes, before any worker runs: the shards stop only after the
  // driver's stop and one from every worker (which then follows the worker's last push).
  // Without it a driver's stop ends a shard at once.
  void StopAfterWorkers() { stop_after_workers_.store(true); }
  // Every value of a dense or sparse table, key-major, read after Shutdown() (tests, output);
  // empty for a kSparseElements table.
  Eigen::VectorXd Snapshot(TableId table) const;
  // Copies the `values` a shard (rank `from`) sent for `at` (a range or explicit keys) into
  // `table`, every value of one table key-major; an error when keys or sizes do not fit.
  Status PlaceValues(Rank from, const TableKeys& at, const Eigen::VectorXd& values,
                     Eigen::VectorXd& table) const;
  // Unpacks the `values` a shard (rank `from`) sent for `at`, packed as `packed` says, into
  // plain values (UnpackValues) or, when `keep_sparse`, their nonzeros (UnpackSparseValues); an
  // error when `from` is no shard, `at` names keys outside its table or the packing does not fit.
  Status UnpackFrom(Rank from, const TableKeys& at, Eigen::VectorXd& values, PackedValues& packed,
                    bool keep_sparse = false) const;

 private:
  friend class PsClient;
  struct Shard;
  // Hogwild: the values and optimizer state of `table` in shard `shard`'s memory from key
  // `first` on (the only access to shard memory from a worker; in-process tables only).
  struct SharedRows {
    double* values;
    double* state;
    int state_per_element;
  };
  SharedRows HogwildRows(TableId table, int shard, Key first);
  // Ok when `from` is a shard, `at`'s keys lie in its table and `values` (as many as
  // `packed` says when they are sparse) are one row per key.
  Status CheckValues(Rank from, const TableKeys& at, const Eigen::VectorXd& values,
                     const PackedValues* packed = nullptr) const;
  ParameterServer() = default;

  int servers_ = 0;
  int workers_ = 0;
  std::vector<TableSpec> specs_;
  std::vector<std::vector<KeyRange>> ranges_;  // [table][shard]
  std::shared_ptr<Transport> transport_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::unique_ptr<PsClient>> clients_;
  std::unique_ptr<WaitGroup> running_;
  bool stopped_ = false;
  std::atomic<bool> stop_after_workers_{false};
  // [table]: other processes' shards' tables, with the shard that sent each.
  std::vector<std::vector<std::pair<Rank, msg::PsTables>>> final_;
  Status final_status_;
  mutable std::mutex shard_mu_;
  Status shard_status_;  // the first refused message's reason (guarded by shard_mu_)
};

}  // namespace tessera
