// The LibTorch autograd reference for a layer stack with softmax cross-entropy on the raw output,
// the independent check of the hand-derived Sequential: the core's Net, Step and workspace layout
// in (native/core/stack.h), the core's StackStatus out. No Node-API and no torch types in this
// header (the glue compiles fast); errors from LibTorch leave as c10::Error for the glue.
#pragma once

#include "../core/stack.h"

namespace hg {

// Loss and gradients by autograd on a fresh graph, nn.Sequential(nn.Linear, act, …) + F.cross_entropy
// as PyTorch computes them: the caller's W_k is [in_k, out_k] (Z = A·W + b), each Linear's weight a
// transposed copy [out_k, in_k] (nn.Linear's) and dW_k its gradient transposed back; b and X are
// viewed in place (torch::from_blob). a.ws, when not null, receives every layer's output and
// softmax(logits) at the core's offsets. Gradients are written (added with accumulate, as .grad)
// only when the loss is finite, then scanned as the core scans them.
template <typename T>
StackStatus torchForwardBackward(const Net& n, const Step<T>& a, double* loss);

// The output [B,C] into logits, without recording a graph.
template <typename T>
StackStatus torchForward(const Net& n, int B, const T* X, const T* const* params, T* logits);

// LibTorch's intra-op threads for the calling thread (an OpenMP setting: each OS thread has its own).
int torchThreads();
void setTorchThreads(int n);

}  // namespace hg
