#include "tessera/tools/data_parallel_flags.h"

namespace tessera {

void AddDataParallelFlags(CLI::App& cmd, DataParallelOptions& dp, DataParallelFlags& f,
                          const std::string& batch_help) {
  const std::string g = "Data-parallel mode";
  cmd.add_option("--servers", dp.servers, "Parameter-server shards")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--consistency", f.consistency, "bsp | ssp:S | essp:S | asp | hogwild")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--update-frequency", f.frequency, "batch | nbatches:N | epoch")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--partition", f.partition,
                 "disjoint_contiguous | disjoint_round_robin | disjoint_random | "
                 "overlap_reshuffle")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--batch-size", dp.batch_size, batch_help)->capture_default_str()->group(g);
}

Status ParseDataParallelFlags(const DataParallelFlags& f, DataParallelOptions& dp) {
  auto c = Consistency::Parse(f.consistency);
  if (!c.ok()) return InvalidArgument("--consistency: " + c.status().message());
  dp.consistency = *c;
  auto freq = UpdateFrequency::Parse(f.frequency);
  if (!freq.ok()) return InvalidArgument("--update-frequency: " + freq.status().message());
  dp.frequency = *freq;
  auto part = ParsePartitionScheme(f.partition);
  if (!part.ok()) return InvalidArgument("--partition: " + part.status().message());
  dp.partition = *part;
  return Status::Ok();
}

}  // namespace tessera
