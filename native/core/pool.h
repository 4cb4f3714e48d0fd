// Helper threads for the work OpenBLAS's own threads do not run: the sparse kernels (sparse.h) and
// the blocks of a product cut between BLAS lanes (blas.h, lanes.h). One process-wide pool, its size
// OpenBLAS's thread count (setNumThreads sets both), started on first use.
// A job is cut into parts that the caller and the helpers claim with one atomic add each; a part
// is a fixed range of outputs, so which thread computes it never changes its bits. A caller that
// finds the pool busy (another Node thread's step) runs every part itself.
// Between jobs a helper sleeps (a condition variable), after polling for kPoll when the last job
// asked for it (poll = true: the lanes' blocks, whose step runs product after product on this pool).
// Without polling, the lanes' two-layer step at (64,128,256,10) f64 was 8% slower than OpenBLAS's
// threads (each product waited for a helper to wake); with it, 7–11% faster. Polling measured no
// faster after the sparse kernels' jobs (MNIST epochs, 0, 0.1 and 1 ms alternated), where the
// pollers competed with OpenBLAS's own threads for the second core: those jobs do not ask for it.
// A helper that wakes late costs only its share, since the caller claims parts as well. Native
// builds only: the WebAssembly build runs the parts in turn (sparse.h).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "product.h"

namespace hg {

class Pool {
 public:
  static constexpr int kMaxParts = kMaxBlocks;
  static constexpr std::chrono::microseconds kPoll{200};

  // Runs part(i) for i in [0, parts) and returns when all are done (more than kMaxParts parts: all
  // on the caller, in turn).
  template <typename F>
  static void run(int parts, int threads, const F& part, bool poll = false) {
    Pool* p = threads > 1 && parts > 1 && parts <= kMaxParts ? instance() : nullptr;
    std::unique_lock<std::mutex> own;
    if (p) own = std::unique_lock<std::mutex>(p->busy_, std::try_to_lock);
    if (!p || !own.owns_lock()) {
      for (int i = 0; i < parts; ++i) part(i);
      return;
    }
    p->grow(std::min(threads, kMaxParts) - 1);
    p->call_ = [](const void* f, int i) { (*static_cast<const F*>(f))(i); };
    p->ctx_ = &part;
    p->poll_.store(poll, std::memory_order_relaxed);
    p->done_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> g(p->sleep_);
      const uint64_t generation = (p->claim_.load(std::memory_order_relaxed) >> 32) + 1;
      p->claim_.store(generation << 32 | uint64_t(parts) << 24, std::memory_order_release);
    }
    // As many helpers as the job wants (the pool keeps those a larger thread count started).
    for (int i = 1; i < std::min(threads, parts); ++i) p->wake_.notify_one();
    p->work();
    // The helpers' parts end within microseconds of the caller's: pause before yielding the core
    // (sched_yield was 5% of a (64,128,256,10) step's samples by perf).
    for (int i = 0; p->done_.load(std::memory_order_acquire) < parts; ++i) {
      if (i < 4096) spinPause();
      else std::this_thread::yield();
    }
  }

  // range(part, i0, i1) over [0, n) cut into contiguous ranges that start at multiples of `align`,
  // four a thread (a helper whose core is busy claims fewer, the others take the rest), none
  // shorter than minChunk: for passes over memory whose every element is computed alone (the
  // update, a copy, a scan), whose results then do not depend on the cut. Returns the part count.
  template <typename F>
  static int chunks(size_t n, size_t align, size_t minChunk, int threads, const F& range) {
    const size_t most = std::max<size_t>(1, n / std::max<size_t>(minChunk, 1));
    const int parts = threads <= 1 ? 1 : int(std::min<size_t>({size_t(4) * size_t(threads), size_t(kMaxParts), most}));
    const auto cut = [&](int i) { return i >= parts ? n : std::min(n, n * size_t(i) / size_t(parts) / align * align); };
    run(parts, threads, [&](int i) { range(i, cut(i), cut(i + 1)); });
    return parts;
  }

 private:
  // Never destroyed: helpers parked at exit must not be joined by a static destructor.
  static Pool* instance() {
    static Pool* p = new Pool();
    return p;
  }

  void grow(int helpers) {
    while (started_ < helpers) {
      std::thread([this] { helper(); }).detach();
      ++started_;
    }
  }

  // Claims and runs parts until none is left. A claim is one add to the whole word, so the part
  // number and the part count come from the same job; a claim past the count (a helper late for a
  // job already done) runs nothing. While a claimed part runs its job is not done, so the caller
  // that set call_ and ctx_ is still waiting and no other job can replace them.
  void work() {
    for (;;) {
      const uint64_t w = claim_.fetch_add(1, std::memory_order_acq_rel);
      const uint64_t part = w & 0xffffff, parts = (w >> 24) & 0xff;
      if (part >= parts) return;
      call_(ctx_, int(part));
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  uint64_t generation() const { return claim_.load(std::memory_order_acquire) >> 32; }

  void helper() {
    uint64_t seen = generation();
    for (;;) {
      // Polls for kPoll first: a step's products follow each other within microseconds, and a
      // sleeping helper takes tens of them to wake.
      const auto until = std::chrono::steady_clock::now() + kPoll;
      for (int i = 1; poll_.load(std::memory_order_relaxed) && generation() == seen; ++i) {
        spinPause();
        if (i % 64 == 0 && std::chrono::steady_clock::now() > until) break;
      }
      if (generation() == seen) {
        std::unique_lock<std::mutex> g(sleep_);
        wake_.wait(g, [&] { return generation() != seen; });
      }
      seen = generation();
      work();
    }
  }

  static void spinPause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
  }

  std::mutex busy_;   // one job at a time
  std::mutex sleep_;  // with wake_: a helper's sleep between jobs
  std::condition_variable wake_;
  // generation (32 bits) | part count (8) | next unclaimed part (24): at most kMaxParts claims
  // succeed and each thread makes one failed claim a job, so `next` never carries.
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> poll_{false};  // the last job's: poll before sleeping
  int started_ = 0;
  void (*call_)(const void*, int) = nullptr;
  const void* ctx_ = nullptr;
};

}  // namespace hg
