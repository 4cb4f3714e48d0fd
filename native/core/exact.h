// The exact mode: a stack's forward, loss and backward computed as PyTorch 1.13 computes
// nn.Sequential(nn.Linear, act, …) + F.cross_entropy + backward() on this machine's LibTorch and
// OpenBLAS with one intra-op thread, so the loss and every gradient are its bits. Each step is the
// ATen kernel autograd runs (exact_kernels.h), each product the BLAS call addmm/mm makes
// (exact_gemm.h), on the tensors in PyTorch's layout: a weight as nn.Linear holds it, [out, in],
// here a transposed copy of this package's [in, out]. Native only (Sleef, OpenBLAS's Fortran GEMM).
//
// The contract is stackForwardBackward's (stack.h): same Step, same workspace (stackLayout), same
// failures. Beyond the workspace it keeps two per-thread scratch matrices (the weight and its
// gradient in PyTorch's layout, the largest layer's in·out each), grown on first use: the exact
// mode allocates, the default one never does.
#pragma once

#include <algorithm>
#include <cstring>
#include <vector>

#include "exact_gemm.h"
#include "exact_kernels.h"
#include "stack.h"

namespace hg {

// Null when the exact mode reproduces this loss, else what it refuses (the glue throws it).
// F.cross_entropy with class labels, reduction 'mean' or 'sum' and any ignore_index: nll_loss over
// log_softmax. The other options run other ATen code that exact mode does not reproduce yet.
template <typename T>
const char* exactUnsupportedLoss(const LossSpec<T>& s) {
  if (s.reduction == Reduction::None) return "exact mode supports reduction 'mean' and 'sum', not 'none'";
  if (s.weight) return "exact mode does not support a class weight yet";
  if (s.labelSmoothing != 0) return "exact mode does not support labelSmoothing yet";
  if (s.targets) return "exact mode does not support probability targets yet";
  return nullptr;
}

namespace exact {

// Row-major [rows, cols] → [cols, rows].
template <typename T>
void transpose(const T* from, size_t rows, size_t cols, T* to) {
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) to[c * rows + r] = from[r * cols + c];
}

template <typename T>
std::vector<T>& scratch(int which) {
  thread_local std::vector<T> buffers[2];
  return buffers[which];
}

}  // namespace exact

