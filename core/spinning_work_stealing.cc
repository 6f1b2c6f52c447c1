#include "tessera/core/spinning_work_stealing.h"

#ifndef TESSERA_OS_THREADS

#include <thread>

namespace tessera {

using boost::fibers::context;

SpinningWorkStealing::SpinningWorkStealing(std::vector<SpinningWorkStealing*>& peers,
                                           std::size_t id, std::chrono::microseconds spin)
    : peers_(peers), id_(id), spin_(spin), victim_seed_(id * 0x9E3779B97F4A7C15ull + 1) {}

bool SpinningWorkStealing::has_ready_fibers() const noexcept {
  std::lock_guard lock(queue_mu_);
  return !queue_.empty();
}

context* SpinningWorkStealing::Steal() noexcept {
  if (!HasStealable()) return nullptr;
  std::lock_guard lock(queue_mu_);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (!(*it)->is_context(boost::fibers::type::pinned_context)) {
      context* ctx = *it;
      queue_.erase(it);
      stealable_.fetch_sub(1, std::memory_order_relaxed);
      return ctx;
    }
  }
  return nullptr;
}

void SpinningWorkStealing::awakened(context* ctx) noexcept {
  const bool pinned = ctx->is_context(boost::fibers::type::pinned_context);
  if (!pinned) ctx->detach();
  {
    std::lock_guard lock(queue_mu_);
    queue_.push_back(ctx);
    if (!pinned) stealable_.fetch_add(1, std::memory_order_seq_cst);
  }
  if (pinned) return;  // only this thread can run it
  // The fiber that made ctx ready keeps this thread; a peer asleep in suspend_until would
  // otherwise never learn there is work to steal (Boost notifies a scheduler only of its own
  // fibers made ready elsewhere), and two workers woken here would run one after the other.
  // The fence pairs with the seq_cst store of sleeping_ before the peer's last look at the
  // queues (Dekker): either it sees this push or this sees it asleep.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (auto* p : peers_) {
    if (p != this && p->sleeping_.load(std::memory_order_seq_cst)) {
      p->notify();
      break;
    }
  }
}

context* SpinningWorkStealing::pick_next() noexcept {
  context* next = nullptr;
  {
    std::lock_guard lock(queue_mu_);
    if (!queue_.empty()) {
      next = queue_.front();
      queue_.pop_front();
      if (!next->is_context(boost::fibers::type::pinned_context)) {
        stealable_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
  }
  if (next == nullptr && peers_.size() > 1) {
    // Try each other thread once, starting at a pseudo-random one.
    victim_seed_ = victim_seed_ * 6364136223846793005ull + 1442695040888963407ull;
    const std::size_t start = (victim_seed_ >> 33) % peers_.size();
    for (std::size_t k = 0; k < peers_.size() && next == nullptr; ++k) {
      const std::size_t v = (start + k) % peers_.size();
      if (v != id_) next = peers_[v]->Steal();
    }
  }
  if (next != nullptr && !next->is_context(boost::fibers::type::pinned_context)) {
    context::active()->attach(next);
  }
  return next;
}

void SpinningWorkStealing::suspend_until(
    std::chrono::steady_clock::time_point const& deadline) noexcept {
  // Spin first: work for this thread arrives either by notify() or in a peer's queue.
  const auto spin_end = std::min(deadline, std::chrono::steady_clock::now() + spin_);
  while (std::chrono::steady_clock::now() < spin_end) {
    if (notified_.exchange(false, std::memory_order_acquire)) return;
    for (auto* p : peers_) {
      if (p != this && p->HasStealable()) return;
    }
    std::this_thread::yield();
  }
  std::unique_lock lock(mu_);
  sleeping_.store(true, std::memory_order_seq_cst);
  // Work may have been queued at a peer between the spin and now.
  for (auto* p : peers_) {
    if (p != this && p->HasStealable()) {
      sleeping_.store(false, std::memory_order_release);
      return;
    }
  }
  if (deadline == (std::chrono::steady_clock::time_point::max)()) {
    cv_.wait(lock, [this] { return notified_.exchange(false, std::memory_order_acquire); });
  } else {
    cv_.wait_until(lock, deadline,
                   [this] { return notified_.exchange(false, std::memory_order_acquire); });
  }
  sleeping_.store(false, std::memory_order_release);
}

void SpinningWorkStealing::notify() noexcept {
  {
    std::lock_guard lock(mu_);
    notified_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

}  // namespace tessera

#endif
