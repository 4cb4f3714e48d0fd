// LibTorch autograd over a layer stack, on the caller's memory. Every call builds its own graph from
// leaf tensors over the caller's buffers (each weight a transposed copy, nn.Linear's [out, in]); the
// graph and the .grad tensors die with the call, so nothing carries over between calls unless
// accumulate asks for it.
#include "sequential.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <vector>

namespace hg {
namespace {

namespace F = torch::nn::functional;

// A tensor over the caller's buffer (no copy). from_blob takes void*: inputs are only read
// (autograd never writes a leaf's data), so dropping const is safe.
template <typename T>
torch::Tensor view(const T* data, torch::IntArrayRef shape) {
  return torch::from_blob(const_cast<T*>(data), shape, torch::dtype<T>());
}

// The core's bit-test scan (kernels.h) on torch's own results: torch::isfinite(t).all().item()
// allocates a bool tensor and a reduction per check, which cost as much as the stack's GEMMs here.
bool finite(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous();
  const size_t n = static_cast<size_t>(c.numel());
  return c.scalar_type() == torch::kFloat32 ? allFinite(c.data_ptr<float>(), n) : allFinite(c.data_ptr<double>(), n);
}

// Every Linear's weight and bias, in order, as nn.Linear holds them: the weight a contiguous
// [out_k, in_k] leaf, a transposed copy of the caller's W_k [in_k, out_k] (autograd then computes its
// gradient as nn.Linear's, grad_outputᵀ·input, not the product the [in,out] orientation would ask
// for), the bias a [out_k] leaf over the caller's b_k. Two per Linear, as params; requires_grad when
// asked.
template <typename T>
std::vector<torch::Tensor> leaves(const Net& n, const T* const* params, bool requiresGrad) {
  std::vector<torch::Tensor> out;
  for (int l = 0; l < n.layers; ++l) {
    if (n.kinds[l] != LayerKind::Linear) continue;
    out.push_back(view(params[out.size()], {n.widths[l], n.widths[l + 1]}).t().contiguous().requires_grad_(requiresGrad));
    out.push_back(view(params[out.size()], {n.widths[l + 1]}).requires_grad_(requiresGrad));
  }
  return out;
}

// The stack, layer by layer, every output kept in outs (the last is the logits), recorded for
// autograd when a leaf requires grad. Linear is nn.Linear's F.linear(A, weight, b): for 2-D input
// addmm(b, A, weightᵀ), the bias handed to the GEMM as beta·C (BLAS forms the product, then adds
// the bias once) — the bits the exact mode reproduces, and PyTorch's.
StackStatus forwardPass(const Net& n, torch::Tensor A, const std::vector<torch::Tensor>& p, std::vector<torch::Tensor>* outs) {
  for (int l = 0, k = 0; l < n.layers; ++l) {
    switch (n.kinds[l]) {
      case LayerKind::Linear:
        A = F::linear(A, p[k], p[k + 1]);
        k += 2;
        // Activations of a finite tensor are finite (inputs are checked), so only a Linear can overflow.
        if (!finite(A)) return {Stage::Forward, l};
        break;
      case LayerKind::Relu: A = torch::relu(A); break;
      case LayerKind::Sigmoid: A = torch::sigmoid(A); break;
      case LayerKind::Tanh: A = torch::tanh(A); break;
    }
    outs->push_back(A);
  }
  return {Stage::Ok, 0};
}

// out = grad, or out += grad with accumulate (PyTorch adds each backward into .grad). Every leaf
// reaches the loss (a stack has a Linear), so every grad is defined.
template <typename T>
void deliver(T* out, const torch::Tensor& grad, bool accumulate) {
  torch::Tensor o = view(out, grad.sizes());
  if (accumulate) o.add_(grad);
  else o.copy_(grad);
}

}  // namespace

template <typename T>
StackStatus torchForwardBackward(const Net& n, const Step<T>& a, double* loss) {
  // X asks for a gradient only when dX is wanted, which spares autograd the first dZ·Wᵀ GEMM.
  const torch::Tensor tX = view(a.X, {a.B, n.widths[0]}).requires_grad_(a.dX != nullptr);
  const std::vector<torch::Tensor> p = leaves(n, a.params, true);
  std::vector<torch::Tensor> outs;
  const StackStatus f = forwardPass(n, tX, p, &outs);
  if (f.stage != Stage::Ok) return f;
  // Every option of F.cross_entropy, as PyTorch's own: the caller's arrays are cloned (read once),
  // class ids become int64 (cross_entropy's), probability targets stay the dtype's [B,C].
  const LossSpec<T>& spec = a.loss;
  const int64_t C = n.widths[n.layers];
  if (!spec.targets && spec.reduction == Reduction::Mean &&
      labelWeightSum(a.y, size_t(a.B), spec.weight, spec.ignoreIndex) == 0.0) {
    size_t valid = 0;
    for (int b = 0; b < a.B; ++b) valid += a.y[b] != spec.ignoreIndex;
    return {Stage::EmptyMean, int(valid)};  // PyTorch's NaN (0/0), refused
  }
  const torch::Tensor target = spec.targets ? view(spec.targets, {a.B, C}).clone() : view(a.y, {a.B}).to(torch::kLong);
  F::CrossEntropyFuncOptions options;
  options.reduction(spec.reduction == Reduction::Mean  ? F::CrossEntropyFuncOptions::reduction_t(torch::kMean)
                    : spec.reduction == Reduction::Sum ? F::CrossEntropyFuncOptions::reduction_t(torch::kSum)
                                                       : F::CrossEntropyFuncOptions::reduction_t(torch::kNone));
  if (spec.weight) options.weight(view(spec.weight, {C}).clone());
  options.ignore_index(spec.ignoreIndex);
  options.label_smoothing(spec.labelSmoothing);
  // On the raw output, as F.cross_entropy: log-softmax and NLL fused inside.
  const torch::Tensor lossT = F::cross_entropy(outs.back(), target, options);
  const bool none = spec.reduction == Reduction::None;
  *loss = none ? lossT.sum().item<double>() : lossT.item<double>();  // the dtype's value (a float32 loss widens exactly)
  if (!std::isfinite(*loss)) return {Stage::Loss, n.layers - 1};  // before any output is written
  // 'none' is a vector: backward takes ∂L/∂loss, as loss.backward(gradient).
  if (none) lossT.backward(view(spec.gradOutput, {a.B}).clone());
  else lossT.backward();

  // Copies into the caller's buffers are not part of the model: keep them off the graph.
  torch::NoGradGuard noGrad;
  // Weights go back in the caller's [in, out] orientation: the [out, in] gradient transposed.
  for (size_t i = 0; i < p.size(); ++i) deliver(a.grads[i], i % 2 == 0 ? p[i].grad().t() : p[i].grad(), a.accumulate);
  if (a.dX) deliver(a.dX, tX.grad(), a.accumulate);
  if (a.ws) {
    std::vector<uint64_t> at(size_t(n.layers));
    Layout l;
    stackLayout<T>(n, uint64_t(a.B), at.data(), &l);
    for (int i = 0; i < n.layers; ++i) view(a.ws + at[i], outs[i].sizes()).copy_(outs[i]);
    view(a.ws + l.probs, outs.back().sizes()).copy_(torch::softmax(outs.back(), 1));
    if (none) view(a.ws + l.losses, {a.B}).copy_(lossT);
  }
  return gradsStatus(n, a.B, a.grads, static_cast<const T*>(a.dX));
}

template <typename T>
StackStatus torchForward(const Net& n, int B, const T* X, const T* const* params, T* logits) {
  torch::NoGradGuard noGrad;
  std::vector<torch::Tensor> outs;
  const StackStatus f = forwardPass(n, view(X, {B, n.widths[0]}), leaves(n, params, false), &outs);
  if (f.stage == Stage::Ok) view(logits, outs.back().sizes()).copy_(outs.back());
  return f;
}

template StackStatus torchForwardBackward<double>(const Net&, const Step<double>&, double*);
template StackStatus torchForwardBackward<float>(const Net&, const Step<float>&, double*);
template StackStatus torchForward<double>(const Net&, int, const double*, const double* const*, double*);
template StackStatus torchForward<float>(const Net&, int, const float*, const float* const*, float*);

int torchThreads() { return at::get_num_threads(); }
void setTorchThreads(int n) { at::set_num_threads(n); }

}  // namespace hg
