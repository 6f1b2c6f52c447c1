#include "tessera/net/codec.h"

#include <thrift/TConfiguration.h>
#include <thrift/Thrift.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>
#include <thrift/transport/TVirtualTransport.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <deque>
#include <memory>
#include <type_traits>
#include <unordered_map>

#include "tessera/core/status.h"
#include "tessera_types.h"  // generated from net/tessera.thrift

namespace tessera::net {
namespace {

static_assert(std::endian::native == std::endian::little,
              "packed keys and values are little-endian; add byte swapping for this host");

using apache::thrift::transport::TMemoryBuffer;

// Packed fields travel without the copies Thrift's strings would cost (a copy into the string
// and one out of it when encoding; when decoding, one into the protocol's buffer, one into the
// string and one out of it). Encoding, a field of at least kBorrowBytes is left empty in its
// Thrift struct and the protocol writes its bytes from where they lie, in the message being
// encoded; decoding, the protocol leaves such a field's string empty and notes where its bytes
// lie in the frame, from which the unpackers copy them once. Either side finds a field by its
// string's address, in the table of the one Encode or DecodeFrame call running on this thread.
constexpr std::size_t kBorrowBytes = 64;

class BorrowedFields {
 public:
  void Add(const std::string* field, const void* data, std::size_t size) {
    fields_.emplace(field, std::string_view(static_cast<const char*>(data), size));
  }
  const std::string_view* Find(const std::string* field) const {
    auto it = fields_.find(field);
    return it == fields_.end() ? nullptr : &it->second;
  }
  std::size_t size() const { return fields_.size(); }
  // Room for bytes made while encoding (floats from doubles) that must live as long as it.
  std::vector<float>& Scratch() { return scratch_.emplace_back(); }

 private:
  std::unordered_map<const std::string*, std::string_view> fields_;
  std::deque<std::vector<float>> scratch_;
};

thread_local BorrowedFields* t_borrowed = nullptr;

// The table of one Encode or DecodeFrame call, for the calls it makes on this thread.
class BorrowScope {
 public:
  BorrowScope() : outer_(t_borrowed) { t_borrowed = &fields_; }
  ~BorrowScope() { t_borrowed = outer_; }
  BorrowScope(const BorrowScope&) = delete;
  BorrowScope& operator=(const BorrowScope&) = delete;
  const BorrowedFields& fields() const { return fields_; }

 private:
  BorrowedFields fields_;
  BorrowedFields* outer_;
};

// Sets a packed field: borrowed from `data` (which must outlive the encoding) when large enough.
void PutField(std::string& field, const void* data, std::size_t size) {
  if (t_borrowed && size >= kBorrowBytes) {
    field.clear();
    t_borrowed->Add(&field, data, size);
  } else {
    field.assign(static_cast<const char*>(data), size);
  }
}

// A decoded field's bytes: in the frame when the protocol borrowed them, else in the string.
std::string_view FieldBytes(const std::string& field) {
  if (t_borrowed) {
    if (const std::string_view* b = t_borrowed->Find(&field)) return *b;
  }
  return field;
}

// A decoded field as a string of its own (moved out when the protocol did not borrow it).
std::string TakeField(std::string& field) {
  if (t_borrowed) {
    if (const std::string_view* b = t_borrowed->Find(&field)) return std::string(*b);
  }
  return std::move(field);
}

// The compact protocol, but binary fields go through the table above: written from where the
// encoder's table says their bytes lie, and, when large, read as a place in the frame.
template <class Transport>
class BorrowingProtocol : public apache::thrift::protocol::TCompactProtocolT<Transport> {
  using Base = apache::thrift::protocol::TCompactProtocolT<Transport>;

 public:
  using Base::Base;

  std::uint32_t writeBinary_virt(const std::string& str) override {
    const std::string_view* b = t_borrowed ? t_borrowed->Find(&str) : nullptr;
    if (b == nullptr) return Base::writeBinary(str);
    if (b->size() > 0x7fffffff) {
      throw apache::thrift::protocol::TProtocolException(
          apache::thrift::protocol::TProtocolException::SIZE_LIMIT);
    }
    const auto size = static_cast<std::uint32_t>(b->size());
    const std::uint32_t head = this->writeVarint32(size);
    this->trans_->write(reinterpret_cast<const std::uint8_t*>(b->data()), size);
    ++written_;
    return head + size;
  }

