// Tessera's wire format: every message the engines exchange through a Transport
// (core/message.h), and the frames the TCP transport adds around them. Encoded with
// TCompactProtocol; each frame travels as a 4-byte big-endian length and the encoded Frame.
// Keys and values are packed binary fields (little-endian uint64 keys, IEEE-754 float64
// values, 8 bytes each), not Thrift lists: one copy instead of a varint per element.
namespace cpp tessera.wire

struct Block {
  1: i32 id
  2: binary keys
  3: i32 worker
  4: i32 holder
  5: i32 op
}

struct Carried {
  1: i32 block
  2: binary state
}

struct Partial {
  1: i32 block
  2: i32 worker
  3: binary values
}

struct Committed {
  1: i64 round
  2: binary keys
  3: binary delta
}

// Keys of one parameter-server table: `keys`, or when empty, [range_begin, range_end).
struct TableKeys {
  1: i32 table
  2: binary keys
  3: i64 range_begin
  4: i64 range_end
  5: i64 key_list
}

// core/message.h PackedValues; `values` beside it then holds floats when f32 is set, or, with
// a codec, the compressed values and positions.
struct Packing {
  1: bool f32
  2: bool sparse
  3: binary nonzero
  4: i64 size
  5: byte codec
  6: i64 count
}

// One struct per message body of core/message.h, field for field.
struct Stop {}

struct Push {
  1: i64 round
  2: list<Block> blocks
  3: binary stale_keys
  4: optional Committed committed
}

struct Partials {
  1: i64 round
  2: list<Partial> partials
  3: i64 moved_bytes
}

struct Apply {
  1: Committed committed
}

struct Evaluate {
  1: i64 round
  2: optional Committed committed
}

struct Evaluation {
  1: i64 round
  2: binary terms
}

struct Gather {
  1: i64 round
  2: optional Committed committed
  3: bool last
}

struct WorkerState {
  1: i64 round
  2: binary state
  3: list<Carried> carried
}

struct BlockState {
  1: i64 round
  2: i32 block
  3: binary state
}

struct PsPull {
  1: TableKeys at
  2: i64 clock
  3: i64 request
  4: bool exact
}

struct PsValues {
  1: TableKeys at
  2: i64 clock
  3: i64 request
  4: binary values
  5: i64 applied
  6: Packing packed
}

struct PsRefresh {
  1: TableKeys at
  2: i64 clock
  3: binary values
  4: i64 applied
  5: Packing packed
}

struct PsPush {
  1: TableKeys at
  2: binary values
  3: bool raw_add
  4: i64 staleness
  5: Packing packed
}

struct PsClock {
  1: i64 clock
}

struct PsPing {
  1: i64 request
}

struct PsPong {
  1: i64 request
  2: i64 clock
}

struct PsTables {
  1: TableKeys at
  2: binary values
}

struct DpArrived {
  1: i64 clock
  2: i64 values_pushed
  3: i64 moved_bytes
  4: list<i64> staleness
}

struct DpTerms {
  1: i64 clock
  2: binary terms
}

struct DpSaveState {
  1: i64 clock
}

struct DpWorkerState {
  1: binary state
}

struct DpContinue {
  1: i64 clock
}

union Body {
  1: Stop stop
  2: Push push
  3: Partials partials
  4: Apply apply
  5: Evaluate evaluate
  6: Evaluation evaluation
  7: Gather gather
  8: WorkerState worker_state
  9: BlockState block_state
  10: PsPull ps_pull
  11: PsValues ps_values
  12: PsRefresh ps_refresh
  13: PsPush ps_push
  14: PsClock ps_clock
  15: PsPing ps_ping
  16: PsPong ps_pong
  17: PsTables ps_tables
  18: DpArrived dp_arrived
  19: DpTerms dp_terms
  20: DpSaveState dp_save_state
  21: DpWorkerState dp_worker_state
  22: DpContinue dp_continue
}

// The envelope of every engine message (core/message.h Message).
struct Message {
  1: i32 sender
  2: i32 receiver
  3: i64 run
  4: Body body
}

// Connection set-up (net/auth.h): the accepting side sends a Challenge, the connecting side
// answers with its rank, its own nonce and a MAC over both; the accepting side confirms with
// its MAC. Nothing else is read before that checks; every later frame is sealed.
struct Challenge {
  1: binary nonce
}

struct Response {
  1: i32 rank
  2: binary mac
  3: binary nonce
}

struct Confirm {
  1: binary mac
}

// Liveness while a peer has nothing to say.
struct Heartbeat {
  1: i64 sequence
}

// A process joining the run, to rank 0's rendezvous: its index and the address its own
// listener accepts on.
struct Join {
  1: i32 process
  2: string address
}

// Rank 0's answer once every process has joined: each process's listen address, by index.
struct Peers {
  1: list<string> addresses
}

// A process leaving the run: the last frame on each of its connections. An empty reason is a
// clean finish (its peers stop expecting anything from it); otherwise the error it is failing
// with, which its peers report.
struct Goodbye {
  1: string reason
}

union Frame {
  1: Message message
  2: Challenge challenge
  3: Response response
  4: Heartbeat heartbeat
  5: list<Message> batch  // small messages sent together
  6: Join join
  7: Peers peers
  8: Goodbye goodbye
  9: Confirm confirm
}
