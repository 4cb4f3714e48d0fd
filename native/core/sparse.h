// The first Linear on a mostly-zero input: Z = X·W + b and dW = Xᵀ·dZ over X's nonzero entries only.
// Images with a blank background (MNIST: 81% zeros) and one-hot columns are mostly zeros; a dense
// GEMM multiplies every one of them. Here each X entry is read once, its nonzeros kept in
// compressed rows (for Z) and columns (for dW); the products with a zero, which add ±0 to a sum,
// are skipped. Every output sums its products from zero in one fixed order (increasing k for Z,
// increasing row for dW), then adds the bias (Z) or, when accumulating, the old dW: the BLAS
// contract of linearForward/linearBackward, in another order than OpenBLAS's blocked kernels, so
// the bits are this path's own (documented in the README), the same at any thread count and on
// any x86-64 (a multiply and an add stay two roundings: -ffp-contract=off, no FMA).
// Plain C++ on raw pointers (no Node-API, no BLAS), shared by the core addon and wasm.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels.h"

#ifndef __wasm__
#include <atomic>

#include "pool.h"
#endif
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
#include <immintrin.h>
#endif

namespace hg {

// The sparse path is taken when at most 1/kSparseShare of a batch's entries are nonzero. The whole
// public step on an MNIST-shaped net (`node dist/bench/sparse.js`, 128,784,256,10, float32, on and
// off alternated; 2-core VM): at 24% nonzero 1.58× faster than dense on 1 thread and 0.80–1.14× on
// 2 (4 runs), at MNIST's 19% 1.82× and 1.33–1.75×; the two products alone, measured apart, broke
// even near 40%. Two threads help the sparse kernels less than OpenBLAS's (README), so a quarter
// is near the break-even there.
constexpr uint64_t kSparseShare = 4;

#ifndef __wasm__
// Whether the native addon takes the sparse path where it applies (setSparseInput): one switch for
// the process, as OpenBLAS's thread count is. The WebAssembly build always takes it.
inline std::atomic<bool>& sparseInputSwitch() {
  static std::atomic<bool> on{true};
  return on;
}
#endif
inline bool sparseInputOn() {
#ifndef __wasm__
  return sparseInputSwitch().load(std::memory_order_relaxed);
#else
  return true;
#endif
}
// Below this many multiply-adds the dense loops are cheaper than compressing X (and a toy net's
// products keep their bits): blas.h's kSmallGemm, which the WebAssembly build does not include.
constexpr double kSparseMinProduct = 4096;

// The nonzeros of X [B, in], by rows then by columns: views into the workspace (stack.h Layout).
template <typename T>
struct SparseInput {
  int32_t* rowStart;  // [B + 1]: row i's entries are [rowStart[i], rowStart[i + 1])
  int32_t* cols;      // [cap + in]: their columns (room for a row written past cap before the check)
  T* vals;            // [cap + in]: their values
  int32_t* colStart;  // [in + 1]: column k's entries are [colStart[k], colStart[k + 1])
  int32_t* rows;      // [cap]: their rows, increasing within a column
  T* colVals;         // [cap]
  uint64_t cap;       // B·in / kSparseShare
};

// Entries [k0, in) of one row appended at n; returns the new count. Branch-free: every entry is
// written at n, which moves past the nonzeros only, so a row writes at most `in` entries past the
// count (the arrays' `in` extra slots).
template <typename T>
inline __attribute__((always_inline)) size_t compressRowFrom(const T* x, size_t k0, size_t in, int32_t* cols, T* vals, size_t n) {
  for (size_t k = k0; k < in; ++k) {
    const T v = x[k];
    cols[n] = int32_t(k);
    vals[n] = v;
    n += v != T(0);
  }
  return n;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
// AVX-512's compress-store writes a vector's nonzero lanes contiguously, 16 floats or 8 doubles
// per compare (a 128-row MNIST batch: 57 → 6 µs); the entries past the last whole vector go
// through the loop above. The compare is "not equal, or unordered": NaN is kept.
__attribute__((target("avx512f"))) inline size_t compressRow512(const float* x, size_t in, int32_t* cols, float* vals, size_t n) {
  size_t k = 0;
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (; k + 16 <= in; k += 16) {
    const __m512 v = _mm512_loadu_ps(x + k);
    const __mmask16 keep = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    _mm512_mask_compressstoreu_ps(vals + n, keep, v);
    _mm512_mask_compressstoreu_epi32(cols + n, keep, index);
    n += size_t(__builtin_popcount(keep));
    index = _mm512_add_epi32(index, _mm512_set1_epi32(16));
  }
  return compressRowFrom(x, k, in, cols, vals, n);
}
__attribute__((target("avx512f"))) inline size_t compressRow512(const double* x, size_t in, int32_t* cols, double* vals, size_t n) {
  size_t k = 0;
  __m512i index = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 0, 0, 0, 0, 0, 0, 0, 0);
  for (; k + 8 <= in; k += 8) {
    const __m512d v = _mm512_loadu_pd(x + k);
    const __mmask8 keep = _mm512_cmp_pd_mask(v, _mm512_setzero_pd(), _CMP_NEQ_UQ);
    _mm512_mask_compressstoreu_pd(vals + n, keep, v);
    _mm512_mask_compressstoreu_epi32(cols + n, __mmask16(keep), index);
    n += size_t(__builtin_popcount(keep));
    index = _mm512_add_epi32(index, _mm512_set1_epi32(8));
  }
  return compressRowFrom(x, k, in, cols, vals, n);
}
#endif

// Compresses X by rows, reading each entry once (another thread may write X meanwhile: what was
// read is what is used, and nothing is written past the arrays). NaN is nonzero, so it reaches Z.
// False when X has more than cap nonzeros: the dense path then runs.
template <typename T>
bool compressRows(const T* X, size_t B, size_t in, const SparseInput<T>& s) {
  size_t n = 0;
  s.rowStart[0] = 0;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
  const bool wide = __builtin_cpu_supports("avx512f");
#endif
  for (size_t i = 0; i < B; ++i) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
    n = wide ? compressRow512(X + i * in, in, s.cols, s.vals, n) : compressRowFrom(X + i * in, 0, in, s.cols, s.vals, n);
#else
    n = compressRowFrom(X + i * in, 0, in, s.cols, s.vals, n);
#endif
    if (n > s.cap) return false;
    s.rowStart[i + 1] = int32_t(n);
  }
  return true;
}

