// The TCP transport between two real processes on loopback, next to raw loopback TCP measured
// in the same run.
//
//   throughput  process 0 sends `--mbytes` of payload to process 1 in messages of `--message`
//               values (8 bytes each), through the transport (encode, frame, batch, write;
//               read, decode, deliver to the rank's mailbox); process 1 answers once at the
//               end. Raw: the same bytes written on a plain blocking socket and read whole.
//   latency     a small message to process 1 and back, `--pings` times; raw: 64 bytes each
//               way on a blocking socket with TCP_NODELAY.
//   round       a model-parallel engine round (schedule, push, partials, pull, apply) with
//               its one worker in the other process, against the same engine in-process.
//   ps          parameter-server push and pull of `--ps-keys` keys with one value each: a
//               dense table on one shard in process 1, its one worker in process 0 (asp, the
//               `add` updater: pushes are added into the table, pulls read it), keys 0..N-1
//               sent as explicit key lists, under each `--communication` setting in turn. A
//               push is timed until the shard has applied it (a one-key pull queued behind it
//               has been answered), a pull until its values are back; the first push and pull
//               after connecting and the second ones. Beside them: ps-lite's own benchmark
//               (`--ps-lite`), else raw loopback moving 16 bytes per key in 1 MiB writes.
// Every frame of the transport is sealed (AES-256-GCM, net/auth.h); both throughput rows are
// measured again with --insecure (frames authenticated, not encrypted), and a "sealed" row
// compares the two.
// Each measurement is repeated
// (--repeats), raw and transport interleaved; the table shows
// the median and the minimum of the ratios.
//
//   build/release/bench/net_bench [--repeats 5] [--mbytes 512] [--message 8192]
//       [--ps-only] [--ps-keys 10000000] [--communication 'A;B'] [--ps-lite PATH]
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <vector>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"
#include "tessera/core/model_parallel.h"
#include "tessera/core/parameter_server.h"
#include "tessera/net/tcp_transport.h"

