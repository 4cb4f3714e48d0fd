// The Trainer's passes over its data set, on the pool's threads: the check that X is finite when
// fit is called, and the gather of each minibatch's rows. Both wait on memory (an MNIST-size X is
// 188 MB, its rows read in shuffled order), and two threads keep twice as much of it in flight.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels.h"
#include "pool.h"

namespace hg {

// Fewer bytes than this are done on the caller alone: a pool job costs a few µs.
constexpr size_t kParallelData = size_t(1) << 16;

// Whether every entry of p[n] is finite (kernels.h's allFinite, a range a thread).
template <typename T>
bool allFiniteOn(const T* p, size_t n, int threads) {
  if (threads <= 1 || n * sizeof(T) < kParallelData) return allFinite(p, n);
  bool finite[Pool::kMaxParts];
  const int parts = Pool::chunks(n, 64, kParallelData / sizeof(T), threads, [&](int part, size_t i0, size_t i1) { finite[part] = allFinite(p + i0, i1 - i0); });
  bool all = true;
  for (int i = 0; i < parts; ++i) all &= finite[i];
  return all;
}

// Xb[b·D …] = X[rows[b]·D …] for b in [0, B): rows already checked to lie inside X.
template <typename T>
void gatherRows(const T* X, size_t D, const int32_t* rows, size_t B, T* Xb, int threads) {
  const size_t bytes = D * sizeof(T);
  const auto copy = [&](int, size_t b0, size_t b1) {
    for (size_t b = b0; b < b1; ++b) std::memcpy(Xb + b * D, X + size_t(rows[b]) * D, bytes);
  };
  if (threads <= 1 || B * bytes < kParallelData) return copy(0, 0, B);
  Pool::chunks(B, 1, (kParallelData / 4 + bytes - 1) / bytes, threads, copy);
}

}  // namespace hg
