// The one messaging seam the engines use. In-process (this folder) and TCP (net/)
// implement it with the same semantics: per-sender FIFO order, reliable delivery or an error.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "tessera/core/fiber_pool.h"
#include "tessera/core/message.h"
#include "tessera/core/status.h"

namespace tessera {

// The most workers (or server shards) one run may have: each is a fiber with its own stack and
// per-worker state, so a mistyped count fails with a message instead of exhausting memory.
inline constexpr int kMaxEndpoints = 1024;

class Transport {
 public:
  virtual ~Transport() = default;
  // Number of endpoints; ranks are 0..size()-1.
  virtual int size() const = 0;
  // Queues `msg` for `to`. Never blocks the calling worker thread. Messages from one sender
  // to one receiver arrive in the order sent.
  virtual Status Send(Rank to, Message msg) = 0;
  // Blocks the calling fiber until a message for `self` arrives. Unavailable once the
  // transport is closed and the queue is drained.
  virtual StatusOr<Message> Receive(Rank self) = 0;
  // A message for `self` if one is already queued; never waits. Unavailable once closed and
  // drained, NotFound when nothing is queued.
  virtual StatusOr<Message> TryReceive(Rank self) = 0;
  // Wakes every receiver with Unavailable; later sends fail.
  virtual void Close() = 0;
  // Payload bytes sent so far, over all endpoints.
  virtual std::uint64_t bytes_sent() const = 0;
  // True when every endpoint lives in this process and may share memory (hogwild tables).
  virtual bool in_process() const = 0;
  // True when a message arrives as the object sent, not encoded and decoded: a sender may hand
  // over an object it owns (a carried block's state) instead of its bytes.
  virtual bool passes_objects() const { return false; }
  // True when endpoint `r` lives in this process (its fiber runs here). In-process: all.
  virtual bool hosts(Rank r) const {
    (void)r;
    return true;
  }
  // An engine calls this as it starts a run over a transport that may have carried earlier
  // runs, in every process, before any of its fibers sends or receives (no fiber of an
  // earlier run may still be running here). Messages of earlier runs still queued here or
  // yet to arrive (an eager refresh to a worker that had stopped) are dropped. Between
  // processes, runs are not fenced: a process that has begun run k+1 may send to one still
  // finishing run k, whose receivers must not see that message yet. It waits until this
  // process begins run k+1 too.
  virtual void BeginRun() = 0;
};

// Unbounded FIFO between fibers on any threads (Boost.Fiber primitives, so waiting parks the
// fiber, not the thread).
template <typename T>
class Mailbox {
 public:
  bool Push(T item) {
    std::unique_lock lock(mu_);
    if (closed_) return false;
    queue_.push_back(std::move(item));
    cv_.notify_one();
    return true;
  }
  // False when closed and empty.
  bool Pop(T& out) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return closed_ || !queue_.empty(); });
    if (queue_.empty()) return false;
    out = std::move(queue_.front());
    queue_.pop_front();
    return true;
  }
  enum class TryResult { kItem, kEmpty, kClosed };
  TryResult TryPop(T& out) {
    std::unique_lock lock(mu_);
    if (queue_.empty()) return closed_ ? TryResult::kClosed : TryResult::kEmpty;
    out = std::move(queue_.front());
    queue_.pop_front();
    return TryResult::kItem;
  }
  void Close() {
    std::unique_lock lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  FiberMutex mu_;
  FiberCondition cv_;
  std::deque<T> queue_;
  bool closed_ = false;
};

// Transport::Receive (wait) or TryReceive (!wait) on one mailbox: the message, NotFound when
// !wait and nothing is queued, closed() once the mailbox is closed and drained (called then,
// so it can report why it was closed).
template <typename Closed>
StatusOr<Message> PopMessage(Mailbox<Message>& box, bool wait, Closed closed) {
  Message m;
  if (wait) {
    if (!box.Pop(m)) return closed();
    return m;
  }
  switch (box.TryPop(m)) {
    case Mailbox<Message>::TryResult::kItem:
      return m;
    case Mailbox<Message>::TryResult::kEmpty:
      return NotFound("no message queued");
    case Mailbox<Message>::TryResult::kClosed:
      break;
  }
  return closed();
}

// Endpoints in one process; messages move by value, nothing is serialized.
class InProcessTransport final : public Transport {
 public:
  explicit InProcessTransport(int endpoints);
  int size() const override { return static_cast<int>(boxes_.size()); }
  Status Send(Rank to, Message msg) override;
  StatusOr<Message> Receive(Rank self) override;
  StatusOr<Message> TryReceive(Rank self) override;
  void Close() override;
  std::uint64_t bytes_sent() const override { return bytes_.load(std::memory_order_relaxed); }
  bool in_process() const override { return true; }
  bool passes_objects() const override { return true; }
  void BeginRun() override;

 private:
  std::vector<std::unique_ptr<Mailbox<Message>>> boxes_;
  std::atomic<std::uint64_t> bytes_{0};
};

// The transport an engine makes when its options name none: an InProcessTransport with
// `endpoints` endpoints, unless a factory was installed. Tests install one that passes every
// message through the wire codec (net/wire_test_transport.h), so that an app which shares state
// between workers other than by message fails them. Set it before any run starts.
using TransportFactory = std::function<std::shared_ptr<Transport>(int endpoints)>;
void SetDefaultTransportFactory(TransportFactory factory);
std::shared_ptr<Transport> MakeDefaultTransport(int endpoints);

}  // namespace tessera
