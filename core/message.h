// The messages the engines exchange through a Transport: an envelope (sender, receiver, run)
// around one typed body, a std::variant of the small structs below. In-process they move by
// value; the TCP transport serializes exactly these fields (net/tessera.thrift mirrors each
// body as a member of a Thrift union).
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "tessera/core/keys.h"

namespace tessera {

class BlockState;  // core/model_parallel.h

using Rank = int;  // endpoint id. Model-parallel: 0 coordinator, 1..P workers.
                   // Parameter server: 0 driver, 1..S server shards, S+1..S+P workers.

// A worker's share of the result for one block.
struct Partial {
  std::uint32_t block = 0;
  int worker = 0;
  Eigen::VectorXd values;
};

// What Pull commits and broadcasts: new minus old value for each changed key.
struct Update {
  std::vector<Key> keys;
  Eigen::VectorXd delta;
  bool empty() const { return keys.empty(); }
};

// An update the coordinator committed for `round`, on its way to the workers.
struct Committed {
  std::uint64_t round = 0;
  Update update;
};

// The serialized state of one carried block.
struct CarriedState {
  std::uint32_t block = 0;
  std::string state;
};

// Keys of one parameter-server table: the explicit `keys`, or when there are none, `range`.
// A worker's list of keys its shard already holds (core/ps_wire.h) travels as `key_list`, the
// list's hash, with no keys; the shard puts the keys back before anything reads them.
struct TableKeys {
  std::uint32_t table = 0;
  std::vector<Key> keys;
  KeyRange range;
  std::uint64_t key_list = 0;
  std::size_t count() const { return keys.empty() ? range.size() : keys.size(); }
  Key key(std::size_t i) const { return keys.empty() ? range.begin + i : keys[i]; }
};

// How the `values` of a parameter-server message travel (core/ps_wire.h); the receiver
// unpacks them to count() * dim plain doubles before anything reads them.
struct PackedValues {
  bool f32 = false;     // every value is exactly a float: 4 bytes each on the wire
  bool sparse = false;  // `values` are the nonzero ones, at positions `nonzero` of `size`
  std::vector<std::uint32_t> nonzero;
  std::uint64_t size = 0;
  // Compressed (Communication::compression): `values` and `nonzero` are empty, and `compressed`
  // holds `count` values (floats when f32) and, when sparse, their positions as differences,
  // each byte-shuffled (the k-th bytes of all of them together), compressed with `codec`
  // (Compression: 1 lz4, 2 zstd; 0 not compressed).
  std::uint8_t codec = 0;
  std::uint64_t count = 0;
  std::string compressed;
};

namespace msg {

// Any side: leave the loop (coordinator -> worker, driver -> worker, driver or worker -> shard).
struct Stop {};

// Model-parallel (core/model_parallel.h). Coordinator -> worker messages may carry the
// `committed` update of an earlier round, which the worker applies before anything else (it
// saves a message per round).
struct Push {  // compute partials for `blocks` of `round`
  std::uint64_t round = 0;
  std::vector<Block> blocks;
  std::vector<Key> stale_keys;  // keys of earlier rounds not yet applied at the worker
  std::optional<Committed> committed;
};
struct Partials {  // worker -> coordinator: its partials for `round`
  std::uint64_t round = 0;
  std::vector<Partial> partials;
  // Payload bytes the worker sent to other workers (carried blocks) since its last reply,
  // which the coordinator counts with the traffic it sees itself.
  std::uint64_t moved_bytes = 0;
};
struct Apply {  // coordinator -> worker: apply `committed`, nothing else to send yet
  Committed committed;
};
struct Evaluate {  // coordinator -> worker: report objective terms over owned data
  std::uint64_t round = 0;
  std::optional<Committed> committed;
};
struct Evaluation {  // worker -> coordinator
  std::uint64_t round = 0;
  Eigen::VectorXd terms;
};
struct Gather {  // coordinator -> worker: send your state and the carried blocks you hold
  std::uint64_t round = 0;
  std::optional<Committed> committed;
  bool last = false;  // the run's closing gather: the worker needs neither afterwards
};
struct WorkerState {  // worker -> coordinator: what WorkerState::Save and BlockState::Save wrote
  std::uint64_t round = 0;
  std::string state;
  std::vector<CarriedState> carried;
};
struct BlockState {  // worker -> worker: carried block `block`, for its next holder
  std::uint64_t round = 0;
  std::uint32_t block = 0;
  std::string state;
  // Over a transport that passes messages as objects (Transport::passes_objects), the block's
  // state itself instead of `state`: nothing is copied. Never on a wire.
  std::shared_ptr<tessera::BlockState> object;
};

// Parameter server (core/parameter_server.h).
struct PsPull : TableKeys {  // worker or driver -> shard, answered once the shard's clock >= clock
  std::uint64_t clock = 0;
  std::uint64_t request = 0;
  // Every worker's pushes of the clocks before `clock`, also under sparsessp (whose ordinary
  // reads may be answered sooner when no worker behind has written their keys).
  bool exact = false;
};
struct PsValues : TableKeys {  // shard -> worker or driver: the answer to `request`
  std::uint64_t clock = 0;     // the shard's clock when it read them
  std::uint64_t request = 0;
  Eigen::VectorXd values;     // key-major, for the keys the request asked for (not repeated)
  std::uint64_t applied = 0;  // the recipient worker's push messages the shard had applied
  PackedValues packed;
};
struct PsRefresh : TableKeys {  // shard -> worker: ESSP's eager refresh of keys it has read
  std::uint64_t clock = 0;
  Eigen::VectorXd values;
  std::uint64_t applied = 0;  // as PsValues::applied
  PackedValues packed;
};
struct PsPush : TableKeys {  // worker -> shard
  Eigen::VectorXd values;
  bool raw_add = false;  // add the values instead of running the table's updater (averaging)
  // The most clocks stale any read of this table by the worker in the clock the push belongs
  // to was (PsClientStats::staleness): how old the values the pushed update was computed from
  // may be. Updaters that adapt their step to it see it (Updater::StaleUpdate).
  std::uint64_t staleness = 0;
  PackedValues packed;
};
struct PsClock {  // worker -> shard: the worker finished `clock` (all its pushes before it)
  std::uint64_t clock = 0;
};
struct PsPing {  // worker -> shard: send a PsPong once every earlier push of mine is applied
  std::uint64_t request = 0;
};
struct PsPong {
  std::uint64_t request = 0;
  std::uint64_t clock = 0;
};
struct PsTables : TableKeys {  // shard -> driver at the end of a run across processes
  Eigen::VectorXd values;      // dense tables: the shard's range; sparse: the stored keys
};

// The data-parallel evaluation barrier (core/data_parallel.h), worker <-> driver.
struct DpArrived {  // worker -> driver: ended `clock`
  std::uint64_t clock = 0;
  std::uint64_t values_pushed = 0;  // by this worker so far
  std::uint64_t bytes = 0;          // payload bytes this worker moved so far
  // This worker's reads so far by how many clocks stale they were: kStalenessBuckets counts
  // per table (PsClientStats::staleness).
  std::vector<std::uint64_t> staleness;
};
struct DpTerms {  // worker -> driver: its objective terms at `clock`
  std::uint64_t clock = 0;
  Eigen::VectorXd terms;
};
struct DpSaveState {  // driver -> worker: send a DpWorkerState (a checkpoint), then wait
  std::uint64_t clock = 0;
};
struct DpWorkerState {  // worker -> driver: the bytes its WorkerState::Save wrote
  std::string state;
};
struct DpContinue {  // driver -> worker: leave the barrier of `clock` and go on
  std::uint64_t clock = 0;
};

}  // namespace msg

// One alternative per message type; MessageKind names them in the same order.
using MessageBody =
    std::variant<msg::Stop, msg::Push, msg::Partials, msg::Apply, msg::Evaluate, msg::Evaluation,
                 msg::Gather, msg::WorkerState, msg::BlockState, msg::PsPull, msg::PsValues,
                 msg::PsRefresh, msg::PsPush, msg::PsClock, msg::PsPing, msg::PsPong, msg::PsTables,
                 msg::DpArrived, msg::DpTerms, msg::DpSaveState, msg::DpWorkerState,
                 msg::DpContinue>;

enum class MessageKind : std::uint8_t {
  kStop,
  kPush,
  kPartials,
  kApply,
  kEvaluate,
  kEvaluation,
  kGather,
  kWorkerState,
  kBlockState,
  kPsPull,
  kPsValues,
  kPsRefresh,
  kPsPush,
  kPsClock,
  kPsPing,
  kPsPong,
  kPsTables,
  kDpArrived,
  kDpTerms,
  kDpSaveState,
  kDpWorkerState,
  kDpContinue,
};
static_assert(std::variant_size_v<MessageBody> == 1 + static_cast<int>(MessageKind::kDpContinue));

// "push", "ps-values", ...: for error messages.
const char* KindName(MessageKind kind);

struct Message {
  Rank from = 0;
  Rank to = -1;  // set by Transport::Send; the TCP transport routes frames by it
  // The sender's run (Transport::BeginRun), set by the TCP transport: a receiver drops
  // messages of runs it has finished and holds back those of runs it has not begun.
  std::uint64_t run = 0;
  MessageBody body;

  Message() = default;
  template <typename Body>
  Message(Rank sender, Body b) : from(sender), body(std::move(b)) {}

  MessageKind kind() const { return static_cast<MessageKind>(body.index()); }
  template <typename Body>
  Body* get() {
    return std::get_if<Body>(&body);
  }
  template <typename Body>
  const Body* get() const {
    return std::get_if<Body>(&body);
  }
  // Payload size in bytes as it would travel packed (keys 8 B, values 8 B), for metrics.
  std::uint64_t PayloadBytes() const;
};

// Messages carry value buffers of megabytes that are allocated on one thread and freed on
// another. With glibc's defaults each is a fresh mmap or trimmed heap: every push, pull or
// received frame then pays a page fault per 4 KiB and runs at a fraction of memory bandwidth
// (bench/ps_throughput, bench/net_bench). This keeps buffers up to 32 MiB in the heap and the
// heap untrimmed; the parameter server and the TCP transport call it (once per process).
void KeepMessageBuffersInHeap();

}  // namespace tessera
