// Rank and size from mpirun, srun or tessera launch; the rendezvous address; clear errors.
#include "tessera/net/process_env.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

namespace tessera::net {
namespace {

using ::testing::HasSubstr;

class ProcessEnvTest : public ::testing::Test {
 protected:
  void SetUp() override { Clear(); }
  void TearDown() override { Clear(); }
  static void Clear() {
    for (const char* v :
         {"TESSERA_RANK", "TESSERA_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
          "SLURM_PROCID", "SLURM_NTASKS", "TESSERA_RENDEZVOUS", "TESSERA_PORT",
          "TESSERA_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_NAMESPACE",
          "OMPI_MCA_ess_base_jobid", "SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_STEP_NODELIST",
          "SLURM_JOB_NODELIST", "SLURM_NTASKS_PER_NODE", "TESSERA_RUN_ID"}) {
      unsetenv(v);
    }
  }
};

TEST_F(ProcessEnvTest, NoLauncherIsOneProcess) {
  auto p = ProcessFromEnvironment();
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->rank, 0);
  EXPECT_EQ(p->size, 1);
  EXPECT_EQ(p->launcher, "none");
  EXPECT_FALSE(p->multi_process());
}

TEST_F(ProcessEnvTest, EachLauncherIsRecognized) {
  setenv("TESSERA_RENDEZVOUS", "127.0.0.1:4100", 1);
  setenv("OMPI_COMM_WORLD_RANK", "2", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  auto p = ProcessFromEnvironment();
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->launcher, "mpirun");
  EXPECT_EQ(p->rank, 2);
  EXPECT_EQ(p->size, 3);
  EXPECT_EQ(p->rendezvous_host, "127.0.0.1");
  EXPECT_EQ(p->rendezvous_port, 4100);
  Clear();
  setenv("TESSERA_RENDEZVOUS", "node7:5000", 1);
  setenv("SLURM_PROCID", "0", 1);
  setenv("SLURM_NTASKS", "4", 1);
  p = ProcessFromEnvironment();
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->launcher, "srun");
  EXPECT_EQ(p->size, 4);
  EXPECT_EQ(p->rendezvous_host, "node7");
  // tessera launch's variables win over a surrounding mpirun's.
  setenv("TESSERA_RANK", "1", 1);
  setenv("TESSERA_SIZE", "2", 1);
  setenv("TESSERA_RENDEZVOUS", "[::1]:6000", 1);
  p = ProcessFromEnvironment();
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->launcher, "tessera");
  EXPECT_EQ(p->rank, 1);
  EXPECT_EQ(p->rendezvous_host, "::1");
  EXPECT_EQ(p->rendezvous_port, 6000);
}

// Without TESSERA_RENDEZVOUS the job says where process 0 listens: srun's first node, mpirun's
// own host when every process is on it, a port from the job id.
TEST_F(ProcessEnvTest, WithoutARendezvousTheJobSaysWhere) {
  setenv("OMPI_COMM_WORLD_RANK", "1", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "3", 1);
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3", 1);
  setenv("PMIX_NAMESPACE", "prterun-host-4242@1", 1);
  auto p = ProcessFromEnvironment();
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->rendezvous_host, "127.0.0.1");
  EXPECT_EQ(p->rendezvous_port, PortForJob("prterun-host-4242@1"));
  EXPECT_GE(p->rendezvous_port, kJobPortBase);
  EXPECT_LT(p->rendezvous_port, kJobPortBase + kJobPorts);
  EXPECT_NE(PortForJob("prterun-host-4242@1"), PortForJob("prterun-host-4243@1"));
  // Across hosts the launcher's PMIx server says where rank 0 runs; without one, an error.
  setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "2", 1);
  EXPECT_THAT(ProcessFromEnvironment().status().message(),
              HasSubstr("the launcher's PMIx server, which did not answer"));
  Clear();
  setenv("SLURM_PROCID", "2", 1);
  setenv("SLURM_NTASKS", "4", 1);
  setenv("SLURM_JOB_ID", "77", 1);
  setenv("SLURM_STEP_ID", "0", 1);
  setenv("SLURM_JOB_NODELIST", "other[1-9]", 1);
  setenv("SLURM_STEP_NODELIST", "node[03-04],gpu1", 1);
  p = ProcessFromEnvironment();
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_EQ(p->rendezvous_host, "node03");
  EXPECT_EQ(p->rendezvous_port, PortForJob("77.0"));
  setenv("TESSERA_PORT", "9000", 1);
  EXPECT_EQ(ProcessFromEnvironment()->rendezvous_port, 9000);
  setenv("TESSERA_PORT", "70000", 1);
  EXPECT_THAT(ProcessFromEnvironment().status().message(), HasSubstr("TESSERA_PORT"));
}

TEST(SlurmHostListTest, TheFirstHostIsTheFirstNameWithItsFirstNumber) {
  EXPECT_EQ(FirstSlurmHost("c1"), "c1");
  EXPECT_EQ(FirstSlurmHost("c1,c2"), "c1");
  EXPECT_EQ(FirstSlurmHost("n[1-3]"), "n1");
  EXPECT_EQ(FirstSlurmHost("node[007,009-012]"), "node007");
  EXPECT_EQ(FirstSlurmHost("rack1-n[05-06]x,gpu[1-2]"), "rack1-n05x");
  EXPECT_EQ(FirstSlurmHost("a,b[1-2]"), "a");
}

TEST_F(ProcessEnvTest, BadValuesNameTheVariable) {
  setenv("TESSERA_RANK", "1", 1);
  EXPECT_THAT(ProcessFromEnvironment().status().message(),
              HasSubstr("TESSERA_SIZE is not set but TESSERA_RANK is"));
  setenv("TESSERA_SIZE", "two", 1);
  EXPECT_THAT(ProcessFromEnvironment().status().message(),
              HasSubstr("TESSERA_SIZE='two': expected an integer >= 1"));
  setenv("TESSERA_SIZE", "1", 1);
  EXPECT_THAT(ProcessFromEnvironment().status().message(),
              HasSubstr("TESSERA_RANK=1 is not below TESSERA_SIZE=1"));
  setenv("TESSERA_SIZE", "2", 1);
  EXPECT_THAT(ProcessFromEnvironment().status().message(),
              HasSubstr("needs TESSERA_RENDEZVOUS=host:port"));
  for (const char* bad : {"localhost", "localhost:", ":80", "h:0", "h:70000", "[::1:80"}) {
    setenv("TESSERA_RENDEZVOUS", bad, 1);
    EXPECT_THAT(ProcessFromEnvironment().status().message(), HasSubstr("TESSERA_RENDEZVOUS="))
        << bad;
  }
}

}  // namespace
}  // namespace tessera::net
