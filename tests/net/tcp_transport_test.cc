// The TCP transport on real loopback sockets, processes played by threads: every rank reaches
// every other in order, large messages arrive whole, a wrong secret and garbage connections
// are refused without stopping the run, an oversize frame and a lost process fail the
// transport with a message naming the process.
#include "tessera/net/tcp_transport.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <functional>
#include <random>
#include <thread>

#include "tessera/core/model_parallel.h"
#include "tessera/net/auth.h"

namespace tessera::net {
namespace {

using ::testing::HasSubstr;

TcpOptions Options(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  TcpOptions o;
  o.secret = "test-secret-0123456789";
  o.connect_timeout = timeout;
  return o;
}

// Creates process 0 (on a free rendezvous port), then the others, and establishes all at once.
struct Cluster {
  std::vector<std::unique_ptr<TcpTransport>> procs;
  std::vector<Status> established;
};

Cluster Start(int processes, const std::vector<int>& process_of_rank,
              std::vector<TcpOptions> options) {
  Cluster c;
  options.resize(static_cast<std::size_t>(processes), options.back());
  ProcessInfo p0{0, processes, "tessera", "127.0.0.1", 0};
  auto t0 = TcpTransport::Create(p0, process_of_rank, options[0]);
  TESSERA_CHECK(t0.ok()) << t0.status().ToString();
  const std::uint16_t port = (*t0)->listen_port();
  c.procs.push_back(std::move(*t0));
  for (int i = 1; i < processes; ++i) {
    ProcessInfo pi{i, processes, "tessera", "127.0.0.1", port};
    auto t = TcpTransport::Create(pi, process_of_rank, options[static_cast<std::size_t>(i)]);
    TESSERA_CHECK(t.ok()) << t.status().ToString();
    c.procs.push_back(std::move(*t));
  }
  c.established.resize(static_cast<std::size_t>(processes));
  std::vector<std::thread> threads;
  for (int i = 0; i < processes; ++i) {
    threads.emplace_back([&c, i] { c.established[i] = c.procs[i]->Establish(); });
  }
  for (auto& t : threads) t.join();
  return c;
}

TEST(TcpTransportTest, EveryRankReachesEveryOtherInOrder) {
  // 4 ranks on 3 processes: rank 0 on process 0, ranks 1 and 2 on process 1, rank 3 on 2.
  const std::vector<int> where = {0, 1, 1, 2};
  Cluster c = Start(3, where, {Options()});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  const int ranks = 4, per_pair = 200;
  auto transport_of = [&](int r) { return c.procs[static_cast<std::size_t>(where[r])].get(); };
  std::vector<std::thread> threads;
  std::vector<std::string> errors(ranks);
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      TcpTransport* t = transport_of(r);
      for (int i = 0; i < per_pair; ++i) {
        for (int to = 0; to < ranks; ++to) {
          if (to == r) continue;
          // Every 50th message is 1 MiB of values; the rest are small.
          Message m(
              r, msg::DpTerms{static_cast<std::uint64_t>(i),
                              Eigen::VectorXd::Constant(i % 50 == 0 ? 131072 : 3, r * 1000.0 + i)});
          if (!t->Send(to, std::move(m)).ok()) errors[r] = "send failed";
        }
      }
      std::vector<int> next(ranks, 0);
      for (int got = 0; got < per_pair * (ranks - 1); ++got) {
        auto m = t->Receive(r);
        if (!m.ok()) {
          errors[r] = m.status().ToString();
          return;
        }
        const int from = m->from;
        const auto* terms = m->get<msg::DpTerms>();
        if (m->to != r || !terms || static_cast<int>(terms->clock) != next[from] ||
            terms->terms.size() != (next[from] % 50 == 0 ? 131072 : 3) ||
            terms->terms[0] != from * 1000.0 + next[from]) {
          errors[r] = "out of order or corrupt message from rank " + std::to_string(from);
          return;
        }
        ++next[from];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int r = 0; r < ranks; ++r) EXPECT_EQ(errors[r], "") << "rank " << r;
  EXPECT_GT(c.procs[1]->wire_bytes_sent(), 2u * 4 * 1048576);  // the big messages went by TCP
  for (auto& p : c.procs) EXPECT_TRUE(p->failure().ok()) << p->failure().ToString();
}

// Processes that listen on every interface tell their peers the address they reach process 0
// from, not 0.0.0.0; with a port range their listeners take ports of it; --bind takes a host
// name and --advertise overrides what a process gives its peers.
TEST(TcpTransportTest, ProcessesAdvertiseAddressesTheirPeersReachAndUseTheGivenPorts) {
  const std::uint16_t base = *FreePort();
  TcpOptions everywhere = Options();
  everywhere.bind = "0.0.0.0";
  everywhere.port_min = base;
  everywhere.port_max = static_cast<std::uint16_t>(base + 20);
  TcpOptions named = everywhere;
  named.bind = "localhost";
  named.advertise = "localhost";
  Cluster c = Start(3, {0, 1, 2}, {everywhere, everywhere, named});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.procs[0]->advertised(), "127.0.0.1:" + std::to_string(c.procs[0]->listen_port()));
  EXPECT_EQ(c.procs[1]->advertised(), "127.0.0.1:" + std::to_string(c.procs[1]->listen_port()));
  EXPECT_EQ(c.procs[2]->advertised(), "localhost:" + std::to_string(c.procs[2]->listen_port()));
  for (int p = 1; p <= 2; ++p) {
    EXPECT_GE(c.procs[p]->listen_port(), everywhere.port_min);
    EXPECT_LE(c.procs[p]->listen_port(), everywhere.port_max);
  }
  EXPECT_NE(c.procs[1]->listen_port(), c.procs[2]->listen_port());
  // Process 2 dialed process 1 at what 1 advertised: a message goes through.
  ASSERT_TRUE(c.procs[2]->Send(1, Message(2, msg::PsPing{1})).ok());
  auto got = c.procs[1]->Receive(1);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->from, 2);