namespace tessera {
namespace {

struct Flags {
  int repeats = 5;
  std::size_t mbytes = 512;
  int message = 8192;  // values per message
  int pings = 2000;
  int rounds = 2000;
  int threads = 1;             // fiber threads per process
  int large_message = 131072;  // values per message of the second throughput row (1 MiB)
  bool insecure = false;       // frames authenticated, not encrypted (TcpOptions::encrypt_frames)
  std::uint64_t ps_keys = 10'000'000;  // keys per parameter-server push and pull
  // The table's managed communication; several settings, separated by ';', are measured in
  // turn (the peer process gets one).
  std::string communication = "sparse,keys;none;f32;sparse,keys:16777216";
  bool ps_only = false;  // only the parameter server's rows
  std::string ps_lite;   // ps-lite's kv_app_benchmark_test, if given
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Raw loopback: a connected pair of blocking sockets, the other end in a child process.
// `child` runs there with its socket; the parent gets its own.
int RawPair(const std::function<void(int)>& child, pid_t& pid) {
  int lfd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  TESSERA_CHECK(bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  listen(lfd, 1);
  socklen_t len = sizeof a;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);
  pid = fork();
  if (pid == 0) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    TESSERA_CHECK(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    child(fd);
    close(fd);
    _exit(0);
  }
  const int fd = accept(lfd, nullptr, nullptr);
  close(lfd);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void WriteAll(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    TESSERA_CHECK(w > 0);
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void ReadAll(int fd, char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    TESSERA_CHECK(r > 0);
    p += r;
    n -= static_cast<std::size_t>(r);
  }
}

void Reap(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  TESSERA_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "peer process failed";
}

// Raw throughput in payload bytes per second.
double RawThroughput(const Flags& f) {
  const std::size_t chunk = static_cast<std::size_t>(f.message) * 8;
  const std::size_t chunks = std::max<std::size_t>(1, f.mbytes * (1u << 20) / chunk);
  pid_t pid;
  const int fd = RawPair(
      [&](int s) {
        std::vector<char> buf(chunk);
        for (std::size_t i = 0; i < chunks; ++i) ReadAll(s, buf.data(), chunk);
        WriteAll(s, "k", 1);
      },
      pid);
  std::vector<char> buf(chunk, 7);
  Stopwatch sw;
  for (std::size_t i = 0; i < chunks; ++i) WriteAll(fd, buf.data(), chunk);
  char k;
  ReadAll(fd, &k, 1);
  const double s = sw.Seconds();
  close(fd);
  Reap(pid);
  return static_cast<double>(chunks * chunk) / s;
}

// Raw round trip in seconds.
double RawLatency(const Flags& f) {
  pid_t pid;
  const int fd = RawPair(
      [&](int s) {
        char b[64];
        for (int i = 0; i < f.pings; ++i) {
          ReadAll(s, b, sizeof b);
          WriteAll(s, b, sizeof b);
        }
      },
      pid);
  char b[64] = {};
  Stopwatch sw;
  for (int i = 0; i < f.pings; ++i) {
    WriteAll(fd, b, sizeof b);
    ReadAll(fd, b, sizeof b);
  }
  const double s = sw.Seconds();
  close(fd);
  Reap(pid);
  return s / f.pings;
}

std::string g_self;  // this program, which the peer process runs again (a fork of a process
                     // with fiber threads could not use them)

// Ranks 0 and 1 on processes 0 and 1, except for the parameter server's measurement: its driver
// (rank 0) and worker (rank 2) on process 0, its shard (rank 1) on process 1.
std::vector<int> ProcessOfRank(std::string_view measure) {
  if (measure == "ps") return {0, 1, 0};
  return {0, 1};
}

std::shared_ptr<net::TcpTransport> Connect(int me, std::uint16_t port, bool insecure,
                                           std::string_view measure) {
  net::TcpOptions o;
  o.secret = "net-bench-secret-0123456789";
  o.encrypt_frames = !insecure;
  net::ProcessInfo p{me, 2, "tessera", "127.0.0.1", port};
  auto t = net::TcpTransport::Create(p, ProcessOfRank(measure), o);
  TESSERA_CHECK(t.ok()) << t.status().ToString();
  TESSERA_CHECK((*t)->Establish().ok());
  return std::shared_ptr<net::TcpTransport>(std::move(*t));
}

// Runs `body(transport, 0)` here and `body(transport, 1)` in a new process of this program
// (`--peer measure`), ranks placed by ProcessOfRank; returns this side's result.
template <typename Body>
auto TwoProcesses(const Flags& f, const char* measure, const Body& body) {
  auto free_port = net::FreePort();
  TESSERA_CHECK(free_port.ok()) << free_port.status().ToString();
  const std::uint16_t port = *free_port;
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string p = std::to_string(port), mb = std::to_string(f.mbytes),
                      msg = std::to_string(f.message), pings = std::to_string(f.pings),
                      rounds = std::to_string(f.rounds), threads = std::to_string(f.threads),
                      keys = std::to_string(f.ps_keys);
    std::vector<const char*> args = {g_self.c_str(),
                                     "--peer",
                                     measure,
                                     "--port",
                                     p.c_str(),
                                     "--mbytes",
                                     mb.c_str(),
                                     "--message",
                                     msg.c_str(),
                                     "--pings",
                                     pings.c_str(),
                                     "--rounds",
                                     rounds.c_str(),
                                     "--threads",
                                     threads.c_str(),
                                     "--ps-keys",
                                     keys.c_str(),
                                     "--communication",
                                     f.communication.c_str()};
    if (f.insecure) args.push_back("--insecure");
    args.push_back(nullptr);
    execv(g_self.c_str(), const_cast<char* const*>(args.data()));
    _exit(127);
  }
  auto t = Connect(0, port, f.insecure, measure);
  const auto r = body(*t, 0);
  TESSERA_CHECK(t->Leave().ok());
  t.reset();
  Reap(pid);
  return r;
}

// Runs `fn` as a fiber on the global pool and waits for it.
template <typename Fn>
double OnPool(Fn fn) {
  double out = 0;
  WaitGroup wg;
  wg.Add(1);
  FiberPool::Global().Spawn([&] {
    out = fn();
    wg.Done();
  });
  wg.Wait();
  return out;
}

template <typename Body>
double Side(Transport* peer, const Flags& f, const char* measure, const Body& body) {
  if (peer) return body(*peer, 1);
  return TwoProcesses(f, measure, body);
}

double TransportThroughput(const Flags& f, Transport* peer = nullptr) {
  const std::size_t chunk = static_cast<std::size_t>(f.message) * 8;
  const std::size_t messages = f.mbytes * (1u << 20) / chunk;
  return Side(peer, f, "throughput", [&](Transport& t, int me) {
    return OnPool([&] {
      if (me == 1) {
        for (std::size_t i = 0; i < messages; ++i) TESSERA_CHECK(t.Receive(1).ok());
        TESSERA_CHECK(t.Send(0, Message(1, msg::DpContinue{})).ok());
        return 0.0;
      }
      msg::PsPush push;
      push.values = Eigen::VectorXd::Constant(f.message, 1.5);
      const Message m(0, std::move(push));
      Stopwatch sw;
      for (std::size_t i = 0; i < messages; ++i) TESSERA_CHECK(t.Send(1, m).ok());
      TESSERA_CHECK(t.Receive(0).ok());
      return static_cast<double>(messages * chunk) / sw.Seconds();
    });
  });
}

double TransportLatency(const Flags& f, Transport* peer = nullptr) {
  return Side(peer, f, "latency", [&](Transport& t, int me) {
    return OnPool([&] {
      // About the raw ping's 64 bytes encoded.
      const Message m(0, msg::DpTerms{0, Eigen::VectorXd::Constant(4, 1.0)});
      if (me == 1) {
        for (int i = 0; i < f.pings; ++i) {
          auto r = t.Receive(1);
          TESSERA_CHECK(r.ok());
          r->from = 1;
          TESSERA_CHECK(t.Send(0, std::move(*r)).ok());
        }
        return 0.0;
      }
      Stopwatch sw;
      for (int i = 0; i < f.pings; ++i) {
        TESSERA_CHECK(t.Send(1, m).ok());
        TESSERA_CHECK(t.Receive(0).ok());
      }
      return sw.Seconds() / f.pings;
    });
  });
}

// A minimal app: each round updates one key; the worker pushes one value and applies one.
std::unique_ptr<FunctionalApp> TinyApp(int rounds) {
  auto app = std::make_unique<FunctionalApp>();
  app->schedule = [rounds](ScheduleContext& c) {
    RoundSchedule s;
    if (c.round >= static_cast<std::uint64_t>(rounds)) {
      s.done = true;
      return s;
    }
    s.blocks.push_back(Block{0, {c.round % 16}, kAllWorkers});
    return s;
  };
  app->push = [](WorkerContext&, std::span<const Block> b) {
    Partial p;
    p.block = b[0].id;
    p.values = Eigen::VectorXd::Constant(1, 1.0);
    return std::vector<Partial>{p};
  };
  app->pull = [](PullContext&, std::span<const Block> b, std::span<const Partial>) {
    Update u;
    u.keys = b[0].keys;
    u.delta = Eigen::VectorXd::Constant(1, 0.5);
    return u;
  };
  app->apply = [](WorkerContext&, const Update&) {};
  app->evaluate_terms = [](WorkerContext&) { return Eigen::VectorXd::Zero(1).eval(); };
  app->objective = [](const Eigen::VectorXd&) { return 0.0; };
  return app;
}

double EngineRound(const Flags& f, bool tcp, Transport* peer = nullptr) {
  EngineOptions o;
  o.workers = 1;
  o.progress = false;
  auto app = TinyApp(f.rounds);
  if (peer) {  // the worker's side
    o.transport = std::shared_ptr<Transport>(peer, [](Transport*) {});
    TESSERA_CHECK(RunModelParallel(*app, o).ok());
    return 0;
  }
  if (!tcp) {
    auto r = RunModelParallel(*app, o);
    TESSERA_CHECK(r.ok());
    return r->seconds / f.rounds;
  }
  return TwoProcesses(f, "round", [&](Transport& t, int) {
    o.transport = std::shared_ptr<Transport>(&t, [](Transport*) {});
    auto r = RunModelParallel(*app, o);
    TESSERA_CHECK(r.ok()) << r.status().ToString();
    return r->seconds / f.rounds;
  });
}

// Keys per second of pushes and pulls of f.ps_keys keys (see the header): the first push and
// pull after the processes connect, as ps-lite's benchmark times them, and the second ones,
// when the key-list cache may know the lists. The shard's process runs the same start and
// shutdown with `peer` set.
struct PsRates {
  double push[2] = {0, 0}, pull[2] = {0, 0};  // [first, second]
};

PsRates PsPushPull(const Flags& f, Transport* peer = nullptr) {
  auto run = [&](Transport& t, int) {
    TableSpec spec;
    spec.name = "bench";
    spec.num_keys = f.ps_keys;
    auto consistency = Consistency::Parse("asp");
    TESSERA_CHECK(consistency.ok());
    spec.consistency = *consistency;
    auto wire = Communication::Parse(f.communication);
    TESSERA_CHECK(wire.ok()) << wire.status().ToString();
    spec.communication = *wire;
    auto ps =
        ParameterServer::Start({spec}, 1, 1, std::shared_ptr<Transport>(&t, [](Transport*) {}));
    TESSERA_CHECK(ps.ok()) << ps.status().ToString();
    (*ps)->StopAfterWorkers();
    PsRates rates;
    if (t.hosts((*ps)->WorkerRank(0))) {
      OnPool([&] {
        PsClient& c = (*ps)->client(0);
        std::vector<Key> keys(f.ps_keys);
        for (std::size_t i = 0; i < keys.size(); ++i) keys[i] = i;
        std::vector<double> values(keys.size(), 0.5);
        const Key first = 0;
        for (int round = 0; round < 2; ++round) {
          Stopwatch push_time;
          TESSERA_CHECK(c.Push(0, keys, values).ok());
          TESSERA_CHECK(c.Flush().ok());
          TESSERA_CHECK(c.Pull(0, std::span<const Key>(&first, 1)).Get().ok());
          rates.push[round] = static_cast<double>(f.ps_keys) / push_time.Seconds();
          Stopwatch pull_time;
          auto v = c.Pull(0, keys).Get();
          TESSERA_CHECK(v.ok() && static_cast<std::uint64_t>(v->size()) == f.ps_keys);
          rates.pull[round] = static_cast<double>(f.ps_keys) / pull_time.Seconds();
        }
        TESSERA_CHECK(t.Send((*ps)->ShardRank(0), Message((*ps)->WorkerRank(0), msg::Stop{})).ok());
        return 0.0;
      });
    }
    (*ps)->Shutdown();
    TESSERA_CHECK((*ps)->final_status().ok()) << (*ps)->final_status().ToString();
    return rates;
  };
  if (peer) return run(*peer, 1);
  return TwoProcesses(f, "ps", run);
}

// ps-lite's own benchmark (its tests/test_kv_app_benchmark.cc, built by its CMake: 10 M keys,
// float values, a server whose handler answers without storing): a scheduler, a server and a
// worker process on loopback, started as its tests/local.sh starts them; the worker's first
// push and first pull, as it times and prints them. Keys per second.
PsRates PsLite(const std::string& binary) {
  auto port = net::FreePort();
  TESSERA_CHECK(port.ok()) << port.status().ToString();
  const std::string env =
      "DMLC_NUM_SERVER=1 DMLC_NUM_WORKER=1 DMLC_PS_ROOT_URI=127.0.0.1 "
      "DMLC_PS_ROOT_PORT=" +
      std::to_string(*port);
  const std::string cmd = "(" + env + " DMLC_ROLE=scheduler '" + binary + "' & " + env +
                          " DMLC_ROLE=server '" + binary + "' & " + env + " DMLC_ROLE=worker '" +
                          binary + "'; wait) 2>&1";
  FILE* out = popen(cmd.c_str(), "r");
  TESSERA_CHECK(out != nullptr) << "cannot run " << binary;
  std::string text;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, out)) text.append(buf, n);
  TESSERA_CHECK(pclose(out) == 0) << binary << " failed:\n" << text;
  auto ms = [&](const std::string& what) {
    const std::size_t at = text.find(what + " average time cost: ");
    TESSERA_CHECK(at != std::string::npos) << "no '" << what << "' time from " << binary << ":\n"
                                           << text;
    return std::stod(text.substr(at + what.size() + 20));
  };
  PsRates r;
  r.push[0] = 1e7 / (ms("Push") * 1e-3);
  r.pull[0] = 1e7 / (ms("Pull") * 1e-3);
  return r;
}

void Row(const char* what, const char* unit, double scale, const std::vector<double>& ours,
         const std::vector<double>& peer, bool higher_is_better, const char* peer_name) {
  std::vector<double> ratio;
  for (std::size_t i = 0; i < ours.size(); ++i) {
    ratio.push_back(higher_is_better ? ours[i] / peer[i] : peer[i] / ours[i]);
  }
  std::printf("%-12s %12.1f %12.1f %-5s %-18s %8.3f %8.3f\n", what, Median(ours) * scale,
              Median(peer) * scale, unit, peer_name, Median(ratio),
              *std::min_element(ratio.begin(), ratio.end()));
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  using namespace tessera;
  Flags f;
  CLI::App app{"TCP transport vs raw loopback TCP, two processes"};
  app.add_option("--repeats", f.repeats)->capture_default_str();
  app.add_option("--mbytes", f.mbytes, "Payload per throughput run")->capture_default_str();
  app.add_option("--message", f.message, "Values per message")->capture_default_str();
  app.add_option("--pings", f.pings)->capture_default_str();
  app.add_option("--rounds", f.rounds)->capture_default_str();
  app.add_option("--threads", f.threads, "Fiber threads per process")->capture_default_str();
  app.add_option("--large-message", f.large_message, "Values per message, second row")
      ->capture_default_str();
  app.add_flag("--insecure", f.insecure, "(internal) frames authenticated, not encrypted");
  app.add_option("--ps-keys", f.ps_keys, "Keys per parameter-server push and pull (0: skip)")
      ->capture_default_str();
  app.add_flag("--ps-only", f.ps_only, "Only the parameter server's push and pull");
  app.add_option("--ps-lite", f.ps_lite,
                 "ps-lite's tests/kv_app_benchmark_test (built by its CMake), measured beside");
  app.add_option("--communication", f.communication,
                 "The parameter-server table's managed communication (core/ps_wire.h); "
                 "settings separated by ';' are measured in turn")
      ->capture_default_str();
  std::string peer;
  int port = 0;
  app.add_option("--peer", peer, "(internal) run the other process of a measurement");
  app.add_option("--port", port, "(internal) its rendezvous port");
  CLI11_PARSE(app, argc, argv);
  g_self = argv[0];
  FiberPool::Global(f.threads);
  if (!peer.empty()) {
    auto t = Connect(1, static_cast<std::uint16_t>(port), f.insecure, peer);
    if (peer == "ps") {
      PsPushPull(f, t.get());
    } else if (peer == "throughput") {
      TransportThroughput(f, t.get());
    } else if (peer == "latency") {
      TransportLatency(f, t.get());
    } else {
      EngineRound(f, true, t.get());
    }
    TESSERA_CHECK(t->Leave().ok());
    return 0;
  }
  std::vector<double> tput, raw_tput, big, raw_big, lat, raw_lat, round_tcp, round_local,
      plain_tput, plain_raw, plain_big, plain_raw_big, ps_raw;
  std::vector<std::string> wires;  // the parameter server's --communication settings, in turn
  for (std::size_t start = 0; start <= f.communication.size();) {
    const std::size_t end = std::min(f.communication.find(';', start), f.communication.size());
    wires.push_back(f.communication.substr(start, end - start));
    start = end + 1;
  }
  std::vector<std::array<std::vector<double>, 2>> ps_push(wires.size()), ps_pull(wires.size());
  std::vector<double> ps_lite_push, ps_lite_pull;
  if (!f.ps_lite.empty() && f.ps_keys != 10'000'000) {
    std::printf("ps-lite skipped: its benchmark moves 10000000 keys, not --ps-keys %llu\n",
                static_cast<unsigned long long>(f.ps_keys));
    f.ps_lite.clear();
  }
  // Raw loopback moving a push's payload (a key and a value per key) in 1 MiB writes.
  Flags ps_bytes = f;
  ps_bytes.message = 131072;
  ps_bytes.mbytes = std::max<std::size_t>(1, f.ps_keys * 16 >> 20);
  Flags large = f, plain = f;
  large.message = f.large_message;
  plain.insecure = true;
  Flags plain_large = large;
  plain_large.insecure = true;
  for (int r = 0; r < f.repeats; ++r) {
    if (f.ps_keys > 0) {
      ps_raw.push_back(RawThroughput(ps_bytes) / 16);
      if (!f.ps_lite.empty()) {
        const PsRates rates = PsLite(f.ps_lite);
        ps_lite_push.push_back(rates.push[0]);
        ps_lite_pull.push_back(rates.pull[0]);
      }
      for (std::size_t c = 0; c < wires.size(); ++c) {
        Flags one = f;
        one.communication = wires[c];
        const PsRates rates = PsPushPull(one);
        for (int round = 0; round < 2; ++round) {
          ps_push[c][round].push_back(rates.push[round]);
          ps_pull[c][round].push_back(rates.pull[round]);
        }
      }
    }
    if (f.ps_only) continue;
    raw_tput.push_back(RawThroughput(f));
    tput.push_back(TransportThroughput(f));
    plain_raw.push_back(RawThroughput(plain));
    plain_tput.push_back(TransportThroughput(plain));
    raw_big.push_back(RawThroughput(large));
    big.push_back(TransportThroughput(large));
    plain_raw_big.push_back(RawThroughput(plain_large));
    plain_big.push_back(TransportThroughput(plain_large));
    raw_lat.push_back(RawLatency(f));
    lat.push_back(TransportLatency(f));
    round_local.push_back(EngineRound(f, false));
    round_tcp.push_back(EngineRound(f, true));
  }
  std::printf("two processes on loopback, %d repeats, messages of %d values (%d KiB)\n", f.repeats,
              f.message, f.message * 8 / 1024);
  std::printf("%-12s %12s %12s %-5s %-18s %8s %8s\n", "measure", "tessera", "peer", "unit", "peer",
              "median", "min");
  if (!f.ps_only) {
    Row("throughput", "MB/s", 1e-6, tput, raw_tput, true, "raw TCP");
    std::printf("%-12s (--insecure: authenticated, not encrypted)\n", "");
    Row("throughput", "MB/s", 1e-6, plain_tput, plain_raw, true, "raw TCP");
    Row("sealed", "MB/s", 1e-6, tput, plain_tput, true, "--insecure");
    std::printf("%-12s (messages of %d KiB)\n", "", large.message * 8 / 1024);
    Row("throughput", "MB/s", 1e-6, big, raw_big, true, "raw TCP");
    std::printf("%-12s (--insecure: authenticated, not encrypted)\n", "");
    Row("throughput", "MB/s", 1e-6, plain_big, plain_raw_big, true, "raw TCP");
    Row("sealed", "MB/s", 1e-6, big, plain_big, true, "--insecure");
    Row("round trip", "us", 1e6, lat, raw_lat, false, "raw TCP");
    Row("engine round", "us", 1e6, round_tcp, round_local, false, "in-process engine");
  }
  for (std::size_t c = 0; c < wires.size() && f.ps_keys > 0; ++c) {
    std::printf("%-12s (parameter server, %llu keys of one value, --communication %s)\n", "",
                static_cast<unsigned long long>(f.ps_keys), wires[c].c_str());
    const char* names[2][2] = {{"push first", "pull first"}, {"push again", "pull again"}};
    for (int round = 0; round < 2; ++round) {
      if (f.ps_lite.empty()) {
        Row(names[round][0], "Mk/s", 1e-6, ps_push[c][round], ps_raw, true, "raw TCP, 16 B/key");
        Row(names[round][1], "Mk/s", 1e-6, ps_pull[c][round], ps_raw, true, "raw TCP, 16 B/key");
      } else {
        Row(names[round][0], "Mk/s", 1e-6, ps_push[c][round], ps_lite_push, true, "ps-lite, first");
        Row(names[round][1], "Mk/s", 1e-6, ps_pull[c][round], ps_lite_pull, true, "ps-lite, first");
      }
    }
  }
  if (f.ps_keys > 0 && f.ps_lite.empty()) {
    std::printf("ps-lite skipped: give --ps-lite PATH/kv_app_benchmark_test to measure it\n");
  }
  std::printf("(ratios: tessera / peer for throughput, peer / tessera for times)\n");
  return 0;
}