  std::uint32_t readBinary_virt(std::string& str) override {
    if (t_borrowed == nullptr) return Base::readBinary(str);
    std::int32_t size = 0;
    const std::uint32_t head = this->readVarint32(size);
    if (size < 0) {
      throw apache::thrift::protocol::TProtocolException(
          apache::thrift::protocol::TProtocolException::NEGATIVE_SIZE);
    }
    if (this->string_limit_ > 0 && size > this->string_limit_) {
      throw apache::thrift::protocol::TProtocolException(
          apache::thrift::protocol::TProtocolException::SIZE_LIMIT);
    }
    auto want = static_cast<std::uint32_t>(size);
    const std::uint8_t* at = want == 0 ? nullptr : this->trans_->borrow(nullptr, &want);
    if (size > 0 && at == nullptr) {
      throw apache::thrift::transport::TTransportException(
          apache::thrift::transport::TTransportException::END_OF_FILE, "field past the frame");
    }
    if (static_cast<std::size_t>(size) >= kBorrowBytes) {
      str.clear();
      t_borrowed->Add(&str, at, static_cast<std::size_t>(size));
    } else {
      str.assign(reinterpret_cast<const char*>(at), static_cast<std::size_t>(size));
    }
    if (size > 0) this->trans_->consume(static_cast<std::uint32_t>(size));
    return head + static_cast<std::uint32_t>(size);
  }

  // Borrowed fields written (each must be, once: a struct that moved after its field was
  // borrowed would otherwise send an empty field).
  std::size_t written() const { return written_; }

