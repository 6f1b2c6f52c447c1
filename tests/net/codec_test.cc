// The wire codec: every message kind round-trips field for field; truncated, oversize,
// malformed and random frames are rejected with a message, never a crash.
#include "tessera/net/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <algorithm>
#include <bit>
#include <random>
#include <variant>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/parameter_server.h"
#include "tessera/core/ps_wire.h"
#include "tessera/net/codec_transport.h"
#include "tessera_types.h"

namespace tessera::net {
namespace {

using ::testing::HasSubstr;

// Every field of each message body, for filling and comparing them all.
template <typename F>
void Fields(TableKeys& m, F& f) {
  f(m.table);
  f(m.keys);
  f(m.range);
  f(m.key_list);
}
template <typename F>
void Fields(msg::Stop&, F&) {}
template <typename F>
void Fields(msg::Push& m, F& f) {
  f(m.round);
  f(m.blocks);
  f(m.stale_keys);
  f(m.committed);
}
template <typename F>
void Fields(msg::Partials& m, F& f) {
  f(m.round);
  f(m.partials);
  f(m.moved_bytes);
}
template <typename F>
void Fields(msg::Apply& m, F& f) {
  f(m.committed);
}
template <typename F>
void Fields(msg::Evaluate& m, F& f) {
  f(m.round);
  f(m.committed);
}
template <typename F>
void Fields(msg::Evaluation& m, F& f) {
  f(m.round);
  f(m.terms);
}
template <typename F>
void Fields(msg::Gather& m, F& f) {
  f(m.round);
  f(m.committed);
  f(m.last);
}
template <typename F>
void Fields(msg::WorkerState& m, F& f) {
  f(m.round);
  f(m.state);
  f(m.carried);
}
template <typename F>
void Fields(msg::BlockState& m, F& f) {
  f(m.round);
  f(m.block);
  f(m.state);
}
template <typename F>
void Fields(msg::PsPull& m, F& f) {
  Fields(static_cast<TableKeys&>(m), f);
  f(m.clock);
  f(m.request);
  f(m.exact);
}
template <typename F>
void Fields(msg::PsValues& m, F& f) {
  Fields(static_cast<TableKeys&>(m), f);
  f(m.clock);
  f(m.request);
  f(m.values);
  f(m.applied);
  f(m.packed);
}
template <typename F>
void Fields(msg::PsRefresh& m, F& f) {
  Fields(static_cast<TableKeys&>(m), f);
  f(m.clock);
  f(m.values);
  f(m.applied);
  f(m.packed);
}
template <typename F>
void Fields(msg::PsPush& m, F& f) {
  Fields(static_cast<TableKeys&>(m), f);
  f(m.values);
  f(m.raw_add);
  f(m.staleness);
  f(m.packed);
}
template <typename F>
void Fields(msg::PsClock& m, F& f) {
  f(m.clock);
}
template <typename F>
void Fields(msg::PsPing& m, F& f) {
  f(m.request);
}
template <typename F>
void Fields(msg::PsPong& m, F& f) {
  f(m.request);
  f(m.clock);
}
template <typename F>
void Fields(msg::PsTables& m, F& f) {
  Fields(static_cast<TableKeys&>(m), f);
  f(m.values);
}
template <typename F>
void Fields(msg::DpArrived& m, F& f) {
  f(m.clock);
  f(m.values_pushed);
  f(m.bytes);
}
template <typename F>
void Fields(msg::DpTerms& m, F& f) {
  f(m.clock);
  f(m.terms);
}
template <typename F>
void Fields(msg::DpSaveState& m, F& f) {
  f(m.clock);
}
template <typename F>
void Fields(msg::DpWorkerState& m, F& f) {
  f(m.state);
}
template <typename F>
void Fields(msg::DpContinue& m, F& f) {
  f(m.clock);
}

// Sets every field it is given to something seeded, nothing empty.
struct Filler {
  std::mt19937_64 rng;
  std::size_t big = 1;  // scales every packed field and string
  std::vector<Key> Keys(std::size_t n) {
    std::vector<Key> k(n);
    for (auto& x : k) x = rng();
    return k;
  }
  Eigen::VectorXd Values(Eigen::Index n) {
    Eigen::VectorXd v(n);
    for (Eigen::Index i = 0; i < n; ++i)
      v[i] = std::ldexp(static_cast<double>(rng() % 1000003), -7) - 3;
    return v;
  }
  void operator()(std::uint64_t& v) { v = rng() >> 1; }
  void operator()(std::uint32_t& v) { v = static_cast<std::uint32_t>(rng() % 1000); }
  void operator()(bool& v) { v = true; }
  void operator()(KeyRange& v) { v = {10, 20}; }
  void operator()(std::string& v) {
    v.clear();
    for (std::size_t i = 0; i < big; ++i) v += std::string("\0state\xff", 7);
  }
  void operator()(std::vector<Key>& v) { v = Keys(4 * big); }
  void operator()(Eigen::VectorXd& v) { v = Values(static_cast<Eigen::Index>(11 * big)); }
  void operator()(Committed& c) { c = {rng() >> 1, {Keys(6 * big), Values(6 * big)}}; }
  void operator()(std::optional<Committed>& c) { (*this)(c.emplace()); }
  void operator()(std::vector<Block>& v) {
    v = {{7, Keys(5 * big), 2, 3, 1}, {9, {}, kAllWorkers, 0, -1}};
  }
  void operator()(std::vector<Partial>& v) {
    v = {{7, 2, Values(static_cast<Eigen::Index>(4 * big))}, {9, 0, Values(0)}};
  }
  void operator()(std::vector<CarriedState>& v) {
    std::string four;
    for (std::size_t i = 0; i < big; ++i) four += "four";
    v = {{4, four}, {5, ""}};
  }
  // Values(n) are exact floats, so f32 round-trips them bit for bit.
  // Compressed packings: CodecTest.CompressedValuesRoundTrip.
  void operator()(PackedValues& p) { p = {true, true, {0, 3, 4, 70000}, rng() >> 1, 0, 0, {}}; }
};

// Every field as text, doubles bit for bit.
struct Dumper {
  std::string out;
  void Add(std::uint64_t v) { out += std::to_string(v) + ","; }
  void operator()(const std::uint64_t& v) { Add(v); }
  void operator()(const std::uint32_t& v) { Add(v); }
  void operator()(const bool& v) { Add(v); }
  void operator()(const KeyRange& v) {
    Add(v.begin);
    Add(v.end);
  }
  void operator()(const std::string& v) { out += "'" + v + "',"; }
  void operator()(const std::vector<Key>& v) {
    out += "[";
    for (Key k : v) Add(k);
    out += "]";
  }
  void operator()(const Eigen::VectorXd& v) {
    out += "(";
    for (double x : v) Add(std::bit_cast<std::uint64_t>(x));
    out += ")";
  }
  void operator()(const Committed& c) {
    Add(c.round);
    (*this)(c.update.keys);
    (*this)(c.update.delta);
  }
  void operator()(const std::optional<Committed>& c) {
    out += c ? "some:" : "none,";
    if (c) (*this)(*c);
  }
  void operator()(const std::vector<Block>& v) {
    for (const Block& b : v) {
      Add(b.id);
      (*this)(b.keys);
      Add(static_cast<std::uint64_t>(b.worker));
      Add(static_cast<std::uint64_t>(b.holder));
      Add(b.op);
    }
  }
  void operator()(const std::vector<Partial>& v) {
    for (const Partial& p : v) {
      Add(p.block);
      Add(static_cast<std::uint64_t>(p.worker));
      (*this)(p.values);
    }
  }
  void operator()(const std::vector<CarriedState>& v) {
    for (const CarriedState& c : v) {
      Add(c.block);
      (*this)(c.state);
    }
  }
  void operator()(const PackedValues& p) {
    Add(p.f32);
    Add(p.sparse);
    for (std::uint32_t i : p.nonzero) Add(i);
    Add(p.size);
    Add(p.codec);
    Add(p.count);
    (*this)(p.compressed);
  }
};

std::string Dump(const Message& m) {
  Dumper d;
  d.out = std::string(KindName(m.kind())) + ":" + std::to_string(m.from) + ">" +
          std::to_string(m.to) + "@" + std::to_string(m.run) + ":";
  Message copy = m;  // Fields takes non-const bodies
  std::visit([&d](auto& body) { Fields(body, d); }, copy.body);
  return d.out;
}

template <std::size_t... I>
MessageBody EmptyBody(std::size_t index, std::index_sequence<I...>) {
  MessageBody out;
  ((index == I ? (out = std::variant_alternative_t<I, MessageBody>{}, 0) : 0), ...);
  return out;
}

// A message of `kind` with every field set to something seeded.
Message Filled(MessageKind kind, std::uint64_t seed, std::size_t big = 1) {
  Filler f{std::mt19937_64(seed), big};
  Message m;
  m.body = EmptyBody(static_cast<std::size_t>(kind),
                     std::make_index_sequence<std::variant_size_v<MessageBody>>());
  m.from = static_cast<Rank>(f.rng() % 100);
  m.to = static_cast<Rank>(f.rng() % 100);
  m.run = f.rng() >> 1;
  std::visit([&f](auto& body) { Fields(body, f); }, m.body);
  return m;
}

void ExpectSame(const Message& a, const Message& b) { EXPECT_EQ(Dump(a), Dump(b)); }

TEST(CodecTest, EveryMessageKindRoundTrips) {
  std::uint64_t seed = 1;
  for (std::size_t k = 0; k < std::variant_size_v<MessageBody>; ++k) {
    const auto kind = static_cast<MessageKind>(k);
    const Message m = Filled(kind, seed++);
    ASSERT_EQ(m.kind(), kind);
    auto f = DecodeFrame(EncodeMessages({&m, 1}));
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_EQ(f->kind, Frame::Kind::kMessages);
    ASSERT_EQ(f->messages.size(), 1u);
    ExpectSame(m, f->messages[0]);
    // Defaults: every field empty.
    const Message empty(0,
                        EmptyBody(k, std::make_index_sequence<std::variant_size_v<MessageBody>>()));
    auto e = DecodeFrame(EncodeMessages({&empty, 1}));
    ASSERT_TRUE(e.ok()) << e.status().message();
    ExpectSame(empty, e->messages[0]);
  }
  const Message empty;  // a stop
  auto f = DecodeFrame(EncodeMessages({&empty, 1}));
  ASSERT_TRUE(f.ok()) << f.status().message();
  ExpectSame(empty, f->messages[0]);
}

// A push whose values a codec compressed travels as the compressed bytes and unpacks to the
// values pushed.
TEST(CodecTest, CompressedValuesRoundTrip) {
  for (const char* features : {"sparse,lz4", "zstd", "f32,zstd"}) {
    SCOPED_TRACE(features);
    msg::PsPush push;
    push.keys = {1, 5, 9};
    push.range = {};
    Eigen::VectorXd values = Eigen::VectorXd::Zero(3 * 1000);
    for (Eigen::Index i = 0; i < values.size(); i += 5) values[i] = static_cast<double>(i % 17);
    push.values = values;
    PackValues(*Communication::Parse(features), push.values, push.packed);
    ASSERT_NE(push.packed.codec, 0);
    const Message m(2, push);
    auto f = DecodeFrame(EncodeMessages({&m, 1}));
    ASSERT_TRUE(f.ok()) << f.status().message();
    ExpectSame(m, f->messages[0]);
    auto* got = f->messages[0].get<msg::PsPush>();
    ASSERT_TRUE(UnpackValues(got->values, got->packed, 3 * 1000).ok());
    EXPECT_EQ(got->values, values);
  }
}

TEST(CodecTest, BatchesAndControlFramesRoundTrip) {
  std::vector<Message> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(Filled(MessageKind::kPsPush, 100 + i));
  auto f = DecodeFrame(EncodeMessages(batch));
  ASSERT_TRUE(f.ok()) << f.status().message();
  ASSERT_EQ(f->messages.size(), 5u);
  for (int i = 0; i < 5; ++i) ExpectSame(batch[i], f->messages[i]);

  const std::string nonce("\x00\x01\xfe\xff nonce", 10);
  auto c = DecodeFrame(EncodeChallenge(nonce));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->kind, Frame::Kind::kChallenge);
  EXPECT_EQ(c->nonce, nonce);
  auto r = DecodeFrame(EncodeResponse(3, nonce, "mac-bytes"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->kind, Frame::Kind::kResponse);
  EXPECT_EQ(r->rank, 3);
  EXPECT_EQ(r->nonce, nonce);
  EXPECT_EQ(r->mac, "mac-bytes");
  auto confirm = DecodeFrame(EncodeConfirm("confirm-mac"));
  ASSERT_TRUE(confirm.ok());
  EXPECT_EQ(confirm->kind, Frame::Kind::kConfirm);
  EXPECT_EQ(confirm->mac, "confirm-mac");
  auto j = DecodeFrame(EncodeJoin(2, "127.0.0.1:4000"));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->kind, Frame::Kind::kJoin);
  EXPECT_EQ(j->rank, 2);
  EXPECT_EQ(j->address, "127.0.0.1:4000");
  auto p = DecodeFrame(EncodePeers({"a:1", "b:2", "c:3"}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->kind, Frame::Kind::kPeers);
  EXPECT_EQ(p->peers, (std::vector<std::string>{"a:1", "b:2", "c:3"}));
  auto h = DecodeFrame(EncodeHeartbeat(123456789012345ULL));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->kind, Frame::Kind::kHeartbeat);
  EXPECT_EQ(h->sequence, 123456789012345ULL);
  auto g = DecodeFrame(EncodeGoodbye("out of memory"));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->kind, Frame::Kind::kGoodbye);
  EXPECT_EQ(g->reason, "out of memory");
}

