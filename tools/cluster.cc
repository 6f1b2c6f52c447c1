#include "tessera/tools/cluster.h"

#include <cmath>
#include <iostream>
#include <thread>
#include <tuple>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"
#include "tessera/net/auth.h"

namespace tessera {

void AddClusterFlags(CLI::App& cmd, ClusterFlags& f) {
  const std::string g = "Multi-process (mpirun, srun, tessera launch)";
  cmd.add_option("--bind", f.bind,
                 "Address or host name this process listens on; 0.0.0.0 or :: for every "
                 "interface (peers are then told the address this process reaches process 0 "
                 "from). Default: 127.0.0.1 when the rendezvous is on this host's loopback, "
                 "else 0.0.0.0")
      ->group(g);
  cmd.add_option("--advertise", f.advertise,
                 "Address or host name peers should dial to reach this process (default: the "
                 "bound address, or with 0.0.0.0 the one this process reaches process 0 from)")
      ->group(g);
  cmd.add_option("--port-range", f.port_range,
                 "Ports A-B the listeners of processes 1.. take (process 0 listens on the "
                 "rendezvous port); default: any free port")
      ->group(g);
  cmd.add_option("--max-frame-bytes", f.max_frame_bytes,
                 "Largest frame accepted from a peer; a bigger one fails the run")
      ->capture_default_str()
      ->group(g);
  cmd.add_flag("--insecure", f.insecure,
               "Send frames after the (still mutual) handshake authenticated but not "
               "encrypted: anyone on the path can read them, none can alter or inject one; for "
               "a network no one else can listen on; every process must be given it")
      ->group(g);
  cmd.add_option("--connect-timeout", f.connect_timeout,
                 "Seconds for every process to join and connect")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--silence-timeout", f.silence_timeout,
                 "Seconds without a word from a process before it counts as lost")
      ->capture_default_str()
      ->group(g);
}

StatusOr<std::pair<std::uint16_t, std::uint16_t>> ParsePortRange(const std::string& text) {
  const auto bad = [&] {
    return InvalidArgument("--port-range '" + text + "': expected A-B with 1 <= A <= B <= 65535");
  };
  const auto dash = text.find('-');
  std::uint16_t a = 0, b = 0;
  if (dash == std::string::npos || !net::ParsePort(std::string_view(text).substr(0, dash), a) ||
      !net::ParsePort(std::string_view(text).substr(dash + 1), b) || a > b) {
    return bad();
  }
  return std::pair{a, b};
}

namespace {
int g_process = -1;  // this process's index in a multi-process run
std::string g_last_error;
}  // namespace

int Fail(const Status& status) {
  g_last_error = status.message();
  ClearProgressLine();
  // One write, so that the lines of processes sharing a terminal or log do not interleave.
  const std::string line =
      "tessera: " +
      (g_process >= 0 ? "process " + std::to_string(g_process) + ": " : std::string()) +
      "error: " + status.message() + "\n";
  std::cerr << line << std::flush;
  return 1;
}

const std::string& LastError() { return g_last_error; }

int CoordinatorAlone(int rank, int processes) { return rank == 0 ? 0 : rank % processes; }

int RunOnCluster(const std::string& command, bool data_parallel, const ClusterFlags& flags,
                 int servers, int workers, int threads, const std::function<int(Cluster&)>& run) {
  (void)command;
  // Model-parallel: the coordinator and the workers; data-parallel: the driver, the shards and
  // the workers.
  if (!data_parallel) servers = 0;
  auto cluster =
      Cluster::Join(flags, 1 + servers + workers, CoordinatorAlone,
                    (data_parallel ? "--servers " + std::to_string(servers) + " " : std::string()) +
                        "--workers " + std::to_string(workers));
  if (!cluster.ok()) return Fail(cluster.status());
  Cluster& c = **cluster;
  FiberPool::Global(c.Threads(threads));
  return c.Finish(run(c), LastError());
}

namespace {
std::chrono::milliseconds Millis(double seconds) {
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(seconds * 1000)));
}
}  // namespace

StatusOr<std::unique_ptr<Cluster>> Cluster::Join(const ClusterFlags& flags, int ranks,
                                                 const Placement& place, const std::string& what) {
  auto cluster = std::make_unique<Cluster>();
  TESSERA_ASSIGN_OR_RETURN(cluster->process_, net::ProcessFromEnvironment());
  const net::ProcessInfo& me = cluster->process_;
  if (!me.multi_process()) return cluster;
  g_process = me.rank;
  if (!(flags.connect_timeout > 0) || !(flags.silence_timeout >= 1)) {
    return InvalidArgument("--connect-timeout must be > 0 and --silence-timeout at least 1");
  }
  std::vector<int> process_of_rank(static_cast<std::size_t>(ranks));
  std::vector<int> hosted(static_cast<std::size_t>(me.size), 0);
  for (int r = 0; r < ranks; ++r) {
    process_of_rank[static_cast<std::size_t>(r)] = place(r, me.size);
    ++hosted[static_cast<std::size_t>(process_of_rank[static_cast<std::size_t>(r)])];
  }
  for (int p = 0; p < me.size; ++p) {
    if (hosted[static_cast<std::size_t>(p)] == 0) {
      return InvalidArgument("a " + std::to_string(me.size) + "-process run with " + what +
                             " leaves process " + std::to_string(p) +
                             " without work: use fewer processes or more workers");
    }
  }
  net::TcpOptions o;
  // By default a run whose rendezvous is this host's loopback stays on it (on the rendezvous
  // address itself, which process 0 listens on); any other listens on every interface and tells
  // its peers the address it reaches process 0 from.
  const std::string& rv = me.rendezvous_host;
  const bool loopback = rv == "localhost" || rv == "::1" || rv.rfind("127.", 0) == 0;
  o.bind = !flags.bind.empty() ? flags.bind
           : !loopback         ? "0.0.0.0"
           : rv == "localhost" ? "127.0.0.1"
                               : rv;
  o.advertise = flags.advertise;
  o.run_binding = flags.binding;
  if (!flags.port_range.empty()) {
    TESSERA_ASSIGN_OR_RETURN(std::tie(o.port_min, o.port_max), ParsePortRange(flags.port_range));
  }
  o.max_frame_bytes = flags.max_frame_bytes;
  o.encrypt_frames = !flags.insecure;
  o.connect_timeout = Millis(flags.connect_timeout);
  o.silence_timeout = Millis(flags.silence_timeout);
  o.heartbeat_every = std::min(o.heartbeat_every, o.silence_timeout / 4);
  TESSERA_ASSIGN_OR_RETURN(o.secret, net::SecretFromEnvironment());
  TESSERA_ASSIGN_OR_RETURN(auto tcp, net::TcpTransport::Create(me, process_of_rank, o));
  TESSERA_RETURN_IF_ERROR(tcp->Establish());
  cluster->tcp_ = std::move(tcp);
  cluster->transport_ = cluster->tcp_;
  return cluster;
}

int Cluster::Threads(int requested) const {
  if (requested > 0) return requested;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, process_.local_size));
}

Cluster::~Cluster() {
  if (!finished_ && tcp_) (void)tcp_->Leave("stopped without finishing");
}

int Cluster::Finish(int code, const std::string& error) {
  if (finished_ || !tcp_) return code;
  finished_ = true;
  if (code != 0) {
    (void)tcp_->Leave(error.empty() ? "exit code " + std::to_string(code) : error);
    return code;
  }
  if (Status s = tcp_->Leave(); !s.ok()) {
    return Fail(s);
  }
  return 0;
}

}  // namespace tessera
