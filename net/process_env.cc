#include "net/process_env.h"

#include <charconv>
#include <cstdlib>

namespace tessera::net {
namespace {

const char* Get(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

Status ParseInt(const char* name, const char* text, int lo, int& out) {
  const std::string_view s(text);
  long long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > 1000000) {
    return InvalidArgument(std::string(name) + "='" + std::string(s) +
                           "': expected an integer >= " + std::to_string(lo));
  }
  out = static_cast<int>(v);
  return Status::Ok();
}

}  // namespace

Status ParseHostPort(const std::string& text, const std::string& what, std::string& host,
                     std::uint16_t& port) {
  std::size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    return InvalidArgument(what + "='" + text + "': expected host:port");
  }
  host = text.substr(0, colon);
  if (host.front() == '[') {
    if (host.back() != ']' || host.size() < 3) {
      return InvalidArgument(what + "='" + text + "': unbalanced [ ] around the IPv6 address");
    }
    host = host.substr(1, host.size() - 2);
  }
  int p = 0;
  const std::string port_text = text.substr(colon + 1);
  if (!ParseInt(what.c_str(), port_text.c_str(), 1, p).ok() || p > 65535) {
    return InvalidArgument(what + "='" + text + "': port must be 1..65535");
  }
  port = static_cast<std::uint16_t>(p);
  return Status::Ok();
}

StatusOr<ProcessInfo> ProcessFromEnvironment() {
  struct Source {
    const char* launcher;
    const char* rank;
    const char* size;
  };
  static constexpr Source kSources[] = {
      {"tessera", "TESSERA_RANK", "TESSERA_SIZE"},
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
      {"srun", "SLURM_PROCID", "SLURM_NTASKS"},
  };
  ProcessInfo info;
  for (const Source& s : kSources) {
    const char* rank = Get(s.rank);
    const char* size = Get(s.size);
    if (!rank && !size) continue;
    if (!rank || !size) {
      return InvalidArgument(std::string(rank ? s.size : s.rank) + " is not set but " +
                             (rank ? s.rank : s.size) + " is: both are needed");
    }
    TESSERA_RETURN_IF_ERROR(ParseInt(s.size, size, 1, info.size));
    TESSERA_RETURN_IF_ERROR(ParseInt(s.rank, rank, 0, info.rank));
    if (info.rank >= info.size) {
      return InvalidArgument(std::string(s.rank) + "=" + rank + " is not below " + s.size + "=" +
                             size);
    }
    info.launcher = s.launcher;
    break;
  }
  if (!info.multi_process()) return info;
  for (const char* name :
       {"TESSERA_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = Get(name);
    if (v && ParseInt(name, v, 1, info.local_size).ok()) break;
    info.local_size = 1;  // e.g. Slurm's "2(x3)": unknown
  }
  if (const char* id = Get("TESSERA_RUN_ID")) {
    info.run_id = id;
  } else if (const char* job = Get("SLURM_JOB_ID"); job && info.launcher == "srun") {
    const char* step = Get("SLURM_STEP_ID");
    info.run_id = std::string("slurm ") + job + "." + (step ? step : "");
  } else if (const char* ns = Get("PMIX_NAMESPACE"); ns && info.launcher == "mpirun") {
    info.run_id = std::string("pmix ") + ns;
  }
  const char* rv = Get("TESSERA_RENDEZVOUS");
  if (!rv) {
    return InvalidArgument("a " + std::to_string(info.size) + "-process run (" + info.launcher +
                           ") needs TESSERA_RENDEZVOUS=host:port, where rank 0 listens (tessera "
                           "launch sets it; with mpirun pass -x TESSERA_RENDEZVOUS)");
  }
  TESSERA_RETURN_IF_ERROR(
      ParseHostPort(rv, "TESSERA_RENDEZVOUS", info.rendezvous_host, info.rendezvous_port));
  return info;
}

}  // namespace tessera::net
