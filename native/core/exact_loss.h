// F.cross_entropy as PyTorch 1.13 computes it on CPU, forward and backward to the logits, for the
// exact mode (exact.h): aten/src/ATen/native/LossNLL.cpp cross_entropy_loss dispatches to
//   class labels, no smoothing:   nll_loss(log_softmax(z), y, weight, reduction, ignore_index)
//   class labels, smoothing ε:    (1−ε)·nll_loss(…) + smooth·(ε/C), smooth_b = −Σ_c logp_bc·w_c (0 on
//                                 ignored rows) reduced by mean (the counted rows' mean, or Σ ÷ Σ w[y] of
//                                 them with a weight), sum or none  (cross_entropy_loss_label_smoothing)
//   probability targets q:        −Σ logp·q'·w, q' = q·(1−ε) + ε/C when ε > 0, summed over
//                                 everything (÷B for mean) or per row for none
//                                                               (cross_entropy_loss_prob_target)
// Each op is one ATen kernel, so each rounds once in T: scalars (1−ε, ε/C) are formed in double
// and rounded to T, as a Python float meets a float tensor; sums are at::sum's orders (innerSum),
// nll_loss's its cascade. The backward is autograd's, op by op in reverse, into the gradient with
// respect to log_softmax's output, then log_softmax's backward.
#pragma once

#include <cstddef>
#include <cstdint>

#include "exact_kernels.h"
#include "kernels.h"

