// The non-BLAS kernels of the stack (stack.h): bias broadcast and batch sum, the activations with
// their derivatives, softmax cross-entropy, the label and finiteness scans. Plain C++ on raw
// pointers (no Node-API, no BLAS), shared by the core addon, the torch addon and wasm.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#ifndef __wasm__
#include <atomic>
#endif

namespace hg {

enum class Activation : int { Relu = 0, Sigmoid = 1, Tanh = 2 };
// Mean and Sum reduce to one number; None keeps the loss of each row (F.cross_entropy's 'none').
enum class Reduction : int { Mean = 0, Sum = 1, None = 2 };
// A layer of a stack (lib/engine/engine.ts LAYER_CODE); an activation layer's Activation is code − 1.
enum class LayerKind : int { Linear = 0, Relu = 1, Sigmoid = 2, Tanh = 3 };
constexpr int kLayerKinds = 4;
inline Activation activationOf(LayerKind k) { return static_cast<Activation>(static_cast<int>(k) - 1); }

// Copies B labels into out, each read once (y may be shared with another thread), stopping at the
// first outside [0, C) that is not ignoreIndex: returns its index (out holds the bad value there),
// or B when all are good. *ignored counts the rows equal to ignoreIndex (PyTorch's ignore_index,
// default −100; it may also be a class in [0, C), whose rows are then skipped). Only the copy is used after.
inline size_t copyLabels(const int32_t* y, size_t B, int32_t C, int32_t* out, int32_t ignoreIndex = -100,
                         size_t* ignored = nullptr) {
  size_t skipped = 0;
  for (size_t b = 0; b < B; ++b) {
    out[b] = y[b];
    if (out[b] == ignoreIndex) ++skipped;
    else if (out[b] < 0 || out[b] >= C) return b;
  }
  if (ignored) *ignored = skipped;
  return B;
}

// True when no entry is NaN or ±Infinity (all exponent bits set). Tests the bits as integers so
// the loop vectorizes without -ffast-math (a float compare-and-branch would not).
template <typename Bits, Bits kExponent, typename T>
inline __attribute__((always_inline)) bool allFiniteBits(const T* p, size_t n) {
  Bits bad = 0;
  for (size_t i = 0; i < n; ++i) {
    Bits bits;
    std::memcpy(&bits, p + i, sizeof bits);
    bad |= static_cast<Bits>((bits & kExponent) == kExponent);
  }
  return bad == 0;
}
// A double's exponent lies in its high 32-bit word: testing that word alone keeps the compares
// 32-bit, which SSE2 (the addon's baseline: no -march) vectorizes; a 64-bit compare it does not,
// and the scan of every gradient ran scalar at ~1 ns per entry (5% of a (64,128,256,10) step).
// The high word of p[i] (a loop over i reads every 8th 32-bit word).
inline __attribute__((always_inline)) uint32_t highWord(const double* p, size_t i) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  constexpr size_t kHigh = 0;
#else
  constexpr size_t kHigh = 4;
#endif
  uint32_t high;
  std::memcpy(&high, reinterpret_cast<const unsigned char*>(p) + 8 * i + kHigh, sizeof high);
  return high;
}
inline __attribute__((always_inline)) bool allFiniteBody(const double* p, size_t n) {
  uint32_t bad = 0;
  for (size_t i = 0; i < n; ++i) bad |= static_cast<uint32_t>((highWord(p, i) & 0x7ff00000U) == 0x7ff00000U);
  return bad == 0;
}
inline __attribute__((always_inline)) bool allFiniteBody(const float* p, size_t n) { return allFiniteBits<uint32_t, 0x7f800000U>(p, n); }

// The instruction sets the loops over a layer's values are built for, chosen at run time (the
// addon's baseline is SSE2): these passes (the finite scans, the activation and its backward) and
// sparse.h's products. Each value, or column sum, is computed alone, in the same operations at
// every width, so the set never changes a bit (test/15 replays its golden calls under each, test/59
// the sparse products). In a (64,128,256,10) float32 step, the sets alternated in one process
// (two runs of 20 rounds): ReLU with its check 3.5–5.6 µs portable, 1.4–3.3 µs AVX-512; its
// backward with db 2.3–2.5 → 1.6–1.9 µs.
enum class KernelSet : int { Portable = 0, Avx2 = 1, Avx512 = 2 };

