// LibTorch autograd on the caller's memory. Every call builds its own graph from leaf tensors that
// view the caller's buffers; the graph and the .grad tensors die with the call, so nothing carries
// over between calls unless accumulate asks for it.
#include "reference.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include "blob.h"

namespace hg {
namespace {

namespace F = torch::nn::functional;

torch::Tensor activate(Activation act, const torch::Tensor& Z) {
  switch (act) {
    case Activation::Sigmoid: return torch::sigmoid(Z);
    case Activation::Tanh: return torch::tanh(Z);
    case Activation::Relu: break;
  }
  return torch::relu(Z);
}

// The core's check, on torch's own results: a fresh mm + add is contiguous in T.
template <typename T>
bool finite(const torch::Tensor& t) {
  return allFinite(t.data_ptr<T>(), static_cast<size_t>(t.numel()));
}

// Z1 = X·W1 + b1, A1 = act(Z1), logits = A1·W2 + b2, recorded for autograd when the leaves
// require grad. Written as the fixtures' PyTorch script writes it (mm, then a broadcast add).
struct Forward {
  torch::Tensor Z1, A1, logits;
  Status status = Status::Ok;
};

template <typename T>
Forward forwardPass(const torch::Tensor& X, const torch::Tensor& W1, const torch::Tensor& b1,
                    const torch::Tensor& W2, const torch::Tensor& b2, Activation act) {
  Forward f;
  f.Z1 = X.mm(W1) + b1;
  if (!finite<T>(f.Z1)) {
    f.status = Status::NonFiniteZ1;
    return f;
  }
  f.A1 = activate(act, f.Z1);
  f.logits = f.A1.mm(W2) + b2;
  if (!finite<T>(f.logits)) f.status = Status::NonFiniteLogits;
  return f;
}

template <typename T>
void store(T* dst, const torch::Tensor& src) {
  view(dst, src.sizes()).copy_(src);
}

// out = grad, or out += grad with accumulate (PyTorch adds each backward into .grad).
template <typename T>
void deliver(T* out, const torch::Tensor& grad, bool accumulate) {
  torch::Tensor o = view(out, grad.sizes());
  if (accumulate) o.add_(grad);
  else o.copy_(grad);
}

}  // namespace

template <typename T>
Status torchForwardBackward(const Dims& d, const T* X, const int32_t* y, const Params<T>& p,
                            Activation act, Reduction red, const Workspace<T>& w, const Grads<T>& g,
                            bool accumulate, double* loss) {
  // Leaves: X asks for a gradient only when dX is wanted, which spares autograd the dZ1·W1ᵀ GEMM.
  const torch::Tensor tX = view(X, {d.B, d.D}).requires_grad_(g.dX != nullptr);
  const torch::Tensor W1 = view(p.W1, {d.D, d.H}).requires_grad_(true);
  const torch::Tensor b1 = view(p.b1, {d.H}).requires_grad_(true);
  const torch::Tensor W2 = view(p.W2, {d.H, d.C}).requires_grad_(true);
  const torch::Tensor b2 = view(p.b2, {d.C}).requires_grad_(true);

  const Forward f = forwardPass<T>(tX, W1, b1, W2, b2, act);
  if (f.status != Status::Ok) return f.status;
  // cross_entropy wants int64 class ids: the one copy, B entries.
  const torch::Tensor target = view(y, {d.B}).to(torch::kLong);
  F::CrossEntropyFuncOptions options;
  if (red == Reduction::Mean) options.reduction(torch::kMean);
  else options.reduction(torch::kSum);
  // On the raw logits, as the fixtures' F.cross_entropy: softmax and log are fused inside.
  const torch::Tensor lossT = F::cross_entropy(f.logits, target, options);
  *loss = lossT.item<double>();  // already in the dtype's precision, as the core's loss
  if (!std::isfinite(*loss)) return Status::NonFiniteLoss;  // before any output is written
  lossT.backward();

  // Copies into the caller's buffers are not part of the model: keep them off the graph.
  torch::NoGradGuard noGrad;
  store(w.Z1, f.Z1);
  store(w.A1, f.A1);
  store(w.logits, f.logits);
  store(w.probs, torch::softmax(f.logits, 1));
  if (g.dX) deliver(g.dX, tX.grad(), accumulate);
  deliver(g.dW1, W1.grad(), accumulate);
  deliver(g.db1, b1.grad(), accumulate);
  deliver(g.dW2, W2.grad(), accumulate);
  deliver(g.db2, b2.grad(), accumulate);
  return gradsFinite(d, g) ? Status::Ok : Status::NonFiniteGrads;
}

template <typename T>
Status torchForward(const Dims& d, const T* X, const Params<T>& p, Activation act, const Workspace<T>& w) {
  torch::NoGradGuard noGrad;
  const Forward f = forwardPass<T>(view(X, {d.B, d.D}), view(p.W1, {d.D, d.H}), view(p.b1, {d.H}),
                                   view(p.W2, {d.H, d.C}), view(p.b2, {d.C}), act);
  if (f.status != Status::Ok) return f.status;
  store(w.Z1, f.Z1);
  store(w.A1, f.A1);
  store(w.logits, f.logits);
  return Status::Ok;
}

template Status torchForwardBackward<double>(const Dims&, const double*, const int32_t*, const Params<double>&,
                                             Activation, Reduction, const Workspace<double>&,
                                             const Grads<double>&, bool, double*);
template Status torchForwardBackward<float>(const Dims&, const float*, const int32_t*, const Params<float>&,
                                            Activation, Reduction, const Workspace<float>&,
                                            const Grads<float>&, bool, double*);
template Status torchForward<double>(const Dims&, const double*, const Params<double>&, Activation,
                                     const Workspace<double>&);
template Status torchForward<float>(const Dims&, const float*, const Params<float>&, Activation,
                                    const Workspace<float>&);

int torchThreads() { return at::get_num_threads(); }
void setTorchThreads(int n) { at::set_num_threads(n); }

}  // namespace hg
