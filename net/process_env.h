// Which process of a multi-process run this is, from the launcher's environment:
//   mpirun (Open MPI)   OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE
//   srun (Slurm)        SLURM_PROCID, SLURM_NTASKS
//   tessera launch      TESSERA_RANK, TESSERA_SIZE
// and where rank 0's rendezvous listens: TESSERA_RENDEZVOUS=host:port (tessera launch sets
// it). Without it, srun's is the first node of the step (SLURM_STEP_NODELIST) and mpirun's,
// when every process is on this host, 127.0.0.1; the port is derived from the job id
// (PortForJob; TESSERA_PORT overrides it). mpirun across hosts needs TESSERA_RENDEZVOUS.
// TESSERA_* wins when several are set. No launcher variables at all means a single process.
// `tessera launch` also sets TESSERA_LOCAL_SIZE (every process is on this machine).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tessera/core/status.h"

namespace tessera::net {

struct ProcessInfo {
  int rank = 0;
  int size = 1;
  std::string launcher = "none";  // "tessera", "mpirun", "srun" or "none"
  std::string rendezvous_host;    // empty for a single process
  std::uint16_t rendezvous_port = 0;
  // Processes of this run on this machine (TESSERA_LOCAL_SIZE, OMPI_COMM_WORLD_LOCAL_SIZE or
  // an integer SLURM_NTASKS_PER_NODE; else 1): they share its cores.
  int local_size = 1;
  // What tells this run from another started with the same rendezvous and secret: the
  // launcher's job id (TESSERA_RUN_ID from tessera launch, fresh for each start;
  // SLURM_JOB_ID.SLURM_STEP_ID under srun; PMIX_NAMESPACE under mpirun), or empty. The
  // handshake binds it with the number of processes: a process of another run is refused.
  std::string run_id = "";
  bool multi_process() const { return size > 1; }
};

// The first host of a Slurm host list: "node[01-04,07],gpu5" -> "node01".
std::string FirstSlurmHost(std::string_view list);
// A port for a job id, the same in every process of the job: kJobPortBase + a hash of the
// id modulo kJobPorts.
inline constexpr int kJobPortBase = 20000, kJobPorts = 30000;
std::uint16_t PortForJob(std::string_view job);

// Reads the variables above; errors name the variable and what is wrong with it.
StatusOr<ProcessInfo> ProcessFromEnvironment();

// A TCP port, 1..65535, as the whole of `text`; false (and `port` unchanged) otherwise.
bool ParsePort(std::string_view text, std::uint16_t& port);

// Parses "host:port" (host may be a name, an IPv4 address or [IPv6]); `what` names the source
// in errors.
Status ParseHostPort(const std::string& text, const std::string& what, std::string& host,
                     std::uint16_t& port);

}  // namespace tessera::net
