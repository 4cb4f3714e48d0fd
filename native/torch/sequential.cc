// LibTorch autograd over a layer stack, on the caller's memory. Every call builds its own graph from
// leaf tensors that view the caller's buffers; the graph and the .grad tensors die with the call, so
// nothing carries over between calls unless accumulate asks for it.
#include "sequential.h"

#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "blob.h"

namespace hg {
namespace {

namespace F = torch::nn::functional;

// The core's bit-test scan (kernels.h) on torch's own results: torch::isfinite(t).all().item()
// allocates a bool tensor and a reduction per check, which cost as much as the stack's GEMMs here.
bool finite(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  const size_t n = static_cast<size_t>(c.numel());
  return c.scalar_type() == torch::kFloat32 ? allFinite(c.data_ptr<float>(), n) : allFinite(c.data_ptr<double>(), n);
}

// W_k [in_k, out_k] and b_k [out_k] for every Linear, in order, as leaves (requires_grad when
// asked). Two per Linear, as params.
template <typename T>
std::vector<torch::Tensor> leaves(const Stack& s, const T* const* params, bool requiresGrad) {
  std::vector<torch::Tensor> out;
  size_t k = 0;
  for (size_t l = 0; l < s.layers; ++l) {
    if (s.kinds[l] != LayerKind::Linear) continue;
    const int64_t in = s.sizes[2 * k], width = s.sizes[2 * k + 1];
    out.push_back(view(params[2 * k], {in, width}).requires_grad_(requiresGrad));
    out.push_back(view(params[2 * k + 1], {width}).requires_grad_(requiresGrad));
    ++k;
  }
  return out;
}

struct Pass {
  torch::Tensor out;
  int64_t badLayer = -1;  // the first Linear whose output is not finite
};

// The stack, layer by layer, recorded for autograd when a leaf requires grad. Linear is
// A.matmul(W) + b: for 2-D operands matmul is mm, so this is the graph of the two-layer reference
// (reference.cc: X.mm(W1) + b1, a GEMM then a broadcast add) and of the fixtures' PyTorch script,
// op for op, so the Linear, act, Linear stack reproduces forwardBackward bit for bit (addmm would hand
// the bias to the GEMM as beta·C, a different rounding order).
Pass forwardPass(const Stack& s, torch::Tensor A, const std::vector<torch::Tensor>& p) {
  size_t k = 0;
  for (size_t l = 0; l < s.layers; ++l) {
    switch (s.kinds[l]) {
      case LayerKind::Linear:
        A = A.matmul(p[2 * k]) + p[2 * k + 1];
        ++k;
        // Activations of a finite tensor are finite, so only a Linear can overflow.
        if (!finite(A)) return {A, static_cast<int64_t>(l)};
        break;
      case LayerKind::Relu: A = torch::relu(A); break;
      case LayerKind::Sigmoid: A = torch::sigmoid(A); break;
      case LayerKind::Tanh: A = torch::tanh(A); break;
    }
  }
  return {A, -1};
}

// out = grad, or out += grad with accumulate (PyTorch adds each backward into .grad). An undefined
// grad (a leaf autograd never reached) is zero.
template <typename T>
void deliver(T* out, torch::IntArrayRef shape, const torch::Tensor& grad, bool accumulate) {
  torch::Tensor o = view(out, shape);
  if (!grad.defined()) {
    if (!accumulate) o.zero_();
  } else if (accumulate) {
    o.add_(grad);
  } else {
    o.copy_(grad);
  }
}

}  // namespace

template <typename T>
SequentialResult torchSequentialForwardBackward(const Stack& s, const T* X, const int32_t* y, const T* const* params,
                                                T* const* grads, T* dX, Reduction red, bool accumulate) {
  SequentialResult r;
  // X asks for a gradient only when dX is wanted, which spares autograd the first dZ·Wᵀ GEMM.
  const torch::Tensor tX = view(X, {s.B, s.D}).requires_grad_(dX != nullptr);
  const std::vector<torch::Tensor> p = leaves(s, params, true);

  const Pass f = forwardPass(s, tX, p);
  if (f.badLayer >= 0) {
    r.status = SequentialStatus::NonFiniteLayer;
    r.at = f.badLayer;
    return r;
  }
  // cross_entropy wants int64 class ids: the one copy, B entries.
  const torch::Tensor target = view(y, {s.B}).to(torch::kLong);
  F::CrossEntropyFuncOptions options;
  if (red == Reduction::Mean) options.reduction(torch::kMean);
  else options.reduction(torch::kSum);
  // On the raw output, as F.cross_entropy: log-softmax and NLL fused inside.
  const torch::Tensor lossT = F::cross_entropy(f.out, target, options);
  r.loss = lossT.item<double>();  // the dtype's value (a float32 loss widens exactly)
  if (!std::isfinite(r.loss)) {
    r.status = SequentialStatus::NonFiniteLoss;  // before any output is written
    return r;
  }
  // A stack with no Linear and no dX has nothing to differentiate (and backward() would refuse).
  if (lossT.requires_grad()) lossT.backward();

  // Copies into the caller's buffers are not part of the model: keep them off the graph. Every
  // gradient is checked before the first is written, so a failed call leaves the buffers as they were.
  torch::NoGradGuard noGrad;
  for (size_t i = 0; i < p.size(); ++i) {
    const torch::Tensor g = p[i].grad();
    if (g.defined() && !finite(g)) {
      r.status = SequentialStatus::NonFiniteGrad;
      r.at = static_cast<int64_t>(i);
      return r;
    }
  }
  if (dX && tX.grad().defined() && !finite(tX.grad())) {
    r.status = SequentialStatus::NonFiniteGrad;
    r.at = static_cast<int64_t>(p.size());
    return r;
  }
  for (size_t i = 0; i < p.size(); ++i) deliver(grads[i], p[i].sizes(), p[i].grad(), accumulate);
  if (dX) deliver(dX, tX.sizes(), tX.grad(), accumulate);
  return r;
}

template <typename T>
SequentialResult torchSequentialForward(const Stack& s, const T* X, const T* const* params, T* logits) {
  SequentialResult r;
  torch::NoGradGuard noGrad;
  const Pass f = forwardPass(s, view(X, {s.B, s.D}), leaves(s, params, false));
  if (f.badLayer >= 0) {
    r.status = SequentialStatus::NonFiniteLayer;
    r.at = f.badLayer;
    return r;
  }
  view(logits, f.out.sizes()).copy_(f.out);
  return r;
}

template SequentialResult torchSequentialForwardBackward<double>(const Stack&, const double*, const int32_t*,
                                                                 const double* const*, double* const*, double*,
                                                                 Reduction, bool);
template SequentialResult torchSequentialForwardBackward<float>(const Stack&, const float*, const int32_t*,
                                                                const float* const*, float* const*, float*,
                                                                Reduction, bool);
template SequentialResult torchSequentialForward<double>(const Stack&, const double*, const double* const*, double*);
template SequentialResult torchSequentialForward<float>(const Stack&, const float*, const float* const*, float*);

}  // namespace hg
