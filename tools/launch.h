// `tessera launch -n N -- COMMAND...`: runs N copies of a tessera command on this machine as
// one multi-process run, the way mpirun or srun would across machines. It picks a free
// rendezvous port, generates the shared secret, and starts each copy with TESSERA_RANK,
// TESSERA_SIZE, TESSERA_RENDEZVOUS and TESSERA_SECRET set. Output goes straight through.
// When a copy fails (non-zero exit or a signal) the others normally notice and exit with an
// error naming it; whatever is still running after --grace seconds is terminated. The exit
// code is the first failure's (128 + signal for a signal), 0 when every copy succeeded. With
// --restarts R, a failed run is started again (all N, fresh port and secret) up to R times
// with TESSERA_RESTART=k: `tessera lasso --checkpoint-dir D` then resumes from D.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace tessera {

struct LaunchFlags {
  int processes = 2;
  std::string bind = "127.0.0.1";  // where the rendezvous listens
  double grace = 15;               // seconds the others get to stop after a failure
  int restarts = 0;                // times all N start again after a failure (TESSERA_RESTART)
  std::vector<std::string> command;
};

CLI::App* AddLaunchCommand(CLI::App& app, LaunchFlags& flags);
int RunLaunch(LaunchFlags& flags);

}  // namespace tessera