// The same entries by columns, each column's rows in increasing order.
template <typename T>
void compressColumns(size_t B, size_t in, const SparseInput<T>& s) {
  std::memset(s.colStart, 0, (in + 1) * sizeof(int32_t));
  const size_t nnz = size_t(s.rowStart[B]);
  for (size_t p = 0; p < nnz; ++p) ++s.colStart[s.cols[p] + 1];
  for (size_t k = 0; k < in; ++k) s.colStart[k + 1] += s.colStart[k];
  // Filled from the back, so each column's start ends where it began and its rows stay in order.
  for (size_t i = B; i-- > 0;)
    for (int32_t p = s.rowStart[i + 1]; p-- > s.rowStart[i];) {
      const int32_t at = --s.colStart[s.cols[p] + 1];
      s.rows[at] = int32_t(i);
      s.colVals[at] = s.vals[p];
    }
  // colStart[k + 1] was walked down to column k's first entry: move each start into place.
  for (size_t k = 0; k < in; ++k) s.colStart[k] = s.colStart[k + 1];
  s.colStart[in] = int32_t(nnz);
}

template <size_t Bytes>
struct SameSizeInt;
template <>
struct SameSizeInt<4> { typedef int32_t type; };
template <>
struct SameSizeInt<8> { typedef int64_t type; };

// One 64-byte vector: 16 floats or 8 doubles; their bits as integers of the same width.
template <typename T>
struct Lanes {
  typedef T V __attribute__((vector_size(64)));
  typedef typename SameSizeInt<sizeof(T)>::type I;
  typedef I VI __attribute__((vector_size(64)));
  static constexpr size_t L = 64 / sizeof(T);
  static constexpr I kExponent = sizeof(T) == 4 ? I(0x7f800000) : I(0x7ff0000000000000LL);
};

// Columns [j0, j0 + kVec·L) of sparseRowSum: kVec vectors of sums in registers through every p
// (at 16, a whole 256-float row of an MNIST net: one index load per 16 vector products, measured
// 25–30% faster than 4 at a time; 16 wants AVX-512's 32 registers, fewer fit narrower ones).
template <int kVec, typename T>
inline __attribute__((always_inline)) void sparseBlock(size_t j0, size_t N, const int32_t* index, const T* x, size_t count,
                                                       const T* M, const T* base, T* out, typename Lanes<T>::VI& bad) {
  typedef typename Lanes<T>::V V;
  typedef typename Lanes<T>::VI VI;
  constexpr size_t L = Lanes<T>::L;
  V a[kVec] = {};
  for (size_t p = 0; p < count; ++p) {
    const T* m = M + size_t(index[p]) * N + j0;
    const T v = x[p];
#pragma GCC unroll 16
    for (int q = 0; q < kVec; ++q) {
      V w;
      std::memcpy(&w, m + q * L, 64);
      a[q] += v * w;
    }
  }
#pragma GCC unroll 16
  for (int q = 0; q < kVec; ++q) {
    if (base) {
      V b;
      std::memcpy(&b, base + j0 + q * L, 64);
      a[q] = b + a[q];
    }
    VI bits;
    std::memcpy(&bits, &a[q], 64);
    bad |= (bits & Lanes<T>::kExponent) == Lanes<T>::kExponent;
    std::memcpy(out + j0 + q * L, &a[q], 64);
  }
}