  // A range whose every port is taken, a bad range and an unknown host are errors.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor holder(
      io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0));
  TcpOptions full = Options();
  full.port_min = full.port_max = holder.local_endpoint().port();
  auto taken = TcpTransport::Create({1, 3, "tessera", "127.0.0.1", 1}, {0, 1, 2}, full);
  ASSERT_FALSE(taken.ok());
  EXPECT_THAT(taken.status().message(), HasSubstr("every port is taken"));
  full.port_max = static_cast<std::uint16_t>(full.port_min - 1);
  EXPECT_THAT(full.Validate().message(), HasSubstr("--port-range"));
  TcpOptions unknown = Options();
  unknown.bind = "no-such-host.invalid";
  auto nowhere = TcpTransport::Create({1, 3, "tessera", "127.0.0.1", 1}, {0, 1, 2}, unknown);
  ASSERT_FALSE(nowhere.ok());
  EXPECT_THAT(nowhere.status().message(),
              HasSubstr("--bind 'no-such-host.invalid': neither an address nor a host name"));
}

// Engines reuse one transport for run after run (a Lasso path); processes are not in step:
// one may send run 2's first message while another still finishes run 1.
TEST(TcpTransportTest, RunsDoNotMixAcrossProcesses) {
  Cluster c = Start(2, {0, 1}, {Options()});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  TcpTransport& a = *c.procs[0];
  TcpTransport& b = *c.procs[1];
  auto send = [&](double v) {
    ASSERT_TRUE(a.Send(1, Message(0, msg::DpTerms{0, Eigen::VectorXd::Constant(1, v)})).ok());
  };
  auto next = [&](TcpTransport& t) {
    auto m = t.Receive(1);
    return m.ok() && m->get<msg::DpTerms>() ? m->get<msg::DpTerms>()->terms[0] : -1.0;
  };
  a.BeginRun();
  b.BeginRun();
  send(1);  // run 1
  EXPECT_EQ(next(b), 1);
  send(11);
  a.BeginRun();
  send(2);  // run 2: B has not begun it yet
  a.BeginRun();
  send(3);  // run 3
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  auto queued = b.TryReceive(1);  // in run 1, B sees 11 and nothing of later runs
  ASSERT_TRUE(queued.ok()) << queued.status().ToString();
  ASSERT_TRUE(queued->get<msg::DpTerms>());
  EXPECT_EQ(queued->get<msg::DpTerms>()->terms[0], 11);
  EXPECT_THAT(b.TryReceive(1).status().message(), HasSubstr("no message queued"));
  b.BeginRun();  // run 2
  EXPECT_EQ(next(b), 2);
  EXPECT_THAT(b.TryReceive(1).status().message(), HasSubstr("no message queued"));
  b.BeginRun();
  EXPECT_EQ(next(b), 3);
  send(31);  // run 3, never received in run 3: left over
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  b.BeginRun();  // run 4: 31 is gone
  a.BeginRun();
  send(4);
  EXPECT_EQ(next(b), 4);
  b.BeginRun();  // run 5, A still in run 4: its messages arrive too late
  send(44);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_THAT(b.TryReceive(1).status().message(), HasSubstr("no message queued"));
  for (auto& p : c.procs) EXPECT_TRUE(p->failure().ok()) << p->failure().ToString();
}

