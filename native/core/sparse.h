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

// AVX2 has no compress-store: a vector's nonzero lanes are moved to its front by a permutation
// looked up by the compare's mask (the left-packing table: for each mask, the kept lanes' indices
// in order), and the whole vector is stored; the count moves past the kept lanes only, as above.
// 32-bit lane indices: a double's lane j is the pair 2j, 2j + 1.
struct LeftPack {
  int32_t floats[256][8];  // 8 float lanes
  int32_t doubles[16][8];  // 4 double lanes, as pairs of 32-bit lanes
  int32_t columns[16][4];  // the 4 double lanes' own indices, for the columns
};
constexpr LeftPack leftPack() {
  LeftPack t{};
  for (int m = 0; m < 256; ++m)
    for (int j = 0, n = 0; j < 8; ++j)
      if (m >> j & 1) t.floats[m][n++] = j;
  for (int m = 0; m < 16; ++m)
    for (int j = 0, n = 0; j < 4; ++j)
      if (m >> j & 1) {
        t.doubles[m][2 * n] = 2 * j;
        t.doubles[m][2 * n + 1] = 2 * j + 1;
        t.columns[m][n++] = j;
      }
  return t;
}
inline constexpr LeftPack kLeftPack = leftPack();

// 8 floats a compare: a 128-row MNIST batch in 34–41 µs where the loop above took 117–150 (Zen 3).
__attribute__((target("avx2,popcnt"))) inline size_t compressRow256(const float* x, size_t in, int32_t* cols, float* vals, size_t n) {
  size_t k = 0;
  for (; k + 8 <= in; k += 8) {
    const __m256 v = _mm256_loadu_ps(x + k);
    const int keep = _mm256_movemask_ps(_mm256_cmp_ps(v, _mm256_setzero_ps(), _CMP_NEQ_UQ));
    const __m256i to = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLeftPack.floats[keep]));
    _mm256_storeu_ps(vals + n, _mm256_permutevar8x32_ps(v, to));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(cols + n), _mm256_add_epi32(to, _mm256_set1_epi32(int32_t(k))));
    n += size_t(__builtin_popcount(unsigned(keep)));
  }
  return compressRowFrom(x, k, in, cols, vals, n);
}
__attribute__((target("avx2,popcnt"))) inline size_t compressRow256(const double* x, size_t in, int32_t* cols, double* vals, size_t n) {
  size_t k = 0;
  for (; k + 4 <= in; k += 4) {
    const __m256d v = _mm256_loadu_pd(x + k);
    const int keep = _mm256_movemask_pd(_mm256_cmp_pd(v, _mm256_setzero_pd(), _CMP_NEQ_UQ));
    const __m256i to = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kLeftPack.doubles[keep]));
    _mm256_storeu_pd(vals + n, _mm256_castps_pd(_mm256_permutevar8x32_ps(_mm256_castpd_ps(v), to)));
    const __m128i at = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kLeftPack.columns[keep]));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cols + n), _mm_add_epi32(at, _mm_set1_epi32(int32_t(k))));
    n += size_t(__builtin_popcount(unsigned(keep)));
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
  const KernelSet set = kernelSet();
#endif
  for (size_t i = 0; i < B; ++i) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
    n = set == KernelSet::Avx512 ? compressRow512(X + i * in, in, s.cols, s.vals, n)
        : set == KernelSet::Avx2 ? compressRow256(X + i * in, in, s.cols, s.vals, n)
                                 : compressRowFrom(X + i * in, 0, in, s.cols, s.vals, n);
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

// One vector of Bytes bytes (64: AVX-512's registers, 16 floats or 8 doubles; 32: AVX2's; 16: SSE2's,
// NEON's and WebAssembly's); their bits as integers of the same width. Each build of the loops
// below takes its own registers' width: GCC lowers a wider vector type than the target has through
// memory (64-byte vectors under AVX2 ran the sparse products 16× slower than under AVX-512).
template <typename T, size_t W>
struct Lanes {
  typedef T V __attribute__((vector_size(W)));
  typedef typename SameSizeInt<sizeof(T)>::type I;
  typedef I VI __attribute__((vector_size(W)));
  static constexpr size_t L = W / sizeof(T);
  static constexpr I kExponent = sizeof(T) == 4 ? I(0x7f800000) : I(0x7ff0000000000000LL);
};

