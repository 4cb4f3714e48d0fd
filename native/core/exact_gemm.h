// The BLAS call LibTorch 1.13 makes for addmm/mm on CPU (aten/src/ATen/native/LinearAlgebra.cpp
// addmm_impl_cpu_, then CPUBlas.cpp gemm → normalize_last_dims → the Fortran sgemm_/dgemm_): the
// transposes, the operand order and the leading dimensions follow from the tensors' strides, which
// for size-1 dimensions change the call (OpenBLAS's kernels per transpose differ in their last bits).
// The exact mode describes each product by PyTorch's tensors (views over row-major buffers laid out
// as PyTorch holds them) and lets this file make the same call.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

extern "C" {
void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const float* alpha,
            const float* a, const int* lda, const float* b, const int* ldb, const float* beta, float* c, const int* ldc);
void dgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k, const double* alpha,
            const double* a, const int* lda, const double* b, const int* ldb, const double* beta, double* c,
            const int* ldc);
int openblas_get_num_threads(void);
}

namespace hg::exact {

// OpenBLAS's thread count when this library loaded: its default from the environment
// (OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS, else the cores), the count PyTorch's
// GEMMs run with (torch.set_num_threads leaves OpenBLAS's pthreads alone). OpenBLAS splits a large
// product differently for another count, and its bits change (measured: 13 of 2192 probe cases).
inline const int kBlasThreadsAtLoad = openblas_get_num_threads();

// A 2-D strided view, sizes and strides in elements, as a PyTorch tensor has them.
template <typename T>
struct View {
  int64_t rows, cols, s0, s1;
  const T* data;
};
// A contiguous [rows, cols] tensor's strides (PyTorch's: the last is 1, the first the row length).
template <typename T>
View<T> contiguous(int64_t rows, int64_t cols, const T* data) {
  return {rows, cols, cols, 1, data};
}
template <typename T>
View<T> transposed(View<T> v) {
  return {v.cols, v.rows, v.s1, v.s0, v.data};
}

template <typename T>
void fortranGemm(char ta, char tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
                 int64_t ldb, T beta, T* c, int64_t ldc) {
  // CPUBlas.cpp normalize_last_dims: leading dimensions of size-1 operands rewritten as BLAS wants.
  if (n == 1) ldc = m;
  if (ta != 'n') {
    if (m == 1) lda = k;
  } else if (k == 1) {
    lda = m;
  }
  if (tb != 'n') {
    if (k == 1) ldb = n;
  } else if (n == 1) {
    ldb = k;
  }
  const int M = int(m), N = int(n), K = int(k), LDA = int(lda), LDB = int(ldb), LDC = int(ldc);
  if constexpr (sizeof(T) == 4) sgemm_(&ta, &tb, &M, &N, &K, &alpha, a, &LDA, b, &LDB, &beta, c, &LDC);
  else dgemm_(&ta, &tb, &M, &N, &K, &alpha, a, &LDA, b, &LDB, &beta, c, &LDC);
}

// result [r0, r1] (contiguous, row-major; holds the bias rows when beta = 1) = beta·result + m1·m2.
// addmm_impl_cpu_: the result is read as a column-major matrix c directly (transpose_c = false)
// when its first stride is 1, else as its transpose (the operands swapped); each operand then as a
// or b with or without a transpose by its strides, a contiguous copy when neither fits (the copy's
// layout decides its transpose). lda/ldb/ldc are the strides those choices point at.
template <typename T>
void atenAddmm(View<T> result, T* out, View<T> m1, View<T> m2, T beta) {
  const auto atLeast1 = [](int64_t x) { return x > 1 ? x : int64_t(1); };
  bool transC;
  if (result.s0 == 1 && (result.cols == 1 || result.s1 >= atLeast1(result.rows))) {
    transC = false;
  } else {
    // result is contiguous row-major: its second stride is 1 and its first the row length.
    transC = true;
    std::swap(m1, m2);
  }
  const int64_t m = transC ? result.cols : result.rows, n = transC ? result.rows : result.cols;
  const int64_t k = transC ? m1.rows : m1.cols;
  const auto stride = [](const View<T>& v, int i) { return i == 0 ? v.s0 : v.s1; };
  // Casts an operand: untransposed needs its other stride ≥ first, transposed ≥ second.
  const auto cast = [&](View<T> v, int64_t first, int64_t second, std::vector<T>* copy, bool* trans) {
    const int i0 = transC ? 1 : 0, i1 = transC ? 0 : 1;
    if (stride(v, i0) == 1 && stride(v, i1) >= atLeast1(first)) {
      *trans = false;
    } else if (stride(v, i1) == 1 && stride(v, i0) >= atLeast1(second)) {
      *trans = true;
    } else {
      // m.clone(Contiguous): row-major copy; transposed iff !transC.
      copy->resize(size_t(v.rows * v.cols));
      for (int64_t r = 0; r < v.rows; ++r)
        for (int64_t c = 0; c < v.cols; ++c) (*copy)[size_t(r * v.cols + c)] = v.data[r * v.s0 + c * v.s1];
      v = contiguous(v.rows, v.cols, static_cast<const T*>(copy->data()));
      *trans = !transC;
    }
    return v;
  };
  bool transA, transB;
  std::vector<T> copyA, copyB;
  const View<T> a = cast(m1, m, k, &copyA, &transA);
  const View<T> b = cast(m2, k, n, &copyB, &transB);
  const int64_t lda = stride(a, transA == transC ? 1 : 0), ldb = stride(b, transB == transC ? 1 : 0);
  const int64_t ldc = transC ? result.s0 : result.s1;
  fortranGemm(transA ? 't' : 'n', transB ? 't' : 'n', m, n, k, T(1), a.data, lda, b.data, ldb, beta, out, ldc);
}

}  // namespace hg::exact
