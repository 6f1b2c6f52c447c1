#include "tessera/core/keys.h"

#include "tessera/core/status.h"

namespace tessera {

std::vector<KeyRange> SplitRange(std::uint64_t num_keys, int parts) {
  TESSERA_CHECK(parts > 0) << "parts=" << parts;
  std::vector<KeyRange> out;
  out.reserve(parts);
  const std::uint64_t base = num_keys / parts, extra = num_keys % parts;
  Key begin = 0;
  for (int i = 0; i < parts; ++i) {
    const std::uint64_t len = base + (static_cast<std::uint64_t>(i) < extra ? 1 : 0);
    out.push_back({begin, begin + len});
    begin += len;
  }
  return out;
}

}  // namespace tessera
