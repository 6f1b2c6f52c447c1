// What a user or a launcher types: durations (--checkpoint-every), consistency models,
// update frequencies, partition schemes, host:port addresses and the launcher's environment
// (rank, size, rendezvous). Newline-separated fields of the input go to each parser; any of
// them is a value or an error naming what is wrong, never a crash.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tessera/core/checkpoint.h"
#include "tessera/core/data_parallel.h"
#include "tessera/core/parameter_server.h"
#include "tessera/net/process_env.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace tessera;
  std::vector<std::string> f(1);
  for (std::size_t i = 0; i < size; ++i) {
    if (data[i] == '\n') {
      f.emplace_back();
    } else {
      f.back().push_back(static_cast<char>(data[i]));
    }
  }
  f.resize(std::max<std::size_t>(f.size(), 6));
  (void)ParseSeconds(f[0], "--checkpoint-every");
  (void)Consistency::Parse(f[1]);
  (void)UpdateFrequency::Parse(f[2]);
  (void)ParsePartitionScheme(f[3]);
  std::string host;
  std::uint16_t port = 0;
  (void)net::ParseHostPort(f[4], "--fuzz", host, port);
  // The launcher's variables: rank, size, rendezvous, local size (fields 5..8; a field's NUL
  // bytes end it, as they would a real environment variable).
  f.resize(std::max<std::size_t>(f.size(), 9));
  const char* names[] = {"TESSERA_RANK", "TESSERA_SIZE", "TESSERA_RENDEZVOUS",
                         "TESSERA_LOCAL_SIZE"};
  for (int i = 0; i < 4; ++i) setenv(names[i], f[5 + i].c_str(), 1);
  (void)net::ProcessFromEnvironment();
  for (const char* name : names) unsetenv(name);
  return 0;
}
