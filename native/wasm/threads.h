// The threaded build's pool (scripts/build-wasm.mjs builds handgrad-threads.wasm with
// -DHG_WASM_THREADS, -matomics and a shared memory; lib/engine/wasm-threads.ts starts the workers).
// Every worker is an instance of the same module on the same shared memory, parked in workerLoop
// with its own stack (workerStack). A job is work cut into independent blocks (parallelBlocks):
// gemm.h cuts a GEMM big enough to pay for waking them into blocks of C — whole rows or whole
// columns, never a cut along k — and the activation's backward pass into bands of columns
// (forColumnBlocks), so each output is computed exactly as on one thread, whichever thread computes
// it: the bits do not depend on the threads.
//
// The caller publishes a job and claims blocks itself like any worker, then waits until every block
// is done. So the work never depends on a worker being there: with none started yet (they start
// asynchronously) or none at all, the calling thread computes every block.
#pragma once

#include <stdint.h>

namespace hg {
namespace wasm {

constexpr int kMaxThreads = 8;
constexpr int kWorkerStackBytes = 64 * 1024;  // a GEMM block needs a few hundred bytes of stack

// One job: block b of it is task(context, b, thread), thread the runner's index (its packing
// buffers in gemm.h). context lives on the caller's stack, in the shared memory; task is called
// through the table every instance of the module fills alike.
struct Job {
  void (*task)(const void* context, uint32_t block, int thread);
  const void* context;
};

// The claim word: generation (8 bits) | block count (12 bits) | next unclaimed block (12 bits), so
// one fetch_add claims a block of a known job and count; a claim past the count claims nothing.
// Claims past the count are at most one per thread per job, so `next` never carries into `count`.
constexpr uint32_t kNextBits = 12, kCountBits = 12;
static_assert(3 * kMaxThreads < (1 << kNextBits), "2 blocks a thread plus one failed claim each must fit in `next`");
inline uint32_t nextOf(uint32_t w) { return w & ((1u << kNextBits) - 1); }
inline uint32_t countOf(uint32_t w) { return (w >> kNextBits) & ((1u << kCountBits) - 1); }

struct Pool {
  uint32_t claim;        // the claim word (atomic)
  uint32_t done;         // blocks finished in this job (atomic)
  int threads;           // 1 + the workers lib/engine/wasm-threads.ts started
  Job job;               // written before the claim word publishes it
  uint32_t blocksRun[kMaxThreads];  // by each thread, ever (atomic): test/55 sees the workers work
  uint32_t spin;         // polls of a word before sleeping on it (kSpinPolls; setSpin changes it)
};

// How long a thread polls a word before it sleeps on it (memory.atomic.wait), as a count of polls:
// wasm has no clock; one poll (a load and a compare) costs ~1.5 ns of CPU in Node 20 on this 2-core
// EPYC VM, so 2^17 polls is ~0.2 ms. A worker that slept after each job paid a futex wake-up
// (Atomics.notify → the kernel → a rescheduled thread) at the start of the next, and the caller
// another to learn the last block was done; polling a bounded while first (as OpenBLAS's threads
// do) skips both when the next job is near (dX's GEMM follows dW1's at once). Measured at
// (256,784,1024,10) the step gains nothing beyond this VM's noise from 2^17 to 2^21 polls (the
// wait a profile shows is mostly the caller waiting on a worker whose core another process holds),
// so the bound is short: an idle process, or one between steps, burns at most ~0.2 ms a thread
// before every thread sleeps (test/55 measures an idle process's CPU time). setSpin(0): no polls.
constexpr uint32_t kSpinPolls = 1u << 17;

inline Pool thePool{0, 0, 1, {}, {}, kSpinPolls};  // constant-initialized: no guard, no constructor to run per instance
inline Pool& pool() { return thePool; }

// Claims and runs blocks of the published job until none is left; whether any was run.
inline bool work(int thread) {
  Pool& p = pool();
  bool ran = false;
  for (;;) {
    const uint32_t w = __atomic_fetch_add(&p.claim, 1u, __ATOMIC_SEQ_CST);
    if (nextOf(w) >= countOf(w)) return ran;
    p.job.task(p.job.context, nextOf(w), thread);  // the job cannot change before this block is counted done
    __atomic_fetch_add(&p.blocksRun[thread], 1u, __ATOMIC_RELAXED);
    ran = true;
    if (__atomic_add_fetch(&p.done, 1u, __ATOMIC_SEQ_CST) == countOf(w))
      __builtin_wasm_memory_atomic_notify(reinterpret_cast<int*>(&p.done), 1);
  }
}

// Polls *word until it differs from seen, at most `polls` times; the last value read.
inline uint32_t pollWhileEqual(const uint32_t* word, uint32_t seen, uint32_t polls) {
  uint32_t v = seen;
  for (uint32_t i = 0; i < polls && v == seen; ++i) v = __atomic_load_n(word, __ATOMIC_SEQ_CST);
  return v;
}

// A worker's whole life: wait on the claim word until a job has blocks left, help, wait again.
// The wait polls first, bounded (kSpinPolls), then sleeps: a spin without a bound would take the
// core the caller's blocks need on a machine whose cores other processes use, and burn it idle.
// The sleep times out now and then only so that Worker.terminate() (a V8 interrupt, checked between
// waits) ends it promptly.
inline void workerLoop(int thread) {
  Pool& p = pool();
  for (;;) {
    const uint32_t w = __atomic_load_n(&p.claim, __ATOMIC_SEQ_CST);
    if (nextOf(w) < countOf(w)) {
      work(thread);
      continue;
    }
    if (pollWhileEqual(&p.claim, w, __atomic_load_n(&p.spin, __ATOMIC_RELAXED)) != w) continue;
    __builtin_wasm_memory_atomic_wait32(reinterpret_cast<int*>(&p.claim), int(w), 50 * 1000 * 1000LL);
  }
}

// Runs a job as `blocks` blocks on the pool (the caller being thread 0).
inline void runOnPool(const Job& job, int blocks) {
  Pool& p = pool();
  p.job = job;
  __atomic_store_n(&p.done, 0u, __ATOMIC_SEQ_CST);
  const uint32_t gen = ((__atomic_load_n(&p.claim, __ATOMIC_SEQ_CST) >> (kNextBits + kCountBits)) + 1) & 0xff;
  __atomic_store_n(&p.claim, (gen << (kNextBits + kCountBits)) | (uint32_t(blocks) << kNextBits), __ATOMIC_SEQ_CST);
  __builtin_wasm_memory_atomic_notify(reinterpret_cast<int*>(&p.claim), uint32_t(p.threads - 1));
  work(0);
  // The last blocks are the workers': poll for them a bounded while, then sleep.
  const uint32_t polls = __atomic_load_n(&p.spin, __ATOMIC_RELAXED);
  for (uint32_t i = 0; i < polls && __atomic_load_n(&p.done, __ATOMIC_SEQ_CST) != uint32_t(blocks); ++i) {
  }
  for (;;) {
    const uint32_t d = __atomic_load_n(&p.done, __ATOMIC_SEQ_CST);
    if (d == uint32_t(blocks)) break;
    // Node lets its main thread wait (a browser's would not; there the workers' blocks are short).
    __builtin_wasm_memory_atomic_wait32(reinterpret_cast<int*>(&p.done), int(d), 1000 * 1000LL);
  }
}

// Runs fn(block, thread) for blocks 0…blocks−1 on the pool, the caller among the threads, and
// returns when every block is done.
template <typename F>
void parallelBlocks(int blocks, const F& fn) {
  runOnPool({[](const void* context, uint32_t block, int thread) { (*static_cast<const F*>(context))(block, thread); }, &fn}, blocks);
}

}  // namespace wasm
}  // namespace hg
