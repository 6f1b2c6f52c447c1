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

// core/message.h Message, field for field.
struct Message {
  1: i8 kind
  2: i32 sender
  3: i64 round
  4: list<Block> blocks
  5: binary stale_keys
  6: list<Partial> partials
  7: binary update_keys
  8: binary update_delta
  9: bool has_update
  10: i64 update_round
  11: binary values
  12: i32 table
  13: i64 request
  14: binary keys
  15: i64 range_begin
  16: i64 range_end
  17: bool raw_add
  18: i32 receiver
  19: i64 run
  20: i32 block
  21: binary state
  22: list<Carried> carried
  23: i64 moved_bytes
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