TEST(TcpTransportTest, AWrongSecretIsRefusedAndBothSidesSaySo) {
  std::vector<TcpOptions> o = {Options(std::chrono::milliseconds(1500)),
                               Options(std::chrono::milliseconds(1500))};
  o[1].secret = "another-secret-0123456789";
  Cluster c = Start(2, {0, 1}, o);
  EXPECT_THAT(c.established[0].message(), HasSubstr("process 1 did not connect within 1500 ms"));
  EXPECT_THAT(c.established[1].message(), HasSubstr("did not prove it holds the secret"));
}

TEST(TcpTransportTest, GarbageAndSilentConnectionsAreDroppedAndTheRunGoesOn) {
  namespace asio = boost::asio;
  ProcessInfo p0{0, 2, "tessera", "127.0.0.1", 0};
  auto t0 = TcpTransport::Create(p0, {0, 1}, Options());
  ASSERT_TRUE(t0.ok());
  const std::uint16_t port = (*t0)->listen_port();
  Status s0;
  std::thread establish0([&] { s0 = (*t0)->Establish(); });
  asio::io_context io;
  const asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
  // A client that sends random bytes, one that claims a huge frame, one that says nothing.
  asio::ip::tcp::socket garbage(io), huge(io), silent(io);
  garbage.connect(ep);
  std::mt19937 rng(5);
  std::string noise(300, '\0');
  for (char& ch : noise) ch = static_cast<char>(rng());
  asio::write(garbage, asio::buffer(noise));
  huge.connect(ep);
  asio::write(huge, asio::buffer(std::string("\x7f\xff\xff\xff", 4)));
  silent.connect(ep);
  ProcessInfo p1{1, 2, "tessera", "127.0.0.1", port};
  auto t1 = TcpTransport::Create(p1, {0, 1}, Options());
  ASSERT_TRUE(t1.ok());
  Status s1 = (*t1)->Establish();
  establish0.join();
  ASSERT_TRUE(s0.ok()) << s0.ToString();
  ASSERT_TRUE(s1.ok()) << s1.ToString();
  const Message m(1, msg::PsClock{42});
  ASSERT_TRUE((*t1)->Send(0, m).ok());
  auto got = (*t0)->Receive(0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->get<msg::PsClock>());
  EXPECT_EQ(got->get<msg::PsClock>()->clock, 42u);
}

