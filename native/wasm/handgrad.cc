// The WebAssembly entry points: the stack executor of native/core/stack.h (and, marked for deletion,
// the fused two-layer step of mlp.h and the kernels of kernels.h one by one), with hg::gemm from
// gemm.h (SIMD128) in place of OpenBLAS.
// Pointers are byte offsets into the module's one linear memory; lib/backends/wasm.ts lays the
// tensors out there, checks every size first, and reads the loss back from *loss.
// Returns hg::Status: 0 ok, 1 non-finite Z1, 2 non-finite logits (JS names the culprit).
// The kernel exports below (gemm, broadcastRows, …) are the wasm side of lib/kernels/wasm.ts: thin
// wrappers that call the very kernels.h / gemm.h functions the fused step uses, nothing more.
// Element counts are ints: the memory is at most 4 GiB, so a tensor has fewer than 2^31 entries.
#include "../core/mlp.h"
#include "../core/stack.h"

#define HG_EXPORT(name) extern "C" __attribute__((export_name(#name), visibility("default")))

// ---- the stack executor (lib/engine/wasm.ts) -------------------------------------------------
// net points at kinds[layers] then widths[layers + 1] (int32); tensors at the pointers of W1, b1,
// …, then of dW1, db1, … (wasm32 pointers are 32-bit). The stage and layer of a failure go to
// status[0..1] (StackStatus; Labels with the index of the first label outside [0, C)).
namespace {

hg::Net netAt(const int32_t* net, int layers) {
  return {reinterpret_cast<const hg::LayerKind*>(net), net + layers, layers};
}

template <typename T>
double stackForwardBackwardT(const int32_t* net, int layers, T* ws, const T* X, const int32_t* y, int B, T* dX,
                             int red, int accumulate, T* const* tensors, int params, int32_t* status) {
  const hg::Step<T> a{B, X, y, tensors, tensors + params, dX, static_cast<hg::Reduction>(red), accumulate != 0, ws};
  double loss = 0;
  const hg::StackStatus s = hg::stackForwardBackward(netAt(net, layers), a, &loss);
  status[0] = int32_t(s.stage);
  status[1] = s.layer;
  return s.stage == hg::Stage::Ok ? loss : __builtin_nan("");
}

template <typename T>
int stackForwardT(const int32_t* net, int layers, T* ws, const T* X, int B, T* const* params, int32_t* status) {
  const hg::StackStatus s = hg::stackForward(netAt(net, layers), B, X, params, ws);
  status[0] = int32_t(s.stage);
  status[1] = s.layer;
  return s.stage == hg::Stage::Ok;
}

}  // namespace

// out[0..layers) = each layer's output offset, out[layers] = probs', out[layers + 1] = the
// workspace length, in elements of the dtype; returns 0 when the workspace cannot exist.
HG_EXPORT(stackLayout)
int stackLayout(const int32_t* net, int layers, int B, int f32, double* out) {
  hg::Layout l;
  const hg::Net n = netAt(net, layers);
  if (!(f32 ? hg::stackLayout<float>(n, uint64_t(B), out, &l) : hg::stackLayout<double>(n, uint64_t(B), out, &l))) return 0;
  out[layers] = double(l.probs);
  out[layers + 1] = double(l.total);
  return 1;
}

HG_EXPORT(stackForwardBackwardF64)
double stackForwardBackwardF64(const int32_t* net, int layers, double* ws, const double* X, const int32_t* y, int B,
                               double* dX, int red, int accumulate, double* const* tensors, int params, int32_t* status) {
  return stackForwardBackwardT(net, layers, ws, X, y, B, dX, red, accumulate, tensors, params, status);
}

HG_EXPORT(stackForwardBackwardF32)
double stackForwardBackwardF32(const int32_t* net, int layers, float* ws, const float* X, const int32_t* y, int B,
                               float* dX, int red, int accumulate, float* const* tensors, int params, int32_t* status) {
  return stackForwardBackwardT(net, layers, ws, X, y, B, dX, red, accumulate, tensors, params, status);
}

HG_EXPORT(stackForwardF64)
int stackForwardF64(const int32_t* net, int layers, double* ws, const double* X, int B, double* const* params, int32_t* status) {
  return stackForwardT(net, layers, ws, X, B, params, status);
}

HG_EXPORT(stackForwardF32)
int stackForwardF32(const int32_t* net, int layers, float* ws, const float* X, int B, float* const* params, int32_t* status) {
  return stackForwardT(net, layers, ws, X, B, params, status);
}

