// The LibTorch autograd reference for the two-layer classifier, built from
// torch ops and differentiated by autograd, so the hand-derived backward has an independent check
// in-process. Plain C++ with no Node-API and no torch types in this header (the glue compiles fast);
// errors from LibTorch leave as c10::Error for the glue to translate.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/kernels.h"

namespace hg {

// The two-layer net's sizes, tensors and outcome (the core's fused step used these until the stack
// executor replaced it; the reference keeps its two-layer exports).
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


// Loss and gradients by autograd on a fresh graph. Inputs are wrapped in place (torch::from_blob,
// no copies); Z1, A1, logits and probs are written into w (dZ1 and dZ2 are left as they were), the
// gradients into g (added to what g holds when accumulate, as PyTorch's .grad). On a non-finite
// forward pass nothing is written and the stage is returned, as forwardBackward in mlp.h does.
template <typename T>
Status torchForwardBackward(const Dims& d, const T* X, const int32_t* y, const Params<T>& p,
                            Activation act, Reduction red, const Workspace<T>& w, const Grads<T>& g,
                            bool accumulate, double* loss);

// Z1, A1 and logits into w, without recording a graph.
template <typename T>
Status torchForward(const Dims& d, const T* X, const Params<T>& p, Activation act, const Workspace<T>& w);

// LibTorch's intra-op threads for the calling thread (an OpenMP setting: each OS thread has its own).
int torchThreads();
void setTorchThreads(int n);

}  // namespace hg
