// The non-BLAS kernels of the stack (stack.h): bias broadcast and batch sum, the activations with
// their derivatives, softmax cross-entropy, the label and finiteness scans. Plain C++ on raw
// pointers (no Node-API, no BLAS), shared by the core addon, the torch addon and wasm.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hg {

enum class Activation : int { Relu = 0, Sigmoid = 1, Tanh = 2 };
enum class Reduction : int { Mean = 0, Sum = 1 };
// A layer of a stack (lib/engine/engine.ts LAYER_CODE); an activation layer's Activation is code − 1.
enum class LayerKind : int { Linear = 0, Relu = 1, Sigmoid = 2, Tanh = 3 };
constexpr int kLayerKinds = 4;
inline Activation activationOf(LayerKind k) { return static_cast<Activation>(static_cast<int>(k) - 1); }

// Copies B labels into out, each read once (y may be shared with another thread), stopping at the
// first outside [0, C): returns its index (out holds the bad value there), or B when all are in
// range. Only the copy is used after.
inline size_t copyLabels(const int32_t* y, size_t B, int32_t C, int32_t* out) {
  for (size_t b = 0; b < B; ++b) {
    out[b] = y[b];
    if (out[b] < 0 || out[b] >= C) return b;
  }
  return B;
}

// True when no entry is NaN or ±Infinity (all exponent bits set). Tests the bits as integers so
// the loop vectorizes without -ffast-math (a float compare-and-branch would not).
template <typename Bits, Bits kExponent, typename T>
bool allFiniteBits(const T* p, size_t n) {
  Bits bad = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, p + i, sizeof bits);
    bad |= static_cast<Bits>((bits & kExponent) == kExponent);
  }
  return bad == 0;
}
inline bool allFinite(const double* p, size_t n) { return allFiniteBits<uint64_t, 0x7ff0000000000000ULL>(p, n); }
inline bool allFinite(const float* p, size_t n) { return allFiniteBits<uint32_t, 0x7f800000U>(p, n); }
// Index of the first non-finite entry, or n; only called once allFinite said no.
template <typename T>
size_t firstNonFinite(const T* p, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(p[i])) return i;
  return n;
}

// out[b, j] = bias[j] for every row, for the GEMM to add into (stack.h linearForward).
template <typename T>
void broadcastRows(const T* bias, T* out, size_t rows, size_t cols) {
  for (size_t b = 0; b < rows; ++b) std::memcpy(out + b * cols, bias, cols * sizeof(T));
}

// db[j] (+)= Σ_b dZ[b, j]: the bias gradient is the batch sum of its layer's dZ.
template <typename T>
void sumRows(const T* dZ, T* db, size_t rows, size_t cols, bool accumulate) {
  if (!accumulate) std::memset(db, 0, cols * sizeof(T));
  for (size_t b = 0; b < rows; ++b) {
    const T* row = dZ + b * cols;
    for (size_t j = 0; j < cols; ++j) db[j] += row[j];
  }
}

template <typename T>
void activationForward(Activation act, const T* Z, T* A, size_t n) {
  switch (act) {
    case Activation::Relu:
      // NaN-propagating like torch.relu; inputs are finite here anyway.
      for (size_t i = 0; i < n; ++i) A[i] = Z[i] > T(0) ? Z[i] : T(0);
      break;
    case Activation::Sigmoid:
      for (size_t i = 0; i < n; ++i) A[i] = T(1) / (T(1) + std::exp(-Z[i]));
      break;
    case Activation::Tanh:
      for (size_t i = 0; i < n; ++i) A[i] = std::tanh(Z[i]);
      break;
  }
}

// dZ = dA ⊙ act'(Z), in place on dA. ReLU: 1 where Z > 0 strictly (0 at Z == 0, as PyTorch).
// Sigmoid and tanh take the derivative from the output A (σ' = A(1−A), tanh' = 1 − A²), as
// PyTorch's sigmoid_backward/tanh_backward do, so the rounding matches theirs.
template <typename T>
void activationBackward(Activation act, const T* Z, const T* A, T* dA, size_t n) {
  switch (act) {
    case Activation::Relu:
      for (size_t i = 0; i < n; ++i) dA[i] = Z[i] > T(0) ? dA[i] : T(0);
      break;
    case Activation::Sigmoid:
      for (size_t i = 0; i < n; ++i) dA[i] = dA[i] * ((T(1) - A[i]) * A[i]);
      break;
    case Activation::Tanh:
      for (size_t i = 0; i < n; ++i) dA[i] = dA[i] * (T(1) - A[i] * A[i]);
      break;
  }
}

// probs = softmax(logits) row by row, and the cross-entropy loss by log-sum-exp on the logits:
// loss_b = log Σ_c exp(z_c − m) + m − z_y with m = max_c z_c. Never log(probs): a probability
// that underflows to 0 would make the loss infinite. Returns Σ_b loss_b (caller divides for mean),
// accumulated in double so float32 keeps its last bits.
template <typename T>
double softmaxCrossEntropy(const T* logits, const int32_t* y, T* probs, size_t B, size_t C) {
  double total = 0.0;
  for (size_t b = 0; b < B; ++b) {
    const T* z = logits + b * C;
    T* p = probs + b * C;
    T m = z[0];
    for (size_t c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
    T s = T(0);
    for (size_t c = 0; c < C; ++c) {
      p[c] = std::exp(z[c] - m);
      s += p[c];
    }
    const T inv = T(1) / s;
    for (size_t c = 0; c < C; ++c) p[c] *= inv;
    // (m − z_y) first: both are large when the logits are, and their difference is exact
    // (or nearly), where log(s) + m would round away the small loss.
    total += (static_cast<double>(m) - static_cast<double>(z[y[b]])) + static_cast<double>(std::log(s));
  }
  return total;
}

// ∂loss/∂logits per unit of softmax − onehot: 1/B (rounded in T) for mean, 1 for sum.
template <typename T>
T lossScale(Reduction red, size_t B) {
  return red == Reduction::Mean ? T(1) / static_cast<T>(B) : T(1);
}

// dZ2 = (probs − onehot(y)) · scale, scale = lossScale(reduction, B).
template <typename T>
void softmaxCrossEntropyBackward(const T* probs, const int32_t* y, T* dZ2, size_t B, size_t C,
                                 T scale) {
  for (size_t b = 0; b < B; ++b) {
    const T* p = probs + b * C;
    T* d = dZ2 + b * C;
    for (size_t c = 0; c < C; ++c) d[c] = p[c] * scale;
    d[y[b]] -= scale;
  }
}

}  // namespace hg
