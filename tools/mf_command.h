// `tessera mf` (train a factorization) and `tessera mf predict` (query a saved model): the
// command registers itself (tools/command.h); the functions are its parts.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tessera/algorithms/mf/mf.h"
#include "tessera/tools/command.h"
#include "tessera/tools/data_parallel_flags.h"

namespace tessera {

struct MfFlags {
  // Training (the common flags are tools/command.h's).
  std::string train, test;
  MfOptions opts;
  bool biases = false, no_biases = false;
  int cv = 0;  // folds; 0: no cross-validation
  DataParallelFlags data_parallel;
  // Queries.
  std::string model, user, item, pairs, exclude, predictions;
  int top_n = 0;
};

// The training flags, and the `predict` subcommand under `mf`.
void AddMfTrainFlags(CLI::App& mf, MfFlags& flags);
CLI::App* AddMfPredictCommand(CLI::App& mf, MfFlags& flags);
// Checks and completes the training options.
Status PrepareMfTrain(MfFlags& flags, const CheckpointSettings& checkpoints);
// In every process of the run: the training, reported as `common` says.
int FitMf(MfFlags& flags, const CommonFlags& common, Cluster& cluster);
int RunMfPredict(MfFlags& flags);

}  // namespace tessera
