#include "tessera/core/transport.h"

#include <string>

namespace tessera {

InProcessTransport::InProcessTransport(int endpoints) {
  TESSERA_CHECK(endpoints > 0);
  for (int i = 0; i < endpoints; ++i) boxes_.push_back(std::make_unique<Mailbox<Message>>());
}

Status InProcessTransport::Send(Rank to, Message msg) {
  if (to < 0 || to >= size()) {
    return InvalidArgument("send to rank " + std::to_string(to) + " of " + std::to_string(size()));
  }
  bytes_.fetch_add(msg.PayloadBytes(), std::memory_order_relaxed);
  if (!boxes_[to]->Push(std::move(msg))) return Unavailable("transport closed");
  return Status::Ok();
}

StatusOr<Message> InProcessTransport::Receive(Rank self) {
  TESSERA_CHECK(self >= 0 && self < size()) << "rank " << self;
  return PopMessage(*boxes_[self], /*wait=*/true, [] { return Unavailable("transport closed"); });
}

StatusOr<Message> InProcessTransport::TryReceive(Rank self) {
  TESSERA_CHECK(self >= 0 && self < size()) << "rank " << self;
  return PopMessage(*boxes_[self], /*wait=*/false, [] { return Unavailable("transport closed"); });
}

void InProcessTransport::BeginRun() {
  // Every endpoint is here and no fiber runs: whatever is queued is left over.
  Message stale;
  for (auto& b : boxes_) {
    while (b->TryPop(stale) == Mailbox<Message>::TryResult::kItem) {
    }
  }
}

void InProcessTransport::Close() {
  for (auto& b : boxes_) b->Close();
}

namespace {
TransportFactory& DefaultFactory() {
  static TransportFactory factory;
  return factory;
}
}  // namespace

void SetDefaultTransportFactory(TransportFactory factory) { DefaultFactory() = std::move(factory); }

std::shared_ptr<Transport> MakeDefaultTransport(int endpoints) {
  if (const TransportFactory& f = DefaultFactory()) return f(endpoints);
  return std::make_shared<InProcessTransport>(endpoints);
}

}  // namespace tessera
