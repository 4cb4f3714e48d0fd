// hg::gemm for the sanitizer build (scripts/sanitize.mjs): the shipped native/core/blas.h, with a
// bounds probe in front of every call. OpenBLAS is not built with AddressSanitizer, so a wrong
// M, N, K or leading dimension would go unseen inside cblas_?gemm; the probe first reads, in
// instrumented code, every element of op(A), op(B) and C that a BLAS call with these arguments
// may touch, so ASan reports any that lies outside its buffer. Then the shipped gemm runs as is
// (the small-size loops or OpenBLAS), so the results are those of the normal build.
// stack.h includes this header instead of blas.h when built with -DHG_GEMM_HEADER='"…/gemm_probe.h"'.
#pragma once

#include <cblas.h>

#include <cstddef>

// The shipped gemm and gemmPair, renamed on the way in so that ours can take their names; without
// BLAS lanes (lanes.h), whose other link-map namespaces the sanitizer runtime does not follow.
#define HG_BLAS_LANES 0
#define gemm shippedGemm
#define gemmPair shippedGemmPair
#include "../../native/core/blas.h"
#undef gemm
#undef gemmPair

namespace hg {

// Sum of an R×Cc row-major block with row stride ld (volatile sink: the reads must happen).
template <typename T>
void probeBlock(const T* p, int rows, int cols, int ld) {
  T acc = T(0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) acc += p[size_t(r) * size_t(ld) + size_t(c)];
  volatile T sink = acc;
  (void)sink;
}

template <typename T>
void probeGemm(bool transA, bool transB, int M, int N, int K, const T* A, int lda, const T* B, int ldb,
               const T* C, int ldc) {
  probeBlock(A, transA ? K : M, transA ? M : K, lda);  // op(A) is M×K
  probeBlock(B, transB ? N : K, transB ? K : N, ldb);  // op(B) is K×N
  probeBlock(C, M, N, ldc);
}

template <typename T>
void gemm(bool transA, bool transB, int M, int N, int K, T alpha, const T* A, int lda, const T* B, int ldb, T beta, T* C,
          int ldc) {
  probeGemm(transA, transB, M, N, K, A, lda, B, ldb, C, ldc);
  shippedGemm(transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <typename T>
void gemm(const Product<T>& p) {
  probeGemm(p.transA, p.transB, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, p.C, p.ldc);
  shippedGemm(p);
}

template <typename T, typename After>
void gemmPair(const Product<T>& p, const Product<T>& q, const After& after) {
  probeGemm(p.transA, p.transB, p.M, p.N, p.K, p.A, p.lda, p.B, p.ldb, p.C, p.ldc);
  probeGemm(q.transA, q.transB, q.M, q.N, q.K, q.A, q.lda, q.B, q.ldb, q.C, q.ldc);
  shippedGemmPair(p, q, after);
}

}  // namespace hg
