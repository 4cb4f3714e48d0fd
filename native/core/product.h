// One GEMM's arguments as a value, to cut into blocks or hand to another thread (blas.h's gemmPair
// and its lanes; the WebAssembly and sanitizer builds' gemmPair runs the two in turn).
#pragma once

#include <cstddef>

namespace hg {

// The most blocks a product is cut into (blas.h's Pool::kMaxParts, parts of one pool job).
constexpr int kMaxBlocks = 16;

// One product, C[M,N] = alpha · op(A) · op(B) + beta · C, with op = transpose when the flag says so;
// lda/ldb/ldc are the row lengths of the matrices as stored.
template <typename T>
struct Product {
  bool transA, transB;
  int M, N, K;
  T alpha;
  const T* A;
  int lda;
  const T* B;
  int ldb;
  T beta;
  T* C;
  int ldc;

  double size() const { return double(M) * double(N) * double(K); }
  // Rows [i0, i1) of C, from the same rows of op(A); columns [j0, j1), from those of op(B).
  Product rows(int i0, int i1) const {
    Product p = *this;
    p.M = i1 - i0;
    p.A = A + (transA ? size_t(i0) : size_t(i0) * size_t(lda));
    p.C = C + size_t(i0) * size_t(ldc);
    return p;
  }
  Product cols(int j0, int j1) const {
    Product p = *this;
    p.N = j1 - j0;
    p.B = B + (transB ? size_t(j0) * size_t(ldb) : size_t(j0));
    p.C = C + j0;
    return p;
  }
};

}  // namespace hg
