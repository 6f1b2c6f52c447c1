// Server shards driven with decoded messages: whatever a peer sends once it is connected (any
// kind, table, key, range, value count, clock or sender), a shard serves it or refuses it and
// stops the run with the reason; it never crashes, reads or writes outside its tables, or
// hangs. The input is a stream of length-prefixed frames as the TCP transport reads them;
// each frame's messages go to the shard its `to` field names.
#include <cstdint>
#include <string_view>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/parameter_server.h"
#include "tessera/net/codec.h"

namespace {

std::vector<tessera::TableSpec> Tables() {
  using namespace tessera;
  TableSpec dense;  // 10 keys of 2 values, asynchronous, Adagrad on the shard
  dense.num_keys = 10;
  dense.dim = 2;
  dense.consistency = *Consistency::Parse("asp");
  dense.updater = AdagradUpdater(0.1);
  TableSpec sparse;  // 1000 keys of 1 value, rows made on first push, bounded staleness
  sparse.num_keys = 1000;
  sparse.storage = TableStorage::kSparse;
  sparse.consistency = *Consistency::Parse("ssp:1");
  TableSpec averaged;  // 6 keys, synchronous, the workers' models averaged
  averaged.num_keys = 6;
  averaged.consistency = *Consistency::Parse("bsp");
  averaged.model_averaging = true;
  TableSpec elements;  // 50 keys of 8 values kept as their nonzeros, bounded staleness
  elements.num_keys = 50;
  elements.dim = 8;
  elements.storage = TableStorage::kSparseElements;
  elements.cache_reads = false;
  elements.consistency = *Consistency::Parse("ssp:1");
  return {dense, sparse, averaged, elements};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  constexpr int kServers = 2, kWorkers = 2;
  auto ps = ParameterServer::Start(Tables(), kServers, kWorkers, nullptr);
  if (!ps.ok()) __builtin_trap();
  Transport& t = (*ps)->transport();
  net::FrameReader reader(1 << 20);
  reader.Feed(reinterpret_cast<const char*>(data), size);
  for (;;) {
    auto body = reader.Next();
    if (!body.ok() || !*body) break;
    auto frame = net::DecodeFrame(**body, 1 << 20);
    if (!frame.ok() || frame->kind != net::Frame::Kind::kMessages) continue;
    for (Message& m : frame->messages) {
      const int shard = static_cast<int>(static_cast<unsigned>(m.to) % kServers);
      if (!t.Send((*ps)->ShardRank(shard), std::move(m)).ok()) break;  // a shard refused one
    }
  }
  (*ps)->Shutdown();
  (void)(*ps)->shard_status();
  return 0;
}