// out[0, kVec·L) = base + a (a alone when base is null), each value's exponent bits tested on the
// registers before the store (bad: NaN or ±Infinity seen).
template <int kVec, size_t Bytes, typename T>
inline __attribute__((always_inline)) void storeSums(typename Lanes<T, Bytes>::V* a, const T* base, T* out, typename Lanes<T, Bytes>::VI& bad) {
  typedef typename Lanes<T, Bytes>::V V;
  typedef typename Lanes<T, Bytes>::VI VI;
  constexpr size_t L = Lanes<T, Bytes>::L;
#pragma GCC unroll 16
  for (int q = 0; q < kVec; ++q) {
    if (base) {
      V b;
      std::memcpy(&b, base + q * L, Bytes);
      a[q] = b + a[q];
    }
    VI bits;
    std::memcpy(&bits, &a[q], Bytes);
    bad |= (bits & Lanes<T, Bytes>::kExponent) == Lanes<T, Bytes>::kExponent;
    std::memcpy(out + q * L, &a[q], Bytes);
  }
}

// Columns [j0, j0 + kVec·L) of sparseRowSum: kVec vectors of sums in registers through every p
// (at 16, a whole 256-float row of an MNIST net: one index load per 16 vector products, measured
// 25–30% faster than 4 at a time; 16 wants AVX-512's 32 registers, fewer fit narrower ones).
template <int kVec, size_t Bytes, typename T>
inline __attribute__((always_inline)) void sparseBlock(size_t j0, size_t ld, const int32_t* index, const T* x, size_t count,
                                                       const T* M, const T* base, T* out, typename Lanes<T, Bytes>::VI& bad) {
  typedef typename Lanes<T, Bytes>::V V;
  constexpr size_t L = Lanes<T, Bytes>::L;
  V a[kVec] = {};
  for (size_t p = 0; p < count; ++p) {
    const T* m = M + size_t(index[p]) * ld + j0;
    const T v = x[p];
#pragma GCC unroll 16
    for (int q = 0; q < kVec; ++q) {
      V w;
      std::memcpy(&w, m + q * L, Bytes);
      a[q] += v * w;
    }
  }
  storeSums<kVec, Bytes>(a, base ? base + j0 : nullptr, out + j0, bad);
}

// out[j] = base(j) + Σ_p x_p · M[index_p, j] for j in [0, N), M's rows ld apart, the sum formed
// from zero in p order: blocks of kVec vectors, then single vectors, then the last columns one at
// a time, each column's operations the same in all three (the same bits). base is null for 0.
// Returns whether an output is NaN or ±Infinity (its exponent bits all set), tested on the
// registers before they are stored: the scan of the written gradient, at no extra pass.
template <int kVec, size_t Bytes, typename T>
inline __attribute__((always_inline)) bool sparseRowSum(size_t N, size_t ld, const int32_t* index, const T* x, size_t count,
                                                        const T* M, const T* base, T* out) {
  typedef typename Lanes<T, Bytes>::I I;
  constexpr size_t L = Lanes<T, Bytes>::L;
  typename Lanes<T, Bytes>::VI bad = {};
  size_t j0 = 0;
  for (; j0 + kVec * L <= N; j0 += kVec * L) sparseBlock<kVec, Bytes>(j0, ld, index, x, count, M, base, out, bad);
  for (; j0 + L <= N; j0 += L) sparseBlock<1, Bytes>(j0, ld, index, x, count, M, base, out, bad);
  I any = 0;
  for (size_t j = j0; j < N; ++j) {
    T sum = T(0);
    for (size_t p = 0; p < count; ++p) sum += x[p] * M[size_t(index[p]) * ld + j];
    const T o = base ? base[j] + sum : sum;
    I bits;
    std::memcpy(&bits, &o, sizeof o);
    any |= I((bits & Lanes<T, Bytes>::kExponent) == Lanes<T, Bytes>::kExponent);
    out[j] = o;
  }
  for (size_t l = 0; l < L; ++l) any |= bad[l];
  return any != 0;
}

// Rows [i0, i1) of Z [B,out] = b + X·W over the compressed rows.
template <int kVec, size_t Bytes, typename T>
inline __attribute__((always_inline)) void sparseForwardBody(size_t i0, size_t i1, size_t out, const SparseInput<T>& s,
                                                             const T* W, const T* b, T* Z) {
  for (size_t i = i0; i < i1; ++i) {
    const size_t at = size_t(s.rowStart[i]);
    sparseRowSum<kVec, Bytes>(out, out, s.cols + at, s.vals + at, size_t(s.rowStart[i + 1]) - at, W, b, Z + i * out);  // Z: checked with the activation
  }
}

