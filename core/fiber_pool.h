// The process-wide pool of OS threads that run Tessera's fibers (workers, servers).
// Boost.Fiber's work_stealing scheduler keeps its scheduler table in static storage, so a
// process can have only one such pool: FiberPool::Global() creates it once and keeps it.
#pragma once

#include <boost/fiber/all.hpp>
#include <functional>
#include <thread>
#include <vector>

namespace tessera {

class FiberPool {
 public:
  // The pool, created on first use with `threads` threads (0: hardware concurrency).
  // Later calls return the same pool whatever `threads` says; see threads().
  static FiberPool& Global(int threads = 0);

  // Starts `task` as a new fiber on one of the pool's threads. Callable from any thread or
  // fiber. The task must not block its OS thread (use fiber primitives to wait).
  void Spawn(std::function<void()> task);

  int threads() const { return thread_count_; }

 private:
  explicit FiberPool(int threads);
  void ThreadMain();

  const int thread_count_;
  boost::fibers::buffered_channel<std::function<void()>> tasks_{1024};
  std::vector<std::thread> threads_;
};

// Counts outstanding tasks; Wait() blocks the calling fiber (or thread) until all are Done().
class WaitGroup {
 public:
  void Add(int n);
  void Done();
  void Wait();

 private:
  boost::fibers::mutex mu_;
  boost::fibers::condition_variable cv_;
  int pending_ = 0;
};

// Runs fn(0..n-1) as n fibers on the global pool and waits for all of them.
void ParallelFor(int n, const std::function<void(int)>& fn);

}  // namespace tessera
