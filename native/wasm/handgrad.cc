// The WebAssembly entry points: the very forward/backward of native/core/mlp.h and the kernels of
// native/core/kernels.h, with hg::gemm from gemm.h (SIMD128) in place of OpenBLAS.
// Pointers are byte offsets into the module's one linear memory; lib/backends/wasm.ts lays the
// tensors out there, checks every size first, and reads the loss back from *loss.
// Returns hg::Status: 0 ok, 1 non-finite Z1, 2 non-finite logits (JS names the culprit).
#include "../core/mlp.h"

namespace {

template <typename T>
int forwardBackwardT(const T* X, const int32_t* y, const T* W1, const T* b1, const T* W2, const T* b2,
                     T* ws, T* dX, T* dW1, T* db1, T* dW2, T* db2, int B, int D, int H, int C, int act,
                     int red, int accumulate, double* loss) {
  const hg::Dims d{B, D, H, C};
  const hg::Params<T> p{W1, b1, W2, b2};
  const hg::Grads<T> g{dX, dW1, db1, dW2, db2};
  return static_cast<int>(hg::forwardBackward(d, X, y, p, static_cast<hg::Activation>(act),
                                              static_cast<hg::Reduction>(red), hg::carveWorkspace(ws, d), g,
                                              accumulate != 0, loss));
}

template <typename T>
int forwardT(const T* X, const T* W1, const T* b1, const T* W2, const T* b2, T* ws, int B, int D, int H,
             int C, int act) {
  const hg::Dims d{B, D, H, C};
  const hg::Workspace<T> w = hg::carveWorkspace(ws, d);
  return static_cast<int>(
      hg::forward(d, X, hg::Params<T>{W1, b1, W2, b2}, static_cast<hg::Activation>(act), w.Z1, w.A1, w.logits));
}

}  // namespace

#define HG_EXPORT(name) extern "C" __attribute__((export_name(#name), visibility("default")))

HG_EXPORT(forwardBackwardF64)
int forwardBackwardF64(const double* X, const int32_t* y, const double* W1, const double* b1,
                       const double* W2, const double* b2, double* ws, double* dX, double* dW1,
                       double* db1, double* dW2, double* db2, int B, int D, int H, int C, int act,
                       int red, int accumulate, double* loss) {
  return forwardBackwardT(X, y, W1, b1, W2, b2, ws, dX, dW1, db1, dW2, db2, B, D, H, C, act, red,
                          accumulate, loss);
}

HG_EXPORT(forwardBackwardF32)
int forwardBackwardF32(const float* X, const int32_t* y, const float* W1, const float* b1,
                       const float* W2, const float* b2, float* ws, float* dX, float* dW1, float* db1,
                       float* dW2, float* db2, int B, int D, int H, int C, int act, int red,
                       int accumulate, double* loss) {
  return forwardBackwardT(X, y, W1, b1, W2, b2, ws, dX, dW1, db1, dW2, db2, B, D, H, C, act, red,
                          accumulate, loss);
}

HG_EXPORT(forwardF64)
int forwardF64(const double* X, const double* W1, const double* b1, const double* W2, const double* b2,
               double* ws, int B, int D, int H, int C, int act) {
  return forwardT(X, W1, b1, W2, b2, ws, B, D, H, C, act);
}

HG_EXPORT(forwardF32)
int forwardF32(const float* X, const float* W1, const float* b1, const float* W2, const float* b2,
               float* ws, int B, int D, int H, int C, int act) {
  return forwardT(X, W1, b1, W2, b2, ws, B, D, H, C, act);
}

// C = alpha·op(A)·op(B) + beta·C on the SIMD128 GEMM alone, for tests and benchmarks.
HG_EXPORT(gemmF64)
void gemmF64(int transA, int transB, int M, int N, int K, double alpha, const double* A, int lda,
             const double* B, int ldb, double beta, double* C, int ldc) {
  hg::gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

HG_EXPORT(gemmF32)
void gemmF32(int transA, int transB, int M, int N, int K, float alpha, const float* A, int lda,
             const float* B, int ldb, float beta, float* C, int ldc) {
  hg::gemm(transA != 0, transB != 0, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