// A relay on the path between process 1 and process 0, as an attacker without the secret would
// run one: it forwards every frame both ways (so the handshake passes through it), then
// tampers with the stream toward process 0 once. Whatever it does fails process 0's transport
// naming process 1 and the frame that did not open: no injected goodbye is believed, no replay
// is delivered twice, no altered value reaches a receiver.
TEST(TcpTransportTest, ARelayThatTampersWithTheStreamFailsTheRunNamingTheConnection) {
  namespace asio = boost::asio;
  using tcp = asio::ip::tcp;
  struct Case {
    const char* name;
    std::function<std::vector<std::string>(std::string frame)> tamper;
  };
  const std::vector<Case> cases = {
      {"an injected goodbye",
       [](std::string frame) {
         std::string bye;
         AppendFrame(bye, EncodeGoodbye(""));
         return std::vector<std::string>{bye, frame};
       }},
      {"a replayed frame",
       [](std::string frame) {
         return std::vector<std::string>{frame, frame};
       }},
      {"a flipped bit",
       [](std::string frame) {
         frame[frame.size() / 2] ^= 1;
         return std::vector<std::string>{frame};
       }},
      {"a dropped frame", [](std::string) { return std::vector<std::string>{}; }},
  };
  const auto loopback = asio::ip::make_address("127.0.0.1");
  // The values sent, as they would appear on the wire unencrypted.
  const Eigen::VectorXd values = Eigen::VectorXd::Constant(100, 2.5);
  const std::string pattern(reinterpret_cast<const char*>(values.data()), 4 * sizeof(double));
  for (const bool insecure : {false, true})
    for (const Case& c : cases) {
      SCOPED_TRACE(std::string(c.name) + (insecure ? ", --insecure" : ", encrypted"));
      TcpOptions options = Options();
      options.encrypt_frames = !insecure;
      ProcessInfo p0{0, 2, "tessera", "127.0.0.1", 0};
      auto t0 = TcpTransport::Create(p0, {0, 1}, options);
      ASSERT_TRUE(t0.ok());
      asio::io_context io;
      tcp::acceptor relay(io, tcp::endpoint(loopback, 0));
      std::atomic<bool> tamper{false}, readable{false};
      std::thread relay_thread([&] {
        boost::system::error_code ec;
        tcp::socket down(io), up(io);
        relay.accept(down, ec);
        up.connect(tcp::endpoint(loopback, (*t0)->listen_port()), ec);
        if (ec) return;
        std::thread back([&] {  // process 0 -> process 1, untouched
          char buf[65536];
          boost::system::error_code e;
          for (std::size_t n; (n = up.read_some(asio::buffer(buf), e)) > 0 && !e;) {
            asio::write(down, asio::buffer(buf, n), e);
          }
          down.shutdown(tcp::socket::shutdown_both, e);
        });
        FrameReader reader;
        bool tampered = false;
        char buf[65536];
        for (std::size_t n; (n = down.read_some(asio::buffer(buf), ec)) > 0 && !ec;) {
          reader.Feed(buf, n);
          for (auto body = reader.Next(); body.ok() && *body; body = reader.Next()) {
            std::string frame;
            AppendFrame(frame, **body);
            if (frame.find(pattern) != std::string::npos) readable = true;
            std::vector<std::string> out{frame};
            if (tamper.load() && !tampered) {
              out = c.tamper(frame);
              tampered = true;
            }
            for (const std::string& f : out) asio::write(up, asio::buffer(f), ec);
          }
        }
        up.shutdown(tcp::socket::shutdown_both, ec);
        back.join();
      });
      ProcessInfo p1{1, 2, "tessera", "127.0.0.1", relay.local_endpoint().port()};
      auto t1 = TcpTransport::Create(p1, {0, 1}, options);
      ASSERT_TRUE(t1.ok());
      Status s0;
      std::thread establish0([&] { s0 = (*t0)->Establish(); });
      const Status s1 = (*t1)->Establish();
      establish0.join();
      ASSERT_TRUE(s0.ok()) << s0.ToString();
      ASSERT_TRUE(s1.ok()) << s1.ToString();
      tamper.store(true);
      const Message m(1, msg::DpTerms{0, values});
      ASSERT_TRUE((*t1)->Send(0, m).ok());
      // Within a heartbeat or two, process 0 fails; anything delivered before is unaltered.
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      Status failed;
      int delivered = 0;
      while (failed.ok() && std::chrono::steady_clock::now() < deadline) {
        auto got = (*t0)->TryReceive(0);
        if (got.ok()) {
          ++delivered;
          ASSERT_TRUE(got->get<msg::DpTerms>());
          EXPECT_EQ(got->get<msg::DpTerms>()->terms, values);
        } else if (got.status().code() != StatusCode::kNotFound) {
          failed = got.status();
        } else {
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
      }
      EXPECT_LE(delivered, 1);
      EXPECT_THAT(failed.message(), HasSubstr("process 1: frame"));
      EXPECT_THAT(failed.message(), HasSubstr("failed authentication"));
      t1->reset();
      t0->reset();
      relay_thread.join();
      EXPECT_EQ(readable.load(), insecure) << "what the relay could read of the values";
    }
}

// A listener at the rendezvous address without the secret (a fake process 0) challenges the
// joiner and answers with a forged confirmation and a huge announced frame: the joiner stops at
// once, saying process 0 did not prove it holds the secret, and reads nothing after.
TEST(TcpTransportTest, AJoinerRefusesARendezvousWithoutTheSecret) {
  namespace asio = boost::asio;
  using tcp = asio::ip::tcp;
  asio::io_context io;
  tcp::acceptor fake(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  std::thread imposter([&] {
    boost::system::error_code ec;
    tcp::socket s(io);
    fake.accept(s, ec);
    std::string out;
    AppendFrame(out, EncodeChallenge(std::string(kNonceBytes, 'n')));
    asio::write(s, asio::buffer(out), ec);
    char buf[4096];
    (void)s.read_some(asio::buffer(buf), ec);  // the joiner's response
    out.clear();
    AppendFrame(out, EncodeConfirm(std::string(32, 'x')));
    out += std::string("\x0f\xff\xff\xff", 4);  // and a 256 MiB "peer table"
    asio::write(s, asio::buffer(out), ec);
    (void)s.read_some(asio::buffer(buf), ec);  // until the joiner closes
  });
  ProcessInfo p1{1, 2, "tessera", "127.0.0.1", fake.local_endpoint().port()};
  auto t1 = TcpTransport::Create(p1, {0, 1}, Options());
  ASSERT_TRUE(t1.ok());
  const auto start = std::chrono::steady_clock::now();
  const Status s = (*t1)->Establish();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_THAT(s.message(), HasSubstr("process 0 at 127.0.0.1:"));
  EXPECT_THAT(s.message(), HasSubstr("did not prove it holds the secret (a wrong confirmation)"));
  t1->reset();
  imposter.join();
}

// Idle connections opened to the rendezvous before the real process joins (a port scan, a
// flood) do not stall the set-up: their handshakes wait side by side, so 30 of them cost one
// handshake timeout (2 s), not thirty.
TEST(TcpTransportTest, ManyIdleConnectionsDoNotStallTheSetUp) {
  // 50 connections that never say a word, to the rendezvous and to process 1's listener, opened
  // before a 3-process run sets up: each costs one handshake deadline, side by side.
  namespace asio = boost::asio;
  const std::vector<int> where = {0, 1, 2};
  const auto options = Options(std::chrono::milliseconds(15000));
  ProcessInfo p0{0, 3, "tessera", "127.0.0.1", 0};
  auto t0 = TcpTransport::Create(p0, where, options);
  ASSERT_TRUE(t0.ok());
  const std::uint16_t port = (*t0)->listen_port();
  ProcessInfo p1{1, 3, "tessera", "127.0.0.1", port}, p2{2, 3, "tessera", "127.0.0.1", port};
  auto t1 = TcpTransport::Create(p1, where, options);
  auto t2 = TcpTransport::Create(p2, where, options);
  ASSERT_TRUE(t1.ok() && t2.ok());
  const auto start = std::chrono::steady_clock::now();
  asio::io_context io;
  std::vector<std::unique_ptr<asio::ip::tcp::socket>> idle;
  for (int i = 0; i < 50; ++i) {
    const std::uint16_t to = i % 5 == 4 ? (*t1)->listen_port() : port;
    idle.push_back(std::make_unique<asio::ip::tcp::socket>(io));
    idle.back()->connect({asio::ip::make_address("127.0.0.1"), to});
  }
  std::vector<TcpTransport*> procs = {t0->get(), t1->get(), t2->get()};
  std::vector<Status> established(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] { established[i] = procs[i]->Establish(); });
  }
  for (auto& t : threads) t.join();
  for (const Status& s : established) ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(6));
  // And the run works: a message from the last process reaches the first.
  ASSERT_TRUE(procs[2]->Send(0, Message(2, msg::PsPing{})).ok());
  auto got = procs[0]->Receive(0);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->from, 2);
}

