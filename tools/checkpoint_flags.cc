#include "tessera/tools/checkpoint_flags.h"

#include <cstdlib>

#include "tessera/core/checkpoint.h"

namespace tessera {

void AddCheckpointFlags(CLI::App& cmd, CheckpointFlags& f, const std::string& when) {
  const std::string g = "Checkpoints";
  cmd.add_option("--checkpoint-dir", f.dir, "Write checkpoints here: " + when)->group(g);
  cmd.add_option("--checkpoint-every", f.every,
                 "Checkpoint at most this often (30s, 2m, ...); see --checkpoint-dir")
      ->group(g);
  cmd.add_option("--resume", f.resume,
                 "Go on from the newest whole checkpoint in this directory (and keep "
                 "checkpointing there)")
      ->group(g);
}

StatusOr<CheckpointSettings> ResolveCheckpointFlags(const CheckpointFlags& f) {
  CheckpointSettings s;
  s.dir = f.dir;
  if (!f.resume.empty()) {
    if (!f.dir.empty() && f.dir != f.resume) {
      return InvalidArgument("--resume " + f.resume + " goes on checkpointing there; drop " +
                             "--checkpoint-dir " + f.dir);
    }
    s.dir = f.resume;
    s.resume = true;
  }
  if (!f.every.empty()) {
    TESSERA_ASSIGN_OR_RETURN(s.every, ParseSeconds(f.every, "--checkpoint-every"));
    if (s.dir.empty()) {
      return InvalidArgument("--checkpoint-every needs --checkpoint-dir or --resume");
    }
  }
  // Started again by `tessera launch --restarts`: go on from the checkpoints, if any.
  const char* restart = std::getenv("TESSERA_RESTART");
  if (restart && std::atoi(restart) > 0 && !s.dir.empty() && !s.resume) {
    auto dir = CheckpointDir::Open(s.dir);
    s.resume = dir.ok() && !dir->Files().empty();
  }
  return s;
}

}  // namespace tessera