namespace hg::exact {

// nll_loss forward (LossNLL.cpp nll_loss_out_frame). 'none': out_b = −logp[b, y_b]·w (0 when
// ignored). 'mean'/'sum': −logp·w summed through a cascade of 8 partial sums (level 0 takes each
// row; every 2^p rows a level is flushed into the next), the levels added in order; with a
// weight, Σw the same way; 'mean' divides by Σw (the counted rows, in T, without a weight).
template <typename T>
T nllForward(const T* logp, const int32_t* y, const T* weight, int32_t ignore, Reduction red, size_t B, size_t C,
             T* perRow, T* totalWeight) {
  if (red == Reduction::None) {
    for (size_t b = 0; b < B; ++b) {
      if (y[b] == ignore) {
        perRow[b] = T(0);
        continue;
      }
      const T w = weight ? weight[y[b]] : T(1);
      perRow[b] = -logp[b * C + size_t(y[b])] * w;
    }
    return T(0);
  }
  constexpr int kLevels = 8;
  int ceilLog2 = 0;
  while ((uint64_t(1) << ceilLog2) < uint64_t(B)) ++ceilLog2;
  const int power = std::max(4, ceilLog2 / kLevels);
  const uint64_t mask = (uint64_t(1) << power) - 1;
  T loss[kLevels] = {}, wsum[kLevels] = {};
  size_t ignored = 0;
  for (size_t b = 0; b < B; ++b) {
    if (y[b] == ignore) {
      ++ignored;
      continue;
    }
    const T x = logp[b * C + size_t(y[b])];
    if (weight) {
      loss[0] -= x * weight[y[b]];
      wsum[0] += weight[y[b]];
    } else {
      loss[0] -= x;
    }
    for (int j = 0; j + 1 < kLevels; ++j) {
      if ((uint64_t(b) & (mask << (j * power))) != 0) break;
      wsum[j + 1] += wsum[j];
      loss[j + 1] += loss[j];
      wsum[j] = T(0);
      loss[j] = T(0);
    }
  }
  T total = T(0), out = T(0);
  for (int j = 0; j < kLevels; ++j) total = total + wsum[j];
  for (int j = 0; j < kLevels; ++j) out = out + loss[j];
  if (!weight) total = static_cast<T>(B - ignored);
  *totalWeight = total;
  return red == Reduction::Mean ? out / total : out;
}

// nll_loss backward (nll_loss_backward_out_frame) into g (∂/∂logp, [B,C], zero): at each counted
// row's label, w·(−gout/Σw) for 'mean', w·(−gout) for 'sum', −w·gout_b for 'none'.
template <typename T>
void nllBackward(const int32_t* y, const T* weight, int32_t ignore, Reduction red, size_t B, size_t C, T gout,
                 const T* goutRows, T totalWeight, T* g) {
  const T grad = -(red == Reduction::Mean ? gout / totalWeight : gout);
  for (size_t b = 0; b < B; ++b) {
    if (y[b] == ignore) continue;
    const T w = weight ? weight[y[b]] : T(1);
    g[b * C + size_t(y[b])] = red == Reduction::None ? -w * goutRows[b] : weight ? w * grad : grad;
  }
}

// The loss (for 'none': Σ_b loss_b by at::sum, each loss_b into perRow) and ∂loss/∂z into dz [B,C],
// given logp = log_softmax(z). gradOutput [B] is 'none''s upstream gradient; scratch holds B values.
template <int W, typename T>
T crossEntropy(Capability cap, Fusion fuse, const T* logp, const int32_t* y, const LossSpec<T>& s, size_t B,
               size_t C, T* perRow, T* scratch, T* dz) {
  const Reduction red = s.reduction;
  const bool none = red == Reduction::None, mean = red == Reduction::Mean;
  const T* w = s.weight;
  const size_t n = B * C;
  for (size_t i = 0; i < n; ++i) dz[i] = T(0);
  T loss = T(0);

  if (s.targets) {
    // Probability targets: q' = q·(1−ε) + ε/C, prod = logp·q'·w (each product rounded, left to right).
    const double eps = s.labelSmoothing;
    const T keep = static_cast<T>(1 - eps), spread = static_cast<T>(eps / double(C));
    const auto target = [&](size_t i) { return eps > 0 ? s.targets[i] * keep + spread : s.targets[i]; };
    // The product into dz first (a scratch [B,C]), summed, then dz is overwritten by the backward.
    for (size_t i = 0; i < n; ++i) {
      T p = logp[i] * target(i);
      if (w) p = p * w[i % C];
      dz[i] = p;
    }
    if (none) {
      for (size_t b = 0; b < B; ++b) perRow[b] = -innerSum<W>(dz + b * C, C);
      loss = innerSum<W>(perRow, B);
    } else {
      const T total = -innerSum<W>(dz, n);
      loss = mean ? total / static_cast<T>(B) : total;
    }
    // Backward: ÷B (mean), neg, expand (sum or sum(1)), ·w, ·q'.
    const T top = -(mean ? T(1) / static_cast<T>(B) : T(1));
    for (size_t i = 0; i < n; ++i) {
      T g = none ? -s.gradOutput[i / C] : top;
      if (w) g = g * w[i % C];
      dz[i] = g * target(i);
    }
  } else {
    T totalWeight = T(1);
    const T nll = nllForward(logp, y, w, s.ignoreIndex, red, B, C, perRow, &totalWeight);
    if (s.labelSmoothing == 0) {
      loss = none ? innerSum<W>(perRow, B) : nll;
      nllBackward(y, w, s.ignoreIndex, red, B, C, T(1), s.gradOutput, totalWeight, dz);
    } else {
      const double eps = s.labelSmoothing;
      const T keep = static_cast<T>(1 - eps), spread = static_cast<T>(eps / double(C));
      // smooth_b = −Σ_c logp_bc(·w_c), masked to 0 on ignored rows; into scratch.
      T* smooth = scratch;
      for (size_t b = 0; b < B; ++b) {
        T sum;
        if (w) {
          // (logp · w) per row, summed over the class dim, in dz's row (zero again after).
          T* prod = dz + b * C;
          for (size_t c = 0; c < C; ++c) prod[c] = logp[b * C + c] * w[c];
          sum = innerSum<W>(prod, C);
          for (size_t c = 0; c < C; ++c) prod[c] = T(0);
        } else {
          sum = innerSum<W>(logp + b * C, C);
        }
        smooth[b] = y[b] == s.ignoreIndex ? T(0) : -sum;
      }
      // 'mean': with a weight, smooth_loss.sum() ÷ the counted rows' Σ w[y_b] (weight.gather(…).sum(), an
      // at::sum); without one, smooth_loss.masked_select(~ignore_mask).mean(): the counted rows' values
      // alone, moved together in order, their at::sum ÷ their number. Not ÷B (ignored rows count in
      // neither), and not the sum over all B rows: its zeros would group the partial sums differently.
      T divisor = T(0);
      size_t summed = B;  // how many of smooth's values the reduction adds
      if (mean && !w) {
        summed = 0;
        for (size_t b = 0; b < B; ++b)
          if (y[b] != s.ignoreIndex) smooth[summed++] = smooth[b];
        divisor = static_cast<T>(summed);
      }
      if (mean && w) {
        T* gathered = dz;  // still zero; B ≤ B·C values
        size_t k = 0;
        for (size_t b = 0; b < B; ++b)
          if (y[b] != s.ignoreIndex) gathered[k++] = w[y[b]];
        divisor = innerSum<W>(gathered, k);
        for (size_t i = 0; i < k; ++i) gathered[i] = T(0);
      }
      if (none) {
        for (size_t b = 0; b < B; ++b) perRow[b] = keep * perRow[b] + smooth[b] * spread;
        loss = innerSum<W>(perRow, B);
      } else {
        const T total = innerSum<W>(smooth, summed);
        const T ret = mean ? total / divisor : total;
        loss = keep * nll + ret * spread;
      }
      // Backward: the nll term with upstream (1−ε) (per row: gradOutput_b·(1−ε)), the smooth term
      // with ε/C, ÷ the counted rows (or ÷Σw), masked, negated, expanded over C, ·w; the two added at logp.
      if (none) {
        for (size_t b = 0; b < B; ++b) scratch[b] = s.gradOutput[b] * keep;
        nllBackward(y, w, s.ignoreIndex, red, B, C, T(0), scratch, totalWeight, dz);
      } else {
        nllBackward(y, w, s.ignoreIndex, red, B, C, keep, static_cast<const T*>(nullptr), totalWeight, dz);
      }
      for (size_t b = 0; b < B; ++b) {
        T g = none ? s.gradOutput[b] * spread : mean ? spread / divisor : spread;
        if (y[b] == s.ignoreIndex) g = T(0);
        g = -g;
        for (size_t c = 0; c < C; ++c) {
          const T gc = w ? g * w[c] : g;
          dz[b * C + c] = dz[b * C + c] + gc;
        }
      }
    }
  }
  logSoftmaxBackward<W>(cap, fuse, logp, dz, B, C);
  return loss;
}

}  // namespace hg::exact
