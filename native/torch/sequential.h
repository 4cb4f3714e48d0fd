// The LibTorch autograd reference for a stack of layers of any depth (Linear, ReLU, Sigmoid, Tanh in
// any order) with softmax cross-entropy on the raw output: the independent check of the hand-derived
// Sequential. Plain C++ with no Node-API and no torch types in this header (the glue compiles fast),
// as reference.h; errors from LibTorch leave as c10::Error for the glue to translate.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../core/kernels.h"  // LayerKind (the codes of the `kinds` Int32Array), Reduction

namespace hg {

// A stack the caller has checked: every width positive, the k-th Linear's in equal to the width
// flowing into it (D for the first, since activations keep the width), products fitting in memory.
struct Stack {
  int64_t B;               // rows of X
  int64_t D;               // columns of X
  const LayerKind* kinds;  // layers, in order
  size_t layers;           // at least 1
  const int64_t* sizes;    // 2 per Linear, in order: in_1, out_1, in_2, out_2, ...
};

// What a call came to. Nothing is written to the caller's outputs unless status is Ok.
enum class SequentialStatus : int {
  Ok = 0,
  NonFiniteLayer = 1,  // a Linear's output overflowed; `at` is its position in kinds
  NonFiniteLoss = 2,   // the output was finite but the loss was not (`loss` holds it)
  NonFiniteGrad = 3,   // a gradient overflowed; `at` indexes grads (2k: dW, 2k+1: db), or is 2·linears for dX
};

struct SequentialResult {
  SequentialStatus status = SequentialStatus::Ok;
  double loss = 0;  // the dtype's loss tensor's value, as a double
  int64_t at = -1;
};

// Loss and gradients by autograd on a fresh graph. X [B,D], y [B] class ids in [0, C) (C the width
// at the end), params [W1, b1, W2, b2, ...] with W_k [in_k, out_k] row-major (Z = A·W + b, the
// transpose of nn.Linear's weight) and b_k [out_k], all wrapped in place (torch::from_blob, no
// copies). grads has params' shapes and order and receives the gradients, dX [B,D] (nullptr: X does
// not require grad) the input gradient; with accumulate they are added to what the buffers hold (as
// PyTorch's .grad), otherwise overwritten.
template <typename T>
SequentialResult torchSequentialForwardBackward(const Stack& s, const T* X, const int32_t* y, const T* const* params,
                                                T* const* grads, T* dX, Reduction red, bool accumulate);

// The output [B,C] into logits, without recording a graph (loss stays 0).
template <typename T>
SequentialResult torchSequentialForward(const Stack& s, const T* X, const T* const* params, T* logits);

}  // namespace hg
