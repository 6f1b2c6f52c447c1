#include "core/message.h"

namespace tessera {

std::uint64_t Message::PayloadBytes() const {
  std::uint64_t bytes = 16;  // kind, from, round
  for (const auto& b : blocks) bytes += 12 + 8 * b.keys.size();
  bytes += 8 * stale_keys.size();
  for (const auto& p : partials) bytes += 8 + 8 * p.values.size();
  bytes += 8 * update.keys.size() + 8 * update.delta.size();
  bytes += 8 * values.size();
  if (kind >= MessageKind::kPsPull && kind <= MessageKind::kPsClock)
    bytes += 4 + 8 + 16 + 8 * keys.size();  // table, request, range
  return bytes;
}

}  // namespace tessera
