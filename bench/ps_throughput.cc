// Parameter-server push/pull throughput next to this machine's memory bandwidth, measured in
// the same run. A push of N values moves 8N payload bytes from a worker into a shard (copied
// into a message, then added into the table); the peer is memcpy of the same bytes, with the
// same message size, so the ratio says how close a push or pull gets to copying the payload
// once. Each case is repeated (--repeats), interleaved with its memcpy measurement; the table
// shows the median and the minimum ratio. A second peer, "direct", does the same pushes or
// pulls straight into an array in one thread, no parameter server: for keys in random order
// that, not memcpy, is the floor (each key is a cache miss).
//
//   build/release/bench/ps_throughput [--repeats 5] [--mbytes 1024] [--only "dense range"]
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/metrics.h"
#include "tessera/core/parameter_server.h"

namespace tessera {
namespace {

struct Case {
  const char* name;
  TableStorage storage;
  bool push;   // else pull
  bool range;  // range push/pull, else explicit keys (random order)
  int dim;     // values per key
  int servers;
  int workers;
};

// Bytes per message (or per call for keyed operations): 4 MiB, below glibc's mmap threshold.
constexpr std::size_t kChunkBytes = 4 << 20;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Chunks per shard in a dense table: 64 x 4 MiB = 256 MiB, well beyond the caches, like the
// memcpy buffers below. Sparse tables hold 8 chunks (4M keys at d=1: a 100 MiB index).
constexpr std::size_t kDenseChunks = 64, kSparseChunks = 8;

// memcpy of `total` bytes in chunks of kChunkBytes between two 256 MiB buffers (DRAM, not
// cache): this machine's memory bandwidth as one thread sees it, in bytes copied per second.
double MemcpyRate(std::size_t total) {
  static std::vector<char> src(kChunkBytes * kDenseChunks, 1), dst(kChunkBytes * kDenseChunks, 0);
  const std::size_t chunks = std::max<std::size_t>(1, total / kChunkBytes);
  Stopwatch sw;
  for (std::size_t i = 0; i < chunks; ++i) {
    const std::size_t off = (i % kDenseChunks) * kChunkBytes;
    std::memcpy(dst.data() + off, src.data() + off, kChunkBytes);
  }
  const double s = sw.Seconds();
  if (dst[12345] != 1) std::abort();  // keep the copies
  return static_cast<double>(chunks * kChunkBytes) / s;
}

// The same operation done directly on an array in this thread, no parameter server: the
// floor of what a keyed push or pull costs (random keys miss the caches: DRAM latency, not
// bandwidth, bounds them). Payload bytes/s.
double DirectRate(const Case& c, std::size_t total) {
  const std::size_t keys_per_call = kChunkBytes / (8 * c.dim);
  const std::size_t chunks = c.storage == TableStorage::kDense ? kDenseChunks : kSparseChunks;
  const std::size_t num_keys = keys_per_call * chunks;
  std::vector<double> table(num_keys * c.dim, 0.0), values(keys_per_call * c.dim, 1.0);
  std::vector<Key> perm(num_keys);
  std::iota(perm.begin(), perm.end(), 0);
  std::mt19937_64 rng(0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const std::size_t calls = std::max<std::size_t>(1, total / kChunkBytes);
  const int dim = c.dim;
  Stopwatch sw;
  for (std::size_t i = 0; i < calls; ++i) {
    const std::size_t first = (i % chunks) * keys_per_call;
    for (std::size_t k = 0; k < keys_per_call; ++k) {
      const std::size_t key = c.range ? first + k : perm[first + k];
      double* row = table.data() + key * dim;
      const double* v = values.data() + k * dim;
      if (c.push) {
        for (int d = 0; d < dim; ++d) row[d] += v[d];
      } else {
        for (int d = 0; d < dim; ++d) values[k * dim + d] = row[d];
      }
    }
  }
  const double sec = sw.Seconds();
  if (table[7] < 0 || values[3] < 0) std::abort();  // keep the loops
  return static_cast<double>(calls * keys_per_call * dim * 8) / sec;
}

// Payload bytes/s and keys/s of one case moving about `total` bytes per worker.
std::pair<double, double> PsRate(const Case& c, std::size_t total) {
  const std::size_t keys_per_call = kChunkBytes / (8 * c.dim);
  const std::size_t chunks_per_shard =
      c.storage == TableStorage::kDense ? kDenseChunks : kSparseChunks;
  const std::uint64_t num_keys = keys_per_call * chunks_per_shard * c.servers;
  TableSpec spec;
  spec.name = "bench";
  spec.num_keys = num_keys;
  spec.dim = c.dim;
  spec.storage = c.storage;
  spec.consistency = *Consistency::Parse("asp");
  auto ps = ParameterServer::Start({spec}, c.servers, c.workers, nullptr);
  TESSERA_CHECK(ps.ok()) << ps.status().ToString();
  if (c.storage == TableStorage::kSparse) {  // create every row first: a pull reads rows
    ParallelFor(1, [&](int) {
      std::vector<Key> all(num_keys);
      std::iota(all.begin(), all.end(), 0);
      std::vector<double> zero(num_keys * c.dim, 0.0);
      TESSERA_CHECK((*ps)->client(0).Push(0, all, zero).ok());
      TESSERA_CHECK((*ps)->client(0).Pull(0, std::vector<Key>{0}).Get().ok());
    });
  }
  const std::size_t calls = std::max<std::size_t>(1, total / kChunkBytes);
  std::vector<std::vector<Key>> perms(c.workers);  // keyed cases: keys in random order
  if (!c.range) {
    for (int w = 0; w < c.workers; ++w) {
      std::mt19937_64 rng(w);
      perms[w].resize(num_keys);
      std::iota(perms[w].begin(), perms[w].end(), 0);
      std::shuffle(perms[w].begin(), perms[w].end(), rng);
    }
  }
  Stopwatch wall;
  ParallelFor(c.workers, [&](int w) {
    PsClient& client = (*ps)->client(w);
    std::vector<double> values(keys_per_call * c.dim, 1.0);
    std::vector<Key> keys(keys_per_call);
    const std::uint64_t chunks = num_keys / keys_per_call;
    const std::vector<Key>& perm = perms[w];
    for (std::size_t i = 0; i < calls; ++i) {
      const std::uint64_t chunk = (i * c.workers + w) % chunks;
      const KeyRange range{chunk * keys_per_call, (chunk + 1) * keys_per_call};
      if (!c.range) {
        std::copy(perm.begin() + range.begin, perm.begin() + range.end, keys.begin());
      }
      if (c.push) {
        Status st = c.range ? client.PushRange(0, range, values) : client.Push(0, keys, values);
        TESSERA_CHECK(st.ok()) << st.ToString();
      } else {
        auto v = c.range ? client.PullRange(0, range).Get() : client.Pull(0, keys).Get();
        TESSERA_CHECK(v.ok()) << v.status().ToString();
      }
    }
    // A pull is answered after every earlier push to that shard: all pushes are applied.
    for (int s = 0; s < c.servers; ++s) {
      const Key k = (*ps)->ranges(0)[s].begin;
      TESSERA_CHECK(client.Pull(0, std::vector<Key>{k}).Get().ok());
    }
  });
  const double s = wall.Seconds();
  const double bytes = static_cast<double>(calls * keys_per_call * c.dim * 8) * c.workers;
  return {bytes / s, static_cast<double>(calls * keys_per_call) * c.workers / s};
}

}  // namespace
}  // namespace tessera

int main(int argc, char** argv) {
  using namespace tessera;
  int repeats = 5;
  int mbytes = 1024;
  std::string only;
  CLI::App app{"Parameter-server push/pull throughput vs memcpy bandwidth"};
  app.add_option("--repeats", repeats, "Repeats of every case")->capture_default_str();
  app.add_option("--mbytes", mbytes, "Payload MB moved per worker per measurement")
      ->capture_default_str();
  app.add_option("--only", only, "Run only the cases whose name contains this");
  CLI11_PARSE(app, argc, argv);
  FiberPool::Global();
  const Case cases[] = {
      {"dense range push", TableStorage::kDense, true, true, 1, 1, 1},
      {"dense range pull", TableStorage::kDense, false, true, 1, 1, 1},
      {"dense range push 2x2", TableStorage::kDense, true, true, 1, 2, 2},
      {"dense range pull 2x2", TableStorage::kDense, false, true, 1, 2, 2},
      {"dense keyed push d=1", TableStorage::kDense, true, false, 1, 1, 1},
      {"dense keyed pull d=1", TableStorage::kDense, false, false, 1, 1, 1},
      {"dense keyed push d=64", TableStorage::kDense, true, false, 64, 1, 1},
      {"dense keyed pull d=64", TableStorage::kDense, false, false, 64, 1, 1},
      {"sparse keyed push d=1", TableStorage::kSparse, true, false, 1, 1, 1},
      {"sparse keyed pull d=1", TableStorage::kSparse, false, false, 1, 1, 1},
      {"sparse keyed push d=64", TableStorage::kSparse, true, false, 64, 1, 1},
      {"sparse keyed pull d=64", TableStorage::kSparse, false, false, 64, 1, 1},
  };
  const std::size_t total = static_cast<std::size_t>(mbytes) << 20;
  std::printf("payload %d MB per worker per measurement, %d repeats, %d threads\n", mbytes, repeats,
              FiberPool::Global().threads());
  std::printf("%-24s %9s %7s | %7s %8s %8s | %7s %8s\n", "case (servers x workers)", "Mkeys/s",
              "GB/s", "memcpy", "ratio", "min", "direct", "ratio");
  for (const Case& c : cases) {
    if (std::string(c.name).find(only) == std::string::npos) continue;
    std::vector<double> ratio, gbs, keys, mem, direct, direct_ratio;
    for (int r = 0; r < repeats; ++r) {
      const double m = MemcpyRate(total);
      const double d = DirectRate(c, total / 4);
      auto [bytes_per_s, keys_per_s] = PsRate(c, total);
      ratio.push_back(bytes_per_s / m);
      direct_ratio.push_back(bytes_per_s / d);
      gbs.push_back(bytes_per_s / 1e9);
      keys.push_back(keys_per_s / 1e6);
      mem.push_back(m / 1e9);
      direct.push_back(d / 1e9);
    }
    std::printf("%-24s %9.1f %7.2f | %7.2f %7.0f%% %7.0f%% | %7.2f %7.0f%%\n", c.name, Median(keys),
                Median(gbs), Median(mem), 100 * Median(ratio),
                100 * *std::min_element(ratio.begin(), ratio.end()), Median(direct),
                100 * Median(direct_ratio));
    std::fflush(stdout);
  }
  return 0;
}
