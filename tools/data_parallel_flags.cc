#include "tessera/tools/data_parallel_flags.h"

#include <charconv>
#include <string_view>

#include "tessera/core/dataset.h"

namespace tessera {

void AddDataParallelFlags(CLI::App& cmd, DataParallelOptions& dp, DataParallelFlags& f,
                          const std::string& batch_help) {
  const std::string g = "Data-parallel mode";
  cmd.add_option("--servers", dp.servers, "Parameter-server shards")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--consistency", f.consistency,
                 "bsp | sbp:B | ssp:S | essp:S | sparsessp:S | sspaggr:S | asp | hogwild")
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
  cmd.add_option("--communication", f.communication,
                 "What parameter-server messages shrink: none, or any of sparse (nonzero values "
                 "and their positions), keys or keys:N (a repeated key list as its hash; a cache "
                 "of N keys), f32 (values as 32-bit floats, lossy), significant:θ (a key's "
                 "change held until it exceeds θ times the key as read, lossy), lz4 or zstd "
                 "(values compressed), comma-separated")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--bandwidth", f.bandwidth,
                 "MB/s a worker sends each table between clocks under sspaggr:S (the budget of "
                 "every 5 ms interval)")
      ->capture_default_str()
      ->group(g);
  cmd.add_option("--straggler", f.straggler,
                 "W:F makes worker W take F times as long per batch (to measure how a "
                 "consistency model copes with a slow worker)")
      ->group(g);
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
  auto comm = Communication::Parse(f.communication);
  if (!comm.ok()) return InvalidArgument("--communication: " + comm.status().message());
  dp.communication = *comm;
  if (!(f.bandwidth > 0 && f.bandwidth <= 1e6)) {
    return InvalidArgument("--bandwidth: expected MB/s in (0, 1000000], got " +
                           std::to_string(f.bandwidth));
  }
  dp.communication.budget_bytes =
      static_cast<std::uint64_t>(f.bandwidth * 1e6 * dp.communication.interval_seconds);
  if (!f.straggler.empty()) {
    const auto colon = f.straggler.find(':');
    int w = -1;
    double factor = 0;
    const std::string_view text(f.straggler);
    const auto wv = text.substr(0, colon);
    const bool ok =
        colon != std::string::npos &&
        std::from_chars(wv.data(), wv.data() + wv.size(), w).ptr == wv.data() + wv.size() &&
        ParseDouble(text.substr(colon + 1), factor) && w >= 0 && factor >= 1 && factor <= 1000;
    if (!ok) {
      return InvalidArgument(
          "--straggler: expected W:F with a worker number W >= 0 and a factor F in [1, 1000], "
          "got '" +
          f.straggler + "'");
    }
    dp.straggler = {w, factor};
  }
  return Status::Ok();
}

}  // namespace tessera
