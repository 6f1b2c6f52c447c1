// The checkpoint reader: a truncated, corrupt or hostile file is an error, never a crash.
#include <cstdint>
#include <string_view>

#include "tessera/core/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto c = tessera::Checkpoint::Decode(bytes, "fuzz");
  if (c.ok()) {
    (void)c->Doubles("beta");
    (void)c->U64("done");
    (void)c->Text("app");
    (void)c->Encode();
  }
  // Without the checksum in the way: the section parser itself, on a file whose trailer is
  // made to match.
  if (size > 8) {
    std::string fixed = "TESSERA-CKPT\n" + std::string(bytes);
    const std::uint64_t body = fixed.size();
    fixed.append(reinterpret_cast<const char*>(&body), 8);
    const std::uint32_t crc = tessera::Crc32c(std::string_view(fixed.data(), body));
    fixed.append(reinterpret_cast<const char*>(&crc), 4);
    auto d = tessera::Checkpoint::Decode(fixed, "fuzz");
    if (d.ok()) (void)d->Doubles("beta");
  }
  return 0;
}
