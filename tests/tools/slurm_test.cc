// A real Slurm: a one-node cluster from Debian's packages (munged, slurmctld, slurmd) started in
// a temporary directory with its own ports and munge key, and stopped again. `srun -n 3 -O
// tessera ...` and `sbatch --wait` of examples/slurm/tessera.sbatch, with no Tessera variable
// set, give the in-process results. Needs root and the packages (scripts/install-deps.sh
// installs them); skipped with the reason otherwise, and failed in CI when they are missing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "tessera/net/tcp_transport.h"
#include "tests/test_util.h"

namespace tessera {
namespace {

using testing::Sh;
using testing::Slurp;

// munged, slurmctld and slurmd for one node (this host, 2 CPUs, tasks may share them), all
// files under a temporary directory; `Run` runs a command with SLURM_CONF pointing there.
class OneNodeSlurm {
 public:
  OneNodeSlurm() {
    if (geteuid() != 0) {
      why_not_ = "not root";
      return;
    }
    for (const char* tool : {"munged", "slurmctld", "slurmd", "srun", "sbatch", "sinfo"}) {
      if (Sh(std::string("command -v ") + tool) != 0) {
        why_not_ = std::string("no ") + tool + " (apt-get install munge slurmctld slurmd)";
        return;
      }
    }
    const std::string d = dir_.Path("slurm");
    std::filesystem::create_directories(d + "/state");
    std::filesystem::create_directories(d + "/spool");
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    const auto ctld = net::FreePort(), slurmd = net::FreePort();
    if (!ctld.ok() || !slurmd.ok() || *ctld == *slurmd) {
      why_not_ = "no free ports";
      return;
    }
    std::ofstream(d + "/slurm.conf")
        << "ClusterName=tessera\nSlurmctldHost=" << host
        << "\nSlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nAuthInfo=socket=" << d
        << "/munge.socket\nCredType=cred/munge\nSelectType=select/cons_tres\n"
           "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nMpiDefault=none\n"
           "ReturnToService=2\nStateSaveLocation="
        << d << "/state\nSlurmdSpoolDir=" << d << "/spool\nSlurmctldPidFile=" << d
        << "/slurmctld.pid\nSlurmdPidFile=" << d << "/slurmd.pid\nSlurmctldPort=" << *ctld
        << "\nSlurmdPort=" << *slurmd << "\nSlurmctldLogFile=" << d
        << "/slurmctld.log\nSlurmdLogFile=" << d << "/slurmd.log\nNodeName=" << host
        << " CPUs=2 State=UNKNOWN\nPartitionName=tessera Nodes=" << host
        << " Default=YES OverSubscribe=FORCE:4 MaxTime=INFINITE State=UP\n";
    conf_ = d + "/slurm.conf";
    std::string out;
    const std::vector<std::string> start = {
        "dd if=/dev/urandom of=" + d + "/munge.key bs=1024 count=1 && chmod 600 " + d +
            "/munge.key",
        "munged --key-file=" + d + "/munge.key --socket=" + d + "/munge.socket --pid-file=" + d +
            "/munged.pid --log-file=" + d + "/munged.log --seed-file=" + d + "/munged.seed -f",
        "slurmctld -f " + conf_,
        "slurmd -f " + conf_,
    };
    for (const std::string& cmd : start) {
      if (Sh(cmd, &out) != 0) {
        why_not_ = "'" + cmd + "' failed: " + out;
        return;
      }
      started_ = true;
    }
    // The node comes up idle within seconds.
    for (int i = 0; i < 150; ++i) {
      if (Run("sinfo -h -o %T", &out) == 0 && out.find("idle") != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    why_not_ = "the node did not come up: " + out + Slurp(d + "/slurmctld.log");
  }
  ~OneNodeSlurm() {
    if (!started_) return;
    const std::string d = dir_.Path("slurm");
    for (const char* daemon : {"slurmd", "slurmctld", "munged"}) {
      Sh("kill $(cat " + d + "/" + daemon + ".pid) 2>/dev/null");
    }
    for (const char* daemon : {"slurmd", "slurmctld", "munged"}) {
      for (int i = 0; i < 50 && Sh("kill -0 $(cat " + d + "/" + daemon + ".pid)") == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  }
  const std::string& why_not() const { return why_not_; }
  // `cmd` with this cluster's configuration and no Tessera variable; HOME is a fresh directory
  // (the user's secret file is made there).
  int Run(const std::string& cmd, std::string* out = nullptr) const {
    const std::string home = dir_.Path("home");
    std::filesystem::create_directories(home);
    return Sh(
        "env -u TESSERA_RENDEZVOUS -u TESSERA_SECRET -u TESSERA_SECRET_FILE "
        "-u TESSERA_SECRET_DIR -u TESSERA_RANK -u TESSERA_SIZE SLURM_CONF=" +
            conf_ + " HOME=" + home + " timeout 120 " + cmd,
        out);
  }
  std::string Path(const std::string& name) const { return dir_.Path(name); }

 private:
  testing::TempDir dir_;
  std::string conf_, why_not_;
  bool started_ = false;
};

TEST(SlurmTest, SrunAndSbatchWithNothingSetGiveTheInProcessResults) {
  TESSERA_SKIP_IF_SANITIZED_VARIANT();
  OneNodeSlurm slurm;
  if (!slurm.why_not().empty()) {
    if (testing::InCi() && slurm.why_not().rfind("no ", 0) == 0) FAIL() << slurm.why_not();
    GTEST_SKIP() << "no Slurm: " << slurm.why_not();
  }
  TESSERA_REQUIRE_DATA(base, "movielens-100k/u1.base.gz");
  TESSERA_REQUIRE_DATA(test, "movielens-100k/u1.test.gz");
  const std::string cli = TESSERA_CLI;
  struct Case {
    std::string name, fit;
  };
  const std::vector<Case> cases = {
      {"lasso", "lasso --data " + std::string(TESSERA_SOURCE_DIR) +
                    "/datasets/diabetes/lars_diabetes_x.csv.gz --path 5 --workers 2 --quiet"},
      {"mf", "mf --algorithm sgd --train " + base + " --test " + test +
                 " --rank 10 --epochs 3 --workers 2 --quiet"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string one = slurm.Path(c.name + ".one"), many = slurm.Path(c.name + ".srun");
    std::string out;
    ASSERT_EQ(Sh(cli + " " + c.fit + " --output " + one, &out), 0) << out;
    ASSERT_EQ(slurm.Run("srun -n 3 -O " + cli + " " + c.fit + " --output " + many, &out), 0) << out;
    EXPECT_TRUE(Slurp(many) == Slurp(one)) << "srun's result differs from the in-process one";
  }
  // The shipped batch script, as a user submits it.
  const std::string one = slurm.Path("lasso.one"), batch = slurm.Path("lasso.sbatch");
  std::string out;
  ASSERT_EQ(slurm.Run("sbatch --wait -O -n 3 --chdir " + slurm.Path("") +
                          " --export ALL,TESSERA=" + cli + " " + TESSERA_SOURCE_DIR +
                          "/examples/slurm/tessera.sbatch " + cases[0].fit + " --output " + batch,
                      &out),
            0)
      << out;
  EXPECT_TRUE(Slurp(batch) == Slurp(one)) << "the batch job's result differs: " << out;
}

}  // namespace
}  // namespace tessera