// Forward, loss and every gradient as LibTorch computes them; see stackForwardBackward for the
// arguments, the workspace and the failures. The caller has checked exact::exactUnsupported() and
// exactUnsupportedLoss(a.loss); if either says no, this returns {Stage::Input, -1} and writes nothing.
template <typename T>
StackStatus exactForwardBackward(const Net& n, const Step<T>& a, double* loss) {
  using namespace exact;
  if (exactUnsupported() || exactUnsupportedLoss(a.loss)) return {Stage::Input, -1};
  const Capability cap = atenCapability();
  const Fusion fuse = fusionFor(cap);
  Layout l;
  stackLayout<T>(n, uint64_t(a.B), static_cast<uint64_t*>(nullptr), &l);
  const size_t B = size_t(a.B), C = size_t(n.widths[n.layers]);
  const LossSpec<T>& spec = a.loss;
  const bool mean = spec.reduction == Reduction::Mean;
  int32_t* y = reinterpret_cast<int32_t*>(a.ws + l.labels);
  size_t ignored = 0;
  const size_t bad = copyLabels(a.y, B, int32_t(C), y, spec.ignoreIndex, &ignored);
  if (bad != B) return {Stage::Labels, int(bad)};
  if (mean && ignored == B) return {Stage::EmptyMean, 0};

  size_t widest = 0;
  for (int i = 0; i < n.layers; ++i) widest = std::max(widest, size_t(n.widths[i]) * size_t(n.widths[i + 1]));
  std::vector<T>& Wt = scratch<T>(0);
  std::vector<T>& dWt = scratch<T>(1);
  if (Wt.size() < widest) Wt.resize(widest);
  if (dWt.size() < widest) dWt.resize(widest);

  // Forward. F.linear on 2-D input is addmm(bias, X, weight.t()): the bias rows copied into the
  // result, then the GEMM with beta = 1.
  if (n.kinds[0] != LayerKind::Linear && !allFinite(a.X, B * size_t(n.widths[0]))) return {Stage::Input, 0};
  const T* A = a.X;
  size_t at = 0;
  for (int i = 0, p = 0; i < n.layers; ++i) {
    const size_t in = size_t(n.widths[i]), out = size_t(n.widths[i + 1]);
    T* Z = a.ws + at;
    switch (n.kinds[i]) {
      case LayerKind::Linear:
        transpose(a.params[p], in, out, Wt.data());
        broadcastRows(a.params[p + 1], Z, B, out);
        atenAddmm(contiguous<T>(int64_t(B), int64_t(out), Z), Z, contiguous<T>(int64_t(B), int64_t(in), A),
                  transposed(contiguous<T>(int64_t(out), int64_t(in), Wt.data())), T(1));
        p += 2;
        if (!allFinite(Z, B * out)) return {Stage::Forward, i};
        break;
      case LayerKind::Relu:
        for (size_t j = 0; j < B * out; ++j) Z[j] = A[j] < T(0) ? T(0) : A[j];  // clamp_min(x, 0)
        break;
      case LayerKind::Sigmoid:
        sigmoidForward(cap, A, Z, B * out);
        break;
      case LayerKind::Tanh:
        tanhForward(cap, A, Z, B * out);
        break;
    }
    A = Z;
    at += padded<T>(B * out);
  }

  // Loss: log_softmax into the probs slot, then nll_loss.
  const T* logits = a.ws + (l.probs - padded<T>(B * C));
  T* logp = a.ws + l.probs;
  logSoftmax(cap, logits, logp, B, C);
  *loss = double(nllLoss(logp, y, B, C, spec.ignoreIndex, mean));
  if (!std::isfinite(*loss)) return {Stage::Loss, n.layers - 1};
  int cur = 0;
  T* g = a.ws + l.grad[cur];
  logSoftmaxNllBackward(cap, fuse, logp, y, B, C, spec.ignoreIndex, mean, g);

  // Backward, layer by layer as autograd's AddmmBackward / ReluBackward / … nodes run.
  int firstLinear = 0, p = 0;
  while (n.kinds[firstLinear] != LayerKind::Linear) ++firstLinear;
  for (int i = 0; i < n.layers; ++i) p += n.kinds[i] == LayerKind::Linear ? 2 : 0;
  uint64_t end = l.probs;
  for (int i = n.layers - 1; i >= 0; --i) {
    const size_t in = size_t(n.widths[i]), out = size_t(n.widths[i + 1]);
    const uint64_t here = end - padded<T>(B * out);
    const T* input = i == 0 ? a.X : a.ws + (here - padded<T>(B * in));
    const bool wanted = i == 0 ? a.dX != nullptr : a.dX || i > firstLinear;
    if (n.kinds[i] == LayerKind::Linear) {
      p -= 2;
      // weight.t()'s gradient: mm_mat2_backward sees weight.t() column-major and computes
      // (dZᵀ·A) as a fresh [out, in] tensor, which is weight.grad.
      atenAddmm(contiguous<T>(int64_t(out), int64_t(in), dWt.data()), dWt.data(),
                transposed(contiguous<T>(int64_t(B), int64_t(out), g)), contiguous<T>(int64_t(B), int64_t(in), input),
                T(0));
      T* dW = a.grads[p];
      for (size_t r = 0; r < in; ++r)
        for (size_t c = 0; c < out; ++c) {
          const T v = dWt[c * in + r];
          dW[r * out + c] = a.accumulate ? dW[r * out + c] + v : v;
        }
      T* db = a.grads[p + 1];
      if (a.accumulate) {
        T* sums = dWt.data();  // free again
        columnSums(g, B, out, sums);
        for (size_t c = 0; c < out; ++c) db[c] = db[c] + sums[c];
      } else {
        columnSums(g, B, out, db);
      }
      T* gIn = nullptr;
      if (wanted) {
        // mm_mat1_backward: dZ.mm(weight), weight [out, in] contiguous.
        transpose(a.params[p], in, out, Wt.data());
        gIn = a.ws + l.grad[1 - cur];
        atenAddmm(contiguous<T>(int64_t(B), int64_t(in), gIn), gIn, contiguous<T>(int64_t(B), int64_t(out), g),
                  contiguous<T>(int64_t(out), int64_t(in), Wt.data()), T(0));
      }
      cur = 1 - cur;
      g = gIn;
    } else if (wanted) {
      const T* outp = a.ws + here;
      switch (n.kinds[i]) {
        case LayerKind::Relu: reluBackward(outp, g, B * in); break;
        case LayerKind::Sigmoid: sigmoidBackward(outp, g, B * in); break;
        case LayerKind::Tanh: tanhBackward(fuse, outp, g, B * in); break;
        case LayerKind::Linear: break;
      }
    }
    if (!wanted) break;
    if (i == 0) {
      if (a.accumulate)
        for (size_t j = 0; j < B * in; ++j) a.dX[j] += g[j];
      else
        std::memcpy(a.dX, g, B * in * sizeof(T));
    }
    end = here;
  }
  return gradsStatus(n, a.B, a.grads, a.dX);
}

}  // namespace hg
