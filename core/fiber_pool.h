// The process-wide pool of OS threads that run Tessera's fibers (coordinator, workers,
// servers), and the fiber-aware synchronization the engines use.
//
// Fibers migrate between the pool's threads by work stealing (core/spinning_work_stealing.h).
// One pool serves the whole process: FiberPool::Global() creates it once and keeps it.
//
// Built with TESSERA_OS_THREADS (the TSan preset), every spawned task is an OS thread and the
// primitives are std::mutex / std::condition_variable: same semantics, but visible to
// ThreadSanitizer, which cannot follow Boost 1.74's unannotated fiber stack switches.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#ifndef TESSERA_OS_THREADS
#include <boost/fiber/all.hpp>
#endif

namespace tessera {

#ifdef TESSERA_OS_THREADS
using FiberMutex = std::mutex;
using FiberCondition = std::condition_variable;
#else
using FiberMutex = boost::fibers::mutex;
using FiberCondition = boost::fibers::condition_variable;
#endif

class FiberPool {
 public:
  // The pool, created on first use with `threads` threads (0: hardware concurrency).
  // Later calls return the same pool whatever `threads` says; see threads().
  static FiberPool& Global(int threads = 0);

  // Starts `task` as a new fiber on one of the pool's threads. Callable from any thread or
  // fiber. The task must not block its OS thread (use the primitives here to wait).
  void Spawn(std::function<void()> task);

  int threads() const { return thread_count_; }

 private:
  explicit FiberPool(int threads);

  const int thread_count_;
#ifndef TESSERA_OS_THREADS
  void ThreadMain(int id);
  boost::fibers::buffered_channel<std::function<void()>> tasks_{1024};
  std::vector<std::thread> threads_;
  std::vector<class SpinningWorkStealing*> peers_;  // each thread's scheduling algorithm
  std::mutex start_mu_;
  std::condition_variable start_cv_;
  int started_ = 0;
#endif
};

// Lets other fibers on this thread run.
void YieldFiber();
// Parks the calling fiber (not its thread) for `d`.
void SleepFiber(std::chrono::microseconds d);

// Counts outstanding tasks; Wait() blocks the calling fiber (or thread) until all are Done().
class WaitGroup {
 public:
  void Add(int n);
  void Done();
  void Wait();

 private:
  FiberMutex mu_;
  FiberCondition cv_;
  int pending_ = 0;
};

// Runs fn(0..n-1) as n fibers on the global pool and waits for all of them.
void ParallelFor(int n, const std::function<void(int)>& fn);

}  // namespace tessera
