#include "tessera/core/message.h"

#include <malloc.h>

namespace tessera {
namespace {

std::uint64_t Bytes(const std::vector<Key>& keys) { return 8 * keys.size(); }
std::uint64_t Bytes(const Eigen::VectorXd& v) { return 8 * static_cast<std::uint64_t>(v.size()); }
std::uint64_t Bytes(const Committed& c) { return 8 + Bytes(c.update.keys) + Bytes(c.update.delta); }
std::uint64_t Bytes(const std::optional<Committed>& c) { return c ? Bytes(*c) : 0; }
// table, range, keys (or the hash of a list the receiver holds)
std::uint64_t Bytes(const TableKeys& t) { return 4 + 16 + Bytes(t.keys) + (t.key_list ? 8 : 0); }
// Values as they travel: 4 or 8 bytes each, plus the positions of sparse ones.
std::uint64_t Bytes(const Eigen::VectorXd& v, const PackedValues& p) {
  const auto n = static_cast<std::uint64_t>(v.size());
  if (p.codec != 0) return 1 + 9 + p.compressed.size() + (p.sparse ? 8 : 0);
  return 1 + (p.f32 ? 4 : 8) * n + (p.sparse ? 8 + 4 * p.nonzero.size() : 0);
}

std::uint64_t BodyBytes(const msg::Stop&) { return 0; }
std::uint64_t BodyBytes(const msg::Push& m) {
  std::uint64_t bytes = 8 + Bytes(m.stale_keys) + Bytes(m.committed);
  for (const Block& b : m.blocks) bytes += 20 + Bytes(b.keys);
  return bytes;
}
std::uint64_t BodyBytes(const msg::Partials& m) {
  std::uint64_t bytes = 16;
  for (const Partial& p : m.partials) bytes += 8 + Bytes(p.values);
  return bytes;
}
std::uint64_t BodyBytes(const msg::Apply& m) { return Bytes(m.committed); }
std::uint64_t BodyBytes(const msg::Evaluate& m) { return 8 + Bytes(m.committed); }
std::uint64_t BodyBytes(const msg::Evaluation& m) { return 8 + Bytes(m.terms); }
std::uint64_t BodyBytes(const msg::Gather& m) { return 8 + Bytes(m.committed); }
std::uint64_t BodyBytes(const msg::WorkerState& m) {
  std::uint64_t bytes = 8 + m.state.size();
  for (const CarriedState& c : m.carried) bytes += 4 + c.state.size();
  return bytes;
}
std::uint64_t BodyBytes(const msg::BlockState& m) { return 12 + m.state.size(); }
std::uint64_t BodyBytes(const msg::PsPull& m) {
  return 16 + Bytes(static_cast<const TableKeys&>(m));
}
std::uint64_t BodyBytes(const msg::PsValues& m) {
  return 24 + Bytes(static_cast<const TableKeys&>(m)) + Bytes(m.values, m.packed);
}
std::uint64_t BodyBytes(const msg::PsRefresh& m) {
  return 16 + Bytes(static_cast<const TableKeys&>(m)) + Bytes(m.values, m.packed);
}
std::uint64_t BodyBytes(const msg::PsPush& m) {
  return 1 + Bytes(static_cast<const TableKeys&>(m)) + Bytes(m.values, m.packed);
}
std::uint64_t BodyBytes(const msg::PsClock&) { return 8; }
std::uint64_t BodyBytes(const msg::PsPing&) { return 8; }
std::uint64_t BodyBytes(const msg::PsPong&) { return 16; }
std::uint64_t BodyBytes(const msg::PsTables& m) {
  return Bytes(static_cast<const TableKeys&>(m)) + Bytes(m.values);
}
std::uint64_t BodyBytes(const msg::DpArrived& m) { return 24 + 8 * m.staleness.size(); }
std::uint64_t BodyBytes(const msg::DpTerms& m) { return 8 + Bytes(m.terms); }
std::uint64_t BodyBytes(const msg::DpSaveState&) { return 8; }
std::uint64_t BodyBytes(const msg::DpWorkerState& m) { return m.state.size(); }
std::uint64_t BodyBytes(const msg::DpContinue&) { return 8; }

constexpr const char* kKindNames[] = {
    "stop",     "push",          "partials",        "apply",      "evaluate",  "evaluation",
    "gather",   "worker-state",  "block-state",     "ps-pull",    "ps-values", "ps-refresh",
    "ps-push",  "ps-clock",      "ps-ping",         "ps-pong",    "ps-tables", "dp-arrived",
    "dp-terms", "dp-save-state", "dp-worker-state", "dp-continue"};
static_assert(std::size(kKindNames) == std::variant_size_v<MessageBody>);

}  // namespace

const char* KindName(MessageKind kind) {
  const auto i = static_cast<std::size_t>(kind);
  return i < std::size(kKindNames) ? kKindNames[i] : "unknown";
}

std::uint64_t Message::PayloadBytes() const {
  // kind and sender, then the body's fields.
  return 8 + std::visit([](const auto& b) { return BodyBytes(b); }, body);
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
