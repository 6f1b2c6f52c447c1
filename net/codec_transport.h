// An in-process transport that passes every message through the wire codec (net/codec.h) on
// its way: what arrives is what a TCP peer would decode, and nothing the sender holds (a
// pointer, a shared buffer) survives the trip. The app tests run over it, so an app whose
// workers share state other than through messages fails them. All endpoints live in this
// process (in_process() is true: hogwild tables still work).
#pragma once

#include <memory>

#include "tessera/core/transport.h"

namespace tessera::net {

class CodecTransport final : public Transport {
 public:
  explicit CodecTransport(int endpoints) : inner_(endpoints) {}
  int size() const override { return inner_.size(); }
  // Encodes `msg` as a frame body, decodes it again and delivers the decoded copy.
  Status Send(Rank to, Message msg) override;
  StatusOr<Message> Receive(Rank self) override { return inner_.Receive(self); }
  StatusOr<Message> TryReceive(Rank self) override { return inner_.TryReceive(self); }
  void Close() override { inner_.Close(); }
  std::uint64_t bytes_sent() const override { return inner_.bytes_sent(); }
  bool in_process() const override { return true; }
  void BeginRun() override { inner_.BeginRun(); }

 private:
  InProcessTransport inner_;
};

// Makes every engine run that names no transport use a CodecTransport (SetDefaultTransportFactory).
void UseCodecTransportByDefault();

}  // namespace tessera::net
