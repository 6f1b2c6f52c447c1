// `tessera mf` (train a factorization) and `tessera mf predict` (query a saved model).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "algorithms/mf/mf.h"
#include "tools/checkpoint_flags.h"
#include "tools/cluster.h"
#include "tools/data_parallel_flags.h"

namespace tessera {

struct MfFlags {
  // Training.
  std::string train, test, output, trace, summary;
  MfOptions opts;
  int threads = 0;
  bool no_biases = false;
  bool quiet = false;
  DataParallelFlags data_parallel;
  ClusterFlags cluster;  // data-parallel runs across processes
  CheckpointFlags checkpoint;
  // Queries.
  std::string model, user, item, pairs, exclude, predictions;
  int top_n = 0;
};

struct MfCommands {
  CLI::App* train = nullptr;
  CLI::App* predict = nullptr;
};

MfCommands AddMfCommands(CLI::App& app, MfFlags& flags);
int RunMfTrain(MfFlags& flags);
int RunMfPredict(MfFlags& flags);

}  // namespace tessera