// Large fields are written from the message and read from the frame where they lie (not
// through Thrift's strings): every kind, alone and in a batch, with fields of thousands of
// bytes next to small ones, round-trips; so do handshake strings longer than the fields that
// are borrowed, and a frame cut anywhere inside a large field is rejected.
TEST(CodecTest, LargeFieldsRoundTripFromWhereTheyLie) {
  std::vector<Message> all;
  for (std::size_t k = 0; k < std::variant_size_v<MessageBody>; ++k) {
    for (std::size_t big : {1, 300}) {
      const Message m = Filled(static_cast<MessageKind>(k), 40 + k, big);
      auto f = DecodeFrame(EncodeMessages({&m, 1}));
      ASSERT_TRUE(f.ok()) << f.status().message();
      ASSERT_EQ(f->messages.size(), 1u);
      ExpectSame(m, f->messages[0]);
      all.push_back(m);
    }
  }
  const std::string framed = EncodeFramedMessages(all);
  auto f = DecodeFrame(std::string_view(framed).substr(4));
  ASSERT_TRUE(f.ok()) << f.status().message();
  ASSERT_EQ(f->messages.size(), all.size());
  for (std::size_t i = 0; i < all.size(); ++i) ExpectSame(all[i], f->messages[i]);

  const Message push = Filled(MessageKind::kPsPush, 3, 500);
  const std::string body = EncodeMessages({&push, 1});
  for (std::size_t n = 0; n < body.size(); n += 997) {
    EXPECT_FALSE(DecodeFrame(std::string_view(body).substr(0, n)).ok()) << n << " bytes";
  }
  const std::string nonce(200, '\x01'), mac(150, 'm'), address(300, 'a'), reason(400, 'r');
  auto r = DecodeFrame(EncodeResponse(1, nonce, mac));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->nonce, nonce);
  EXPECT_EQ(r->mac, mac);
  auto j = DecodeFrame(EncodeJoin(4, address));
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(j->address, address);
  auto g = DecodeFrame(EncodeGoodbye(reason));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->reason, reason);
  auto p = DecodeFrame(EncodePeers({address, reason}));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->peers, (std::vector<std::string>{address, reason}));
}