// ---- marked for deletion: the fused two-layer step and the kernels one by one ------------------

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

namespace {

// The scale is hg::lossScale, as in the fused step (mlp.h), so the two round 1/B alike.
template <typename T>
void softmaxCrossEntropyBackwardT(const T* probs, const int32_t* y, T* dZ, int B, int C, int red) {
  hg::softmaxCrossEntropyBackward(probs, y, dZ, size_t(B), size_t(C),
                                  hg::lossScale<T>(static_cast<hg::Reduction>(red), size_t(B)));
}

}  // namespace

// out[r, :] = bias for each of rows rows; out is [rows, cols].
HG_EXPORT(broadcastRowsF64)
void broadcastRowsF64(const double* bias, double* out, int rows, int cols) {
  hg::broadcastRows(bias, out, size_t(rows), size_t(cols));
}

HG_EXPORT(broadcastRowsF32)
void broadcastRowsF32(const float* bias, float* out, int rows, int cols) {
  hg::broadcastRows(bias, out, size_t(rows), size_t(cols));
}

// db (+)= Σ_r dZ[r, :]; accumulate ≠ 0 adds into what db holds.
HG_EXPORT(sumRowsF64)
void sumRowsF64(const double* dZ, double* db, int rows, int cols, int accumulate) {
  hg::sumRows(dZ, db, size_t(rows), size_t(cols), accumulate != 0);
}

HG_EXPORT(sumRowsF32)
void sumRowsF32(const float* dZ, float* db, int rows, int cols, int accumulate) {
  hg::sumRows(dZ, db, size_t(rows), size_t(cols), accumulate != 0);
}

// A = act(Z) over n entries; act is hg::Activation (0 relu, 1 sigmoid, 2 tanh).
HG_EXPORT(activationForwardF64)
void activationForwardF64(int act, const double* Z, double* A, int n) {
  hg::activationForward(static_cast<hg::Activation>(act), Z, A, size_t(n));
}

HG_EXPORT(activationForwardF32)
void activationForwardF32(int act, const float* Z, float* A, int n) {
  hg::activationForward(static_cast<hg::Activation>(act), Z, A, size_t(n));
}

// dA ⊙= act'(Z) in place over n entries (ReLU reads Z, sigmoid and tanh read A).
HG_EXPORT(activationBackwardF64)
void activationBackwardF64(int act, const double* Z, const double* A, double* dA, int n) {
  hg::activationBackward(static_cast<hg::Activation>(act), Z, A, dA, size_t(n));
}

HG_EXPORT(activationBackwardF32)
void activationBackwardF32(int act, const float* Z, const float* A, float* dA, int n) {
  hg::activationBackward(static_cast<hg::Activation>(act), Z, A, dA, size_t(n));
}

// probs = softmax(logits) row by row; returns Σ_b loss_b, summed in double. y holds B labels in [0, C).
HG_EXPORT(softmaxCrossEntropyF64)
double softmaxCrossEntropyF64(const double* logits, const int32_t* y, double* probs, int B, int C) {
  return hg::softmaxCrossEntropy(logits, y, probs, size_t(B), size_t(C));
}

HG_EXPORT(softmaxCrossEntropyF32)
double softmaxCrossEntropyF32(const float* logits, const int32_t* y, float* probs, int B, int C) {
  return hg::softmaxCrossEntropy(logits, y, probs, size_t(B), size_t(C));
}

// dZ = (probs − onehot(y)) · hg::lossScale(red, B); red is hg::Reduction (0 mean, 1 sum).
HG_EXPORT(softmaxCrossEntropyBackwardF64)
void softmaxCrossEntropyBackwardF64(const double* probs, const int32_t* y, double* dZ, int B, int C, int red) {
  softmaxCrossEntropyBackwardT(probs, y, dZ, B, C, red);
}

HG_EXPORT(softmaxCrossEntropyBackwardF32)
void softmaxCrossEntropyBackwardF32(const float* probs, const int32_t* y, float* dZ, int B, int C, int red) {
  softmaxCrossEntropyBackwardT(probs, y, dZ, B, C, red);
}

// 1 when none of the n entries is NaN or ±Infinity, else 0.
HG_EXPORT(allFiniteF64)
int allFiniteF64(const double* p, int n) {
  return hg::allFinite(p, size_t(n)) ? 1 : 0;
}

HG_EXPORT(allFiniteF32)
int allFiniteF32(const float* p, int n) {
  return hg::allFinite(p, size_t(n)) ? 1 : 0;
}
