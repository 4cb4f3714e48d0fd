// One name for sgemm and dgemm so the model code is written once, templated on the dtype.
// Row-major throughout: every handgrad matrix is laid out as PyTorch's contiguous tensors.
#pragma once

#include <cblas.h>

namespace hg {

// C[M,N] = alpha · op(A) · op(B) + beta · C, with op = transpose when the flag says so.
// lda/ldb/ldc are the row lengths of the matrices as stored.
inline void gemm(bool transA, bool transB, int M, int N, int K, double alpha, const double* A,
                 int lda, const double* B, int ldb, double beta, double* C, int ldc) {
  cblas_dgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline void gemm(bool transA, bool transB, int M, int N, int K, float alpha, const float* A,
                 int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
              M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

inline int blasThreads() { return openblas_get_num_threads(); }
inline void setBlasThreads(int n) { openblas_set_num_threads(n); }

}  // namespace hg