// The widest this CPU runs: AVX-512 with F, BW, DQ and VL (Skylake-X, Ice Lake, Zen 4), else AVX2.
inline KernelSet kernelSetBest() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return KernelSet::Avx512;
  if (__builtin_cpu_supports("avx2")) return KernelSet::Avx2;
#endif
  return KernelSet::Portable;
}

#ifndef __wasm__
// The set the native addon runs: the CPU's widest unless narrowed (setKernelSet, for tests of the
// loops another CPU runs); one switch for the process, as setSparseInput is.
inline std::atomic<int>& kernelSetSwitch() {
  static std::atomic<int> set{int(kernelSetBest())};
  return set;
}
#endif
inline KernelSet kernelSet() {
#ifndef __wasm__
  return KernelSet(kernelSetSwitch().load(std::memory_order_relaxed));
#else
  return KernelSet::Portable;
#endif
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__wasm__)
#define HG_WIDE(ret, name, params, args)                                                        \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq"))) inline ret name##512 params { \
    return name##Body args;                                                                     \
  }                                                                                             \
  __attribute__((target("avx2"))) inline ret name##256 params { return name##Body args; }    \
  inline ret name params {                                                                      \
    const KernelSet k = kernelSet();                                                            \
    if (k == KernelSet::Avx512) return name##512 args;                                          \
    if (k == KernelSet::Avx2) return name##256 args;                                            \
    return name##Body args;                                                                     \
  }
