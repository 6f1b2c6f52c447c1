// A Boost.Fiber scheduling algorithm for FiberPool: work stealing across the pool's threads,
// like boost::fibers::algo::work_stealing, with two differences that matter here:
//  - an idle thread spins briefly before it sleeps, so the hand-offs of a short
//    model-parallel round (tens of microseconds) do not each pay a futex wake-up;
//  - a thread that queues a ready fiber wakes a sleeping peer to steal it, so workers woken
//    together by one fiber run in parallel;
//  - the set of peers belongs to the pool, not to static storage;
//  - a thief takes the first stealable fiber of a queue, not only its head, and an idle
//    thread looks only for stealable work: Boost's queue gives up when a pinned context (a
//    thread's main or dispatcher context) is at its head, and its has_ready_fibers() counts
//    pinned contexts, so an idle thread whose peer had its main context ready spun without
//    end, taking the core from the threads with work (an I/O thread delivering a message
//    waited milliseconds behind it when processes shared the cores).
#pragma once

#ifndef TESSERA_OS_THREADS

#include <atomic>
#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <vector>

namespace tessera {

class SpinningWorkStealing final : public boost::fibers::algo::algorithm {
 public:
  // `peers` holds every thread's algorithm, this one at index `id`; filled before use.
  SpinningWorkStealing(std::vector<SpinningWorkStealing*>& peers, std::size_t id,
                       std::chrono::microseconds spin);

  void awakened(boost::fibers::context* ctx) noexcept override;
  boost::fibers::context* pick_next() noexcept override;
  bool has_ready_fibers() const noexcept override;
  void suspend_until(std::chrono::steady_clock::time_point const& deadline) noexcept override;
  void notify() noexcept override;

 private:
  // The first fiber in the queue that may move to another thread, or null.
  boost::fibers::context* Steal() noexcept;
  bool HasStealable() const noexcept { return stealable_.load(std::memory_order_seq_cst) > 0; }

  std::vector<SpinningWorkStealing*>& peers_;
  const std::size_t id_;
  const std::chrono::microseconds spin_;
  mutable std::mutex queue_mu_;  // a mutex, not a spinlock: its holder may be preempted
  std::deque<boost::fibers::context*> queue_;
  std::atomic<int> stealable_{0};  // queued contexts that are not pinned
  std::atomic<bool> notified_{false};
  std::atomic<bool> sleeping_{false};  // in the condition-variable wait of suspend_until
  std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t victim_seed_;
};

}  // namespace tessera

#endif