TEST(CodecTest, FramedEncodingIsTheLengthPrefixAndTheBody) {
  for (MessageKind kind : {MessageKind::kPush, MessageKind::kPsValues}) {
    const Message m = Filled(kind, 7);
    std::string expected;
    AppendFrame(expected, EncodeMessages({&m, 1}));
    EXPECT_EQ(EncodeFramedMessages({&m, 1}), expected);
  }
}

TEST(CodecTest, PackedFieldsAreDenseBinary) {
  // 10,000 keys and values cost 8 bytes each plus a small header: not a varint list.
  msg::PsPush push;
  push.keys.resize(10000);
  push.values = Eigen::VectorXd::Ones(10000);
  const Message m(0, std::move(push));
  const std::string body = EncodeMessages({&m, 1});
  EXPECT_LT(body.size(), 160000u + 64u);
  EXPECT_GE(body.size(), 160000u);
}

TEST(CodecTest, EveryTruncationIsRejected) {
  const Message m = Filled(MessageKind::kPartials, 7);
  const std::string body = EncodeMessages({&m, 1});
  for (std::size_t n = 0; n < body.size(); ++n) {
    auto f = DecodeFrame(std::string_view(body).substr(0, n));
    EXPECT_FALSE(f.ok()) << "prefix of " << n << " bytes decoded";
  }
  auto extra = DecodeFrame(body + "x");
  ASSERT_FALSE(extra.ok());
  EXPECT_THAT(extra.status().message(), HasSubstr("1 trailing bytes"));
}