// out[j] = base(j) + Σ_p x_p · M[index_p, j] for j in [0, N), the sum formed from zero in p order:
// blocks of kVec vectors, then single vectors, then the last columns one at a time, each column's
// operations the same in all three (the same bits). base is null for 0.
// Returns whether an output is NaN or ±Infinity (its exponent bits all set), tested on the
// registers before they are stored: the scan of the written gradient, at no extra pass.
template <int kVec, typename T>
inline __attribute__((always_inline)) bool sparseRowSum(size_t N, const int32_t* index, const T* x, size_t count,
                                                        const T* M, const T* base, T* out) {
  typedef typename Lanes<T>::I I;
  constexpr size_t L = Lanes<T>::L;
  typename Lanes<T>::VI bad = {};
  size_t j0 = 0;
  for (; j0 + kVec * L <= N; j0 += kVec * L) sparseBlock<kVec>(j0, N, index, x, count, M, base, out, bad);
  for (; j0 + L <= N; j0 += L) sparseBlock<1>(j0, N, index, x, count, M, base, out, bad);
  I any = 0;
  for (size_t j = j0; j < N; ++j) {
    T sum = T(0);
    for (size_t p = 0; p < count; ++p) sum += x[p] * M[size_t(index[p]) * N + j];
    const T o = base ? base[j] + sum : sum;
    I bits;
    std::memcpy(&bits, &o, sizeof o);
    any |= I((bits & Lanes<T>::kExponent) == Lanes<T>::kExponent);
    out[j] = o;
  }
  for (size_t l = 0; l < L; ++l) any |= bad[l];
  return any != 0;
}

// Rows [i0, i1) of Z [B,out] = b + X·W over the compressed rows.
template <int kVec, typename T>
inline __attribute__((always_inline)) void sparseForwardBody(size_t i0, size_t i1, size_t out, const SparseInput<T>& s,
                                                             const T* W, const T* b, T* Z) {
  for (size_t i = i0; i < i1; ++i) {
    const size_t at = size_t(s.rowStart[i]);
    sparseRowSum<kVec>(out, s.cols + at, s.vals + at, size_t(s.rowStart[i + 1]) - at, W, b, Z + i * out);  // Z: checked with the activation
  }
}

// Rows [k0, k1) of dW [in,out] = Xᵀ·dZ over the compressed columns (accumulate: dW + Xᵀ·dZ);
// whether any is NaN or ±Infinity.
template <int kVec, typename T>
inline __attribute__((always_inline)) bool sparseWeightGradBody(size_t k0, size_t k1, size_t out, const SparseInput<T>& s,
                                                                const T* dZ, T* dW, bool accumulate) {
  bool bad = false;
  for (size_t k = k0; k < k1; ++k) {
    const size_t at = size_t(s.colStart[k]);
    T* row = dW + k * out;
    bad |= sparseRowSum<kVec>(out, s.rows + at, s.colVals + at, size_t(s.colStart[k + 1]) - at, dZ, accumulate ? row : nullptr, row);
  }
  return bad;
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
// The same loops for AVX-512 and AVX2 registers, chosen at run time (the addon's baseline is SSE2).
// Only the vector width changes: every output's operations and their order are the same.
template <typename T>
__attribute__((target("avx512f"))) void sparseForward512(size_t i0, size_t i1, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
  sparseForwardBody<16>(i0, i1, out, s, W, b, Z);
}
template <typename T>
__attribute__((target("avx2"))) void sparseForward256(size_t i0, size_t i1, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
  sparseForwardBody<4>(i0, i1, out, s, W, b, Z);
}
template <typename T>
__attribute__((target("avx512f"))) bool sparseWeightGrad512(size_t k0, size_t k1, size_t out, const SparseInput<T>& s, const T* dZ, T* dW, bool accumulate) {
  return sparseWeightGradBody<16>(k0, k1, out, s, dZ, dW, accumulate);
}
template <typename T>
__attribute__((target("avx2"))) bool sparseWeightGrad256(size_t k0, size_t k1, size_t out, const SparseInput<T>& s, const T* dZ, T* dW, bool accumulate) {
  return sparseWeightGradBody<4>(k0, k1, out, s, dZ, dW, accumulate);
}
#endif

template <typename T>
void sparseForwardRows(size_t i0, size_t i1, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
  if (__builtin_cpu_supports("avx512f")) return sparseForward512(i0, i1, out, s, W, b, Z);
  if (__builtin_cpu_supports("avx2")) return sparseForward256(i0, i1, out, s, W, b, Z);
#endif
  sparseForwardBody<2>(i0, i1, out, s, W, b, Z);
}

template <typename T>
bool sparseWeightGradRows(size_t k0, size_t k1, size_t out, const SparseInput<T>& s, const T* dZ, T* dW, bool accumulate) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
  if (__builtin_cpu_supports("avx512f")) return sparseWeightGrad512(k0, k1, out, s, dZ, dW, accumulate);
  if (__builtin_cpu_supports("avx2")) return sparseWeightGrad256(k0, k1, out, s, dZ, dW, accumulate);
#endif
  return sparseWeightGradBody<2>(k0, k1, out, s, dZ, dW, accumulate);
}

