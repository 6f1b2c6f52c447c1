// `tessera launch -n N -- COMMAND...`: runs N copies of a tessera command as one multi-process
// run, on this machine or (--hostfile) on the hosts of a hostfile, the way mpirun would. It
// picks a rendezvous port, generates the shared secret, and starts each copy with TESSERA_RANK,
// TESSERA_SIZE, TESSERA_RENDEZVOUS and TESSERA_SECRET set. Output goes straight through.
// A copy for another host runs through --rsh (ssh by default) as a shell command line that
// changes to the launcher's directory, reads the secret from its standard input (so it never
// appears in a process list) and execs the command.
// When a copy fails (non-zero exit or a signal) the others normally notice and exit with an
// error naming it; whatever is still running after --grace seconds is terminated. The exit
// code is the first failure's (128 + signal for a signal), 0 when every copy succeeded. With
// --restarts R, a failed run is started again (all N, fresh port and secret) up to R times
// with TESSERA_RESTART=k: `tessera lasso --checkpoint-dir D` then resumes from D.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "tessera/core/status.h"

namespace tessera {

struct LaunchFlags {
  int processes = -1;  // -1 (not given): 2, or with a hostfile its slots
  std::string bind;    // where the rendezvous listens on this machine; empty: 127.0.0.1
  std::string hostfile;
  std::string rsh = "ssh -o BatchMode=yes";  // runs a shell command line on a host
  int port = 0;                              // the rendezvous port; 0: a free one here
  std::vector<std::string> hosts;            // set from the hostfile: the host of each rank
  double grace = 15;                         // seconds the others get to stop after a failure
  int restarts = 0;  // times all N start again after a failure (TESSERA_RESTART)
  std::vector<std::string> command;
};

CLI::App* AddLaunchCommand(CLI::App& app, LaunchFlags& flags);
int RunLaunch(LaunchFlags& flags);

// One line of a hostfile (Open MPI's syntax): `host [slots=N]`, `#` comments.
struct HostSlots {
  std::string host;
  int slots = 1;
};
StatusOr<std::vector<HostSlots>> ReadHostfile(const std::string& path);

// `s` as one word of a POSIX shell command line.
std::string ShellQuote(const std::string& s);

}  // namespace tessera