// Two runs started with the same rendezvous and secret do not mix: a process of the other run
// (another launcher run id, or another number of processes) fails its handshake, is dropped,
// and this run's own process joins.
TEST(TcpTransportTest, AProcessOfAnotherRunIsRefused) {
  ProcessInfo p0{0, 2, "tessera", "127.0.0.1", 0};
  p0.run_id = "launch a";
  auto t0 = TcpTransport::Create(p0, {0, 1}, Options());
  ASSERT_TRUE(t0.ok());
  const std::uint16_t port = (*t0)->listen_port();
  Status s0;
  std::thread establish0([&] { s0 = (*t0)->Establish(); });
  for (const auto& [size, run] : {std::pair<int, const char*>{2, "launch b"}, {3, "launch a"}}) {
    ProcessInfo other{1, size, "tessera", "127.0.0.1", port};
    other.run_id = run;
    auto t =
        TcpTransport::Create(other, size == 2 ? std::vector<int>{0, 1} : std::vector<int>{0, 1, 2},
                             Options(std::chrono::milliseconds(3000)));
    ASSERT_TRUE(t.ok());
    const Status s = (*t)->Establish();
    EXPECT_THAT(s.message(), HasSubstr("did not prove it holds the secret")) << run;
  }
  ProcessInfo p1{1, 2, "tessera", "127.0.0.1", port};
  p1.run_id = "launch a";
  auto t1 = TcpTransport::Create(p1, {0, 1}, Options());
  ASSERT_TRUE(t1.ok());
  const Status s1 = (*t1)->Establish();
  establish0.join();
  EXPECT_TRUE(s0.ok()) << s0.ToString();
  EXPECT_TRUE(s1.ok()) << s1.ToString();
}