// Rows [k0, k1) of dW [in,out] = Xᵀ·dZ over the compressed columns (accumulate: dW + Xᵀ·dZ);
// whether any is NaN or ±Infinity.
template <int kVec, size_t Bytes, typename T>
inline __attribute__((always_inline)) bool sparseWeightGradBody(size_t k0, size_t k1, size_t out, const SparseInput<T>& s,
                                                                const T* dZ, T* dW, bool accumulate) {
  bool bad = false;
  for (size_t k = k0; k < k1; ++k) {
    const size_t at = size_t(s.colStart[k]);
    T* row = dW + k * out;
    bad |= sparseRowSum<kVec, Bytes>(out, out, s.rows + at, s.colVals + at, size_t(s.colStart[k + 1]) - at, dZ, accumulate ? row : nullptr, row);
  }
  return bad;
}

// dZ [B,out] in panels for the dW kernel below (AVX-512 and AVX2): panel q holds columns
// [q·w, q·w + w) of every row contiguously, w columns of panelBytes (the last panel narrower when
// w does not divide out), B·out elements in all. Summing a column of X's nonzeros reads rows of dZ
// in no order a prefetcher can follow: whole rows of an MNIST net's dZ are 1 KB each, 128 KB in
// all, read from L2 for every nonzero; one panel of them stays in L1 while every column of X runs
// over it. Copied rather than read in place, since rows 1 KB apart fall on a sixteenth of L1's
// sets and evict each other. A panel is four vectors wide, so that the two rows' eight sums take
// 8 registers: 256 bytes a row under AVX-512 (a 32 KB panel for 128 rows), 128 under AVX2 (16 KB).
// Under AVX2 on Zen 3 (an MNIST batch, the sparse kernels alone, one thread) dW took 227 µs from
// the panels where it took 293 reading whole rows of dZ.
constexpr size_t kPanelVectors = 4;
inline size_t panelBytes(KernelSet k) { return kPanelVectors * (k == KernelSet::Avx512 ? 64 : 32); }

template <typename T>
void packPanels(const T* dZ, size_t B, size_t out, size_t w, T* panels) {
  for (size_t j0 = 0; j0 < out; j0 += w) {
    const size_t width = out - j0 < w ? out - j0 : w;
    T* panel = panels + B * j0;
    for (size_t i = 0; i < B; ++i) std::memcpy(panel + i * width, dZ + i * out + j0, width * sizeof(T));
  }
}

// Two rows of dW over one whole panel (kVec vectors wide), a and b: the sums of each formed from
// zero in its own row order as sparseRowSum forms them (the same bits), the two chains
// interleaved while both have terms, so the CPU overlaps one's additions with the other's (one
// chain of four vectors waits on its adds' latency: measured slower than the whole-row loop).
template <int kVec, size_t Bytes, typename T>
inline __attribute__((always_inline)) void sparsePanelPair(const T* panel, const int32_t* ia, const T* xa, size_t ca, const T* baseA, T* outA,
                                                           const int32_t* ib, const T* xb, size_t cb, const T* baseB, T* outB,
                                                           typename Lanes<T, Bytes>::VI& bad) {
  typedef typename Lanes<T, Bytes>::V V;
  constexpr size_t L = Lanes<T, Bytes>::L, ld = size_t(kVec) * L;
  V a[kVec] = {}, b[kVec] = {};
  const auto add = [&](V* sums, const T* row, T x) {
#pragma GCC unroll 16
    for (int q = 0; q < kVec; ++q) {
      V w;
      std::memcpy(&w, row + q * L, Bytes);
      sums[q] += x * w;
    }
  };
  const size_t both = ca < cb ? ca : cb;
  size_t p = 0;
  for (; p < both; ++p) {
    add(a, panel + size_t(ia[p]) * ld, xa[p]);
    add(b, panel + size_t(ib[p]) * ld, xb[p]);
  }
  for (size_t r = p; r < ca; ++r) add(a, panel + size_t(ia[r]) * ld, xa[r]);
  for (size_t r = p; r < cb; ++r) add(b, panel + size_t(ib[r]) * ld, xb[r]);
  storeSums<kVec, Bytes>(a, baseA, outA, bad);
  storeSums<kVec, Bytes>(b, baseB, outB, bad);
}

