// An in-process transport for tests that says what a test needs about its endpoints: that they
// live in other processes (in_process() false), or that messages travel as bytes would between
// processes (passes_objects() false: carried blocks go as what their Save writes).
#pragma once

#include <utility>

#include "tessera/core/transport.h"

namespace tessera::testing {

class LookAlikeTransport final : public Transport {
 public:
  LookAlikeTransport(int n, bool in_process, bool passes_objects)
      : inner_(n), in_process_(in_process), passes_objects_(passes_objects) {}
  int size() const override { return inner_.size(); }
  Status Send(Rank to, Message msg) override { return inner_.Send(to, std::move(msg)); }
  StatusOr<Message> Receive(Rank self) override { return inner_.Receive(self); }
  StatusOr<Message> TryReceive(Rank self) override { return inner_.TryReceive(self); }
  void Close() override { inner_.Close(); }
  std::uint64_t bytes_sent() const override { return inner_.bytes_sent(); }
  bool in_process() const override { return in_process_; }
  bool passes_objects() const override { return passes_objects_; }
  void BeginRun() override { inner_.BeginRun(); }

 private:
  InProcessTransport inner_;
  bool in_process_, passes_objects_;
};

}  // namespace tessera::testing