#else
#define HG_WIDE(ret, name, params, args) \
  inline ret name params { return name##Body args; }
#endif

HG_WIDE(bool, allFinite, (const float* p, size_t n), (p, n))
HG_WIDE(bool, allFinite, (const double* p, size_t n), (p, n))

// A bound on max_i |p[i]|: exact for float; for double, taken from the high words (the same
// 32-bit compares as allFiniteBody) with the low word's bits all set, so at most 2^-20 above it.
// Not finite exactly when some entry is NaN or ±Infinity (their magnitude bits are the largest).
// Integer maxima of the bits with the sign cleared: order-free, so every kernel set agrees, and the
// same work per entry as allFinite's test. Read by overflow.h's proof that a gradient is finite.
inline __attribute__((always_inline)) float maxMagnitudeBody(const float* p, size_t n) {
  uint32_t top = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, p + i, sizeof bits);
    bits &= 0x7fffffffU;
    top = bits > top ? bits : top;
  }
  float m;
  std::memcpy(&m, &top, sizeof m);
  return m;
}
inline __attribute__((always_inline)) double maxMagnitudeBody(const double* p, size_t n) {
  uint32_t top = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t high = highWord(p, i) & 0x7fffffffU;
    top = high > top ? high : top;
  }
  // High word 0x7ff00000 or more: exponent all ones, and with the low word set, a NaN.
  const uint64_t bits = uint64_t(top) << 32 | 0xffffffffU;
  double m;
  std::memcpy(&m, &bits, sizeof m);
  return m;
}
HG_WIDE(float, maxMagnitude, (const float* p, size_t n), (p, n))
HG_WIDE(double, maxMagnitude, (const double* p, size_t n), (p, n))
// The same over a block of `rows` rows of `cols` entries, `ld` apart (a product's block of C).
template <typename T>
bool allFiniteRows(const T* p, size_t rows, size_t cols, size_t ld) {
  bool ok = true;
  for (size_t r = 0; r < rows; ++r) ok &= allFinite(p + r * ld, cols);
  return ok;
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
inline __attribute__((always_inline)) void activationForward(Activation act, const T* Z, T* A, size_t n) {
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

// A Linear's output Z checked for NaN/±Infinity and its activation A = act(Z) written, in one
// pass over memory: chunks small enough to stay in L1 between the scan and the activation, each
// loop still the vectorized one above. Returns maxMagnitude(Z) (the check is that it is finite:
// the backward bounds the next layer's weight gradient with it), or a non-finite value at the
// first chunk holding a non-finite entry (A is then partly written: the caller reports the
// failure and nothing reads A).
template <typename T>
inline __attribute__((always_inline)) T activationForwardCheckedBody(Activation act, const T* Z, T* A, size_t n) {
  constexpr size_t kChunk = 2048;  // 16 KiB of doubles
  T top = T(0);
  for (size_t at = 0; at < n; at += kChunk) {
    const size_t m = n - at < kChunk ? n - at : kChunk;
    const T chunk = maxMagnitudeBody(Z + at, m);
    if (!std::isfinite(chunk)) return chunk;
    activationForward(act, Z + at, A + at, m);
    top = chunk > top ? chunk : top;
  }
  return top;
}
HG_WIDE(float, activationForwardChecked, (Activation act, const float* Z, float* A, size_t n), (act, Z, A, n))
HG_WIDE(double, activationForwardChecked, (Activation act, const double* Z, double* A, size_t n), (act, Z, A, n))

// dZ = dA ⊙ act'(Z), in place on dA. ReLU: 1 where Z > 0 strictly (0 at Z == 0, as PyTorch).
// Sigmoid and tanh take the derivative from the output A (σ' = A(1−A), tanh' = 1 − A²), as
// PyTorch's sigmoid_backward/tanh_backward do, so the rounding matches theirs.
template <typename T>
inline __attribute__((always_inline)) void activationBackward(Activation act, const T* Z, const T* A, T* dA, size_t n) {
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

// The larger of two bounds on a magnitude, NaN once either is NaN (a compare with NaN is false
// either way round): a running max|x| over parts in any order, which an order-free max allows.
template <typename T>
inline T largerBound(T top, T m) {
  return !(m <= top) && top == top ? m : top;
}

// activationBackward followed by the batch sum of the result into db (db (+)= Σ_b dZ[b, :]), row
// by row while the row is in cache: the same products and the same row-ordered sums as
// activationBackward then sumRows, so the same bits, in one pass over dZ instead of two. The rows
// are `cols` wide, `ld` apart: a band of columns of a wider matrix gives the same bits in them as
// the whole matrix does (each entry and each column's sum on its own), so bands can run side by side.
// With `bound`, returns maxMagnitude(dZ), read from each row while it is in L1: with the forward's
// bound on the layer's input it proves the weight gradient finite without reading it (overflow.h);
// without, +∞, no bound (a toy layer's dW is scanned instead: the row passes cost more than that scan).
template <typename T>
inline __attribute__((always_inline)) T activationBackwardSumBody(Activation act, const T* Z, const T* A, T* dA, size_t rows, size_t cols,
                                                                 size_t ld, T* db, bool accumulate, bool bound) {
  if (!accumulate) std::memset(db, 0, cols * sizeof(T));
  T top = T(0);
  for (size_t b = 0; b < rows; ++b) {
    const size_t at = b * ld;
    activationBackward(act, Z + at, A + at, dA + at, cols);
    const T* row = dA + at;
    for (size_t j = 0; j < cols; ++j) db[j] += row[j];
    if (!bound) continue;
    top = largerBound(top, maxMagnitudeBody(row, cols));
  }
  return bound ? top : std::numeric_limits<T>::infinity();
}
HG_WIDE(float, activationBackwardSum, (Activation act, const float* Z, const float* A, float* dA, size_t rows, size_t cols, size_t ld, float* db, bool accumulate, bool bound),
        (act, Z, A, dA, rows, cols, ld, db, accumulate, bound))
HG_WIDE(double, activationBackwardSum, (Activation act, const double* Z, const double* A, double* dA, size_t rows, size_t cols, size_t ld, double* db, bool accumulate, bool bound),
        (act, Z, A, dA, rows, cols, ld, db, accumulate, bound))

// One row of probs = softmax(logits): p_c = exp(z_c − m) / s with m = max_c z_c and
// s = Σ_c exp(z_c − m) (subtracting m keeps every exp ≤ 1). Returns s and m, from which the loss is
// taken by log-sum-exp on the logits — log s + m − z_y — never log(probs): a probability that
// underflows to 0 would make the loss infinite.
template <typename T>
T softmaxRow(const T* z, T* p, size_t C, T* max) {
  T m = z[0];
  for (size_t c = 1; c < C; ++c) m = z[c] > m ? z[c] : m;
  T s = T(0);
  for (size_t c = 0; c < C; ++c) {
    p[c] = std::exp(z[c] - m);
    s += p[c];
  }
  const T inv = T(1) / s;
  for (size_t c = 0; c < C; ++c) p[c] *= inv;
  *max = m;
  return s;
}

// ∂loss/∂logits per unit of softmax − onehot: 1/B (rounded in T) for mean, 1 for sum.
template <typename T>
T lossScale(Reduction red, size_t B) {
  return red == Reduction::Mean ? T(1) / static_cast<T>(B) : T(1);
}

// The default loss (class labels, no weight, no smoothing) and its gradient in one row pass: probs,
// Σ_b loss_b and dZ2 = (probs − onehot(y)) · scale (scale = lossScale(reduction, B)) from each row
// while it is in registers and L1. Returns Σ_b loss_b (the caller divides for mean), accumulated in
// double so float32 keeps its last bits.
template <typename T>
double softmaxCrossEntropyWithGrad(const T* logits, const int32_t* y, T* probs, T* dZ2, size_t B, size_t C, T scale) {
  double total = 0.0;
  for (size_t b = 0; b < B; ++b) {
    const T* z = logits + b * C;
    T* p = probs + b * C;
    T* d = dZ2 + b * C;
    T m;
    const T s = softmaxRow(z, p, C, &m);
    for (size_t c = 0; c < C; ++c) d[c] = p[c] * scale;
    d[y[b]] -= scale;
    // (m − z_y) first: both are large when the logits are, and their difference is exact
    // (or nearly), where log(s) + m would round away the small loss.
    total += (static_cast<double>(m) - static_cast<double>(z[y[b]])) + static_cast<double>(std::log(s));
  }
  return total;
}

// ---- F.cross_entropy with every option (weight, ignore_index, label_smoothing, 'none', ------
// probability targets). One description of the loss, read by the stack executor (stack.h) and,
// later, the exact mode; plain data, no ownership. The default (Mean or Sum, no weight, no
// smoothing, class labels, no row ignored) runs on softmaxCrossEntropyWithGrad above instead, so its bits
// and speed stay.
template <typename T>
struct LossSpec {
  Reduction reduction = Reduction::Mean;
  const T* weight = nullptr;      // [C] per-class weight, or null (all 1)
  int32_t ignoreIndex = -100;     // class-label rows equal to it contribute nothing (PyTorch's default)
  double labelSmoothing = 0;      // ε in [0, 1]; a double, as PyTorch's label_smoothing
  const T* targets = nullptr;     // [B,C] probability targets (then y is unused), or null for class labels
  const T* gradOutput = nullptr;  // [B] ∂L/∂loss_b for None (loss.backward(gradient)), else null
};

template <typename T>
bool isDefaultLoss(const LossSpec<T>& s) {
  return s.reduction != Reduction::None && !s.weight && s.labelSmoothing == 0 && !s.targets;
}

// 'mean''s denominator for class labels: Σ over non-ignored rows of weight[y_b] (1 each without
// weight), in double; 0 when every row is ignored or their weights cancel (PyTorch: NaN, 0/0).
template <typename T>
double labelWeightSum(const int32_t* y, size_t B, const T* weight, int32_t ignoreIndex) {
  double d = 0;
  for (size_t b = 0; b < B; ++b)
    if (y[b] != ignoreIndex) d += weight ? double(weight[y[b]]) : 1.0;
  return d;
}

// The general loss and ∂loss/∂logits, row by row. Every option of F.cross_entropy (PyTorch 1.13,
// aten/src/ATen/native/LossNLL.cpp) is a weighted sum of the row's negative log-probabilities:
//   loss_b = Σ_c t_bc · (lse_b − z_bc),   lse_b = log Σ_c e^{z_bc} = m + log s,
// with t_bc the row's effective target weight, the reduction's scale folded in:
//   class labels (row ignored: t_b = 0):
//     t_bc = (1−ε)·w[y_b]·[c = y_b] / Dn + (ε/C)·w_c / Ds
//     Mean: Dn = Ds = Σ_valid w[y_b] (the non-ignored rows' count without a weight: PyTorch 1.13
//     as built here divides the smoothing term by it too, checked in test/fixtures/loss-options);
//     Sum, None: Dn = Ds = 1; w = 1 without a weight.
//   probability targets q [B,C]: t_bc = w_c·q'_bc / Dp, q' = q·(1−ε) + ε/C when ε > 0, else q;
//     Dp = B for Mean, 1 otherwise.
// Backward (micrograd style): ∂(lse_b − z_bc)/∂z_bj = p_bj − [c = j], so
//   ∂loss_b/∂z_bj = Σ_c t_bc (p_bj − [c = j]) = p_bj·S_b − t_bj,   S_b = Σ_c t_bc,
// times the upstream g_b (gradOutput[b] for None; 1 for Mean/Sum, whose scales are in t). So
// dZ_b = g_b·(p_b·S_b − t_b): the default case is t = onehot/B (or onehot), S = 1/B.
// Sums in double, each result rounded once to T. losses[b] = loss_b (in T) for None. Returns
// Σ_b loss_b (for None too: the caller checks it for finiteness). y is null with targets.
template <typename T>
double crossEntropyGeneral(const T* logits, const int32_t* y, const LossSpec<T>& s, size_t B, size_t C, T* probs,
                           T* dZ, T* losses) {
  const bool labels = s.targets == nullptr;
  const bool mean = s.reduction == Reduction::Mean;
  const double eps = double(s.labelSmoothing), invC = 1.0 / double(C);
  double Dn = 1, Ds = 1;
  if (mean && labels) {
    Dn = Ds = labelWeightSum(y, B, s.weight, s.ignoreIndex);
  } else if (mean) {
    Dn = Ds = double(B);
  }
  const double nllScale = (1.0 - eps) / Dn, smoothScale = eps * invC / Ds;
  double total = 0.0;
  for (size_t b = 0; b < B; ++b) {
    const T* z = logits + b * C;
    T* p = probs + b * C;
    T* d = dZ + b * C;
    T m;
    const T sum = softmaxRow(z, p, C, &m);
    const double logS = double(std::log(sum));
    const bool skip = labels && y[b] == s.ignoreIndex;
    const int32_t yb = labels && !skip ? y[b] : -1;
    const double nll = skip ? 0.0 : nllScale * (s.weight && labels ? double(s.weight[yb]) : 1.0);
    // t_bc, in double.
    const auto t = [&](size_t c) -> double {
      if (skip) return 0.0;
      const double w = s.weight ? double(s.weight[c]) : 1.0;
      if (!labels) {
        const double q = double(s.targets[b * C + c]);
        return w * (eps > 0 ? q * (1.0 - eps) + eps * invC : q) / Dn;
      }
      return (c == size_t(yb) ? nll : 0.0) + smoothScale * w;
    };
    double row = 0.0, S = 0.0;
    for (size_t c = 0; c < C; ++c) {
      const double tc = t(c);
      if (tc == 0.0) continue;  // 0·(lse − z) is 0 even when the logit is far below the rest
      // (m − z_c) first, as softmaxCrossEntropyWithGrad: exact (or nearly) however large the logits.
      row += tc * ((double(m) - double(z[c])) + logS);
      S += tc;
    }
    total += row;
    if (losses) losses[b] = T(row);
    const double g = s.gradOutput ? double(s.gradOutput[b]) : 1.0;
    for (size_t c = 0; c < C; ++c) d[c] = T(g * (double(p[c]) * S - t(c)));
  }
  return total;
}

}  // namespace hg
