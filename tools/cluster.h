// Multi-process runs of the tessera commands. Started by mpirun, srun or `tessera launch`,
// every process runs the same command line; the launcher's environment (net/process_env.h)
// says which process this is. Process 0 hosts the coordinator (or the driver) and is the one
// that prints and writes files; the others compute and exit 0 when the run is done.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "tessera/core/status.h"
#include "tessera/core/transport.h"
#include "tessera/net/process_env.h"
#include "tessera/net/tcp_transport.h"

namespace tessera {

struct ClusterFlags {
  std::string bind;        // empty: 127.0.0.1 for a loopback rendezvous, else 0.0.0.0
  std::string advertise;   // empty: derived (net::TcpOptions::advertise)
  std::string port_range;  // "A-B"; empty: the kernel's choice
  std::uint32_t max_frame_bytes = net::kDefaultMaxFrameBytes;
  bool insecure = false;        // frames after the handshake authenticated but not encrypted
  double connect_timeout = 30;  // seconds, for the whole set-up
  double silence_timeout = 10;  // seconds without a frame or heartbeat from a process
  // Not a flag: what every process of the run must agree on (the command and its options but
  // for the per-host ones above), bound into every handshake so that processes started with
  // different options refuse each other instead of waiting for what never comes.
  std::string binding;
};

// --bind, --advertise, --port-range, --max-frame-bytes, --insecure, --connect-timeout,
// --silence-timeout (group "Multi-process").
void AddClusterFlags(CLI::App& cmd, ClusterFlags& flags);
// "A-B" (--port-range) as its two ports.
StatusOr<std::pair<std::uint16_t, std::uint16_t>> ParsePortRange(const std::string& text);

// Rank r of `ranks` endpoints -> the process that hosts it, for `processes` processes.
using Placement = std::function<int(int rank, int processes)>;
// Rank 0 on process 0, rank r >= 1 on process r mod N: with N processes and N-1 workers the
// coordinator has a process of its own; with more workers process 0 takes some as well.
int CoordinatorAlone(int rank, int processes);

// Prints "tessera: error: <message>" ("tessera: process i: error: ..." in a multi-process
// run) to stderr, remembers it for Cluster::Finish, and returns 1: `return Fail(status);`.
int Fail(const Status& status);
// The last message Fail printed, or "".
const std::string& LastError();

class Cluster;

// The commands that spread a model-parallel run's coordinator and `workers` workers, or a
// data-parallel run's driver, `servers` shards and `workers` workers, over the launcher's
// processes: joins the cluster (CoordinatorAlone), sizes the fiber pool (`threads`), runs `run`
// and finishes the cluster with its exit code. `command` names the command ("mf").
int RunOnCluster(const std::string& command, bool data_parallel, const ClusterFlags& flags,
                 int servers, int workers, int threads, const std::function<int(Cluster&)>& run);

class Cluster {
 public:
  // Reads the launcher's environment. One process: no transport (the engines then use their
  // in-process one). Several: the shared secret from TESSERA_SECRET / TESSERA_SECRET_FILE, a
  // TCP transport for `ranks` endpoints placed by `place`, connected to every peer. Every
  // process must host at least one rank; `what` names the endpoints in that error.
  static StatusOr<std::unique_ptr<Cluster>> Join(const ClusterFlags& flags, int ranks,
                                                 const Placement& place, const std::string& what);
  // Without a launcher: a single process.
  Cluster() = default;
  ~Cluster();

  bool leader() const { return process_.rank == 0; }
  bool multi_process() const { return process_.multi_process(); }
  const net::ProcessInfo& process() const { return process_; }
  // Fiber threads for this process: `requested` if > 0, else this machine's cores shared by
  // the run's processes on it (an idle fiber thread spins briefly, and processes that
  // oversubscribe the cores wait on each other's spinning).
  int Threads(int requested) const;
  std::shared_ptr<Transport> transport() const { return transport_; }
  // Ends this process's part of the run: with exit code 0 it leaves cleanly (waiting for the
  // peers to finish too); otherwise it tells the peers `error`. Returns the exit code, 1 if
  // a clean leave found a peer lost.
  int Finish(int code, const std::string& error);

 private:
  net::ProcessInfo process_;
  std::shared_ptr<net::TcpTransport> tcp_;
  std::shared_ptr<Transport> transport_;
  bool finished_ = false;
};

}  // namespace tessera
