#include "core/message.h"

#include <malloc.h>

namespace tessera {

std::uint64_t Message::PayloadBytes() const {
  std::uint64_t bytes = 16;  // kind, from, round
  for (const auto& b : blocks) bytes += 20 + 8 * b.keys.size();
  bytes += 8 * stale_keys.size();
  for (const auto& p : partials) bytes += 8 + 8 * p.values.size();
  bytes += 8 * update.keys.size() + 8 * update.delta.size();
  bytes += 8 * values.size();
  bytes += state.size();
  for (const auto& c : carried) bytes += 4 + c.state.size();
  if (kind == MessageKind::kBlockState) bytes += 4;
  if (kind >= MessageKind::kPsPull && kind <= MessageKind::kPsTables)
    bytes += 4 + 8 + 16 + 8 * keys.size();  // table, request, range
  return bytes;
}

void KeepMessageBuffersInHeap() {
  static const bool tuned = [] {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    return true;
  }();
  (void)tuned;
}

}  // namespace tessera
