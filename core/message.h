// The messages the engines exchange through a Transport. In-process they move by value;
// the TCP transport (net/) serializes exactly these fields.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <string>
#include <vector>

#include "core/keys.h"

namespace tessera {

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

enum class MessageKind : std::uint8_t {
  kPush,        // coordinator -> worker: compute partials for `blocks` of `round`
  kPartials,    // worker -> coordinator: `partials` for `round`
  kApply,       // coordinator -> worker: only apply `update` (nothing else to send yet)
  kEvaluate,    // coordinator -> worker: report objective terms over owned data
  kEvaluation,  // worker -> coordinator: `values` = objective terms
  kStop,        // coordinator -> worker: leave the worker loop

  // Parameter server (core/parameter_server.h).
  kPsPull,    // worker or driver -> shard: `request` for `keys` (or `range`) of `table`, to be
              // answered once the shard's clock is >= `round`
  kPsValues,  // shard -> worker: `values` for `request` (0: an eager ESSP refresh of `keys` /
              // `range`), served at shard clock `round`
  kPsPush,    // worker -> shard: `values` for `keys` (or `range`) of `table`; `raw_add` adds
              // them instead of running the table's updater (model averaging)
  kPsClock,   // worker -> shard: the worker finished clock `round` (all its pushes before it)
  kPsPing,    // worker -> shard: answer `request` (a kPsValues without values) once every push
              // this worker sent before it is applied (flow control)
  kPsTables,  // shard -> driver at the end of a run across processes: the `values` of `table`
              // in the shard (dense tables: `range`; sparse: the stored `keys`)

  // Data-parallel evaluation barrier (core/data_parallel.h), worker <-> driver.
  kDpArrived,      // worker -> driver: ended clock `round`; values = [values pushed, bytes moved]
  kDpTerms,        // worker -> driver: its objective terms (`values`) at clock `round`
  kDpSaveState,    // driver -> worker: send kDpWorkerState (a checkpoint), then wait for more
  kDpWorkerState,  // worker -> driver: `state` = the bytes its WorkerState::Save wrote
  kContinue,       // driver -> worker: leave the barrier of clock `round` and go on

  // Model-parallel state.
  kBlockState,   // worker -> worker: `state` of carried block `block`, for its next holder
  kGather,       // coordinator -> worker: send your state and the carried blocks you hold
  kWorkerState,  // worker -> coordinator: `state` of the worker and the `carried` blocks it holds
};
inline constexpr MessageKind kLastMessageKind = MessageKind::kWorkerState;

// The serialized state of one carried block.
struct CarriedState {
  std::uint32_t block = 0;
  std::string state;
};

struct Message {
  MessageKind kind = MessageKind::kStop;
  Rank from = 0;
  Rank to = -1;  // set by Transport::Send; the TCP transport routes frames by it
  // The sender's run (Transport::BeginRun), set by the TCP transport: a receiver drops
  // messages of runs it has finished and holds back those of runs it has not begun.
  std::uint64_t run = 0;
  std::uint64_t round = 0;
  std::vector<Block> blocks;      // kPush
  std::vector<Key> stale_keys;    // kPush: keys of earlier rounds not yet applied at the worker
  std::vector<Partial> partials;  // kPartials
  // Any coordinator -> worker message: an update committed by round `update_round` that the
  // worker applies before acting on the message (saves a message per round).
  Update update;
  bool has_update = false;
  std::uint64_t update_round = 0;
  Eigen::VectorXd values;  // kEvaluation; parameter-server values, key-major

  // Model-parallel state (ModelParallelApp::MakeWorker, CarriedBlockHolders).
  std::uint32_t block = 0;            // kBlockState
  std::string state;                  // kBlockState, kWorkerState: the bytes the app wrote
  std::vector<CarriedState> carried;  // kWorkerState
  // kPartials: payload bytes the worker sent to other workers (carried blocks) since its last
  // reply, which the coordinator counts with the traffic it sees itself.
  std::uint64_t moved_bytes = 0;

  // Parameter server.
  std::uint32_t table = 0;
  std::uint64_t request = 0;
  std::vector<Key> keys;  // explicit keys; when empty, `range` names them
  KeyRange range;
  bool raw_add = false;

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
