// torch::optim on the caller's memory: the parameter is a leaf tensor viewing W, and each step
// writes through it, so the result lands in the caller's buffer with no copy back.
#include "optim.h"

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <tuple>

namespace hg {
namespace {

// The optimizer exactly as torch::optim builds it from these options; only the options each kind
// names are set, the rest keep LibTorch's defaults (amsgrad false, dampening 0).
std::unique_ptr<torch::optim::Optimizer> makeOptimizer(OptimizerKind kind, const OptimizerHyper& h,
                                                       const torch::Tensor& param) {
  std::vector<torch::Tensor> params{param};
  switch (kind) {
    case OptimizerKind::Sgd:
    case OptimizerKind::Momentum:
    case OptimizerKind::Nesterov: {
      torch::optim::SGDOptions o(h.lr);
      o.momentum(kind == OptimizerKind::Sgd ? 0.0 : h.momentum).dampening(0).weight_decay(h.weightDecay);
      o.nesterov(kind == OptimizerKind::Nesterov);
      return std::make_unique<torch::optim::SGD>(params, o);
    }
    case OptimizerKind::Adam:
    case OptimizerKind::AdamW: {
      // Set on both option types; AdamW's default weight_decay is 1e-2, not 0, so always set it.
      const auto set = [&](auto o) { return o.betas(std::make_tuple(h.beta1, h.beta2)).eps(h.epsilon).weight_decay(h.weightDecay); };
      if (kind == OptimizerKind::Adam) return std::make_unique<torch::optim::Adam>(params, set(torch::optim::AdamOptions(h.lr)));
      return std::make_unique<torch::optim::AdamW>(params, set(torch::optim::AdamWOptions(h.lr)));
    }
  }
  TORCH_CHECK_VALUE(false, "unknown optimizer kind");
}

}  // namespace

template <typename T>
void torchOptimizerRun(OptimizerKind kind, const OptimizerHyper& h, T* W, size_t n, const T* const* grads,
                       size_t steps) {
  const auto opts = torch::dtype<T>();
  const auto len = static_cast<int64_t>(n);
  // A leaf over the caller's W: step() runs under NoGradGuard and updates it in place (add_,
  // addcdiv_, mul_ on the parameter), i.e. in the caller's buffer. W outlives the optimizer.
  torch::Tensor param = torch::from_blob(W, {len}, opts).requires_grad_(true);
  auto optimizer = makeOptimizer(kind, h, param);
  for (size_t s = 0; s < steps; ++s) {
    // A copy: the optimizer may keep the gradient (SGD's first momentum buffer is a clone, but
    // nothing promises that), and the caller's array must not be read after this call returns.
    param.mutable_grad() = torch::from_blob(const_cast<T*>(grads[s]), {len}, opts).clone();
    optimizer->step();
  }
}

template void torchOptimizerRun<double>(OptimizerKind, const OptimizerHyper&, double*, size_t,
                                        const double* const*, size_t);
template void torchOptimizerRun<float>(OptimizerKind, const OptimizerHyper&, float*, size_t,
                                       const float* const*, size_t);

}  // namespace hg
