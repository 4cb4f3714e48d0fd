// One name for sgemm and dgemm so the model code is written once, templated on the dtype.
// Row-major throughout: every handgrad matrix is laid out as PyTorch's contiguous tensors.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "product.h"

#include "lanes.h"
#include "pool.h"

namespace hg {

// Products of at most this many multiply-adds skip BLAS: measured from Node on this machine, an
// OpenBLAS call costs ~0.5–1 µs of fixed overhead (argument checks, buffer locks, thread
// bookkeeping), more than the arithmetic of a 4×10×5 GEMM. The seed's toy size lives here.
constexpr long kSmallGemm = 4096;

// R consecutive entries of a row of C, each summing its K products in order k = 0, 1, … in its own
// register: R independent chains, so a multiply-add's latency is paid once per step, not R times.
template <int R, typename T, typename Store>
inline void rowEntries(const T* a, size_t ak, const T* b, size_t bk, size_t bj, int K, T* c, const Store& store) {
  T sum[R];
  for (int r = 0; r < R; ++r) sum[r] = T(0);
  for (int k = 0; k < K; ++k) {
    const T x = a[size_t(k) * ak];
    const T* row = b + size_t(k) * bk;
    for (int r = 0; r < R; ++r) sum[r] += x * row[size_t(r) * bj];
  }
  for (int r = 0; r < R; ++r) store(c + r, sum[r]);
}

// Plain loops with BLAS semantics: each entry's product is formed from zero, then added to beta·C
// (C = beta·C + alpha·Σ_k …), as OpenBLAS's kernels and LibTorch's addmm do with the bias in C. Adding
// each term into the bias instead rounds a large bias into every partial sum (issue 13: 10⁴ eps at a
// logit offset of 1e5). beta = 0 ignores what C held, so garbage or NaN there never leaks in.
// Every entry sums its K products in order k = 0, 1, …, whichever loop below runs, so both give
// the same bits. Without transB and with rows of at least kWide entries, row i accumulates
// op(A)[i,k]·B[k,:] in a block (the inner loop walks B contiguously and vectorizes); otherwise
// (B stored [N,K], or rows too narrow for that loop to pay: a toy net's widths) four entries of
// the row at a time keep their sums in registers, four independent chains (measured on the toy
// step's five products: 0.35 → 0.26 µs; at 16³ the vector loop is ahead again except with transB),
// then the last one to three entries together, not one after another (a prepared toy step 1.65 →
// 1.53 µs in float64 by CPU time: bench/cputime.mjs).
template <typename T>
void smallGemm(bool transA, bool transB, int M, int N, int K, T alpha, const T* A, int lda,
               const T* B, int ldb, T beta, T* C, int ldc) {
  constexpr int kBlock = 64, kWide = 16;
  const auto store = [&](T* c, T sum) { *c = (beta == T(0) ? T(0) : beta == T(1) ? *c : beta * *c) + alpha * sum; };
  // op(A)[i,k] = A[i·ai + k·ak]; op(B)[k,j] = B[k·bk + j·bj].
  const size_t ai = transA ? 1 : size_t(lda), ak = transA ? size_t(lda) : 1;
  const size_t bk = transB ? 1 : size_t(ldb), bj = transB ? size_t(ldb) : 1;
  for (int i = 0; i < M; ++i) {
    T* c = C + size_t(i) * ldc;
    const T* a = A + size_t(i) * ai;
    if (transB || N < kWide) {
      int j = 0;
      for (; j + 4 <= N; j += 4) rowEntries<4>(a, ak, B + size_t(j) * bj, bk, bj, K, c + j, store);
      switch (N - j) {
        case 3: rowEntries<3>(a, ak, B + size_t(j) * bj, bk, bj, K, c + j, store); break;
        case 2: rowEntries<2>(a, ak, B + size_t(j) * bj, bk, bj, K, c + j, store); break;
        case 1: rowEntries<1>(a, ak, B + size_t(j) * bj, bk, bj, K, c + j, store); break;
        default: break;
      }
      continue;
    }
    for (int j0 = 0; j0 < N; j0 += kBlock) {
      const int nj = N - j0 < kBlock ? N - j0 : kBlock;
      // Only the nj sums in use start at zero: zeroing all 64 (a rep stos) cost more than the
      // arithmetic of a toy-size product.
      T acc[kBlock];
      for (int j = 0; j < nj; ++j) acc[j] = T(0);
      for (int k = 0; k < K; ++k) {
        const T aik = a[size_t(k) * ak];
        const T* b = B + size_t(k) * ldb + j0;
        for (int j = 0; j < nj; ++j) acc[j] += aik * b[j];
      }
      for (int j = 0; j < nj; ++j) store(c + j0 + j, acc[j]);
    }
  }
}

// One cblas call, on a lane's library or (null) the process's OpenBLAS.
template <typename T>
void blasCall(const Product<T>& p, decltype(&cblas_sgemm) sgemm, decltype(&cblas_dgemm) dgemm) {
  const CBLAS_TRANSPOSE tA = p.transA ? CblasTrans : CblasNoTrans, tB = p.transB ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) sgemm(CblasRowMajor, tA, tB, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, p.C, p.ldc);
  else dgemm(CblasRowMajor, tA, tB, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, p.C, p.ldc);
}

