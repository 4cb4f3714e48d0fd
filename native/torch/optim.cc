// torch::optim on the caller's memory: the parameter is a leaf tensor viewing W, and each step
// writes through it, so the result lands in the caller's buffer with no copy back.
#include "optim.h"

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <tuple>

namespace hg {
namespace {

// The optimizer exactly as torch::optim builds it from these options (every one set: AdamW's
// default weight_decay is 1e-2, and the caller's config already holds the defaults it means).
std::unique_ptr<torch::optim::Optimizer> makeOptimizer(const OptimizerConfig& h, const torch::Tensor& param) {
  std::vector<torch::Tensor> params{param};
  switch (h.kind) {
    case Optimizer::Sgd:
    case Optimizer::Momentum:
    case Optimizer::Nesterov: {
      torch::optim::SGDOptions o(h.lr);
      o.momentum(h.kind == Optimizer::Sgd ? 0.0 : h.momentum).dampening(h.dampening).weight_decay(h.weightDecay);
      o.nesterov(h.kind == Optimizer::Nesterov);
      return std::make_unique<torch::optim::SGD>(params, o);
    }
    case Optimizer::Adam:
    case Optimizer::AdamW: {
      const auto set = [&](auto o) {
        return o.betas(std::make_tuple(h.beta1, h.beta2)).eps(h.epsilon).weight_decay(h.weightDecay).amsgrad(h.amsgrad);
      };
      if (h.kind == Optimizer::Adam) return std::make_unique<torch::optim::Adam>(params, set(torch::optim::AdamOptions(h.lr)));
      return std::make_unique<torch::optim::AdamW>(params, set(torch::optim::AdamWOptions(h.lr)));
    }
  }
  TORCH_CHECK_VALUE(false, "unknown optimizer kind");
}

}  // namespace

template <typename T>
void torchOptimizerRun(const OptimizerConfig& c, T* W, size_t n, const T* const* grads, size_t steps) {
  const auto opts = torch::dtype<T>();
  const auto len = static_cast<int64_t>(n);
  // A leaf over the caller's W: step() runs under NoGradGuard and updates it in place (add_,
  // addcdiv_, mul_ on the parameter), i.e. in the caller's buffer. W outlives the optimizer.
  torch::Tensor param = torch::from_blob(W, {len}, opts).requires_grad_(true);
  auto optimizer = makeOptimizer(c, param);
  for (size_t s = 0; s < steps; ++s) {
    // A copy: the optimizer may keep the gradient (SGD's first momentum buffer is a clone, but
    // nothing promises that), and the caller's array must not be read after this call returns.
    param.mutable_grad() = torch::from_blob(const_cast<T*>(grads[s]), {len}, opts).clone();
    optimizer->step();
  }
}

template void torchOptimizerRun<double>(const OptimizerConfig&, double*, size_t, const double* const*, size_t);
template void torchOptimizerRun<float>(const OptimizerConfig&, float*, size_t, const float* const*, size_t);

}  // namespace hg
