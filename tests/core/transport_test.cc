#include "tessera/core/transport.h"

#include <gtest/gtest.h>

#include "tessera/core/fiber_pool.h"

namespace tessera {
namespace {

TEST(InProcessTransportTest, DeliversInOrderAcrossFibers) {
  InProcessTransport t(3);
  constexpr int kMessages = 2000;
  std::vector<std::uint64_t> got;
  ParallelFor(2, [&](int i) {
    if (i == 0) {
      for (int k = 0; k < kMessages; ++k) {
        msg::Push push;
        push.round = k;
        push.stale_keys = {static_cast<Key>(k)};
        ASSERT_TRUE(t.Send(2, Message(0, std::move(push))).ok());
      }
    } else {
      for (int k = 0; k < kMessages; ++k) {
        auto m = t.Receive(2);
        ASSERT_TRUE(m.ok());
        ASSERT_TRUE(m->get<msg::Push>());
        got.push_back(m->get<msg::Push>()->round);
      }
    }
  });
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kMessages));
  for (int k = 0; k < kMessages; ++k) EXPECT_EQ(got[k], static_cast<std::uint64_t>(k));
  EXPECT_EQ(t.bytes_sent(), kMessages * (16u + 8u));  // kind, sender, round; one key
}

TEST(InProcessTransportTest, CloseWakesReceiverAndRejectsSends) {
  InProcessTransport t(2);
  Status received;
  WaitGroup wg;
  wg.Add(1);
  FiberPool::Global().Spawn([&] {
    auto m = t.Receive(1);
    received = m.status();
    wg.Done();
  });
  t.Close();
  wg.Wait();
  EXPECT_EQ(received.code(), StatusCode::kUnavailable);
  EXPECT_EQ(t.Send(1, Message{}).code(), StatusCode::kUnavailable);
  EXPECT_EQ(t.Send(7, Message{}).code(), StatusCode::kInvalidArgument);
}

TEST(FiberPoolTest, ParallelForRunsEveryIndexManyTimesOverFewThreads) {
  std::vector<int> hits(1000, 0);
  ParallelFor(1000, [&](int i) {
    YieldFiber();
    hits[i]++;
  });
  for (int h : hits) EXPECT_EQ(h, 1);
  EXPECT_GE(FiberPool::Global().threads(), 1);
}

TEST(KeysTest, SplitRangeIsContiguousAndBalanced) {
  auto r = SplitRange(10, 4);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0], (KeyRange{0, 3}));
  EXPECT_EQ(r[1], (KeyRange{3, 6}));
  EXPECT_EQ(r[2], (KeyRange{6, 8}));
  EXPECT_EQ(r[3], (KeyRange{8, 10}));
  auto z = SplitRange(2, 3);
  EXPECT_EQ(z[2].size(), 0u);
}

}  // namespace
}  // namespace tessera