// A job's parts at most: the pool's cap (its claim word holds 8 bits of count); one in wasm.
#ifndef __wasm__
constexpr int kMaxSparseParts = Pool::kMaxParts;
#else
constexpr int kMaxSparseParts = 1;
#endif

// Cuts [0, n) into `parts` ranges of about equal nonzeros (starts[j]: the nonzeros before j) and
// runs each on a thread of the pool (one after another in the WebAssembly build). Each output is
// in exactly one range and is summed there in full: the bits do not depend on the cut.
template <typename Range>
void sparseParts(const int32_t* starts, size_t n, int threads, const Range& range) {
#ifndef __wasm__
  // Four parts a thread: a helper whose core is shared (OpenBLAS's threads poll with sched_yield
  // for a while after each GEMM) claims fewer, and the others take the rest; with one part each,
  // the step waited on the slowest. Part p starts at the first j with starts[j] ≥ p/parts of the
  // nonzeros (starts never decreases).
  const int parts = threads <= 1 ? 1 : 4 * threads < kMaxSparseParts ? 4 * threads : kMaxSparseParts;
  const auto cut = [&](int part) {
    if (part == parts) return n;
    const int64_t want = int64_t(starts[n]) * part / parts;
    size_t lo = 0, hi = n;
    while (lo < hi) {
      const size_t mid = lo + (hi - lo) / 2;
      if (int64_t(starts[mid]) < want) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  Pool::run(parts, threads, [&](int part) { range(part, cut(part), cut(part + 1)); });
#else
  (void)starts;
  (void)threads;
  range(0, size_t(0), n);
#endif
}

// Z [B,out] = b + X·W and dW [in,out] = Xᵀ·dZ (+ dW when accumulating), on `threads` threads.
template <typename T>
void sparseForward(size_t B, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z, int threads) {
  sparseParts(s.rowStart, B, threads, [&](int, size_t i0, size_t i1) { sparseForwardRows(i0, i1, out, s, W, b, Z); });
}

// Returns whether dW has a NaN or ±Infinity (its scan, done on the registers).
template <typename T>
bool sparseWeightGrad(size_t in, size_t out, const SparseInput<T>& s, const T* dZ, T* dW, bool accumulate, int threads) {
  bool bad[kMaxSparseParts] = {};  // each part's own flag: the pool's completion orders the writes
  sparseParts(s.colStart, in, threads, [&](int part, size_t k0, size_t k1) { bad[part] = sparseWeightGradRows(k0, k1, out, s, dZ, dW, accumulate); });
  for (bool b : bad)
    if (b) return true;
  return false;
}

// Whether every row of W [in,out] that no entry of X multiplies is finite. Those rows are skipped
// by the sparse forward, where the dense product would have met them as 0·NaN or 0·Infinity = NaN
// and failed: checked here so that both paths fail alike. (The rows X does use show in Z.)
template <typename T>
bool unusedRowsFinite(size_t in, size_t out, const SparseInput<T>& s, const T* W) {
  for (size_t k = 0; k < in; ++k)
    if (s.colStart[k] == s.colStart[k + 1] && !allFinite(W + k * out, out)) return false;
  return true;
}

}  // namespace hg
