// Several hosts on one machine: two network namespaces joined by a veth pair, each with its
// own address, stand for two machines; with `tc netem` (where the kernel has it) the link
// gets delay and loss. Process 0 runs on host A, processes 1 and 2 on host B, each binding
// its host's address, and the Lasso path is bit for bit the in-process one. Needs root and
// iproute2; skipped with the reason otherwise.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/test_util.h"

namespace tessera {
namespace {

// Runs `cmd` through the shell; returns its exit code and, in `out`, what it printed.
int Sh(const std::string& cmd, std::string* out = nullptr) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  std::string text;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  const int status = pclose(p);
  if (out) *out = text;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
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
    if (geteuid() != 0) {
      why_not_ = "not root";
      return;
    }
    if (Sh("command -v ip") != 0) {
      why_not_ = "no ip (iproute2)";
      return;
    }
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
    // Delay and loss both ways, where the kernel has netem.
    for (const auto& [ns, dev] : {std::pair{a_, a_}, std::pair{b_, b_}}) {
      std::string out;
      if (Sh("ip netns exec " + ns + " tc qdisc add dev " + dev +
                 " root netem delay 2ms 1ms loss 1%",
             &out) != 0) {
        netem_ = "no netem (" + out.substr(0, out.find('\n')) + ")";
      }
    }
    if (netem_.empty()) netem_ = "netem: 2 ms ± 1 ms delay and 1% loss each way";
  }
  ~TwoHosts() {
    if (!created_) return;
    Sh("ip netns del " + a_);
    Sh("ip netns del " + b_);
  }
  const std::string& why_not() const { return why_not_; }
  const std::string& netem() const { return netem_; }
  // `cmd` run inside host a or b.
  std::string In(bool on_a, const std::string& cmd) const {
    return "ip netns exec " + (on_a ? a_ : b_) + " " + cmd;
  }
  const std::string& ip(bool on_a) const { return on_a ? ip_a_ : ip_b_; }

 private:
  std::string tag_, a_, b_, ip_a_, ip_b_, why_not_, netem_;
  bool created_ = false;
};

TEST(NetnsTest, APathAcrossTwoHostsWithDelayAndLossIsTheInProcessOne) {
  TwoHosts hosts;
  if (!hosts.why_not().empty()) GTEST_SKIP() << "no network namespaces: " << hosts.why_not();
  std::cout << "two hosts; " << hosts.netem() << "\n";
  testing::TempDir dir;
  const std::string cli = TESSERA_CLI;
  const std::string fit = " lasso --data " + std::string(TESSERA_SOURCE_DIR) +
                          "/datasets/diabetes/lars_diabetes_x.csv.gz --path 5 --workers 2 "
                          "--standardize --quiet --silence-timeout 30";
  const std::string one = dir.Path("one.csv"), many = dir.Path("many.csv");
  std::string out;
  ASSERT_EQ(Sh(cli + fit + " --output " + one, &out), 0) << out;
  // Process 0 on host a (the rendezvous), 1 and 2 on host b.
  const std::string env = "env TESSERA_SIZE=3 TESSERA_RENDEZVOUS=" + hosts.ip(true) +
                          ":7411 TESSERA_SECRET=netns-test-secret-0123456789 ";
  std::vector<std::thread> procs;
  std::vector<int> codes(3, -1);
  std::vector<std::string> outs(3);
  for (int r = 0; r < 3; ++r) {
    const bool on_a = r == 0;
    const std::string cmd =
        hosts.In(on_a, env + "TESSERA_RANK=" + std::to_string(r) + " " + cli + fit + " --bind " +
                           hosts.ip(on_a) + (r == 0 ? " --output " + many : std::string()));
    procs.emplace_back([&, r, cmd] { codes[r] = Sh("timeout 120 " + cmd, &outs[r]); });
  }
  for (auto& t : procs) t.join();
  for (int r = 0; r < 3; ++r) ASSERT_EQ(codes[r], 0) << "process " << r << ": " << outs[r];
  EXPECT_EQ(Slurp(many), Slurp(one)) << "the path across hosts differs from the in-process one";
}

}  // namespace
}  // namespace tessera