TEST(TcpTransportTest, AnOversizeFrameFailsTheTransportNamingTheSender) {
  std::vector<TcpOptions> o = {Options(), Options()};
  o[0].max_frame_bytes = 64 * 1024;
  Cluster c = Start(2, {0, 1}, o);
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  const Message m(1, msg::DpTerms{0, Eigen::VectorXd::Zero(131072)});  // 1 MiB
  ASSERT_TRUE(c.procs[1]->Send(0, m).ok());
  auto got = c.procs[0]->Receive(0);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("process 1: frame of"));
  EXPECT_THAT(got.status().message(), HasSubstr("over the limit of 65536"));
}

// A peer speaks only for the ranks it hosts: a message from process 1 that claims to come from
// rank 0 (process 0's) fails the transport naming the sender, before anything reads it.
TEST(TcpTransportTest, AMessageAsARankItsSenderDoesNotHostIsRefused) {
  Cluster c = Start(2, {0, 1}, {Options()});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  const Message m(0, msg::Stop{});
  ASSERT_TRUE(c.procs[1]->Send(0, m).ok());
  auto got = c.procs[0]->Receive(0);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(),
              HasSubstr("process 1 sent a message as rank 0, which it does not host"));
}

TEST(TcpTransportTest, ALostProcessIsReportedToEveryReceiver) {
  Cluster c = Start(3, {0, 1, 2}, {Options()});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  const auto start = std::chrono::steady_clock::now();
  c.procs[2].reset();  // its sockets close, as when the process is killed
  auto got = c.procs[0]->Receive(0);
  ASSERT_FALSE(got.ok());
  EXPECT_THAT(got.status().message(), HasSubstr("lost process 2"));
  // Process 1 learns it from process 2's closed connection or from process 0's, which closes
  // its connections when it fails: either way it stops with a lost process.
  auto got1 = c.procs[1]->Receive(1);
  ASSERT_FALSE(got1.ok());
  EXPECT_THAT(got1.status().message(), HasSubstr("lost process"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_FALSE(c.procs[0]->Send(1, Message()).ok());  // later sends fail too
}

TEST(TcpTransportTest, ACleanLeaveIsNotALossAndAFailingLeaveNamesItsError) {
  Cluster c = Start(3, {0, 1, 2}, {Options()});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  // Processes 1 and 2 finish cleanly, one after the other; process 0 still runs meanwhile
  // and its later heartbeats to them are not errors. Each Leave waits for all three.
  const Message m(1, msg::DpContinue{});
  ASSERT_TRUE(c.procs[1]->Send(0, m).ok());
  std::vector<Status> left(3);
  std::vector<std::thread> threads;
  for (int i : {1, 2}) threads.emplace_back([&, i] { left[i] = c.procs[i]->Leave(); });
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // > one heartbeat period
  EXPECT_TRUE(c.procs[0]->failure().ok()) << c.procs[0]->failure().ToString();
  EXPECT_EQ(c.procs[0]->peers_left(), 2);
  auto got = c.procs[0]->Receive(0);  // what was sent before the goodbye still arrives
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_THAT(c.procs[0]->Send(1, m).ToString(), HasSubstr("process 1 has finished"));
  left[0] = c.procs[0]->Leave();
  for (auto& t : threads) t.join();
  for (const Status& s : left) EXPECT_TRUE(s.ok()) << s.ToString();

  Cluster d = Start(2, {0, 1}, {Options()});
  for (const Status& s : d.established) ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(d.procs[1]->Leave("data.csv:3: not a number").ok());
  auto failed = d.procs[0]->Receive(0);
  ASSERT_FALSE(failed.ok());
  EXPECT_THAT(failed.status().message(), HasSubstr("process 1 failed: data.csv:3: not a number"));
}

// A small deterministic model-parallel app: worker w owns targets a_w (4-vectors); a round
// moves x toward the mean of all targets (x -= 0.5 * mean(x - a_w)); the objective is
// Σ_w ||x - a_w||². Each "process" builds its own instance, as real processes would.
struct MeanApp {
  std::vector<Eigen::VectorXd> targets;
  Eigen::VectorXd x = Eigen::VectorXd::Zero(4);  // the coordinator's
  std::vector<Eigen::VectorXd> xw;               // each worker's copy
  FunctionalApp app;
  explicit MeanApp(int workers) {
    for (int w = 0; w < workers; ++w) {
      targets.push_back(Eigen::VectorXd::LinSpaced(4, w, 3.0 * w + 1));
      xw.push_back(x);
    }
    app.schedule = [](ScheduleContext& ctx) {
      RoundSchedule r;
      if (ctx.round >= 30) {
        r.done = true;
        return r;
      }
      r.blocks.push_back({0, {0, 1, 2, 3}, kAllWorkers});
      r.evaluate_after = ctx.round % 10 == 9;
      return r;
    };
    app.push = [this](WorkerContext& ctx, std::span<const Block>) {
      return std::vector<Partial>{{0, ctx.worker, xw[ctx.worker] - targets[ctx.worker]}};
    };
    app.pull = [this](PullContext&, std::span<const Block>, std::span<const Partial> merged) {
      const Eigen::VectorXd delta = -0.5 * merged[0].values / static_cast<double>(targets.size());
      x += delta;
      return Update{{0, 1, 2, 3}, delta};
    };
    app.apply = [this](WorkerContext& ctx, const Update& u) {
      if (!u.empty()) xw[ctx.worker] += u.delta;
    };
    app.evaluate_terms = [this](WorkerContext& ctx) {
      return Eigen::VectorXd::Constant(1, (xw[ctx.worker] - targets[ctx.worker]).squaredNorm());
    };
    app.objective = [](const Eigen::VectorXd& t) { return t[0]; };
  }
};

TEST(TcpTransportTest, TheModelParallelEngineRunsAcrossProcesses) {
  const int workers = 3;
  MeanApp ref(workers);  // the in-process run
  EngineOptions o;
  o.workers = workers;
  o.progress = false;
  auto want = RunModelParallel(ref.app, o);
  ASSERT_TRUE(want.ok()) << want.status().ToString();
  // Coordinator on process 0, workers 0 and 1 on process 1, worker 2 on process 2.
  const std::vector<int> where = {0, 1, 1, 2};
  Cluster c = Start(3, where, {Options()});
  for (const Status& s : c.established) ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::unique_ptr<MeanApp>> apps;
  std::vector<StatusOr<RunResult>> results;
  for (int p = 0; p < 3; ++p) {
    apps.push_back(std::make_unique<MeanApp>(workers));
    results.emplace_back(Internal("not run"));
  }
  std::vector<std::thread> procs;
  for (int p = 0; p < 3; ++p) {
    procs.emplace_back([&, p] {
      EngineOptions po = o;
      po.transport = std::shared_ptr<Transport>(c.procs[p].get(), [](Transport*) {});
      results[p] = RunModelParallel(apps[p]->app, po);
    });
  }
  for (auto& t : procs) t.join();
  for (int p = 0; p < 3; ++p) ASSERT_TRUE(results[p].ok()) << results[p].status().ToString();
  EXPECT_FALSE(results[1]->holds_result);
  EXPECT_TRUE(results[0]->holds_result);
  EXPECT_EQ(results[0]->rounds, want->rounds);
  EXPECT_EQ(apps[0]->x, ref.x);  // bitwise: the same partials summed in the same order
  EXPECT_EQ(results[0]->objective, want->objective);
  EXPECT_EQ(apps[2]->xw[2], ref.xw[2]);  // the workers' copies followed every committed update
  EXPECT_EQ(apps[1]->xw[0], ref.xw[0]);
}

}  // namespace
}  // namespace tessera::net
