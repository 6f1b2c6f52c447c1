// The data-parallel flags `tessera lasso` and `tessera mf` share: servers, consistency, update
// frequency, partition scheme, batch size (SystemDS paramserv names).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tessera/core/data_parallel.h"

namespace tessera {

struct DataParallelFlags {
  std::string straggler;  // W:F
  std::string consistency = "bsp";
  std::string frequency = "epoch";
  std::string partition = "disjoint_contiguous";
  std::string communication = "sparse,keys";
  double bandwidth = 50;  // MB/s per worker and table, for bandwidth-managed models
};

// Adds --servers, --consistency, --update-frequency, --partition, --communication, --straggler
// and --batch-size
// (with `batch_help` saying what a row is) to `cmd`, in the group "Data-parallel mode".
void AddDataParallelFlags(CLI::App& cmd, DataParallelOptions& options, DataParallelFlags& flags,
                          const std::string& batch_help);
// Parses the names into `options`; errors name the flag.
Status ParseDataParallelFlags(const DataParallelFlags& flags, DataParallelOptions& options);

}  // namespace tessera