 private:
  std::size_t written_ = 0;
};

template <class T>
void Pack(std::string& field, const T* data, std::size_t n) {
  PutField(field, data, n * sizeof(T));
}

void PackKeys(std::string& field, const std::vector<Key>& keys) {
  Pack(field, keys.data(), keys.size());
}

void PackValues(std::string& field, const Eigen::VectorXd& v) {
  Pack(field, v.data(), static_cast<std::size_t>(v.size()));
}

Status UnpackKeys(const std::string& field, const char* name, std::vector<Key>& out) {
  const std::string_view bytes = FieldBytes(field);
  if (bytes.size() % sizeof(Key) != 0) {
    return InvalidArgument(std::string("frame: field '") + name + "' has " +
                           std::to_string(bytes.size()) + " bytes, not a multiple of 8");
  }
  out.resize(bytes.size() / sizeof(Key));
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return Status::Ok();
}

Status UnpackValues(const std::string& field, const char* name, Eigen::VectorXd& out) {
  const std::string_view bytes = FieldBytes(field);
  if (bytes.size() % sizeof(double) != 0) {
    return InvalidArgument(std::string("frame: field '") + name + "' has " +
                           std::to_string(bytes.size()) + " bytes, not a multiple of 8");
  }
  out.resize(static_cast<Eigen::Index>(bytes.size() / sizeof(double)));
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return Status::Ok();
}

// The message bodies: the alternative of MessageBody (core/message.h) and its member of the
// Thrift union Body (net/tessera.thrift), in the order of both.
#define TESSERA_MESSAGE_BODIES(X)   \
  X(Stop, stop)                     \
  X(Push, push)                     \
  X(Partials, partials)             \
  X(Apply, apply)                   \
  X(Evaluate, evaluate)             \
  X(Evaluation, evaluation)         \
  X(Gather, gather)                 \
  X(WorkerState, worker_state)      \
  X(BlockState, block_state)        \
  X(PsPull, ps_pull)                \
  X(PsValues, ps_values)            \
  X(PsRefresh, ps_refresh)          \
  X(PsPush, ps_push)                \
  X(PsClock, ps_clock)              \
  X(PsPing, ps_ping)                \
  X(PsPong, ps_pong)                \
  X(PsTables, ps_tables)            \
  X(DpArrived, dp_arrived)          \
  X(DpTerms, dp_terms)              \
  X(DpSaveState, dp_save_state)     \
  X(DpWorkerState, dp_worker_state) \
  X(DpContinue, dp_continue)

// Unsigned fields travel as Thrift's signed integers of the same width, bit for bit.
std::int64_t I64(std::uint64_t v) { return static_cast<std::int64_t>(v); }
std::uint64_t U64(std::int64_t v) { return static_cast<std::uint64_t>(v); }

// The encoder fills Thrift's structs in place: the generated types (Thrift 0.17) have copy
// constructors and assignments only, so assigning or pushing a struct copies every field.
void ToWire(const Committed& c, wire::Committed& w) {
  w.round = I64(c.round);
  PackKeys(w.keys, c.update.keys);
  PackValues(w.delta, c.update.delta);
}

Status FromWire(const wire::Committed& w, Committed& c) {
  c.round = U64(w.round);
  TESSERA_RETURN_IF_ERROR(UnpackKeys(w.keys, "committed.keys", c.update.keys));
  TESSERA_RETURN_IF_ERROR(UnpackValues(w.delta, "committed.delta", c.update.delta));
  if (c.update.keys.size() != static_cast<std::size_t>(c.update.delta.size())) {
    return InvalidArgument("frame: " + std::to_string(c.update.keys.size()) + " update keys but " +
                           std::to_string(c.update.delta.size()) + " deltas");
  }
  return Status::Ok();
}

template <typename W>
void OptionalToWire(const std::optional<Committed>& c, W& w) {
  if (c) {
    ToWire(*c, w.committed);
    w.__isset.committed = true;
  }
}

template <typename W>
Status OptionalFromWire(const W& w, std::optional<Committed>& c) {
  if (!w.__isset.committed) return Status::Ok();
  c.emplace();
  return FromWire(w.committed, *c);
}

void ToWire(const TableKeys& t, wire::TableKeys& w) {
  w.table = static_cast<std::int32_t>(t.table);
  PackKeys(w.keys, t.keys);
  w.range_begin = I64(t.range.begin);
  w.range_end = I64(t.range.end);
  w.key_list = I64(t.key_list);
}

Status FromWire(const wire::TableKeys& w, TableKeys& t) {
  t.table = static_cast<std::uint32_t>(w.table);
  TESSERA_RETURN_IF_ERROR(UnpackKeys(w.keys, "keys", t.keys));
  t.range = {U64(w.range_begin), U64(w.range_end)};
  t.key_list = U64(w.key_list);
  if (t.range.end < t.range.begin) {
    return InvalidArgument("frame: bad key range [" + std::to_string(t.range.begin) + ", " +
                           std::to_string(t.range.end) + ")");
  }
  return Status::Ok();
}

// Parameter-server values as PackedValues says: doubles, or floats when f32 (converted into
// `floats`, which must outlive the encoding).
void PackValues(std::string& field, const Eigen::VectorXd& v, const PackedValues& p,
                wire::Packing& w, std::vector<float>& floats) {
  w.f32 = p.f32;
  w.sparse = p.sparse;
  Pack(w.nonzero, p.nonzero.data(), p.nonzero.size());
  w.size = I64(p.size);
  w.codec = static_cast<std::int8_t>(p.codec);
  w.count = I64(p.count);
  if (p.codec != 0) return Pack(field, p.compressed.data(), p.compressed.size());
  if (!p.f32) return PackValues(field, v);
  floats.assign(v.data(), v.data() + v.size());
  Pack(field, floats.data(), floats.size());
}

Status UnpackValues(std::string& field, wire::Packing& w, Eigen::VectorXd& out, PackedValues& p) {
  p.f32 = w.f32;
  p.sparse = w.sparse;
  p.size = U64(w.size);
  const std::string_view nonzero = FieldBytes(w.nonzero);
  if (nonzero.size() % sizeof(std::uint32_t) != 0) {
    return InvalidArgument("frame: field 'nonzero' has " + std::to_string(nonzero.size()) +
                           " bytes, not a multiple of 4");
  }
  p.nonzero.resize(nonzero.size() / sizeof(std::uint32_t));
  if (!nonzero.empty()) std::memcpy(p.nonzero.data(), nonzero.data(), nonzero.size());
  p.codec = static_cast<std::uint8_t>(w.codec);
  p.count = U64(w.count);
  if (p.codec != 0) {  // core/ps_wire.cc decompresses and checks them
    p.compressed = TakeField(field);
    out.resize(0);
    return Status::Ok();
  }
  if (!p.f32) return UnpackValues(field, "values", out);
  const std::string_view bytes = FieldBytes(field);
  if (bytes.size() % sizeof(float) != 0) {
    return InvalidArgument("frame: field 'values' has " + std::to_string(bytes.size()) +
                           " bytes of floats, not a multiple of 4");
  }
  std::vector<float> f(bytes.size() / sizeof(float));
  if (!bytes.empty()) std::memcpy(f.data(), bytes.data(), bytes.size());
  out = Eigen::Map<const Eigen::VectorXf>(f.data(), static_cast<Eigen::Index>(f.size()))
            .cast<double>();
  return Status::Ok();
}

// Fields that several bodies have, under the same name in the struct and in the Thrift
// mirror: converted here once for all of them.
template <typename M, typename W>
void SharedToWire(const M& m, W& w) {
  if constexpr (requires { m.round; }) w.round = I64(m.round);
  if constexpr (requires { m.clock; }) w.clock = I64(m.clock);
  if constexpr (requires { m.request; }) w.request = I64(m.request);
  if constexpr (requires { m.applied; }) w.applied = I64(m.applied);
  if constexpr (requires { m.committed.has_value(); }) OptionalToWire(m.committed, w);
  if constexpr (std::is_base_of_v<TableKeys, M>) ToWire(static_cast<const TableKeys&>(m), w.at);
  if constexpr (requires { m.packed; }) {
    std::vector<float> local;
    PackValues(w.values, m.values, m.packed, w.packed, t_borrowed ? t_borrowed->Scratch() : local);
  } else if constexpr (requires { m.values; }) {
    PackValues(w.values, m.values);
  }
  if constexpr (requires { m.terms; }) PackValues(w.terms, m.terms);
  if constexpr (requires { m.state; }) Pack(w.state, m.state.data(), m.state.size());
}

// Takes what it can from `w` (a decoded frame's, used once) instead of copying it.
template <typename W, typename M>
Status SharedFromWire(W& w, M& m) {
  if constexpr (requires { m.round; }) m.round = U64(w.round);
  if constexpr (requires { m.clock; }) m.clock = U64(w.clock);
  if constexpr (requires { m.request; }) m.request = U64(w.request);
  if constexpr (requires { m.applied; }) m.applied = U64(w.applied);
  if constexpr (requires { m.committed.has_value(); }) {
    TESSERA_RETURN_IF_ERROR(OptionalFromWire(w, m.committed));
  }
  if constexpr (std::is_base_of_v<TableKeys, M>) {
    TESSERA_RETURN_IF_ERROR(FromWire(w.at, static_cast<TableKeys&>(m)));
  }
  if constexpr (requires { m.packed; }) {
    TESSERA_RETURN_IF_ERROR(UnpackValues(w.values, w.packed, m.values, m.packed));
  } else if constexpr (requires { m.values; }) {
    TESSERA_RETURN_IF_ERROR(UnpackValues(w.values, "values", m.values));
  }
  if constexpr (requires { m.terms; }) {
    TESSERA_RETURN_IF_ERROR(UnpackValues(w.terms, "terms", m.terms));
  }
  if constexpr (requires { m.state; }) m.state = TakeField(w.state);
  return Status::Ok();
}

// The fields of a body that only it has; nothing for most.
template <typename M, typename W>
void OwnToWire(const M&, W&) {}
template <typename W, typename M>
Status OwnFromWire(const W&, M&) {
  return Status::Ok();
}

void OwnToWire(const msg::Push& m, wire::Push& w) {
  w.blocks.reserve(m.blocks.size());
  for (const Block& b : m.blocks) {
    wire::Block& wb = w.blocks.emplace_back();
    wb.id = static_cast<std::int32_t>(b.id);
    PackKeys(wb.keys, b.keys);
    wb.worker = b.worker;
    wb.holder = b.holder;
    wb.op = static_cast<std::int32_t>(b.op);
  }
  PackKeys(w.stale_keys, m.stale_keys);
}
Status OwnFromWire(const wire::Push& w, msg::Push& m) {
  m.blocks.reserve(w.blocks.size());
  for (const wire::Block& wb : w.blocks) {
    Block b;
    b.id = static_cast<std::uint32_t>(wb.id);
    b.worker = wb.worker;
    b.holder = wb.holder;
    b.op = static_cast<std::uint32_t>(wb.op);
    TESSERA_RETURN_IF_ERROR(UnpackKeys(wb.keys, "blocks.keys", b.keys));
    m.blocks.push_back(std::move(b));
  }
  return UnpackKeys(w.stale_keys, "stale_keys", m.stale_keys);
}

void OwnToWire(const msg::Partials& m, wire::Partials& w) {
  w.partials.reserve(m.partials.size());
  for (const Partial& p : m.partials) {
    wire::Partial& wp = w.partials.emplace_back();
    wp.block = static_cast<std::int32_t>(p.block);
    wp.worker = p.worker;
    PackValues(wp.values, p.values);
  }
  w.moved_bytes = I64(m.moved_bytes);
}
Status OwnFromWire(const wire::Partials& w, msg::Partials& m) {
  m.partials.reserve(w.partials.size());
  for (const wire::Partial& wp : w.partials) {
    Partial p;
    p.block = static_cast<std::uint32_t>(wp.block);
    p.worker = wp.worker;
    TESSERA_RETURN_IF_ERROR(UnpackValues(wp.values, "partials.values", p.values));
    m.partials.push_back(std::move(p));
  }
  m.moved_bytes = U64(w.moved_bytes);
  return Status::Ok();
}

void OwnToWire(const msg::Apply& m, wire::Apply& w) { ToWire(m.committed, w.committed); }
Status OwnFromWire(const wire::Apply& w, msg::Apply& m) {
  return FromWire(w.committed, m.committed);
}

void OwnToWire(const msg::WorkerState& m, wire::WorkerState& w) {
  w.carried.reserve(m.carried.size());
  for (const CarriedState& c : m.carried) {
    wire::Carried& wc = w.carried.emplace_back();
    wc.block = static_cast<std::int32_t>(c.block);
    Pack(wc.state, c.state.data(), c.state.size());
  }
}
Status OwnFromWire(wire::WorkerState& w, msg::WorkerState& m) {
  m.carried.reserve(w.carried.size());
  for (wire::Carried& wc : w.carried) {
    m.carried.push_back({static_cast<std::uint32_t>(wc.block), TakeField(wc.state)});
  }
  return Status::Ok();
}

void OwnToWire(const msg::Gather& m, wire::Gather& w) { w.last = m.last; }
Status OwnFromWire(const wire::Gather& w, msg::Gather& m) {
  m.last = w.last;
  return Status::Ok();
}

void OwnToWire(const msg::BlockState& m, wire::BlockState& w) {
  TESSERA_CHECK(m.object == nullptr) << "a carried block's state object cannot be encoded";
  w.block = static_cast<std::int32_t>(m.block);
}
Status OwnFromWire(const wire::BlockState& w, msg::BlockState& m) {
  m.block = static_cast<std::uint32_t>(w.block);
  return Status::Ok();
}

void OwnToWire(const msg::PsPull& m, wire::PsPull& w) { w.exact = m.exact; }
Status OwnFromWire(const wire::PsPull& w, msg::PsPull& m) {
  m.exact = w.exact;
  return Status::Ok();
}

void OwnToWire(const msg::PsPush& m, wire::PsPush& w) {
  w.raw_add = m.raw_add;
  w.staleness = I64(m.staleness);
}
Status OwnFromWire(const wire::PsPush& w, msg::PsPush& m) {
  m.raw_add = w.raw_add;
  if (w.staleness < 0) {
    return InvalidArgument("a push's staleness is " + std::to_string(w.staleness));
  }
  m.staleness = U64(w.staleness);
  return Status::Ok();
}

void OwnToWire(const msg::DpArrived& m, wire::DpArrived& w) {
  w.values_pushed = I64(m.values_pushed);
  w.moved_bytes = I64(m.bytes);
  w.staleness.reserve(m.staleness.size());
  for (std::uint64_t n : m.staleness) w.staleness.push_back(I64(n));
}
Status OwnFromWire(const wire::DpArrived& w, msg::DpArrived& m) {
  m.values_pushed = U64(w.values_pushed);
  m.bytes = U64(w.moved_bytes);
  m.staleness.reserve(w.staleness.size());
  for (std::int64_t n : w.staleness) m.staleness.push_back(U64(n));
  return Status::Ok();
}

template <typename W, typename M>
void BodyToWire(const M& m, W& w) {
  SharedToWire(m, w);
  OwnToWire(m, w);
}

template <typename W, typename M>
Status BodyFromWire(W& w, M& m) {
  TESSERA_RETURN_IF_ERROR(SharedFromWire(w, m));
  return OwnFromWire(w, m);
}

#define TESSERA_SET_BODY(Type, member)              \
  void SetBody(wire::Body& w, const msg::Type& m) { \
    BodyToWire(m, w.member);                        \
    w.__isset.member = true;                        \
  }
TESSERA_MESSAGE_BODIES(TESSERA_SET_BODY)
#undef TESSERA_SET_BODY

void ToWire(const Message& m, wire::Message& w) {
  w.sender = m.from;
  w.receiver = m.to;
  w.run = I64(m.run);
  std::visit([&w](const auto& body) { SetBody(w.body, body); }, m.body);
}

StatusOr<Message> FromWire(wire::Message& w) {
  Message m;
  m.from = w.sender;
  m.to = w.receiver;
  m.run = U64(w.run);
  int members = 0;
#define TESSERA_COUNT_BODY(Type, member) members += w.body.__isset.member ? 1 : 0;
  TESSERA_MESSAGE_BODIES(TESSERA_COUNT_BODY)
#undef TESSERA_COUNT_BODY
  if (members != 1) {
    return InvalidArgument("frame: a message with " + std::to_string(members) +
                           " bodies (expected 1)");
  }
#define TESSERA_DECODE_BODY(Type, member)                       \
  if (w.body.__isset.member) {                                  \
    msg::Type body;                                             \
    TESSERA_RETURN_IF_ERROR(BodyFromWire(w.body.member, body)); \
    m.body = std::move(body);                                   \
  }
  TESSERA_MESSAGE_BODIES(TESSERA_DECODE_BODY)
#undef TESSERA_DECODE_BODY
  return m;
}

// A write-only Thrift transport appending to a string: the protocol writes straight into the
// output, with no intermediate buffer to grow and copy.
class StringSink : public apache::thrift::transport::TVirtualTransport<StringSink> {
 public:
  explicit StringSink(std::string& out) : out_(out) {}
  void write(const std::uint8_t* buf, std::uint32_t len) {
    out_.append(reinterpret_cast<const char*>(buf), len);
  }

