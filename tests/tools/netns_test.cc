// Several hosts on one machine: two network namespaces joined by a veth pair, each with its
// own address, stand for two machines, and the link between them gets delay and loss: from
// `tc netem` where the kernel has it, else from tests/tools/link_emulator (an NFQUEUE program
// that holds and drops the packets an iptables rule hands it; needs iptables and
// libnetfilter-queue). Process 0 runs on host A, processes 1 and 2 on host B, each binding
// its host's address, and the Lasso path is bit for bit the in-process one. Needs root and
// iproute2; skipped with the reason otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace tessera {
namespace {

using testing::Sh;
using testing::Slurp;

// Empty when this process may make network namespaces; else why not.
std::string WhyNoNamespaces() {
  if (geteuid() != 0) return "not root";
  if (Sh("command -v ip") != 0) return "no ip (iproute2)";
  return "";
}

// Two namespaces `a` and `b` joined by a veth pair (10.M.N.1 in a, 10.M.N.2 in b); removed
// again when the object goes.
class TwoHosts {
 public:
  TwoHosts() {
    const int id = static_cast<int>(getpid()) % 60000;
    tag_ = "ts" + std::to_string(id);
    a_ = tag_ + "a";
    b_ = tag_ + "b";
    const std::string net =
        "10." + std::to_string(100 + id / 250 % 100) + "." + std::to_string(id % 250) + ".";
    ip_a_ = net + "1";
    ip_b_ = net + "2";
    why_not_ = WhyNoNamespaces();
    if (!why_not_.empty()) return;
    const std::vector<std::string> setup = {
        "ip netns add " + a_,
        "ip netns add " + b_,
        "ip link add " + a_ + " type veth peer name " + b_,
        "ip link set " + a_ + " netns " + a_,
        "ip link set " + b_ + " netns " + b_,
        "ip -n " + a_ + " addr add " + ip_a_ + "/24 dev " + a_,
        "ip -n " + b_ + " addr add " + ip_b_ + "/24 dev " + b_,
        "ip -n " + a_ + " link set " + a_ + " up",
        "ip -n " + b_ + " link set " + b_ + " up",
        "ip -n " + a_ + " link set lo up",
        "ip -n " + b_ + " link set lo up",
    };
    for (const std::string& cmd : setup) {
      std::string out;
      if (Sh(cmd, &out) != 0) {
        why_not_ = "'" + cmd + "' failed: " + out;
        return;
      }
      created_ = true;
    }
    // Delay and loss both ways: netem where the kernel has it, else the emulator.
    std::string out;
    for (const std::string& ns : {a_, b_}) {
      if (Sh("ip netns exec " + ns + " tc qdisc add dev " + ns + " root netem " + kNetem, &out) !=
          0) {
        link_ = "no netem (" + out.substr(0, out.find('\n')) + "); ";
        break;
      }
    }
    if (link_.empty()) {
      link_ = std::string("netem ") + kNetem + " each way";
      return;
    }
    link_ += EmulateLink();
  }
  ~TwoHosts() {
    if (!created_) return;
    for (const std::string& pid : emulators_) Sh("kill -TERM " + pid);
    for (const std::string& ns : {a_, b_}) {
      std::string out;
      for (int i = 0; i < 50 && Sh("grep -q packets " + Log(ns), &out) != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      Sh("tail -n 1 " + Log(ns), &out);
      if (!emulators_.empty()) std::cout << ns << ": " << out;
      std::remove(Log(ns).c_str());
    }
    Sh("ip netns del " + a_);
    Sh("ip netns del " + b_);
  }
  const std::string& why_not() const { return why_not_; }
  // How the link between the hosts is slowed, or why it is not.
  const std::string& link() const { return link_; }
  // `cmd` run inside host a or b.
  std::string In(bool on_a, const std::string& cmd) const {
    return "ip netns exec " + (on_a ? a_ : b_) + " " + cmd;
  }
  const std::string& ip(bool on_a) const { return on_a ? ip_a_ : ip_b_; }

 private:
  static constexpr const char* kNetem = "delay 2ms 1ms loss 1%";

  std::string Log(const std::string& ns) const { return "/tmp/" + ns + "-link.log"; }

  // Starts a link emulator in each host on the packets it receives over the veth; says what
  // the link does, or why it is not slowed.
  std::string EmulateLink() {
#ifndef TESSERA_LINK_EMULATOR
    return "no link emulator (libnetfilter-queue was not found at build time)";
#else
    std::string iptables, out;
    for (const char* candidate : {"iptables", "iptables-legacy"}) {
      if (Sh(std::string("command -v ") + candidate) == 0 &&
          Sh("ip netns exec " + a_ + " " + candidate + " -L INPUT -n", &out) == 0) {
        iptables = candidate;
        break;
      }
    }
    if (iptables.empty()) return "no usable iptables: link not slowed";
    for (const std::string& ns : {a_, b_}) {
      const std::string queue = ns == a_ ? "11" : "12";
      if (Sh("ip netns exec " + ns + " " + TESSERA_LINK_EMULATOR + " --queue " + queue +
                 " --delay-ms 2 --jitter-ms 1 --loss 0.01 --seed " + queue + " > " + Log(ns) +
                 " 2>&1 & echo $!",
             &out) != 0) {
        return "the link emulator did not start: " + out;
      }
      emulators_.push_back(out.substr(0, out.find('\n')));
      // It prints its first line once it holds the queue.
      for (int i = 0; i < 100 && Sh("grep -q queue " + Log(ns)) != 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (Sh("grep -q queue " + Log(ns)) != 0) {
        Sh("cat " + Log(ns), &out);
        return "the link emulator could not take its queue: " + out;
      }
      if (Sh("ip netns exec " + ns + " " + iptables + " -A INPUT -i " + ns +
                 " -j NFQUEUE --queue-num " + queue,
             &out) != 0) {
        return "iptables could not queue packets: " + out;
      }
    }
    return "link emulator (NFQUEUE): 2 ms ± 1 ms delay and 1% loss each way";
#endif
  }

  std::string tag_, a_, b_, ip_a_, ip_b_, why_not_, link_;
  std::vector<std::string> emulators_;  // their process ids
  bool created_ = false;
};

// Three namespaces h0, h1, h2 on one bridge (in a fourth namespace, the switch), 10.M.N.1-3:
// three hosts on a LAN. Removed again when the object goes.
class ThreeHosts {
 public:
  ThreeHosts() {
    const int id = static_cast<int>(getpid()) % 60000;
    tag_ = "tt" + std::to_string(id);
    const std::string net =
        "10." + std::to_string(200 + id / 250 % 50) + "." + std::to_string(id % 250) + ".";
    why_not_ = WhyNoNamespaces();
    if (!why_not_.empty()) return;
    const std::string sw = tag_ + "s";
    std::vector<std::string> setup = {"ip netns add " + sw,
                                      "ip -n " + sw + " link add br0 type bridge",
                                      "ip -n " + sw + " link set br0 up"};
    for (int h = 0; h < 3; ++h) {
      const std::string ns = Host(h), port = ns + "p";
      ips_.push_back(net + std::to_string(h + 1));
      for (const std::string& cmd : {
               "ip netns add " + ns,
               "ip link add " + ns + " type veth peer name " + port,
               "ip link set " + ns + " netns " + ns,
               "ip link set " + port + " netns " + sw,
               "ip -n " + sw + " link set " + port + " master br0",
               "ip -n " + sw + " link set " + port + " up",
               "ip -n " + ns + " addr add " + ips_.back() + "/24 dev " + ns,
               "ip -n " + ns + " link set " + ns + " up",
               "ip -n " + ns + " link set lo up",
           }) {
        setup.push_back(cmd);
      }
    }
    for (const std::string& cmd : setup) {
      created_ = true;
      std::string out;
      if (Sh(cmd, &out) != 0) {
        why_not_ = "'" + cmd + "' failed: " + out;
        return;
      }
    }
    // Each host knows the others by name (Name(h)): `ip netns exec` puts /etc/netns/NS/hosts
    // in place of /etc/hosts.
    for (int h = 0; h < 3; ++h) {
      std::filesystem::create_directories("/etc/netns/" + Host(h));
      std::ofstream f("/etc/netns/" + Host(h) + "/hosts");
      f << "127.0.0.1 localhost\n";
      for (int o = 0; o < 3; ++o) f << ips_[static_cast<std::size_t>(o)] << " " << Name(o) << "\n";
    }
  }
  ~ThreeHosts() {
    if (!created_) return;
    for (int h = 0; h < 3; ++h) {
      Sh("ip netns del " + Host(h));
      std::error_code ec;
      std::filesystem::remove_all("/etc/netns/" + Host(h), ec);
    }
    Sh("ip netns del " + tag_ + "s");
  }
  // The host's name, which every host resolves to its address; a command run under it (its own
  // UTS namespace) sees it as the machine's host name.
  std::string Name(int host) const { return Host(host); }
  std::string InNamed(int host, const std::string& cmd) const {
    return In(host, "unshare --uts sh -c 'hostname " + Name(host) + "; " + cmd + "'");
  }
  const std::string& why_not() const { return why_not_; }
  std::string In(int host, const std::string& cmd) const {
    return "ip netns exec " + Host(host) + " " + cmd;
  }
  const std::string& ip(int host) const { return ips_[static_cast<std::size_t>(host)]; }
  // Cuts `host` off the LAN: its port on the switch goes down (as a pulled cable would).
  void Cut(int host) const { Sh("ip -n " + tag_ + "s link set " + Host(host) + "p down"); }
  // The TCP ports that sockets in `host` listen on now (`ss`; nothing else runs in a host).
  std::set<int> ListeningPorts(int host) const {
    std::string out;
    Sh(In(host, "ss -Htln"), &out);
    std::set<int> ports;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream fields(line);
      std::string state, recv_q, send_q, local;
      if (!(fields >> state >> recv_q >> send_q >> local)) continue;
      const auto colon = local.rfind(':');
      if (colon != std::string::npos) ports.insert(std::atoi(local.c_str() + colon + 1));
    }
    return ports;
  }

 private:
  std::string Host(int h) const { return tag_ + "h" + std::to_string(h); }
  std::string tag_, why_not_;
  std::vector<std::string> ips_;
  bool created_ = false;
};

struct FitCase {
  std::string name, fit;  // the fit's flags after the program
};

// A Lasso path, rotation-SGD MF (H blocks move between the workers' processes) and LDA
// (vocabulary blocks likewise), each with 2 workers.
std::vector<FitCase> FitCases(const testing::TempDir& dir, const std::string& base,
                              const std::string& test, const std::string& docword) {
  return {
      {"lasso", " lasso --data " + std::string(TESSERA_SOURCE_DIR) +
                    "/datasets/diabetes/lars_diabetes_x.csv.gz --path 5 --workers 2 --standardize"},
      {"mf", " mf --algorithm sgd --train " + base + " --test " + test +
                 " --rank 10 --epochs 3 --workers 2"},
      {"lda", " lda --corpus " + docword + " --topics 10 --iterations 4 --workers 2 --topics-out " +
                  dir.Path("topics")}};
}

// Writes an rsh agent (what ssh is on a cluster) for the hosts: `sh path HOST ...` runs
// `run(h)` (a shell command line that takes the rest of the arguments) for the host named
// `names[h]`, and an unknown host fails with exit code 255 as ssh does.
void WriteRsh(const std::string& path, const std::vector<std::string>& names,
              const std::function<std::string(int)>& run) {
  std::ofstream r(path);
  r << "#!/bin/sh\nhost=$1\nshift\ncase $host in\n";
  for (std::size_t h = 0; h < names.size(); ++h) {
    r << names[h] << ") exec " << run(static_cast<int>(h)) << " ;;\n";
  }
  r << "esac\necho \"rsh: unknown host $host\" >&2\nexit 255\n";
}

// Each case in one process, then as the shell command `launched(fit, output)` runs it; the two
// outputs must be the same bytes. Returns the launcher's output of the last case.
std::string ExpectLaunchedRunsAreInProcessOnes(
    const testing::TempDir& dir, const std::vector<FitCase>& cases,
    const std::function<std::string(const std::string&, const std::string&)>& launched) {
  std::string out;
  for (const FitCase& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string fit = c.fit + " --quiet --silence-timeout 30";
    const std::string one = dir.Path("one"), many = dir.Path("many");
    EXPECT_EQ(Sh(std::string(TESSERA_CLI) + fit + " --output " + one, &out), 0) << out;
    EXPECT_EQ(Sh("timeout 120 " + launched(fit, many), &out), 0) << out;
    EXPECT_TRUE(Slurp(many) == Slurp(one)) << "the launched run differs from the in-process one";
    EXPECT_EQ(out.find("SECRET"), std::string::npos) << out;
  }
  return out;
}

// The FitCases with process r run by `in_host(r, command)` (its flags completed by
// `flags_of(r)`), each against its one-process run, bit for bit.
void ExpectTheInProcessResults(const std::function<std::string(int, const std::string&)>& in_host,
                               const std::function<std::string(int)>& flags_of,
                               const std::string& rendezvous_ip, int first_port) {
  testing::TempDir dir;
  const std::string cli = TESSERA_CLI;
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  const std::vector<FitCase> cases = FitCases(dir, base, test, docword);
  for (std::size_t c = 0; c < cases.size(); ++c) {
    SCOPED_TRACE(cases[c].name);
    const std::string fit = cases[c].fit + " --quiet --silence-timeout 30";
    const std::string one = dir.Path("one"), many = dir.Path("many");
    std::string out;
    ASSERT_EQ(Sh(cli + fit + " --output " + one, &out), 0) << out;
    const std::string env = "env TESSERA_SIZE=3 TESSERA_RENDEZVOUS=" + rendezvous_ip + ":" +
                            std::to_string(first_port + static_cast<int>(c)) +
                            " TESSERA_SECRET=netns-test-secret-0123456789 ";
    std::vector<std::thread> procs;
    std::vector<int> codes(3, -1);
    std::vector<std::string> outs(3);
    for (int r = 0; r < 3; ++r) {
      const std::string cmd =
          in_host(r, env + "TESSERA_RANK=" + std::to_string(r) + " " + cli + fit + flags_of(r) +
                         (r == 0 ? " --output " + many : std::string()));
      procs.emplace_back([&, r, cmd] { codes[r] = Sh("timeout 120 " + cmd, &outs[r]); });
    }
    for (auto& t : procs) t.join();
    for (int r = 0; r < 3; ++r) ASSERT_EQ(codes[r], 0) << "process " << r << ": " << outs[r];
    EXPECT_TRUE(Slurp(many) == Slurp(one))
        << "the run across hosts differs from the in-process one";
  }
}

// Process 0 (the coordinator) on host a, the two workers' processes on host b, each binding
// its host's address, across the slow, lossy link.
TEST(NetnsTest, RunsAcrossTwoHostsWithDelayAndLossAreTheInProcessOnes) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  TwoHosts hosts;
  if (!hosts.why_not().empty()) GTEST_SKIP() << "no network namespaces: " << hosts.why_not();
  std::cout << "two hosts; " << hosts.link() << "\n";
  ExpectTheInProcessResults([&](int r, const std::string& cmd) { return hosts.In(r == 0, cmd); },
                            [&](int r) { return " --bind " + hosts.ip(r == 0); }, hosts.ip(true),
                            7411);
}

// A process on each of three hosts, every one listening on all interfaces (--bind 0.0.0.0) as
// a user would start them: each tells its peers the address it reaches process 0 from, and
// the listeners of processes 1 and 2 take ports of --port-range.
// The processes of one Lasso run, process r in host r, each started on a thread of its own
// with TESSERA_* variables naming the rendezvous (host 0, `port`) and `flags` after the fit's.
class ThreeProcesses {
 public:
  ThreeProcesses(const ThreeHosts& hosts, int port, const std::string& flags)
      : hosts_(hosts),
        command_(std::string(TESSERA_CLI) + " lasso --data " + TESSERA_SOURCE_DIR +
                 "/datasets/diabetes/lars_diabetes_x.csv.gz --workers 2 --quiet " + flags),
        env_("env TESSERA_SIZE=3 TESSERA_RENDEZVOUS=" + hosts.ip(0) + ":" + std::to_string(port) +
             " TESSERA_SECRET=netns-test-secret-0123456789 ") {}
  ~ThreeProcesses() { Wait(); }
  void Start(int r) {
    threads_.emplace_back([this, r] {
      const auto start = std::chrono::steady_clock::now();
      codes_[r] = Sh(
          "timeout 60 " + hosts_.In(r, env_ + "TESSERA_RANK=" + std::to_string(r) + " " + command_),
          &outs_[r]);
      seconds_[r] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    });
  }
  void Wait() {
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  int code(int r) const { return codes_[r]; }
  const std::string& out(int r) const { return outs_[r]; }
  double seconds(int r) const { return seconds_[r]; }

 private:
  const ThreeHosts& hosts_;
  std::string command_, env_;
  std::vector<std::thread> threads_;
  int codes_[3] = {-1, -1, -1};
  std::string outs_[3];
  double seconds_[3] = {0, 0, 0};
};

// `ss` in each host, polled while the runs go on, sees listeners only on the rendezvous ports
// (host 0) and in the range; and with process 2 held back, process 1's listener is in the range
// and process 0's is the rendezvous port.
TEST(NetnsTest, ThreeHostsListeningEverywhereGiveTheInProcessResults) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  ThreeHosts hosts;
  if (!hosts.why_not().empty()) GTEST_SKIP() << "no network namespaces: " << hosts.why_not();
  const std::string flags = " --bind 0.0.0.0 --port-range 7600-7609";
  auto allowed = [](int host, int port) {
    return (host == 0 && port >= 7511 && port <= 7514) || (port >= 7600 && port <= 7609);
  };
  std::atomic<bool> running{true};
  std::vector<std::set<int>> seen(3);
  std::thread watch([&] {
    while (running.load()) {
      for (int h = 0; h < 3; ++h) {
        const std::set<int> now = hosts.ListeningPorts(h);
        seen[static_cast<std::size_t>(h)].insert(now.begin(), now.end());
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  ExpectTheInProcessResults([&](int r, const std::string& cmd) { return hosts.In(r, cmd); },
                            [&](int) { return flags; }, hosts.ip(0), 7511);
  running = false;
  watch.join();
  for (int h = 0; h < 3; ++h) {
    for (int port : seen[static_cast<std::size_t>(h)]) {
      EXPECT_TRUE(allowed(h, port)) << "host " << h << ": a listener on port " << port;
    }
  }
  // Processes 0 and 1 wait for process 2 (whose listener lives only while it joins): theirs
  // stay open until it comes.
  ThreeProcesses run(hosts, 7514, flags);
  run.Start(0);
  run.Start(1);
  std::set<int> ports0, ports1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((ports0.empty() || ports1.empty()) && std::chrono::steady_clock::now() < deadline) {
    ports0 = hosts.ListeningPorts(0);
    ports1 = hosts.ListeningPorts(1);
  }
  run.Start(2);
  run.Wait();
  for (int r = 0; r < 3; ++r) EXPECT_EQ(run.code(r), 0) << run.out(r);
  EXPECT_EQ(ports0, std::set<int>{7514});
  ASSERT_EQ(ports1.size(), 1u);
  EXPECT_TRUE(allowed(1, *ports1.begin())) << "process 1 listens on " << *ports1.begin();
}

// A host whose link is cut during set-up: every process of the run stops with an error that
// names what is missing within the connect timeout, none hangs.
TEST(NetnsTest, AHostCutOffDuringSetUpFailsTheRunWithinTheConnectTimeout) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  ThreeHosts hosts;
  if (!hosts.why_not().empty()) GTEST_SKIP() << "no network namespaces: " << hosts.why_not();
  ThreeProcesses run(hosts, 7521, " --bind 0.0.0.0 --connect-timeout 5");
  run.Start(0);
  run.Start(1);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  hosts.Cut(2);
  run.Start(2);
  run.Wait();
  for (int r = 0; r < 3; ++r) {
    SCOPED_TRACE("process " + std::to_string(r) + ": " + run.out(r));
    EXPECT_EQ(run.code(r), 1);  // an error of ours, not the 124 of `timeout`
    EXPECT_LT(run.seconds(r), 5 + 3.0);
    EXPECT_THAT(run.out(r), ::testing::HasSubstr("error"));
  }
  EXPECT_THAT(run.out(0), ::testing::HasSubstr("process 2 did not connect within 5000 ms"));
  EXPECT_THAT(run.out(1), ::testing::HasSubstr(
                              "process 0 ended the set-up: process 0: process 2 did not connect"));
  EXPECT_THAT(run.out(2), ::testing::HasSubstr(hosts.ip(0)));
}

// mpirun with a hostfile of the three hosts' names starts a process on each (its rsh agent a
// script that runs Open MPI's daemon in the host's namespace under the host's name, as ssh
// would); with no Tessera variable set, rank 0's host comes from the launcher's PMIx server and
// the results are the in-process ones.
TEST(NetnsTest, MpirunAcrossThreeHostsNeedsNothingExported) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) {
    if (testing::InCi()) FAIL() << "mpirun is missing: scripts/install-deps.sh installs it";
    GTEST_SKIP() << "mpirun not installed (apt-get install openmpi-bin)";
  }
  ThreeHosts hosts;
  if (!hosts.why_not().empty()) GTEST_SKIP() << "no network namespaces: " << hosts.why_not();
  testing::TempDir dir;
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  const std::vector<FitCase> cases = FitCases(dir, base, test, docword);
  const std::string hostfile = dir.Path("hosts"), rsh = dir.Path("rsh.sh"), home = dir.Path("home");
  std::filesystem::create_directories(home);
  std::vector<std::string> names;
  for (int i = 0; i < 3; ++i) names.push_back(hosts.Name(i));
  {
    std::ofstream h(hostfile);
    for (const std::string& name : names) h << name << " slots=1\n";
  }
  WriteRsh(rsh, names,
           [&](int i) { return hosts.In(i, "unshare --uts sh -c \"hostname $host; $*\""); });
  std::filesystem::permissions(rsh, std::filesystem::perms::owner_all);
  ExpectLaunchedRunsAreInProcessOnes(
      dir, cases, [&](const std::string& fit, const std::string& output) {
        return hosts.InNamed(0,
                             "env -u TESSERA_RENDEZVOUS -u TESSERA_SECRET -u TESSERA_SECRET_FILE "
                             "-u TESSERA_SECRET_DIR -u TESSERA_PORT HOME=" +
                                 home + " mpirun --allow-run-as-root -n 3 --hostfile " + hostfile +
                                 " --mca plm_rsh_agent " + rsh + " " + TESSERA_CLI + fit +
                                 " --output " + output);
      });
}

// `tessera launch --hostfile` with a host per line (their addresses) starts a process on each
// through --rsh (here a script that runs a shell command line in the host's namespace, as ssh
// would on a host): each changes to the launcher's directory, takes the secret from its
// standard input, and the run gives the in-process results.
TEST(NetnsTest, LaunchWithAHostfileRunsAProcessOnEachHost) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  ThreeHosts hosts;
  if (!hosts.why_not().empty()) GTEST_SKIP() << "no network namespaces: " << hosts.why_not();
  testing::TempDir dir;
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  TESSERA_REQUIRE_DATA(docword, "uci-bow-kos/docword.kos.txt.gz");
  const std::vector<FitCase> cases = FitCases(dir, base, test, docword);
  const std::string hostfile = dir.Path("hosts"), rsh = dir.Path("rsh.sh");
  std::ofstream(hostfile) << "# three hosts\n"
                          << hosts.ip(0) << "\n"
                          << hosts.ip(1) << " slots=1\n"
                          << hosts.ip(2) << "\n";
  WriteRsh(rsh, {hosts.ip(0), hosts.ip(1), hosts.ip(2)},
           [&](int i) { return hosts.In(i, "sh -c \"$1\""); });
  const std::string cli = TESSERA_CLI;
  ExpectLaunchedRunsAreInProcessOnes(
      dir, cases, [&](const std::string& fit, const std::string& output) {
        return "sh -c 'cd " + dir.Path("") + " && " + cli + " launch --hostfile " + hostfile +
               " --rsh \"sh " + rsh + "\" -- " + cli + fit + " --output " + output + "'";
      });
  // A host the rsh cannot reach fails the run with its message.
  std::ofstream(hostfile) << hosts.ip(0) << "\n10.255.255.254\n";
  std::string out;
  EXPECT_NE(Sh("cd " + dir.Path("") + " && timeout 60 " + cli + " launch --grace 2 --hostfile " +
                   hostfile + " --rsh 'sh " + rsh + "' -- " + cli + cases[0].fit +
                   " --quiet --silence-timeout 5",
               &out),
            0);
  EXPECT_NE(out.find("rsh: unknown host 10.255.255.254"), std::string::npos) << out;
  EXPECT_NE(out.find("tessera launch: process 1 exited with code 255"), std::string::npos) << out;
}

}  // namespace
}  // namespace tessera
