// The two-layer classifier, forward and hand-derived backward, on BLAS GEMMs.
//   X[B,D] → Z1 = X·W1 + b1 [B,H] → A1 = act(Z1) → Z2 = A1·W2 + b2 [B,C] → softmax-CE(y) → loss
// Callers (the addon glue, benchmarks) have checked every size and pointer; nothing here allocates.
#pragma once

#include <cstddef>
#include <cmath>
#include <cstdint>

// hg::gemm comes from blas.h (OpenBLAS) unless the build names another header with the same two
// overloads: the WebAssembly build passes -DHG_GEMM_HEADER='"gemm.h"' (native/wasm/gemm.h).
#ifdef HG_GEMM_HEADER
#include HG_GEMM_HEADER
#else
#include "blas.h"
#endif
#include "kernels.h"

namespace hg {

struct Dims {
  int B, D, H, C;  // each fits a BLAS int; the glue checks products against size_t too
};

template <typename T>
struct Params {
  const T* W1;  // [D,H]
  const T* b1;  // [H]
  const T* W2;  // [H,C]
  const T* b2;  // [C]
};

// Intermediate tensors. The glue carves them from one caller-owned buffer (see workspaceLength)
// so a training loop reuses the same memory every step and a cache can be handed back to JS.
template <typename T>
struct Workspace {
  T* Z1;      // [B,H] pre-activation, kept for act'(Z1)
  T* A1;      // [B,H]
  T* dZ1;     // [B,H] dA1, then dZ1 in place
  T* logits;  // [B,C] Z2
  T* probs;   // [B,C] softmax(Z2); never overwritten by backward, so a returned cache stays valid
  T* dZ2;     // [B,C]
};

inline size_t workspaceLength(const Dims& d) {
  return 3 * size_t(d.B) * size_t(d.H) + 3 * size_t(d.B) * size_t(d.C);
}

template <typename T>
Workspace<T> carveWorkspace(T* base, const Dims& d) {
  const size_t bh = size_t(d.B) * size_t(d.H), bc = size_t(d.B) * size_t(d.C);
  return {base, base + bh, base + 2 * bh, base + 3 * bh, base + 3 * bh + bc, base + 3 * bh + 2 * bc};
}


template <typename T>
struct Grads {
  T* dX;  // [B,D] or nullptr when the input gradient is not wanted
  T* dW1;
  T* db1;
  T* dW2;
  T* db2;
};

// Which stage produced NaN or ±Infinity, if any: Z1 or the logits (a non-finite input, or an
// overflow), the loss (logits finite but too far apart), or a gradient (an overflow in backward).
enum class Status : int { Ok = 0, NonFiniteZ1 = 1, NonFiniteLogits = 2, NonFiniteLoss = 3, NonFiniteGrads = 4 };

template <typename T>
bool gradsFinite(const Dims& d, const Grads<T>& g) {
  const size_t bd = size_t(d.B) * size_t(d.D), dh = size_t(d.D) * size_t(d.H), hc = size_t(d.H) * size_t(d.C);
  return (!g.dX || allFinite(g.dX, bd)) && allFinite(g.dW1, dh) && allFinite(g.db1, size_t(d.H)) &&
         allFinite(g.dW2, hc) && allFinite(g.db2, size_t(d.C));
}

// Z1 = X·W1 + b1, A1 = act(Z1), logits = A1·W2 + b2. Bias rows are written first and the GEMM
// adds into them (beta = 1).
// Finiteness is checked on Z1 and the logits rather than on the inputs: every entry of X, W1 and
// b1 reaches some Z1 entry through a product with a finite factor (NaN·0 and Inf·0 are NaN), and
// every entry of W2 and b2 reaches the logits the same way (A1 is finite when Z1 is), so a
// non-finite input always shows here — and Z1 is B·H entries, fewer than D·H, and hot in cache.
// The check happens before ReLU, which would map −Infinity to 0.
template <typename T>
Status forward(const Dims& d, const T* X, const Params<T>& p, Activation act, T* Z1, T* A1,
               T* logits) {
  const size_t bh = size_t(d.B) * size_t(d.H);
  broadcastRows(p.b1, Z1, d.B, d.H);
  gemm(false, false, d.B, d.H, d.D, T(1), X, d.D, p.W1, d.H, T(1), Z1, d.H);
  if (!allFinite(Z1, bh)) return Status::NonFiniteZ1;
  activationForward(act, Z1, A1, bh);
  broadcastRows(p.b2, logits, d.B, d.C);
  gemm(false, false, d.B, d.C, d.H, T(1), A1, d.H, p.W2, d.C, T(1), logits, d.C);
  if (!allFinite(logits, size_t(d.B) * size_t(d.C))) return Status::NonFiniteLogits;
  return Status::Ok;
}

// Forward, loss and every gradient. With accumulate the gradients are added to what the buffers
// hold (PyTorch's .grad semantics); otherwise they are overwritten. The loss goes to *loss; on a
// non-finite forward pass nothing is written to the gradients.
template <typename T>
Status forwardBackward(const Dims& d, const T* X, const int32_t* y, const Params<T>& p,
                       Activation act, Reduction red, const Workspace<T>& w, const Grads<T>& g,
                       bool accumulate, double* loss) {
  const Status status = forward(d, X, p, act, w.Z1, w.A1, w.logits);
  if (status != Status::Ok) return status;
  const double total = softmaxCrossEntropy(w.logits, y, w.probs, d.B, d.C);
  const double reduced = red == Reduction::Mean ? total / d.B : total;
  *loss = static_cast<double>(static_cast<T>(reduced));  // the loss in the tensors' own dtype
  if (!std::isfinite(*loss)) return Status::NonFiniteLoss;
  const T scale = lossScale<T>(red, size_t(d.B));

  // ∂loss/∂Z2 = (softmax(Z2) − onehot(y)) · scale
  softmaxCrossEntropyBackward(w.probs, y, w.dZ2, d.B, d.C, scale);
  const T beta = accumulate ? T(1) : T(0);
  // Z2 = A1·W2 + b2  ⇒  dW2 = A1ᵀ·dZ2 [H,C], db2 = Σ_b dZ2, dA1 = dZ2·W2ᵀ [B,H]
  gemm(true, false, d.H, d.C, d.B, T(1), w.A1, d.H, w.dZ2, d.C, beta, g.dW2, d.C);
  sumRows(w.dZ2, g.db2, d.B, d.C, accumulate);
  gemm(false, true, d.B, d.H, d.C, T(1), w.dZ2, d.C, p.W2, d.C, T(0), w.dZ1, d.H);
  // A1 = act(Z1)  ⇒  dZ1 = dA1 ⊙ act'(Z1)
  activationBackward(act, w.Z1, w.A1, w.dZ1, size_t(d.B) * size_t(d.H));
  // Z1 = X·W1 + b1  ⇒  dW1 = Xᵀ·dZ1 [D,H], db1 = Σ_b dZ1, dX = dZ1·W1ᵀ [B,D]
  gemm(true, false, d.D, d.H, d.B, T(1), X, d.D, w.dZ1, d.H, beta, g.dW1, d.H);
  sumRows(w.dZ1, g.db1, d.B, d.H, accumulate);
  if (g.dX) gemm(false, true, d.B, d.D, d.H, T(1), w.dZ1, d.H, p.W1, d.H, beta, g.dX, d.D);

  // The gradients are hot in cache here; a scan costs a few percent of the GEMMs at most.
  return gradsFinite(d, g) ? Status::Ok : Status::NonFiniteGrads;
}

}  // namespace hg
