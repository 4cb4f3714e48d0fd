// LibTorch's own optimizers (torch::optim) run over a sequence of gradients, so the update rules
// the Trainer writes by hand (lib/train/optimizer.ts, native/core/optimizer.h) have an independent
// check. Plain C++ with no Node-API and no torch types in this header; errors from LibTorch leave
// as c10::Error.
#pragma once

#include <cstddef>

#include "../core/optimizer.h"

namespace hg {

// W[n] is updated in place, one optimizer.step() per gradient: grads[s] points at n values.
// A fresh optimizer per call, so no state carries over between calls. c.momentum and c.dampening
// apply to 'momentum' and 'nesterov' (Nesterov: dampening 0), c.amsgrad to Adam and AdamW;
// c.weightDecay is L2 added to the gradient (SGD family, Adam) or decoupled decay (AdamW).
template <typename T>
void torchOptimizerRun(const OptimizerConfig& c, T* W, size_t n, const T* const* grads, size_t steps);

}  // namespace hg