TEST(CodecTest, RandomBytesNeverCrash) {
  std::mt19937_64 rng(99);
  int accepted = 0;
  for (int trial = 0; trial < 20000; ++trial) {
    std::string bytes(rng() % 200, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    auto f = DecodeFrame(bytes, 1 << 16);
    accepted += f.ok();
  }
  // Mutations of a valid frame (flipped bytes) are the harder case.
  const Message m = Filled(MessageKind::kPush, 3);
  const std::string body = EncodeMessages({&m, 1});
  for (int trial = 0; trial < 20000; ++trial) {
    std::string b = body;
    for (int k = 0; k < 3; ++k) b[rng() % b.size()] = static_cast<char>(rng());
    auto f = DecodeFrame(b, 1 << 16);
    accepted += f.ok();
  }
  RecordProperty("accepted", accepted);  // some mutations are still valid frames; none crash
}

TEST(CodecTest, OversizeFramesAreRejectedBeforeAllocation) {
  const Message m(0, msg::DpTerms{0, Eigen::VectorXd::Zero(1000)});
  const std::string body = EncodeMessages({&m, 1});
  auto f = DecodeFrame(body, 100);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(f.status().message(), HasSubstr("over the limit of 100"));

  // A length prefix announcing 3 GiB is refused at once.
  FrameReader reader(1 << 20);
  const char huge[4] = {'\xc0', 0, 0, 0};
  reader.Feed(huge, 4);
  auto next = reader.Next();
  ASSERT_FALSE(next.ok());
  EXPECT_THAT(next.status().message(), HasSubstr("3221225472 bytes announced"));

  // A body claiming a 2^31-byte binary inside a small frame: refused, not allocated.
  std::string evil;
  evil += '\x1c';  // field 1 (message, delta 1), type struct (12)
  evil += '\x4c';  // field 4 (body, delta 4 from 0), type struct
  evil += '\x2c';  // field 2 (push, delta 2 from 0), type struct
  evil += '\x38';  // field 3 (stale_keys, delta 3 from 0), type binary (8)
  evil += std::string("\xff\xff\xff\xff\x07", 5);  // varint length 2^31 - 1
  auto e = DecodeFrame(evil);
  ASSERT_FALSE(e.ok());
  EXPECT_THAT(e.status().message(), HasSubstr("frame: malformed"));
}

TEST(CodecTest, SemanticErrorsAreNamed) {
  auto encode = [](const wire::Message& w) {
    wire::Frame f;
    f.__set_message(w);
    auto buffer = std::make_shared<apache::thrift::transport::TMemoryBuffer>();
    apache::thrift::protocol::TCompactProtocolT<apache::thrift::transport::TMemoryBuffer> p(buffer);
    f.write(&p);
    return buffer->getBufferAsString();
  };
  wire::Message w;
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(),
              HasSubstr("a message with 0 bodies (expected 1)"));
  w.body.__set_stop(wire::Stop());
  w.body.__set_ps_clock(wire::PsClock());
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(),
              HasSubstr("a message with 2 bodies (expected 1)"));
  w.body = wire::Body();
  wire::PsPush push;
  push.at.keys = "1234567";
  w.body.__set_ps_push(push);
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(),
              HasSubstr("field 'keys' has 7 bytes, not a multiple of 8"));
  push.at.keys.clear();
  push.at.range_begin = 5;
  push.at.range_end = 4;
  w.body.__set_ps_push(push);
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(), HasSubstr("bad key range [5, 4)"));
  w.body = wire::Body();
  wire::Apply apply;
  apply.committed.keys = std::string(16, '\0');
  apply.committed.delta = std::string(8, '\0');
  w.body.__set_apply(apply);
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(), HasSubstr("2 update keys but 1 deltas"));
  wire::Frame none;
  auto buffer = std::make_shared<apache::thrift::transport::TMemoryBuffer>();
  apache::thrift::protocol::TCompactProtocolT<apache::thrift::transport::TMemoryBuffer> p(buffer);
  none.write(&p);
  EXPECT_THAT(DecodeFrame(buffer->getBufferAsString()).status().message(),
              HasSubstr("0 members set in the frame union"));
}