 private:
  std::string& out_;
};

// Appends the encoded frame to `out`.
// Appends the encoded frame to `out`, its borrowed fields (the BorrowScope the frame was
// filled in) written from where they lie.
void SerializeTo(const wire::Frame& f, std::string& out) {
  auto sink = std::make_shared<StringSink>(out);
  BorrowingProtocol<StringSink> protocol(sink);
  f.write(&protocol);
  TESSERA_CHECK(protocol.written() == (t_borrowed ? t_borrowed->size() : 0))
      << "a borrowed field was not written (its struct moved after it was filled)";
}

std::string Serialize(const wire::Frame& f) {
  std::string out;
  SerializeTo(f, out);
  return out;
}

// Fills `f` in place (its packed fields borrow from `messages`: it must not move before it is
// serialized).
void FillMessagesFrame(std::span<const Message> messages, wire::Frame& f) {
  if (messages.size() == 1) {
    ToWire(messages[0], f.message);
    f.__isset.message = true;
  } else {
    f.batch.resize(messages.size());
    for (std::size_t i = 0; i < messages.size(); ++i) ToWire(messages[i], f.batch[i]);
    f.__isset.batch = true;
  }
}

}  // namespace

std::string EncodeMessages(std::span<const Message> messages) {
  BorrowScope scope;
  wire::Frame f;
  FillMessagesFrame(messages, f);
  return Serialize(f);
}

std::string EncodeFramedMessages(std::span<const Message> messages) {
  BorrowScope scope;
  wire::Frame f;
  FillMessagesFrame(messages, f);
  std::size_t payload = 64;
  for (const Message& m : messages) payload += m.PayloadBytes() + 64;
  std::string out;
  out.reserve(payload);
  out.append(4, '\0');
  SerializeTo(f, out);
  const auto n = static_cast<std::uint32_t>(out.size() - 4);
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
  return out;
}

std::string EncodeChallenge(std::string_view nonce) {
  wire::Frame f;
  wire::Challenge c;
  c.nonce = std::string(nonce);
  f.__set_challenge(c);
  return Serialize(f);
}

std::string EncodeResponse(int rank, std::string_view nonce, std::string_view mac) {
  wire::Frame f;
  wire::Response r;
  r.rank = rank;
  r.mac = std::string(mac);
  r.nonce = std::string(nonce);
  f.__set_response(r);
  return Serialize(f);
}

std::string EncodeConfirm(std::string_view mac) {
  wire::Frame f;
  wire::Confirm c;
  c.mac = std::string(mac);
  f.__set_confirm(c);
  return Serialize(f);
}

std::string EncodeHeartbeat(std::uint64_t sequence) {
  wire::Frame f;
  wire::Heartbeat h;
  h.sequence = static_cast<std::int64_t>(sequence);
  f.__set_heartbeat(h);
  return Serialize(f);
}

std::string EncodeJoin(int process, std::string_view address) {
  wire::Frame f;
  wire::Join j;
  j.process = process;
  j.address = std::string(address);
  f.__set_join(j);
  return Serialize(f);
}

std::string EncodePeers(const std::vector<std::string>& addresses) {
  wire::Frame f;
  wire::Peers p;
  p.addresses = addresses;
  f.__set_peers(p);
  return Serialize(f);
}

std::string EncodeGoodbye(std::string_view reason) {
  wire::Frame f;
  wire::Goodbye g;
  g.reason = std::string(reason);
  f.__set_goodbye(g);
  return Serialize(f);
}

StatusOr<Frame> DecodeFrame(std::string_view body, std::uint32_t max_frame_bytes) {
  if (body.size() > max_frame_bytes) {
    return InvalidArgument("frame: " + std::to_string(body.size()) + " bytes, over the limit of " +
                           std::to_string(max_frame_bytes));
  }
  BorrowScope scope;  // the frame's large fields stay in `body`, read from there below
  wire::Frame f;
  std::uint32_t used = 0;
  try {
    auto config = std::make_shared<apache::thrift::TConfiguration>(
        static_cast<int>(std::min<std::uint32_t>(max_frame_bytes, 0x7fffffff)));
    auto buffer = std::make_shared<TMemoryBuffer>(
        reinterpret_cast<std::uint8_t*>(const_cast<char*>(body.data())),
        static_cast<std::uint32_t>(body.size()), TMemoryBuffer::OBSERVE, config);
    // String and container sizes are checked against the frame before anything is allocated.
    const auto limit = static_cast<std::int32_t>(std::min<std::size_t>(body.size(), 0x7fffffff));
    BorrowingProtocol<TMemoryBuffer> protocol(buffer, limit, limit);
    used = f.read(&protocol);
  } catch (const apache::thrift::TException& e) {
    return InvalidArgument(std::string("frame: malformed (") + e.what() + ")");
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("frame: malformed (") + e.what() + ")");
  }
  if (used != body.size()) {
    return InvalidArgument("frame: " + std::to_string(body.size() - used) +
                           " trailing bytes after the frame");
  }
  const int members = f.__isset.message + f.__isset.challenge + f.__isset.response +
                      f.__isset.heartbeat + f.__isset.batch + f.__isset.join + f.__isset.peers +
                      f.__isset.goodbye + f.__isset.confirm;
  if (members != 1) {
    return InvalidArgument("frame: " + std::to_string(members) +
                           " members set in the frame union (expected 1)");
  }
  Frame out;
  if (f.__isset.message || f.__isset.batch) {
    out.kind = Frame::Kind::kMessages;
    if (f.__isset.message) {
      TESSERA_ASSIGN_OR_RETURN(Message m, FromWire(f.message));
      out.messages.push_back(std::move(m));
    } else {
      if (f.batch.empty()) return InvalidArgument("frame: empty batch");
      for (wire::Message& w : f.batch) {
        TESSERA_ASSIGN_OR_RETURN(Message m, FromWire(w));
        out.messages.push_back(std::move(m));
      }
    }
  } else if (f.__isset.challenge) {
    out.kind = Frame::Kind::kChallenge;
    out.nonce = TakeField(f.challenge.nonce);
  } else if (f.__isset.response) {
    out.kind = Frame::Kind::kResponse;
    out.rank = f.response.rank;
    out.mac = TakeField(f.response.mac);
    out.nonce = TakeField(f.response.nonce);
  } else if (f.__isset.confirm) {
    out.kind = Frame::Kind::kConfirm;
    out.mac = TakeField(f.confirm.mac);
  } else if (f.__isset.join) {
    out.kind = Frame::Kind::kJoin;
    out.rank = f.join.process;
    out.address = TakeField(f.join.address);
  } else if (f.__isset.peers) {
    out.kind = Frame::Kind::kPeers;
    for (std::string& a : f.peers.addresses) out.peers.push_back(TakeField(a));
  } else if (f.__isset.goodbye) {
    out.kind = Frame::Kind::kGoodbye;
    out.reason = TakeField(f.goodbye.reason);
  } else {
    out.kind = Frame::Kind::kHeartbeat;
    out.sequence = static_cast<std::uint64_t>(f.heartbeat.sequence);
  }
  return out;
}