// Rows [k0, k1) of dW from dZ's panels (packPanels): each whole panel two rows at a time, a
// narrower last panel by sparseRowSum. Whether any is NaN or ±Infinity.
template <size_t Bytes, typename T>
inline __attribute__((always_inline)) bool sparseWeightGradPanels(size_t k0, size_t k1, size_t B, size_t out, const SparseInput<T>& s,
                                                                  const T* panels, T* dW, bool accumulate) {
  constexpr int kVec = int(kPanelVectors);
  constexpr size_t w = kPanelVectors * Bytes / sizeof(T);
  typename Lanes<T, Bytes>::VI bad = {};
  bool any = false;
  const auto count = [&](size_t k) { return size_t(s.colStart[k + 1] - s.colStart[k]); };
  for (size_t j0 = 0; j0 < out; j0 += w) {
    const size_t width = out - j0 < w ? out - j0 : w;
    const T* panel = panels + B * j0;
    size_t k = k0;
    if (width == w) {
      for (; k + 2 <= k1; k += 2) {
        T* ra = dW + k * out + j0;
        T* rb = ra + out;
        const size_t a = size_t(s.colStart[k]), b = size_t(s.colStart[k + 1]);
        sparsePanelPair<kVec, Bytes>(panel, s.rows + a, s.colVals + a, count(k), accumulate ? ra : nullptr, ra,
                              s.rows + b, s.colVals + b, count(k + 1), accumulate ? rb : nullptr, rb, bad);
      }
    }
    for (; k < k1; ++k) {
      T* row = dW + k * out + j0;
      const size_t at = size_t(s.colStart[k]);
      any |= sparseRowSum<kVec, Bytes>(width, width, s.rows + at, s.colVals + at, count(k), panel, accumulate ? row : nullptr, row);
    }
  }
  for (size_t l = 0; l < Lanes<T, Bytes>::L; ++l) any |= bad[l] != 0;
  return any;
}

// The loops below run in the instruction set kernels.h's kernelSet() names: only the vector width
// changes, every output's operations and their order are the same (test/59 holds each set to a
// sequential loop).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
// AVX-512: a whole 256-wide row in 16 registers; dW from dZ's panels, two rows at a time.
template <typename T>
__attribute__((target("avx512f"))) void sparseForward512(size_t i0, size_t i1, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
  sparseForwardBody<16, 64>(i0, i1, out, s, W, b, Z);
}
template <typename T>
__attribute__((target("avx512f"))) bool sparseWeightGrad512(size_t k0, size_t k1, size_t B, size_t out, const SparseInput<T>& s, const T* panels, T* dW, bool accumulate) {
  return sparseWeightGradPanels<64>(k0, k1, B, out, s, panels, dW, accumulate);
}
// AVX2: 8 of its 16 registers for a row's sums in the forward; dW from dZ's panels, two rows at a time.
template <typename T>
__attribute__((target("avx2"))) void sparseForward256(size_t i0, size_t i1, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
  sparseForwardBody<8, 32>(i0, i1, out, s, W, b, Z);
}
template <typename T>
__attribute__((target("avx2"))) bool sparseWeightGrad256(size_t k0, size_t k1, size_t B, size_t out, const SparseInput<T>& s, const T* panels, T* dW, bool accumulate) {
  return sparseWeightGradPanels<32>(k0, k1, B, out, s, panels, dW, accumulate);
}
#endif

template <typename T>
void sparseForwardRows(KernelSet k, size_t i0, size_t i1, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
  if (k == KernelSet::Avx512) return sparseForward512(i0, i1, out, s, W, b, Z);
  if (k == KernelSet::Avx2) return sparseForward256(i0, i1, out, s, W, b, Z);
#endif
  (void)k;
  sparseForwardBody<8, 16>(i0, i1, out, s, W, b, Z);  // SSE2, NEON, WebAssembly SIMD: 16-byte registers
}

// Whether the dW kernel reads dZ's panels (AVX-512 and AVX2) or dZ itself (the portable set).
inline bool panelsUsed(KernelSet k) { return k == KernelSet::Avx512 || k == KernelSet::Avx2; }

