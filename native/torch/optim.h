// LibTorch's own optimizers (torch::optim) run over a sequence of gradients, so the update rules
// the Trainer writes by hand (lib/train/optimizer.ts) have an independent check. Plain C++ with no
// Node-API and no torch types in this header; errors from LibTorch leave as c10::Error.
#pragma once

#include <cstddef>

namespace hg {

enum class OptimizerKind { Sgd, Momentum, Nesterov, Adam, AdamW };

struct OptimizerHyper {
  double lr;
  double momentum;     // 'momentum' and 'nesterov' (dampening 0)
  double beta1, beta2;  // 'adam' and 'adamw'
  double epsilon;
  double weightDecay;  // L2 added to the gradient (SGD family, Adam) or decoupled decay (AdamW)
};

// W[n] is updated in place, one optimizer.step() per gradient: grads[s] points at n values.
// A fresh optimizer per call, so no state carries over between calls.
template <typename T>
void torchOptimizerRun(OptimizerKind kind, const OptimizerHyper& h, T* W, size_t n, const T* const* grads,
                       size_t steps);

}  // namespace hg