inline int blasThreads() { return openblas_get_num_threads(); }
inline void setBlasThreads(int n) { openblas_set_num_threads(n); }

// Products of more multiply-adds than this are cut between the threads: OpenBLAS's own threshold
// for threading one (GEMM_MULTITHREAD_THRESHOLD 4 × 65536); below it one lane runs it whole.
constexpr double kSplitGemm = 262144;

// float64 products only. OpenBLAS's serial dgemm gives the same bits whether a product is cut or
// whole (measured with its Haswell kernels: 44 shapes × 4 transposes), so a float64 result on lanes
// is OpenBLAS's on one thread at any thread count (its own threaded driver blocks some K otherwise:
// test/65). Its sgemm does not (kernels chosen by size and shape): 418 of 16,384 entries of a
// 64×256×128 product differ between one call and two halves, so float32 products stay on
// OpenBLAS's threads, whose bits the golden tests recorded. (Pairing only the small float32
// products, which OpenBLAS never threads and a lane computes to the same bits, measured 5% slower at
// (64,128,256,10): a helper that sleeps takes longer to wake than they take; polling helpers kept
// OpenBLAS's threads from the second core, 2–4× slower.)
template <typename T>
bool onLanes() {
  return std::is_same_v<T, double> && lanes::lanesOn();
}

template <typename T>
void onLane(const Product<T>& p) {
  if (p.M <= 0 || p.N <= 0) return;
  lanes::Lease lane;
  blasCall(p, (*lane).sgemm, (*lane).dgemm);
}

// How many blocks a product of this size is cut into (each at least one 16-wide panel).
template <typename T>
int partsOf(const Product<T>& p, int threads) {
  if (threads < 2 || p.size() <= kSplitGemm) return 1;
  return std::max(1, std::min({threads, Pool::kMaxParts, std::max(p.M, p.N) / 16}));
}

// Block `part` of `parts` along C's longer side, cut at multiples of 16 rows or columns (whole
// micro-tiles of OpenBLAS's kernels): the blocks are fixed by the sizes alone.
template <typename T>
Product<T> blockOf(const Product<T>& p, int part, int parts) {
  const bool byRows = p.M >= p.N;
  const int n = byRows ? p.M : p.N;
  const auto cut = [&](int i) { return i >= parts ? n : std::min(n, int((int64_t(n) * i / parts + 8) / 16 * 16)); };
  return byRows ? p.rows(cut(part), cut(part + 1)) : p.cols(cut(part), cut(part + 1));
}

// C = alpha · op(A) · op(B) + beta · C: the small-size loops, else cut between handgrad's threads
// on lanes (lanes.h), else the process's OpenBLAS.
template <typename T>
void gemm(bool transA, bool transB, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta,
          T* C, int ldc) {
  if (long(M) * N * K <= kSmallGemm) return smallGemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  const Product<T> p{transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
  if (onLanes<T>()) {
    const int parts = partsOf(p, blasThreads());
    if (parts == 1) return onLane(p);
    return Pool::run(parts, parts, [&](int i) { onLane(blockOf(p, i, parts)); }, true);
  }
  blasCall(p, &cblas_sgemm, &cblas_dgemm);
}

template <typename T>
void gemm(const Product<T>& p) {
  gemm(p.transA, p.transB, p.M, p.N, p.K, p.alpha, p.A, p.lda, p.B, p.ldb, p.beta, p.C, p.ldc);
}

// after(block, which, part) for blocks nobody inspects.
struct NoInspection {
  template <typename T>
  void operator()(const Product<T>&, int, int) const {}
};

// Two independent products (a layer's dW and dX): on lanes, side by side, each cut as gemm would
// cut it alone (so its bits do not depend on whether it is paired); else one after the other.
// after(block, which, part) runs on each written block (which: 0 for p, 1 for q; part: its place
// in that product's cut, below kMaxBlocks) in the thread that wrote it, while it is in that core's
// cache: stack.h scans the gradients there.
template <typename T, typename After = NoInspection>
void gemmPair(const Product<T>& p, const Product<T>& q, const After& after = {}) {
  const int threads = blasThreads();
  if (threads >= 2 && onLanes<T>() && p.size() > kSmallGemm && q.size() > kSmallGemm &&
      p.size() + q.size() > kSplitGemm) {
    const int a = partsOf(p, threads), b = partsOf(q, threads);
    if (a + b <= Pool::kMaxParts) {
      return Pool::run(a + b, threads, [&](int i) {
        const Product<T> block = i < a ? blockOf(p, i, a) : blockOf(q, i - a, b);
        onLane(block);
        after(block, i < a ? 0 : 1, i < a ? i : i - a);
      }, true);
    }
  }
  gemm(p);
  after(p, 0, 0);
  gemm(q);
  after(q, 1, 0);
}

// The most bands forColumnBlocks cuts a pass into here: one.
constexpr int kColumnBlocks = 1;

// fn(0, cols, 0) on the calling thread: native steps keep their passes over a layer's values there
// (vectorized for the machine's kernel set, they cost a few percent of OpenBLAS's products); the
// wasm build's gemm.h cuts them into bands of columns on its pool instead. Returns the bands: 1.
template <typename F>
int forColumnBlocks(size_t, size_t cols, const F& fn) {
  fn(size_t(0), cols, 0);
  return 1;
}

}  // namespace hg