void AppendFrame(std::string& out, std::string_view body) {
  const auto n = static_cast<std::uint32_t>(body.size());
  const char prefix[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                          static_cast<char>(n >> 8), static_cast<char>(n)};
  out.append(prefix, 4);
  out.append(body);
}

char* FrameReader::Space(std::size_t n) {
  Compact();
  if (size_ + n > capacity_) {
    const std::size_t capacity = std::max(size_ + n, capacity_ * 2);
    std::unique_ptr<char[]> grown(new char[capacity]);
    if (size_ > pos_) std::memcpy(grown.get(), data_.get() + pos_, size_ - pos_);
    size_ -= pos_;
    pos_ = 0;
    data_ = std::move(grown);
    capacity_ = capacity;
  }
  return data_.get() + size_;
}

void FrameReader::Commit(std::size_t n) { size_ += n; }

void FrameReader::Compact() {
  if (pos_ == size_) {
    pos_ = size_ = 0;
    if (capacity_ > kKeptBufferBytes) {  // after a large frame: give the memory back
      data_.reset();
      capacity_ = 0;
    }
  } else if (pos_ > 0 && pos_ * 2 > capacity_) {
    std::memmove(data_.get(), data_.get() + pos_, size_ - pos_);
    size_ -= pos_;
    pos_ = 0;
  }
}

StatusOr<std::optional<std::string_view>> FrameReader::Next() {
  TESSERA_ASSIGN_OR_RETURN(auto body, NextMutable());
  if (!body) return std::optional<std::string_view>();
  return std::optional<std::string_view>(std::string_view(body->data(), body->size()));
}

StatusOr<std::optional<std::span<char>>> FrameReader::NextMutable() {
  if (buffered() < 4) return std::optional<std::span<char>>();
  const auto* p = reinterpret_cast<const unsigned char*>(data_.get() + pos_);
  const std::uint32_t n = (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) |
                          (std::uint32_t{p[2]} << 8) | std::uint32_t{p[3]};
  if (n > max_) {
    return InvalidArgument("frame of " + std::to_string(n) +
                           " bytes announced, over the limit of " + std::to_string(max_) +
                           " (--max-frame-bytes)");
  }
  if (buffered() < 4 + static_cast<std::size_t>(n)) return std::optional<std::span<char>>();
  std::span<char> body(data_.get() + pos_ + 4, n);
  pos_ += 4 + n;
  return std::optional<std::span<char>>(body);
}

}  // namespace tessera::net