TEST(CodecTest, FrameReaderCutsAStreamFedByteByByte) {
  std::string stream;
  std::vector<Message> sent;
  for (int i = 0; i < 4; ++i) {
    sent.push_back(Filled(static_cast<MessageKind>(i), 50 + i));
    AppendFrame(stream, EncodeMessages({&sent.back(), 1}));
  }
  AppendFrame(stream, EncodeHeartbeat(5));
  FrameReader reader;
  std::vector<Frame> got;
  for (char c : stream) {
    reader.Feed(&c, 1);
    auto next = reader.Next();
    ASSERT_TRUE(next.ok()) << next.status().message();
    if (*next) {
      auto f = DecodeFrame(**next);
      ASSERT_TRUE(f.ok()) << f.status().message();
      got.push_back(std::move(*f));
    }
  }
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 4; ++i) ExpectSame(sent[i], got[i].messages[0]);
  EXPECT_EQ(got[4].kind, Frame::Kind::kHeartbeat);
  EXPECT_EQ(reader.buffered(), 0u);
}

// Parameter-server pushes and pulls far larger than one message (they travel in pieces), in
// any key order, with repeated keys, across three shards, of one and of three values per key,
// through the wire codec and in process alike: every value arrives where it belongs; and a
// repeated key list travels as its hash when the cache (keys:N) holds the working set.
TEST(ParameterServerOverTheCodecTest, LargePushesAndPullsKeepEveryValue) {
  for (bool codec : {false, true}) {
    for (int dim : {1, 3}) {
      for (const char* wire : {"none", "sparse,keys:65536", "sparse,keys"}) {
        SCOPED_TRACE(std::string(codec ? "codec " : "in process ") + wire + " dim " +
                     std::to_string(dim));
        const std::uint64_t num_keys = 150000;
        TableSpec spec;
        spec.num_keys = num_keys;
        spec.dim = dim;
        spec.consistency = *Consistency::Parse("asp");
        spec.communication = *Communication::Parse(wire);
        std::shared_ptr<Transport> transport;
        if (codec) transport = std::make_shared<CodecTransport>(1 + 3 + 1);
        auto ps = ParameterServer::Start({spec}, 3, 1, transport);
        ASSERT_TRUE(ps.ok()) << ps.status().ToString();
        std::mt19937_64 rng(11);
        std::vector<Key> keys(400000);  // every key at least once, most of them more often
        for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = i < num_keys ? i : rng() % num_keys;
        std::shuffle(keys.begin(), keys.end(), rng);
        std::vector<double> values(keys.size() * dim);
        for (double& v : values) v = static_cast<double>(rng() % 1000) - 500;
        Eigen::VectorXd expected = Eigen::VectorXd::Zero(num_keys * dim);
        for (std::size_t i = 0; i < keys.size(); ++i) {
          for (int d = 0; d < dim; ++d) expected[keys[i] * dim + d] += 2 * values[i * dim + d];
        }
        std::vector<std::uint64_t> bytes;
        Status status = Status::Ok();
        WaitGroup done;
        done.Add(1);
        FiberPool::Global().Spawn([&] {
          PsClient& c = (*ps)->client(0);
          for (int round = 0; round < 2 && status.ok(); ++round) {
            const std::uint64_t before = c.stats().bytes;
            status = c.Push(0, keys, values);
            if (status.ok()) status = c.Flush();
            auto got = c.Pull(0, keys).Get();  // answered after the pushes
            if (!got.ok()) {
              status = got.status();
              break;
            }
            bytes.push_back(c.stats().bytes - before);
            for (std::size_t i = 0; i < keys.size() && round == 1; ++i) {
              for (int d = 0; d < dim; ++d) {
                if ((*got)[i * dim + d] != expected[keys[i] * dim + d]) {
                  status = Internal("key " + std::to_string(keys[i]) + " at " + std::to_string(i));
                }
              }
            }
          }
          if (status.ok()) {
            auto all = c.PullRange(0, {0, num_keys}).Get();
            if (!all.ok() || *all != expected) status = Internal("the range pull differs");
          }
          done.Done();
        });
        done.Wait();
        (*ps)->Shutdown();
        ASSERT_TRUE(status.ok()) << status.ToString();
        EXPECT_EQ((*ps)->Snapshot(0), expected);
        if (std::string_view(wire) == "sparse,keys") {
          // The second round's pushed key lists travel as hashes (the pulls' did in both
          // rounds: they are the lists just pushed): the keys' 8 bytes each are saved.
          EXPECT_LT(bytes[1] + 0.9 * 8 * keys.size(), bytes[0]);
        } else {
          // none; or a cache too small for a shard's 267,000 keys of lists a round: lists
          // leave it before they come round again.
          EXPECT_EQ(bytes[1], bytes[0]);
        }
      }
    }
  }
}

}  // namespace
}  // namespace tessera::net