// dZ is dZ's panels when panelsUsed(k).
template <typename T>
bool sparseWeightGradRows(KernelSet k, size_t k0, size_t k1, size_t B, size_t out, const SparseInput<T>& s, const T* dZ, T* dW, bool accumulate) {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
  if (k == KernelSet::Avx512) return sparseWeightGrad512(k0, k1, B, out, s, dZ, dW, accumulate);
  if (k == KernelSet::Avx2) return sparseWeightGrad256(k0, k1, B, out, s, dZ, dW, accumulate);
#endif
  (void)k;
  (void)B;
  return sparseWeightGradBody<8, 16>(k0, k1, out, s, dZ, dW, accumulate);
}

// A job's parts at most: the pool's cap (its claim word holds 8 bits of count); one in wasm.
#ifndef __wasm__
constexpr int kMaxSparseParts = Pool::kMaxParts;
#else
constexpr int kMaxSparseParts = 1;
#endif

// No work alongside a job's ranges (sparseParts).
struct NothingAlongside {
  void operator()() const {}
};
template <typename F>
constexpr bool isNothingAlongside = false;
template <>
constexpr bool isNothingAlongside<NothingAlongside> = true;

// Cuts [0, n) into `parts` ranges of about equal nonzeros (starts[j]: the nonzeros before j) and
// runs each on a thread of the pool (one after another in the WebAssembly build), with
// `alongside()` as one more part of the same job, claimed first. Each output is in exactly one
// range and is summed there in full: the bits do not depend on the cut.
template <typename Range, typename Alongside = NothingAlongside>
void sparseParts(const int32_t* starts, size_t n, int threads, const Range& range, const Alongside& alongside = {}) {
#ifndef __wasm__
  // Four parts a thread: a helper whose core is shared (OpenBLAS's threads poll with sched_yield
  // for a while after each GEMM) claims fewer, and the others take the rest; with one part each,
  // the step waited on the slowest. Part p starts at the first j with starts[j] ≥ p/parts of the
  // nonzeros (starts never decreases). The job's part 0 is `alongside`, when there is one.
  constexpr bool extra = !isNothingAlongside<Alongside>;
  constexpr int most = kMaxSparseParts - (extra ? 1 : 0);
  const int parts = threads <= 1 ? 1 : 4 * threads < most ? 4 * threads : most;
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
  Pool::run(parts + (extra ? 1 : 0), threads, [&](int i) {
    if (extra && i == 0) return alongside();
    const int part = i - (extra ? 1 : 0);
    range(part, cut(part), cut(part + 1));
  });
#else
  (void)starts;
  (void)threads;
  alongside();
  range(0, size_t(0), n);
#endif
}

// Z [B,out] = b + X·W and dW [in,out] = Xᵀ·dZ (+ dW when accumulating), on `threads` threads;
// the forward's job runs `alongside()` too (stack.h: the compression by columns, which only the
// backward reads, and the check of the rows of W that X skips).
template <typename T, typename Alongside = NothingAlongside>
void sparseForward(size_t B, size_t out, const SparseInput<T>& s, const T* W, const T* b, T* Z, int threads, const Alongside& alongside = {}) {
  const KernelSet k = kernelSet();  // read once: every part runs the same loops
  sparseParts(s.rowStart, B, threads, [&](int, size_t i0, size_t i1) { sparseForwardRows(k, i0, i1, out, s, W, b, Z); }, alongside);
}

// Returns whether dW has a NaN or ±Infinity (its scan, done on the registers). panels: room for
// B·out elements, where dZ's panels are packed when the kernel reads them (panelsUsed).
template <typename T>
bool sparseWeightGrad(size_t B, size_t in, size_t out, const SparseInput<T>& s, const T* dZ, T* panels, T* dW, bool accumulate, int threads) {
  const KernelSet k = kernelSet();  // read once: the panels are packed for the loops that read them
  const T* read = dZ;
  if (panelsUsed(k)) {
    packPanels(dZ, B, out, panelBytes(k) / sizeof(T), panels);
    read = panels;
  }
  bool bad[kMaxSparseParts] = {};  // each part's own flag: the pool's completion orders the writes
  sparseParts(s.colStart, in, threads, [&](int part, size_t k0, size_t k1) { bad[part] = sparseWeightGradRows(k, k0, k1, B, out, s, read, dW, accumulate); });
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
