#include "tessera/net/process_env.h"

#include <dlfcn.h>
#include <pmix.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <type_traits>

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

// The PMIx client library, loaded when a launcher's PMIx server is there to ask and not before:
// a process that never asks does not map it and the libraries it pulls in (libevent, hwloc,
// udev, munge), which take about 0.8 MiB of every process's memory.
struct PmixLibrary {
  decltype(&PMIx_Init) init = nullptr;
  decltype(&PMIx_Get) get = nullptr;
  decltype(&PMIx_Finalize) finalize = nullptr;
  decltype(&PMIx_Error_string) error_string = nullptr;
  decltype(&PMIx_Value_destruct) value_destruct = nullptr;
};

StatusOr<PmixLibrary> LoadPmix() {
  // Kept loaded: PMIx may leave threads or handlers behind after PMIx_Finalize.
  void* handle = dlopen(TESSERA_PMIX_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (!handle) return Unavailable(std::string("cannot load the PMIx library: ") + dlerror());
  PmixLibrary lib;
  auto find = [&](auto& fn, const char* name) {
    fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(handle, name));
    return fn != nullptr;
  };
  if (!find(lib.init, "PMIx_Init") || !find(lib.get, "PMIx_Get") ||
      !find(lib.finalize, "PMIx_Finalize") || !find(lib.error_string, "PMIx_Error_string") ||
      !find(lib.value_destruct, "PMIx_Value_destruct")) {
    return Unavailable(std::string(TESSERA_PMIX_LIBRARY) + " lacks a PMIx client function");
  }
  return lib;
}

// The host rank 0 of this PMIx job (Open MPI's mpirun) runs on, as the job's launcher names it.
StatusOr<std::string> PmixHostOfRank0() {
  auto no_answer = [](const std::string& why) {
    return Unavailable(
        "processes on several hosts: where rank 0 runs comes from the launcher's "
        "PMIx server, which did not answer (" +
        why + "); or pass -x TESSERA_RENDEZVOUS=FIRST_HOST:PORT");
  };
  bool server = false;  // a launcher's PMIx server tells its processes where it listens
  for (const char* uri : {"PMIX_SERVER_URI41", "PMIX_SERVER_URI4", "PMIX_SERVER_URI3",
                          "PMIX_SERVER_URI21", "PMIX_SERVER_URI2"}) {
    server = server || Get(uri) != nullptr;
  }
  if (!server) return no_answer("no PMIX_SERVER_URI in the environment");
  StatusOr<PmixLibrary> lib = LoadPmix();
  if (!lib.ok()) return no_answer(lib.status().message());
  pmix_proc_t me;
  if (const pmix_status_t rc = lib->init(&me, nullptr, 0); rc != PMIX_SUCCESS) {
    return no_answer(lib->error_string(rc));
  }
  pmix_proc_t rank0;
  PMIX_LOAD_PROCID(&rank0, me.nspace, 0);
  pmix_value_t* value = nullptr;
  const pmix_status_t rc = lib->get(&rank0, PMIX_HOSTNAME, nullptr, 0, &value);
  StatusOr<std::string> host =
      Unavailable(std::string("PMIx: no host name of rank 0 (") + lib->error_string(rc) + ")");
  if (rc == PMIX_SUCCESS && value && value->type == PMIX_STRING && value->data.string &&
      *value->data.string) {
    host = std::string(value->data.string);
  }
  if (value) {
    lib->value_destruct(value);
    pmix_free(value);
  }
  lib->finalize(nullptr, 0);
  return host;
}

}  // namespace

bool ParsePort(std::string_view text, std::uint16_t& port) {
  int p = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), p);
  if (ec != std::errc() || end != text.data() + text.size() || p < 1 || p > 65535) return false;
  port = static_cast<std::uint16_t>(p);
  return true;
}

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
  if (!ParsePort(std::string_view(text).substr(colon + 1), port)) {
    return InvalidArgument(what + "='" + text + "': port must be 1..65535");
  }
  return Status::Ok();
}

std::string FirstSlurmHost(std::string_view list) {
  // "prefix[a-b,c]suffix,..." or "name,...": the first name with the first number of its
  // range, digits as written (node[01-04] -> node01).
  const std::size_t comma = list.find(',');
  const std::size_t bracket = list.find('[');
  if (bracket == std::string_view::npos || (comma != std::string_view::npos && comma < bracket)) {
    return std::string(list.substr(0, comma));
  }
  const std::size_t close = list.find(']', bracket);
  std::string_view inside = list.substr(
      bracket + 1, close == std::string_view::npos ? std::string_view::npos : close - bracket - 1);
  inside = inside.substr(0, std::min(inside.find(','), inside.find('-')));
  std::string host = std::string(list.substr(0, bracket)) + std::string(inside);
  if (close != std::string_view::npos) {
    const std::string_view rest = list.substr(close + 1);
    host += std::string(rest.substr(0, rest.find(',')));
  }
  return host;
}

std::uint16_t PortForJob(std::string_view job) {
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (const char c : job) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return static_cast<std::uint16_t>(kJobPortBase + h % kJobPorts);
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
  if (const char* rv = Get("TESSERA_RENDEZVOUS")) {
    TESSERA_RETURN_IF_ERROR(
        ParseHostPort(rv, "TESSERA_RENDEZVOUS", info.rendezvous_host, info.rendezvous_port));
    return info;
  }
  // No rendezvous given: the launcher's job says where process 0 is, and the job id a port.
  const char* job = nullptr;
  if (info.launcher == "srun") {
    const char* nodes = Get("SLURM_STEP_NODELIST");
    if (!nodes) nodes = Get("SLURM_JOB_NODELIST");
    job = Get("SLURM_JOB_ID");
    if (nodes && job) info.rendezvous_host = FirstSlurmHost(nodes);
  } else if (info.launcher == "mpirun") {
    job = Get("PMIX_NAMESPACE");
    if (!job) job = Get("OMPI_MCA_ess_base_jobid");
    // One host: process 0 is on this one. Across hosts the launcher's PMIx server says where.
    if (job && info.local_size == info.size) {
      info.rendezvous_host = "127.0.0.1";
    } else if (job && Get("PMIX_NAMESPACE")) {
      TESSERA_ASSIGN_OR_RETURN(info.rendezvous_host, PmixHostOfRank0());
    }
  }
  if (info.rendezvous_host.empty()) {
    return InvalidArgument(
        "a " + std::to_string(info.size) + "-process run (" + info.launcher +
        ") needs TESSERA_RENDEZVOUS=host:port, where rank 0 listens (tessera launch sets it; "
        "srun and mpirun derive it from the job; a launcher without PMIx: pass -x "
        "TESSERA_RENDEZVOUS=FIRST_HOST:PORT)");
  }
  const std::string id =
      info.launcher == "srun"
          ? std::string(job) + "." + (Get("SLURM_STEP_ID") ? Get("SLURM_STEP_ID") : "")
          : std::string(job);
  info.rendezvous_port = PortForJob(id);
  if (const char* port = Get("TESSERA_PORT"); port && !ParsePort(port, info.rendezvous_port)) {
    return InvalidArgument(std::string("TESSERA_PORT='") + port + "': port must be 1..65535");
  }
  return info;
}

}  // namespace tessera::net
