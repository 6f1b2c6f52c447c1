// The wire codec: every message kind round-trips field for field; truncated, oversize,
// malformed and random frames are rejected with a message, never a crash.
#include "net/codec.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <thrift/protocol/TCompactProtocol.h>
#include <thrift/transport/TBufferTransports.h>

#include <random>

#include "tessera_types.h"

namespace tessera::net {
namespace {

using ::testing::HasSubstr;

// A message of `kind` with every field set to something seeded.
Message Filled(MessageKind kind, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto keys = [&](std::size_t n) {
    std::vector<Key> k(n);
    for (auto& x : k) x = rng();
    return k;
  };
  auto values = [&](Eigen::Index n) {
    Eigen::VectorXd v(n);
    for (Eigen::Index i = 0; i < n; ++i)
      v[i] = std::ldexp(static_cast<double>(rng() % 1000003), -7) - 3;
    return v;
  };
  Message m;
  m.kind = kind;
  m.from = static_cast<Rank>(rng() % 100);
  m.round = rng();
  m.blocks = {{7, keys(5), 2, 3, 1}, {9, {}, kAllWorkers, 0, -1}};
  m.stale_keys = keys(3);
  m.partials = {{7, 2, values(4)}, {9, 0, values(0)}};
  m.update.keys = keys(6);
  m.update.delta = values(6);
  m.has_update = true;
  m.update_round = rng() >> 1;
  m.values = values(11);
  m.table = 3;
  m.request = rng() >> 1;
  m.keys = keys(4);
  m.range = {10, 20};
  m.raw_add = true;
  m.to = static_cast<Rank>(rng() % 100);
  m.block = static_cast<std::uint32_t>(rng() % 1000);
  m.state = std::string("\0state\xff", 7);
  m.carried = {{4, "four"}, {5, ""}};
  m.moved_bytes = rng() >> 1;
  return m;
}

void ExpectSame(const Message& a, const Message& b) {
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.round, b.round);
  ASSERT_EQ(a.blocks.size(), b.blocks.size());
  for (std::size_t i = 0; i < a.blocks.size(); ++i) {
    EXPECT_EQ(a.blocks[i].id, b.blocks[i].id);
    EXPECT_EQ(a.blocks[i].keys, b.blocks[i].keys);
    EXPECT_EQ(a.blocks[i].worker, b.blocks[i].worker);
    EXPECT_EQ(a.blocks[i].holder, b.blocks[i].holder);
    EXPECT_EQ(a.blocks[i].op, b.blocks[i].op);
  }
  EXPECT_EQ(a.stale_keys, b.stale_keys);
  ASSERT_EQ(a.partials.size(), b.partials.size());
  for (std::size_t i = 0; i < a.partials.size(); ++i) {
    EXPECT_EQ(a.partials[i].block, b.partials[i].block);
    EXPECT_EQ(a.partials[i].worker, b.partials[i].worker);
    EXPECT_EQ(a.partials[i].values, b.partials[i].values);  // bitwise: doubles travel raw
  }
  EXPECT_EQ(a.update.keys, b.update.keys);
  EXPECT_EQ(a.update.delta, b.update.delta);
  EXPECT_EQ(a.has_update, b.has_update);
  EXPECT_EQ(a.update_round, b.update_round);
  EXPECT_EQ(a.values, b.values);
  EXPECT_EQ(a.table, b.table);
  EXPECT_EQ(a.request, b.request);
  EXPECT_EQ(a.keys, b.keys);
  EXPECT_EQ(a.range, b.range);
  EXPECT_EQ(a.raw_add, b.raw_add);
  EXPECT_EQ(a.to, b.to);
  EXPECT_EQ(a.block, b.block);
  EXPECT_EQ(a.state, b.state);
  ASSERT_EQ(a.carried.size(), b.carried.size());
  for (std::size_t i = 0; i < a.carried.size(); ++i) {
    EXPECT_EQ(a.carried[i].block, b.carried[i].block);
    EXPECT_EQ(a.carried[i].state, b.carried[i].state);
  }
  EXPECT_EQ(a.moved_bytes, b.moved_bytes);
}

TEST(CodecTest, EveryMessageKindRoundTrips) {
  std::uint64_t seed = 1;
  for (int k = 0; k <= static_cast<int>(kLastMessageKind); ++k) {
    const auto kind = static_cast<MessageKind>(k);
    const Message m = Filled(kind, seed++);
    auto f = DecodeFrame(EncodeMessages({&m, 1}));
    ASSERT_TRUE(f.ok()) << f.status().message();
    ASSERT_EQ(f->kind, Frame::Kind::kMessages);
    ASSERT_EQ(f->messages.size(), 1u);
    ExpectSame(m, f->messages[0]);
  }
  const Message empty;  // defaults: every field empty
  auto f = DecodeFrame(EncodeMessages({&empty, 1}));
  ASSERT_TRUE(f.ok()) << f.status().message();
  ExpectSame(empty, f->messages[0]);
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
  Message m;
  m.kind = MessageKind::kPsPush;
  m.keys.resize(10000);
  m.values = Eigen::VectorXd::Ones(10000);
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
  Message m;
  m.values = Eigen::VectorXd::Zero(1000);
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
  evil += '\x58';  // field 5 (stale_keys, delta 5 from 0), type binary (8)
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
  w.kind = 42;
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(), HasSubstr("unknown message kind 42"));
  w.kind = 0;
  w.keys = "1234567";
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(),
              HasSubstr("field 'keys' has 7 bytes, not a multiple of 8"));
  w.keys.clear();
  w.update_keys = std::string(16, '\0');
  w.update_delta = std::string(8, '\0');
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(), HasSubstr("2 update keys but 1 deltas"));
  w.update_keys.clear();
  w.update_delta.clear();
  w.range_begin = 5;
  w.range_end = 4;
  EXPECT_THAT(DecodeFrame(encode(w)).status().message(), HasSubstr("bad key range [5, 4)"));
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

}  // namespace
}  // namespace tessera::net
