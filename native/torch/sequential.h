// The LibTorch autograd reference for a stack of layers of any depth (Linear, ReLU, Sigmoid, Tanh in
// any order) with softmax cross-entropy on the raw output: the independent check of the hand-derived
// Sequential. It takes the core's description, step and workspace (native/core/stack.h: Net, Step,
// stackLayout) and reports as the core does (StackStatus), so one wording serves every engine
// (lib/layers/sequential.ts explain). Plain C++ with no Node-API and no torch types in this header
// (the glue compiles fast); errors from LibTorch leave as c10::Error for the glue to translate.
#pragma once

#include "../core/stack.h"

namespace hg {

// Loss (into *loss) and gradients by autograd on a fresh graph, every tensor wrapped in place
// (torch::from_blob). a.y holds B class ids in [0, C), a.ws is null or stackLayout<T>(n, B)
// elements that receive every layer's output and softmax(logits) at the core's offsets. Params
// [W1, b1, …]: W_k [in_k, out_k] row-major (Z = A·W + b, the transpose of nn.Linear's weight). The
// gradients are written (added with accumulate, as PyTorch's .grad) only when the loss is finite,
// then scanned as the core scans them.
template <typename T>
StackStatus torchForwardBackward(const Net& n, const Step<T>& a, double* loss);

// The output [B,C] into logits, without recording a graph.
template <typename T>
StackStatus torchForward(const Net& n, int B, const T* X, const T* const* params, T* logits);

// LibTorch's intra-op threads for the calling thread (an OpenMP setting: each OS thread has its own).
int torchThreads();
void setTorchThreads(int n);

}  // namespace hg
