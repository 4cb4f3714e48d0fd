// The LibTorch autograd reference: the same two-layer classifier as native/core/mlp.h, built from
// torch ops and differentiated by autograd, so the hand-derived backward has an independent check
// in-process. Plain C++ with no Node-API and no torch types in this header (the glue compiles fast);
// errors from LibTorch leave as c10::Error for the glue to translate.
#pragma once

#include <cstdint>

#include "../core/mlp.h"

namespace hg {

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
