// The exact mode: a stack's forward, loss and backward computed as PyTorch 1.13 computes
// nn.Sequential(nn.Linear, act, …) + F.cross_entropy + backward() on this machine's LibTorch and
// OpenBLAS with one intra-op thread, so the loss and every gradient are its bits. Each step is the
// ATen kernel autograd runs (exact_kernels.h), each product the BLAS call addmm/mm makes
// (exact_gemm.h), on the tensors in PyTorch's layout: a weight as nn.Linear holds it, [out, in],
// here a transposed copy of this package's [in, out]. Native only (Sleef, OpenBLAS's Fortran GEMM).
//
// The contract is stackForwardBackward's (stack.h): same Step, same workspace (stackLayout), same
// failures. Beyond the workspace it keeps two per-thread scratch buffers, grown on first use: every
// weight in PyTorch's layout (Σ in·out, transposed in the forward, read again in the backward) and
// one weight gradient (the largest in·out), with the weights' offsets. They allocate when a thread
// first meets a larger net; after that an exact step allocates nothing, as a default one never does.
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "exact_gemm.h"
#include "exact_kernels.h"
#include "exact_loss.h"
#include "stack.h"

namespace hg {

// Null when the exact mode reproduces this loss, else what it refuses (the glue throws it). Every
// option of F.cross_entropy is reproduced (exact_loss.h); kept as the one place to refuse one.
template <typename T>
const char* exactUnsupportedLoss(const LossSpec<T>&) {
  return nullptr;
}

namespace exact {

// Empty when the exact mode reproduces LibTorch here, else why not (the glue throws it): a CPU
// capability this CPU cannot run (exactUnsupported), or OpenBLAS no longer at the thread count
// PyTorch's GEMMs would use (a caller changed it, e.g. handgrad's setNumThreads).
inline std::string refusal() {
  if (const char* why = exactUnsupported()) return why;
  const int now = openblas_get_num_threads();
  if (now != kBlasThreadsAtLoad)
    return "exact mode runs OpenBLAS at its default " + std::to_string(kBlasThreadsAtLoad) +
           " threads, as PyTorch does (torch never changes them), but it is set to " + std::to_string(now) +
           " (setNumThreads): call setNumThreads(" + std::to_string(kBlasThreadsAtLoad) + ") first";
  return {};
}

// Row-major [rows, cols] → [cols, rows] in 8×8 blocks: each block touches 8 lines on each side,
// which no stride can map onto too few cache sets (32×32 tiles of a 1024-wide float layer, whose
// 4 KiB stride sends a whole tile column to one set, made the transposes a quarter of the step).
template <typename T>
void transpose(const T* from, size_t rows, size_t cols, T* to) {
  constexpr size_t k = 8;
  const size_t R = rows / k * k, Cw = cols / k * k;
  for (size_t r0 = 0; r0 < R; r0 += k)
    for (size_t c0 = 0; c0 < Cw; c0 += k)
      for (size_t r = r0; r < r0 + k; ++r)
        for (size_t c = c0; c < c0 + k; ++c) to[c * rows + r] = from[r * cols + c];
  for (size_t r = 0; r < rows; ++r)  // the ragged edges
    for (size_t c = r < R ? Cw : 0; c < cols; ++c) to[c * rows + r] = from[r * cols + c];
}

template <typename T>
std::vector<T>& scratch(int which) {
  thread_local std::vector<T> buffers[2];
  return buffers[which];
}

// Where each layer's PyTorch-layout weight starts in scratch 0: per thread too, so a step allocates
// nothing once the buffers have grown to the net.
inline size_t* weightOffsets(int layers) {
  thread_local std::vector<size_t> at;
  if (at.size() < size_t(layers)) at.resize(size_t(layers));
  return at.data();
}

// Offsets of each Linear's weight in PyTorch's layout within Wt (grown to hold them all); returns
// the largest in·out.
template <typename T>
size_t weightLayout(const Net& n, std::vector<T>* Wt, size_t* wtAt) {
  size_t widest = 0, weights = 0;
  for (int i = 0; i < n.layers; ++i) {
    const size_t size = size_t(n.widths[i]) * size_t(n.widths[i + 1]);
    widest = std::max(widest, size);
    wtAt[i] = weights;
    if (n.kinds[i] == LayerKind::Linear) weights += size;
  }
  if (Wt->size() < weights) Wt->resize(weights);
  return widest;
}

// The forward through every layer into ws (stackForward's layout and failures), as nn.Sequential
// runs it; each Linear's weight transposed into Wt at wtAt[i] on the way.
template <int W, typename T>
StackStatus forwardLayers(const Net& n, int Bi, const T* X, const T* const* params, T* ws, Capability cap, T* Wt,
                          const size_t* wtAt) {
  const size_t B = size_t(Bi);
  // Forward. F.linear on 2-D input is addmm(bias, X, weight.t()): the bias rows copied into the
  // result, then the GEMM with beta = 1.
  if (n.kinds[0] != LayerKind::Linear && !allFinite(X, B * size_t(n.widths[0]))) return {Stage::Input, 0};
  const T* A = X;
  size_t at = 0;
  for (int i = 0, p = 0; i < n.layers; ++i) {
    const size_t in = size_t(n.widths[i]), out = size_t(n.widths[i + 1]);
    T* Z = ws + at;
    switch (n.kinds[i]) {
      case LayerKind::Linear:
        transpose(params[p], in, out, Wt + wtAt[i]);
        broadcastRows(params[p + 1], Z, B, out);
        atenAddmm(contiguous<T>(int64_t(B), int64_t(out), Z), Z, contiguous<T>(int64_t(B), int64_t(in), A),
                  transposed(contiguous<T>(int64_t(out), int64_t(in), Wt + wtAt[i])), T(1));
        p += 2;
        if (!allFinite(Z, B * out)) return {Stage::Forward, i};
        break;
      case LayerKind::Relu:
        for (size_t j = 0; j < B * out; ++j) Z[j] = A[j] < T(0) ? T(0) : A[j];  // clamp_min(x, 0)
        break;
      case LayerKind::Sigmoid:
        sigmoidForward<W>(cap, A, Z, B * out);
        break;
      case LayerKind::Tanh:
        tanhForward<W>(cap, A, Z, B * out);
        break;
    }
    A = Z;
    at += padded<T>(B * out);
  }

  return {Stage::Ok, 0};
}

// The step for one Vectorized<T> width W in bytes (exactForwardBackward picks it).
template <int W, typename T>
StackStatus run(const Net& n, const Step<T>& a, double* loss, Capability cap) {
  const Fusion fuse = fusionFor(cap);
  Layout l;
  stackLayout<T>(n, uint64_t(a.B), static_cast<uint64_t*>(nullptr), &l);
  const size_t B = size_t(a.B), C = size_t(n.widths[n.layers]);
  // Labels and the loss's arrays are copied before anything else (another thread may write them),
  // as stackForwardBackward does; the exact loss always takes the general path (F.cross_entropy's ops).
  const int32_t* y = reinterpret_cast<const int32_t*>(a.ws + l.labels);
  LossSpec<T> own;
  bool general;
  const StackStatus in = copyStepInputs(n, a, l, true, &own, &general);
  if (in.stage != Stage::Ok) return in;

  // Every weight in PyTorch's layout (kept from the forward for the backward), and one gradient's.
  size_t* wtAt = weightOffsets(n.layers);
  std::vector<T>& Wt = scratch<T>(0);
  std::vector<T>& dWt = scratch<T>(1);
  const size_t widest = weightLayout(n, &Wt, wtAt);
  if (dWt.size() < std::max(widest, B)) dWt.resize(std::max(widest, B));  // also the loss's scratch [B]

  const StackStatus f = forwardLayers<W>(n, a.B, a.X, a.params, a.ws, cap, Wt.data(), wtAt);
  if (f.stage != Stage::Ok) return f;

  // Loss: log_softmax into the probs slot, then F.cross_entropy's ops and their backward into grad[0].
  const T* logits = a.ws + (l.probs - padded<T>(B * C));
  T* logp = a.ws + l.probs;
  logSoftmax<W>(cap, logits, logp, B, C);
  int cur = 0;
  T* g = a.ws + l.grad[cur];
  *loss = double(crossEntropy<W>(cap, fuse, logp, own.targets ? nullptr : y, own, B, C, a.ws + l.losses, dWt.data(), g));
  if (!std::isfinite(*loss)) return {Stage::Loss, n.layers - 1};

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
      if (a.accumulate) {
        // .grad += the new gradient: one rounding per entry, as AccumulateGrad's add.
        for (size_t r = 0; r < in; ++r)
          for (size_t c = 0; c < out; ++c) dW[r * out + c] = dW[r * out + c] + dWt[c * in + r];
      } else {
        transpose(dWt.data(), out, in, dW);
      }
      T* db = a.grads[p + 1];
      if (a.accumulate) {
        T* sums = dWt.data();  // free again
        columnSums<W>(g, B, out, sums);
        for (size_t c = 0; c < out; ++c) db[c] = db[c] + sums[c];
      } else {
        columnSums<W>(g, B, out, db);
      }
      T* gIn = nullptr;
      if (wanted) {
        // mm_mat1_backward: dZ.mm(weight), weight [out, in] contiguous.
        gIn = a.ws + l.grad[1 - cur];
        atenAddmm(contiguous<T>(int64_t(B), int64_t(in), gIn), gIn, contiguous<T>(int64_t(B), int64_t(out), g),
                  contiguous<T>(int64_t(out), int64_t(in), Wt.data() + wtAt[size_t(i)]), T(0));
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

}  // namespace exact

// Forward, loss and every gradient as LibTorch computes them; see stackForwardBackward for the
// arguments, the workspace and the failures (for reduction 'none' the loss is at::sum of the rows'
// losses, which are left in the workspace's losses, as the LibTorch reference returns them). The
// caller has checked exact::refusal() and exactUnsupportedLoss(a.loss); if either says
// no, this returns {Stage::Input, -1} and writes nothing.
template <typename T>
StackStatus exactForwardBackward(const Net& n, const Step<T>& a, double* loss) {
  if (!exact::refusal().empty() || exactUnsupportedLoss(a.loss)) return {Stage::Input, -1};
  const exact::Capability cap = exact::atenCapability();
  return exact::vectorBytes(cap) == 64 ? exact::run<64>(n, a, loss, cap) : exact::run<32>(n, a, loss, cap);
}

// The forward alone (stackForward's contract): the logits nn.Sequential computes, for predictions
// that agree with PyTorch's to the bit. The same refusal as exactForwardBackward.
template <typename T>
StackStatus exactForward(const Net& n, int B, const T* X, const T* const* params, T* ws) {
  if (!exact::refusal().empty()) return {Stage::Input, -1};
  const exact::Capability cap = exact::atenCapability();
  size_t* wtAt = exact::weightOffsets(n.layers);
  std::vector<T>& Wt = exact::scratch<T>(0);
  exact::weightLayout(n, &Wt, wtAt);
  return exact::vectorBytes(cap) == 64 ? exact::forwardLayers<64>(n, B, X, params, ws, cap, Wt.data(), wtAt)
                                       : exact::forwardLayers<32>(n, B, X, params, ws, cap, Wt.data(), wtAt);
}

}  // namespace hg
