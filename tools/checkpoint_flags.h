// --checkpoint-dir, --checkpoint-every and --resume, shared by the commands that checkpoint.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tessera/core/status.h"

namespace tessera {

struct CheckpointFlags {
  std::string dir;
  std::string every;  // a duration (core/checkpoint.h ParseSeconds)
  std::string resume;
};

struct CheckpointSettings {
  std::string dir;   // empty: no checkpoints
  double every = 0;  // seconds; 0: the command's default points only
  bool resume = false;
};

// Adds the flags (group "Checkpoints"); `when` says when the command checkpoints.
void AddCheckpointFlags(CLI::App& cmd, CheckpointFlags& flags, const std::string& when);

// Checks the flags. --resume D means "go on from D and keep checkpointing there". A process
// started again by `tessera launch --restarts` (TESSERA_RESTART > 0) resumes from its
// checkpoint directory when that holds checkpoints.
StatusOr<CheckpointSettings> ResolveCheckpointFlags(const CheckpointFlags& flags);

// Sets an app's checkpoint options (its checkpoint_dir, checkpoint_every and resume) from `s`.
template <class AppOptions>
void SetCheckpointOptions(const CheckpointSettings& s, AppOptions& options) {
  options.checkpoint_dir = s.dir;
  options.checkpoint_every = s.every;
  options.resume = s.resume;
}

}  // namespace tessera
